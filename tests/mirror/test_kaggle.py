"""``/kaggle/``: the Kaggle Models RPCs (kagglehub 1.0.3 / kagglesdk 0.1.38) served from a store.

Requests are sent raw (http.client), so every status, header and JSON field is what the mirror
wrote; tests/protocol/test_kaggle_client.py proves the same routes with kagglehub itself.
"""

from __future__ import annotations

import hashlib
import http.client
import io
import json
import os
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from modelhub.mirror import running
from modelhub.store import Store
from tests.mirror.conftest import do_import
from tests.support.kaggle_upstream import kaggle_ref, md5_b64, store_version
from tests.support.mirror_fixtures import make_savedmodel_folder

RPC = "/kaggle/v1/models.ModelApiService"
SDK_RPC = "/api/v1/models.ModelApiService"  # where kagglesdk's TEST environment posts
HANDLE = "Acme/Tiny/PyTorch/default"
V1 = {"config.json": b'{"v": 1}', "model.pt": os.urandom(4000)}
V3 = {
    "config.json": b'{"v": 3}',
    "model.pt": os.urandom(70_000),
    "assets/tokenizer/vocab.txt": b"a\nb\nc\n",
}
MANY = {f"shard-{i:02d}.bin": os.urandom(64 + i) for i in range(30)}


def request(
    url: str,
    method: str,
    target: str,
    body: Any = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], bytes]:
    """One raw request; (status, lower-cased headers, body)."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    data = (
        None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    )
    sent = dict(headers or {})
    if data is not None:
        sent.setdefault("Content-Type", "application/json")
    conn.request(method, target, body=data, headers=sent)
    response = conn.getresponse()
    out = response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    conn.close()
    return out


def rpc(url: str, method: str, body: Any, base: str = RPC) -> tuple[int, dict[str, str], Any]:
    """POST one RPC; the JSON answer (or the raw body when it is none)."""
    status, headers, data = request(url, "POST", f"{base}/{method}", body)
    if headers.get("content-type", "").startswith("application/json"):
        return status, headers, json.loads(data)
    return status, headers, data


def slugs(handle: str = HANDLE, **more: Any) -> dict[str, Any]:
    """The request fields kagglesdk sends for ``owner/model/framework/variation``."""
    owner, model, fw, variation = handle.split("/")
    body = {"ownerSlug": owner, "modelSlug": model, "framework": fw, "instanceSlug": variation}
    return body | more


@pytest.fixture
def kaggle_store(store: Store) -> Store:
    """Versions 1 and 3 of HANDLE (3 pulled with and without a version), and 30-file version."""
    store_version(store, f"{HANDLE}/1", V1)
    store_version(store, f"{HANDLE}/3", V3, refs=[kaggle_ref(f"{HANDLE}/3"), kaggle_ref(HANDLE)])
    store_version(store, "Acme/Tiny/PyTorch/many/1", MANY)
    return store


@pytest.fixture
def mirror(kaggle_store: Store) -> Iterator[str]:
    """The mirror of ``kaggle_store``; its URL."""
    with running(kaggle_store.root) as url:
        yield url


def test_store_layout_is_the_adapters(kaggle_store: Store) -> None:
    manifests = [m for _, m in kaggle_store.manifests()]
    assert sorted(m.ref for m in manifests) == sorted(
        [
            f"kaggle:{HANDLE}",
            f"kaggle:{HANDLE}/1",
            f"kaggle:{HANDLE}/3",
            "kaggle:Acme/Tiny/PyTorch/many/1",
        ]
    )
    three = next(m for m in manifests if m.ref == f"kaggle:{HANDLE}/3")
    assert three.details["folder"] == "pytorch/kaggle/Acme/Tiny/default/3"
    assert three.details["kaggle_framework"] == "pyTorch" and three.details["version"] == 3
    assert (kaggle_store.root / "pytorch/kaggle/Acme/Tiny/default/3/model.pt").read_bytes() == (
        V3["model.pt"]
    )


@pytest.mark.parametrize("base", [RPC, SDK_RPC])
@pytest.mark.parametrize("framework", ["MODEL_FRAMEWORK_PY_TORCH", "pyTorch", "PYTORCH"])
def test_get_model_instance_is_the_newest_version(mirror: str, base: str, framework: str) -> None:
    body = slugs("acme/TINY/x/Default") | {"framework": framework}
    status, headers, doc = rpc(mirror, "GetModelInstance", body, base)
    assert status == 200 and headers["content-type"].startswith("application/json")
    assert doc["versionNumber"] == 3
    assert doc["framework"] == "MODEL_FRAMEWORK_PY_TORCH" and doc["slug"] == "default"
    assert doc["totalUncompressedBytes"] == sum(len(v) for v in V3.values())
    # A version number in the request does not change what the newest is.
    assert rpc(mirror, "GetModelInstance", body | {"versionNumber": 1}, base)[2] == doc


def test_list_files_of_a_version(mirror: str) -> None:
    status, _, doc = rpc(mirror, "ListModelInstanceVersionFiles", slugs(versionNumber=1))
    assert status == 200 and doc["nextPageToken"] == ""
    assert [(f["name"], f["size"]) for f in doc["files"]] == sorted(
        (name, len(data)) for name, data in V1.items()
    )
    assert all(f["creationDate"].endswith(".000Z") for f in doc["files"])
    # No version: the newest (one entry per file, though two manifests record version 3).
    doc = rpc(mirror, "ListModelInstanceVersionFiles", slugs())[2]
    assert [f["name"] for f in doc["files"]] == sorted(V3)


def test_list_files_pages_with_next_page_token(mirror: str) -> None:
    many = slugs("Acme/Tiny/PyTorch/many", versionNumber=1)
    # What kagglehub asks (pageSize 25): a token means "more than 25 files".
    doc = rpc(mirror, "ListModelInstanceVersionFiles", many | {"pageSize": 25})[2]
    assert len(doc["files"]) == 25 and doc["nextPageToken"]
    names, token, pages = [], "", 0
    while True:
        body = many | {"pageSize": 7} | ({"pageToken": token} if token else {})
        status, _, doc = rpc(mirror, "ListModelInstanceVersionFiles", body)
        assert status == 200
        names += [f["name"] for f in doc["files"]]
        pages += 1
        token = doc["nextPageToken"]
        if not token:
            break
    assert names == sorted(MANY) and pages == 5
    # Exactly a page of files: no token.
    doc = rpc(mirror, "ListModelInstanceVersionFiles", many | {"pageSize": 30})[2]
    assert len(doc["files"]) == 30 and doc["nextPageToken"] == ""
    status, _, doc = rpc(mirror, "ListModelInstanceVersionFiles", many | {"pageToken": "%%"})
    assert status == 400 and doc["code"] == 400 and doc["message"]


def test_download_one_file_redirects_to_a_plain_url(mirror: str) -> None:
    body = slugs(versionNumber=3, path="assets/tokenizer/vocab.txt")
    status, headers, _ = rpc(mirror, "DownloadModelInstanceVersion", body, SDK_RPC)
    assert status == 302
    location = headers["location"]
    assert (
        location == f"{mirror}/kaggle/files/Acme/Tiny/pyTorch/default/3/assets/tokenizer/vocab.txt"
    )
    target = urlsplit(location).path
    status, headers, data = request(mirror, "GET", target)
    assert status == 200 and data == V3["assets/tokenizer/vocab.txt"]
    assert headers["x-goog-hash"] == f"md5={md5_b64(data)}"
    assert headers["content-type"] == "application/octet-stream"
    assert headers["content-length"] == str(len(data)) and headers["accept-ranges"] == "bytes"
    assert headers["etag"] == f'"{hashlib.sha256(data).hexdigest()}"'


def test_file_url_honours_range_and_head(mirror: str) -> None:
    target = "/kaggle/files/acme/tiny/PyTorch/DEFAULT/3/model.pt"  # any case, any spelling
    data = V3["model.pt"]
    status, headers, part = request(mirror, "GET", target, headers={"Range": "bytes=1000-"})
    assert status == 206 and part == data[1000:]
    assert headers["content-range"] == f"bytes 1000-{len(data) - 1}/{len(data)}"
    status, headers, body = request(mirror, "HEAD", target)
    assert status == 200 and body == b"" and headers["content-length"] == str(len(data))
    assert headers["x-goog-hash"] == f"md5={md5_b64(data)}"


def _tar_members(data: bytes) -> dict[str, bytes]:
    out = {}
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        for member in tar:
            assert member.isfile() or member.isdir(), member.name
            if member.isfile():
                fh = tar.extractfile(member)
                assert fh is not None
                out[member.name] = fh.read()
    return out


def test_download_whole_version_as_a_cached_archive(mirror: str, kaggle_store: Store) -> None:
    body = slugs("Acme/Tiny/PyTorch/many", versionNumber=1)
    status, headers, _ = rpc(mirror, "DownloadModelInstanceVersion", body)
    assert status == 302
    target = urlsplit(headers["location"]).path
    assert target == "/kaggle/archives/Acme/Tiny/pyTorch/many/1.tar.gz"
    status, headers, first = request(mirror, "GET", target)
    assert status == 200 and headers["content-type"] == "application/gzip"
    assert _tar_members(first) == MANY
    assert headers["x-goog-hash"] == f"md5={md5_b64(first)}"
    assert headers["content-length"] == str(len(first)) and headers["accept-ranges"] == "bytes"
    built = list((kaggle_store.root / ".modelhub/cache/mirror/kaggle").glob("*.tar.gz"))
    assert len(built) == 1 and built[0].read_bytes() == first
    status, again, second = request(mirror, "GET", target)
    assert second == first and again["etag"] == headers["etag"]
    status, _, part = request(mirror, "GET", target, headers={"Range": "bytes=100-199"})
    assert status == 206 and part == first[100:200]


def test_archive_is_deterministic(kaggle_store: Store) -> None:
    """Built again from scratch (another mirror, cache removed), the bytes are the same."""
    target = "/kaggle/archives/Acme/Tiny/pyTorch/default/3.tar.gz"
    with running(kaggle_store.root) as url:
        first = request(url, "GET", target)[2]
    for path in (kaggle_store.root / ".modelhub/cache/mirror/kaggle").iterdir():
        path.unlink()
    with running(kaggle_store.root) as url:
        second = request(url, "GET", target)[2]
    assert first == second and _tar_members(first) == V3


@pytest.mark.parametrize(
    ("method", "body"),
    [
        ("GetModelInstance", slugs("Acme/Nope/PyTorch/default")),
        ("GetModelInstance", slugs("Acme/Tiny/Jax/default")),
        ("GetModelInstance", slugs("Acme/Tiny/NotAFramework/default")),
        ("ListModelInstanceVersionFiles", slugs(versionNumber=2)),
        ("DownloadModelInstanceVersion", slugs(versionNumber=4)),
        ("DownloadModelInstanceVersion", slugs(versionNumber=3, path="nope.bin")),
        ("DownloadModelInstanceVersion", slugs(versionNumber=3, path="../1/model.pt")),
        ("DeleteModel", slugs()),
    ],
)
def test_unknown_things_are_404_in_kaggles_error_shape(
    mirror: str, method: str, body: dict[str, Any]
) -> None:
    status, headers, doc = rpc(mirror, method, body)
    assert status == 404 and headers["content-type"].startswith("application/json")
    assert doc["code"] == 404 and isinstance(doc["message"], str) and doc["message"]


def test_bad_requests(mirror: str) -> None:
    status, _, doc = rpc(mirror, "GetModelInstance", b"{not json")
    assert status == 400 and doc["code"] == 400
    status, _, doc = rpc(mirror, "GetModelInstance", {"ownerSlug": "Acme"})
    assert status == 400 and doc["code"] == 400
    status, _, doc = rpc(mirror, "ListModelInstanceVersionFiles", slugs(versionNumber="x"))
    assert status == 400
    # Plain URLs of things that are not there.
    for target in (
        "/kaggle/files/Acme/Tiny/pyTorch/default/3/nope.bin",
        "/kaggle/files/Acme/Tiny/pyTorch/default/2/model.pt",
        "/kaggle/files/Acme/Tiny/pyTorch/default/3/%2e%2e/1/model.pt",
        "/kaggle/archives/Acme/Tiny/pyTorch/default/9.tar.gz",
        "/kaggle/archives/Acme/Tiny/pyTorch/default/3.zip",
    ):
        assert request(mirror, "GET", target)[0] == 404, target
    # The RPCs are POSTs.
    assert request(mirror, "GET", f"{RPC}/GetModelInstance")[0] == 405


def test_imported_version_without_md5_details(store: Store, tmp_path: Path) -> None:
    """A version imported with ``modelhub import`` (no md5 recorded) is served, md5 computed."""
    files = make_savedmodel_folder(tmp_path / "sm", seed=9)
    do_import(store, tmp_path / "sm", "kaggle:test/tiny/tensorFlow2/default/2")
    with running(store.root) as url:
        doc = rpc(url, "ListModelInstanceVersionFiles", slugs("test/tiny/TensorFlow2/default"))[2]
        assert sorted(f["name"] for f in doc["files"]) == sorted(files)
        target = "/kaggle/files/test/tiny/tensorFlow2/default/2/variables/variables.index"
        status, headers, data = request(url, "GET", target)
        assert status == 200 and data == files["variables/variables.index"]
        assert headers["x-goog-hash"] == f"md5={md5_b64(data)}"
        # The tfhub-format route of kaggle.com still answers for a SavedModel.
        status, _, archive = request(
            url, "GET", "/kaggle/models/test/tiny/tensorFlow2/default/2?tf-hub-format=compressed"
        )
        assert status == 200 and _tar_members(archive) == files

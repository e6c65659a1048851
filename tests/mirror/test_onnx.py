"""``/onnx/``: the generated zoo manifest, and the zoo's files at
``/hf/onnxmodelzoo/legacy_models/resolve/main/{model_path}`` (where upstream serves them now),
proven by modelhub's own ``onnx:`` hub."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import pytest

from modelhub.hubs.onnx_zoo import parse_zoo_manifest
from modelhub.mirror.app import BackgroundMirror
from modelhub.store import Manifest, Store
from tests.support.mirror_fixtures import raw_request


def test_manifest_has_the_zoo_schema(mirror: str, populated: dict[str, Manifest]) -> None:
    with urllib.request.urlopen(f"{mirror}/onnx/ONNX_HUB_MANIFEST.json") as response:
        body = response.read()
        etag = response.headers["ETag"]
    entries = parse_zoo_manifest(body)  # the client's own parser keeps only valid entries
    assert len(entries) == len(json.loads(body)) == 1
    (entry,) = entries
    model_file = populated["onnx"].files[0]
    assert entry["model"] == "tiny-mlp"
    assert entry["model_path"] == "tiny-mlp-13.onnx"
    assert entry["opset_version"] == 13
    assert entry["metadata"]["model_sha"] == model_file.sha256
    assert entry["metadata"]["model_bytes"] == model_file.size
    ports = entry["metadata"]["io_ports"]
    assert [p["name"] for p in ports["inputs"]] == ["x"]
    assert ports["outputs"] == [{"name": "y", "shape": ["N", 3], "type": "tensor(float)"}]
    request = urllib.request.Request(
        f"{mirror}/onnx/ONNX_HUB_MANIFEST.json", headers={"If-None-Match": etag}
    )
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(request)
    assert info.value.code == 304


FILES = "/hf/onnxmodelzoo/legacy_models/resolve/main"


def test_model_file_at_model_path(mirror: str, store_root: Path) -> None:
    """The layout before the zoo moved (``/onnx/{model_path}``) still serves the file."""
    with urllib.request.urlopen(f"{mirror}/onnx/tiny-mlp-13.onnx") as response:
        assert response.read() == (store_root / "onnx" / "tiny-mlp-13.onnx").read_bytes()


def test_model_file_in_the_hugging_face_copy(
    mirror: str, store_root: Path, populated: dict[str, Manifest]
) -> None:
    """The zoo's files as the Hub serves its copy: X-Repo-Commit, ETag = sha256, exact size,
    Range, HEAD, EntryNotFound for a path it does not hold."""
    data = (store_root / "onnx" / "tiny-mlp-13.onnx").read_bytes()
    sha = populated["onnx"].files[0].sha256
    status, headers, body = raw_request(mirror, f"{FILES}/tiny-mlp-13.onnx")
    assert status == 200 and body == data
    commit = headers["x-repo-commit"]
    assert len(commit) == 40 and set(commit) <= set("0123456789abcdef")
    assert headers["etag"] == f'"{sha}"' and headers["x-linked-etag"] == f'"{sha}"'
    assert headers["content-length"] == headers["x-linked-size"] == str(len(data))
    status, _, part = raw_request(
        mirror, f"{FILES}/tiny-mlp-13.onnx", headers={"Range": "bytes=4-9"}
    )
    assert status == 206 and part == data[4:10]
    status, head, body = raw_request(mirror, f"{FILES}/tiny-mlp-13.onnx", "HEAD")
    assert status == 200 and body == b"" and head["x-repo-commit"] == commit
    # By commit, as the Hub answers a resolve of the commit its HEAD named.
    status, _, body = raw_request(
        mirror, f"/hf/onnxmodelzoo/legacy_models/resolve/{commit}/tiny-mlp-13.onnx"
    )
    assert status == 200 and body == data
    status, missing, _ = raw_request(mirror, f"{FILES}/not-there.onnx")
    assert status == 404 and missing["x-error-code"] == "EntryNotFound"
    # Only zoo models are in the copy: the other hubs' files are not.
    status, _, _ = raw_request(mirror, f"{FILES}/{populated['torch'].files[0].path}")
    assert status == 404


def test_modelhub_onnx_hub_pulls_through_the_mirror(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, populated: dict[str, Manifest]
) -> None:
    """The zoo manifest from ``/onnx``, the file from the Hugging Face copy under ``/hf``."""
    import modelhub

    fresh = Store(tmp_path / "fresh")
    server = BackgroundMirror(Store().root, record=True)
    monkeypatch.setenv("MODELHUB_MIRROR", server.start())
    try:
        model = modelhub.pull("onnx:tiny-mlp", store=fresh)
        seen = list(server.requests)
    finally:
        server.stop()
    assert seen == [
        ("GET", "/onnx/ONNX_HUB_MANIFEST.json"),
        ("GET", f"{FILES}/tiny-mlp-13.onnx"),
    ]
    original = populated["onnx"].files[0]
    assert model.manifest.revision == original.sha256
    assert model.manifest.files[0].sha256 == original.sha256
    assert model.manifest.staged[0].format == "onnx"
    assert model.manifest.details["model_path"] == "tiny-mlp-13.onnx"
    assert model.manifest.source == [f"{server.url}{FILES}/tiny-mlp-13.onnx"]
    assert model.path.read_bytes() == (Store().root / original.path).read_bytes()


def test_pulled_zoo_model_is_served_under_its_zoo_path(
    zoo: object, tmp_path: Path, store: Store
) -> None:
    """A model pulled from the zoo keeps its zoo model_path when mirrored."""
    import modelhub
    from modelhub.mirror import running

    pulled = modelhub.pull("onnx:tiny-mlp@12", store=store)
    with running(store.root) as url:
        with urllib.request.urlopen(f"{url}/onnx/ONNX_HUB_MANIFEST.json") as response:
            (entry,) = json.loads(response.read())
        assert entry["model_path"] == "validated/tiny/model/tiny-mlp-12.onnx"
        assert entry["opset_version"] == 12
        with urllib.request.urlopen(f"{url}/onnx/{entry['model_path']}") as response:
            assert response.read() == pulled.path.read_bytes()
        with urllib.request.urlopen(f"{url}{FILES}/{entry['model_path']}") as response:
            assert response.read() == pulled.path.read_bytes()


MNIST_PATH = "validated/vision/classification/mnist/model/mnist-12.onnx"


def test_cli_pull_onnx_mnist_through_the_mirror(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`modelhub pull onnx:mnist` with MODELHUB_MIRROR: the manifest from /onnx, the file from
    /hf/onnxmodelzoo/legacy_models/resolve/main/<the zoo's path>."""
    import modelhub
    from modelhub.cli.main import main
    from tests.conftest import ZOO_FILES
    from tests.support.httpserver import HTTPTestServer
    from tests.support.onnx_models import make_mlp, zoo_entry, zoo_manifest

    data = make_mlp(tmp_path / "mnist-12.onnx", seed=12, opset=12).read_bytes()
    seed = Store(tmp_path / "seed")
    upstream = {
        "/ONNX_HUB_MANIFEST.json": zoo_manifest([zoo_entry("MNIST", MNIST_PATH, data, 12)]),
        f"/{ZOO_FILES}/{MNIST_PATH}": data,
    }
    with HTTPTestServer(upstream) as zoo:
        monkeypatch.setenv("MODELHUB_ONNX_URL", zoo.url)
        monkeypatch.setenv("MODELHUB_HF_URL", zoo.url)
        modelhub.pull("onnx:mnist", store=seed)
    monkeypatch.delenv("MODELHUB_ONNX_URL")
    monkeypatch.delenv("MODELHUB_HF_URL")
    server = BackgroundMirror(seed.root, record=True)
    monkeypatch.setenv("MODELHUB_MIRROR", server.start())
    try:
        assert main(["pull", "onnx:mnist"]) == 0
        seen = list(server.requests)
    finally:
        server.stop()
    assert seen == [
        ("GET", "/onnx/ONNX_HUB_MANIFEST.json"),
        ("GET", f"{FILES}/{MNIST_PATH}"),
    ]
    out = capsys.readouterr().out.strip()
    assert out == str(Store().root / "onnx" / "mnist-12.onnx")
    assert Path(out).read_bytes() == data


def test_files_revision_commit_follows_its_files(
    store: Store, tmp_path: Path, populated: dict[str, Manifest]
) -> None:
    """The copy's ``main`` has one commit for the zoo files; adding a model changes it, and the
    listing names every zoo file."""
    from modelhub.mirror import running
    from tests.mirror.conftest import do_import
    from tests.support.onnx_models import make_mlp

    def state(url: str) -> tuple[str, list[str]]:
        api = f"{url}/hf/api/models/onnxmodelzoo/legacy_models"
        with urllib.request.urlopen(api) as response:
            info = json.loads(response.read())
        with urllib.request.urlopen(f"{api}/tree/main?recursive=true") as response:
            paths = [e["path"] for e in json.loads(response.read()) if e["type"] == "file"]
        assert [s["rfilename"] for s in info["siblings"]] == paths
        return info["sha"], paths

    with running(store.root) as url:
        first, paths = state(url)
        assert paths == ["tiny-mlp-13.onnx"]
        do_import(store, make_mlp(tmp_path / "second-7.onnx", seed=9, opset=7), "onnx:second")
        second, paths = state(url)
    assert paths == ["second-7.onnx", "tiny-mlp-13.onnx"]
    assert second != first and len(second) == 40

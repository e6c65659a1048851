"""``/tfhub/`` and ``/kaggle/models/``: a SavedModel as tar.gz, streamed then cached.

The archive is checked the way tensorflow_hub reads it (``tarfile.open(mode="r|*")``, files and
folders only); with tensorflow_hub installed, ``hub.resolve`` and ``hub.load`` prove it.
"""

from __future__ import annotations

import http.client
import io
import os
import tarfile
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from modelhub.mirror import running
from modelhub.store import Manifest, Store
from tests.mirror.conftest import do_import
from tests.support.mirror_fixtures import raw_request

HANDLE = "test/tiny-sm/1"


def _read_like_tensorflow_hub(data: bytes) -> dict[str, bytes]:
    out = {}
    with tarfile.open(mode="r|*", fileobj=io.BytesIO(data)) as tar:
        for member in tar:
            assert member.isfile() or member.isdir(), member.name
            if member.isfile():
                fh = tar.extractfile(member)
                assert fh is not None
                out[member.name] = fh.read()
    return out


def _expected(store_root: Path, manifest: Manifest) -> dict[str, bytes]:
    folder = manifest.details["folder"] + "/"
    return {f.path.removeprefix(folder): (store_root / f.path).read_bytes() for f in manifest.files}


def test_compressed_archive_streamed_then_cached(
    mirror: str, store_root: Path, populated: dict[str, Manifest]
) -> None:
    url = f"/tfhub/{HANDLE}?tf-hub-format=compressed"
    status, first_headers, first = raw_request(mirror, url)
    assert status == 200
    assert first_headers["content-type"] == "application/gzip"
    assert _read_like_tensorflow_hub(first) == _expected(store_root, populated["tfhub"])
    cache = list((store_root / ".modelhub" / "cache" / "mirror").glob("*.tar.gz"))
    assert len(cache) == 1 and cache[0].read_bytes() == first
    # From the cache: same bytes, now with Content-Length, ETag, Range and HEAD.
    status, headers, second = raw_request(mirror, url)
    assert status == 200 and second == first
    assert headers["content-length"] == str(len(first))
    assert headers["etag"] == first_headers["etag"]
    status, _, part = raw_request(mirror, url, headers={"Range": "bytes=0-9"})
    assert status == 206 and part == first[:10]
    status, head, body = raw_request(mirror, url, "HEAD")
    assert status == 200 and body == b"" and head["content-length"] == str(len(first))
    status, _, _ = raw_request(mirror, url, headers={"If-None-Match": headers["etag"]})
    assert status == 304


def test_archive_is_deterministic_without_cache(
    store: Store, populated: dict[str, Manifest], tmp_path: Path
) -> None:
    """A read-only store streams every time, and the bytes do not change between requests."""
    cache = store.root / ".modelhub" / "cache"
    cache.mkdir(parents=True, exist_ok=True)
    cache.chmod(0o500)
    try:
        with running(store.root) as url:
            target = f"/tfhub/{HANDLE}?tf-hub-format=compressed"
            one = raw_request(url, target)[2]
            two = raw_request(url, target)[2]
    finally:
        cache.chmod(0o700)
    assert one == two and one[:2] == b"\x1f\x8b"


def test_kaggle_handle_with_and_without_version(
    mirror: str, store_root: Path, populated: dict[str, Manifest]
) -> None:
    expected = _expected(store_root, populated["kaggle"])
    for handle in ("test/tiny/tensorFlow2/default/2",):
        status, _, data = raw_request(mirror, f"/kaggle/models/{handle}?tf-hub-format=compressed")
        assert status == 200 and _read_like_tensorflow_hub(data) == expected


def test_browser_request_and_unknown_handles(mirror: str) -> None:
    status, _, body = raw_request(mirror, f"/tfhub/{HANDLE}")
    assert status == 200 and b"tf-hub-format=compressed" in body and len(body) < 300
    status, _, _ = raw_request(mirror, f"/tfhub/{HANDLE}?tf-hub-format=uncompressed")
    assert status == 404
    status, _, _ = raw_request(mirror, "/tfhub/test/unknown/1?tf-hub-format=compressed")
    assert status == 404
    status, _, _ = raw_request(mirror, f"/kaggle/models/{HANDLE}?tf-hub-format=compressed")
    assert status == 404


def test_tensorflow_hub_resolve_and_load(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tf = pytest.importorskip("tensorflow")
    hub = pytest.importorskip("tensorflow_hub")

    class Tiny(tf.Module):
        def __init__(self) -> None:
            self.w = tf.Variable([[1.0, 2.0], [3.0, 4.0]])

        @tf.function(input_signature=[tf.TensorSpec([None, 2], tf.float32)])
        def __call__(self, x: object) -> object:
            return tf.matmul(x, self.w)

    saved = tmp_path / "saved"
    tf.saved_model.save(Tiny(), str(saved))
    do_import(store, saved, "tfhub:test/tiny-tf/3")
    monkeypatch.setenv("TFHUB_CACHE_DIR", str(tmp_path / "tfhub-cache"))
    with running(store.root) as url:
        handle = f"{url}/tfhub/test/tiny-tf/3"
        resolved = Path(hub.resolve(handle))
        assert (resolved / "saved_model.pb").read_bytes() == (saved / "saved_model.pb").read_bytes()
        loaded = hub.load(handle)
        out = loaded(tf.constant([[1.0, 1.0]]))
    assert out.numpy().tolist() == [[4.0, 6.0]]


def test_archive_refuses_changed_files(mirror: str, store_root: Path) -> None:
    target = store_root / "tensorflow/tfhub/test/tiny-sm/1/fingerprint.pb"
    target.write_bytes(b"changed")
    status, _, body = raw_request(mirror, f"/tfhub/{HANDLE}?tf-hub-format=compressed")
    assert status == 404 and len(body) < 200


def test_archive_failing_midway_is_not_a_clean_response(
    mirror: str, store_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from modelhub.mirror import tfhub

    def broken(model: object, out: io.BufferedWriter) -> None:
        out.write(b"\x1f\x8b" + b"x" * 3_000_000)
        raise OSError("disk went away")

    monkeypatch.setattr(tfhub, "write_archive", broken)
    url = f"{mirror}/tfhub/{HANDLE}?tf-hub-format=compressed"
    errors = (http.client.IncompleteRead, urllib.error.URLError, ConnectionError)
    with pytest.raises(errors), urllib.request.urlopen(url) as response:
        response.read()
    assert not list((store_root / ".modelhub" / "cache" / "mirror").iterdir())


def test_client_leaving_early_still_completes_the_cache(store: Store, tmp_path: Path) -> None:
    import socket
    import time
    from urllib.parse import urlsplit

    folder = tmp_path / "big-sm"
    (folder / "variables").mkdir(parents=True)
    (folder / "saved_model.pb").write_bytes(b"\x08\x01" * 100)
    (folder / "variables" / "variables.data-00000-of-00001").write_bytes(os.urandom(24 << 20))
    (folder / "variables" / "variables.index").write_bytes(b"index")
    do_import(store, folder, "tfhub:test/big/1")
    with running(store.root) as url:
        parts = urlsplit(url)
        with socket.create_connection((parts.hostname, parts.port)) as sock:
            sock.sendall(
                b"GET /tfhub/test/big/1?tf-hub-format=compressed HTTP/1.1\r\nHost: x\r\n\r\n"
            )
            assert sock.recv(65536).startswith(b"HTTP/1.1 200")
        cache = store.root / ".modelhub" / "cache" / "mirror"
        deadline = time.monotonic() + 60
        while not list(cache.glob("*.tar.gz")) and time.monotonic() < deadline:
            time.sleep(0.1)
        (archive,) = cache.glob("*.tar.gz")
        status, headers, body = raw_request(url, "/tfhub/test/big/1?tf-hub-format=compressed")
    assert status == 200 and body == archive.read_bytes()
    assert headers["content-length"] == str(len(body))
    got = _read_like_tensorflow_hub(body)
    assert (
        got["variables/variables.data-00000-of-00001"]
        == (folder / "variables" / "variables.data-00000-of-00001").read_bytes()
    )
    assert not list(cache.glob("*.tmp"))


# --- the other forms tfhub.dev served: TFLite files and TF.js models -------------------------
LITE = "test/lite-model/tiny/1"
TFJS = "test/tfjs-model/tiny/1"


def _tfjs_folder(folder: Path) -> dict[str, bytes]:
    import json

    shards = {"group1-shard1of2.bin": os.urandom(3000), "group1-shard2of2.bin": os.urandom(1000)}
    doc = {"format": "graph-model", "weightsManifest": [{"paths": sorted(shards), "weights": []}]}
    files = {"model.json": json.dumps(doc).encode(), **shards}
    folder.mkdir(parents=True)
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return files


def test_tflite_and_tfjs_forms_are_served(store: Store, tmp_path: Path) -> None:
    lite = tmp_path / "tiny.tflite"
    lite.write_bytes(b"\x1c\x00\x00\x00TFL3" + os.urandom(500))
    do_import(store, lite, f"tfhub:{LITE}")
    files = _tfjs_folder(tmp_path / "tfjs")
    do_import(store, tmp_path / "tfjs", f"tfhub:{TFJS}")
    with running(store.root) as url:
        status, headers, body = raw_request(url, f"/tfhub/{LITE}?lite-format=tflite")
        assert status == 200 and body == lite.read_bytes()
        assert headers["content-length"] == str(len(body))
        status, _, part = raw_request(
            url, f"/tfhub/{LITE}?lite-format=tflite", headers={"Range": "bytes=4-7"}
        )
        assert status == 206 and part == b"TFL3"
        for name, data in files.items():
            status, _, body = raw_request(url, f"/tfhub/{TFJS}/{name}?tfjs-format=file")
            assert status == 200 and body == data, name
        # What a browser gets names the form and how to download it.
        status, _, text = raw_request(url, f"/tfhub/{LITE}")
        assert status == 200 and b"TFLite" in text and b"?lite-format=tflite" in text
        status, _, text = raw_request(url, f"/tfhub/{TFJS}")
        assert status == 200 and b"TF.js" in text and b"model.json?tfjs-format=file" in text
        # Not served: a TFLite file of a SavedModel, files a model does not hold, other formats.
        assert raw_request(url, f"/tfhub/{HANDLE_OF_NONE}?lite-format=tflite")[0] == 404
        assert raw_request(url, f"/tfhub/{TFJS}/missing.bin?tfjs-format=file")[0] == 404
        assert raw_request(url, f"/tfhub/{TFJS}/model.json?tfjs-format=other")[0] == 404
        assert raw_request(url, f"/tfhub/{TFJS}/model.json?tf-hub-format=compressed")[0] == 404
        # As tfhub.dev's redirect leaves it (tfjs-format kept, tfhub-redirect added).
        redirected = f"/tfhub/{TFJS}/model.json?tfjs-format=file&tfhub-redirect=true"
        assert raw_request(url, redirected)[2] == files["model.json"]
        assert raw_request(url, f"/tfhub/{TFJS}?lite-format=tflite")[0] == 404


HANDLE_OF_NONE = "test/none/1"


def test_modelhub_pulls_tflite_and_tfjs_through_the_mirror(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A real TFLite model and a TF.js model pulled from the mirror into a fresh store: the
    requests are the ones upstream answered, the files identical, the TFLite one validated."""
    pytest.importorskip("tensorflow")
    from modelhub import pull
    from modelhub.mirror.app import BackgroundMirror
    from tests.support.tf_models import make_tflite

    lite = make_tflite(tmp_path / "tiny.tflite")
    do_import(store, lite, f"tfhub:{LITE}")
    files = _tfjs_folder(tmp_path / "tfjs")
    do_import(store, tmp_path / "tfjs", f"tfhub:{TFJS}")
    fresh = Store(tmp_path / "fresh")
    server = BackgroundMirror(store.root, record=True)
    monkeypatch.setenv("MODELHUB_MIRROR", server.start())
    try:
        tflite = pull(f"tfhub:{LITE}", store=fresh)
        tfjs = pull(f"tfhub:{TFJS}", store=fresh)
        seen = list(server.requests)
    finally:
        server.stop()
    assert seen == [
        ("GET", f"/tfhub/{LITE}?lite-format=tflite"),
        ("GET", f"/tfhub/{TFJS}/model.json?tfjs-format=file"),
        ("GET", f"/tfhub/{TFJS}/group1-shard1of2.bin?tfjs-format=file"),
        ("GET", f"/tfhub/{TFJS}/group1-shard2of2.bin?tfjs-format=file"),
    ]
    assert tflite.path.read_bytes() == lite.read_bytes()
    assert tflite.manifest.staged[0].format == "tflite"
    assert {p.name: p.read_bytes() for p in tfjs.path.iterdir()} == files

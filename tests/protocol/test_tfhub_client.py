"""Protocol proof for ``tfhub:``: tensorflow_hub 0.16.1's own ``hub.resolve``/``hub.load`` and
modelhub, each against the same recording proxy (tests/support/recorder.py), ask for the same
resources (method, path and query, in the same order, the same redirects followed), and each
finds in ``TFHUB_CACHE_DIR`` what the other downloaded, with no request at all.

Upstreams: ``modelhub serve`` (the mirror), and a tfhub.dev stand-in that answers as tfhub.dev
does today: a migrated handle redirects to its Kaggle Models URL (query kept, plus
``tfhub-redirect=true``), which serves the archive; a handle never migrated redirects to a
Kaggle web page (200, HTML).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
hub = pytest.importorskip("tensorflow_hub")

import modelhub  # noqa: E402
from modelhub.errors import ModelNotFoundError  # noqa: E402
from modelhub.importer import import_path  # noqa: E402
from modelhub.mirror.app import BackgroundMirror  # noqa: E402
from tests.support.httpserver import HTTPTestServer  # noqa: E402
from tests.support.recorder import Recorder  # noqa: E402
from tests.support.tf_models import make_saved_model, targz  # noqa: E402

HANDLE = "proto/tiny-classifier/1"
MIGRATED = "google/tiny/1"
KAGGLE_PATH = "/models/google/tiny/tensorFlow2/default/1"
GONE = "google/never-migrated/2"
PAGE = b"<!DOCTYPE html><html><head><title>Kaggle</title></head><body>Models</body></html>"


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_saved_model(tmp_path_factory.mktemp("sm") / "tiny")


@pytest.fixture(scope="module")
def mirror(saved_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    seed = modelhub.Store(tmp_path_factory.mktemp("seed"))
    import_path(seed, saved_model, modelhub.parse(f"tfhub:{HANDLE}"))
    with BackgroundMirror(seed.root) as url:
        yield url


@dataclass
class Caches:
    """One TFHUB_CACHE_DIR for each client."""

    sdk: Path
    modelhub: Path

    def use(self, which: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("TFHUB_CACHE_DIR", str(which))


@pytest.fixture
def caches(tmp_path: Path) -> Caches:
    return Caches(tmp_path / "sdk-cache", tmp_path / "modelhub-cache")


def _log(rec: Recorder) -> list[tuple[str, str, int]]:
    """(method, target, status) in order; 206 counts as 200 (modelhub's transfer asks for
    ``Range: bytes=0-`` to learn whether a later resume can be ranged)."""
    rec.wait_idle()
    return [(r.method, r.target, 200 if r.status == 206 else r.status) for r in rec.log]


def _sdk_resolve(handle_url: str, caches: Caches, monkeypatch: pytest.MonkeyPatch) -> str:
    caches.use(caches.sdk, monkeypatch)
    return str(hub.resolve(handle_url))


def _modelhub_pull(
    base: str, handle: str, caches: Caches, monkeypatch: pytest.MonkeyPatch, store: Path
) -> modelhub.Model:
    caches.use(caches.modelhub, monkeypatch)
    monkeypatch.setenv("MODELHUB_TFHUB_URL", base)
    return modelhub.pull(f"tfhub:{handle}", stage="none", store=modelhub.Store(store))


def test_same_requests_against_the_mirror(
    mirror: str, caches: Caches, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with Recorder(mirror) as rec:
        handle_url = f"{rec.url}/tfhub/{HANDLE}"
        sdk_dir = _sdk_resolve(handle_url, caches, monkeypatch)
        sdk = _log(rec)
        rec.clear()
        pulled = _modelhub_pull(f"{rec.url}/tfhub", HANDLE, caches, monkeypatch, tmp_path / "s")
        ours = _log(rec)
    assert sdk == ours == [("GET", f"/tfhub/{HANDLE}?tf-hub-format=compressed", 200)]
    # The same cache folder name: the sha1 of the handle string as given.
    key = hashlib.sha1(handle_url.encode()).hexdigest()
    assert Path(sdk_dir).name == Path(str(pulled.manifest.sdk_cache)).name == key
    sdk_files = {p.relative_to(sdk_dir) for p in Path(sdk_dir).rglob("*") if p.is_file()}
    ours_dir = Path(str(pulled.manifest.sdk_cache))
    assert sdk_files == {p.relative_to(ours_dir) for p in ours_dir.rglob("*") if p.is_file()}
    for rel in sdk_files:
        assert (Path(sdk_dir) / rel).read_bytes() == (ours_dir / rel).read_bytes()


def test_same_redirects_followed_from_tfhub_dev_to_kaggle(
    saved_model: Path, caches: Caches, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = f"{KAGGLE_PATH}?tf-hub-format=compressed&tfhub-redirect=true"
    with HTTPTestServer({KAGGLE_PATH: targz(saved_model)}) as upstream:
        upstream.redirect(f"/{MIGRATED}", target)
        with Recorder(upstream.url) as rec:
            _sdk_resolve(f"{rec.url}/{MIGRATED}", caches, monkeypatch)
            sdk = _log(rec)
            rec.clear()
            pulled = _modelhub_pull(rec.url, MIGRATED, caches, monkeypatch, tmp_path / "s")
            ours = _log(rec)
    assert (
        sdk
        == ours
        == [
            ("GET", f"/{MIGRATED}?tf-hub-format=compressed", 302),
            ("GET", target, 200),
        ]
    )
    assert (Path(str(pulled.manifest.sdk_cache)) / "saved_model.pb").is_file()


def test_a_handle_never_migrated(
    caches: Caches, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both ask the same; tensorflow_hub fails on the page as an invalid module, modelhub says
    not found (exit 3); neither leaves a module folder."""
    with HTTPTestServer() as upstream:
        upstream.redirect(f"/{GONE}", "/models/google/never-migrated?tfhub-redirect=true")
        upstream.add("/models/google/never-migrated", PAGE, {"Content-Type": "text/html"})
        with Recorder(upstream.url) as rec:
            with pytest.raises(OSError, match="does not appear to be a valid module"):
                _sdk_resolve(f"{rec.url}/{GONE}", caches, monkeypatch)
            sdk = _log(rec)
            rec.clear()
            with pytest.raises(ModelNotFoundError, match=f"tfhub:{GONE}") as info:
                _modelhub_pull(rec.url, GONE, caches, monkeypatch, tmp_path / "s")
            ours = _log(rec)
    assert info.value.exit_code == 3
    assert (
        sdk
        == ours
        == [
            ("GET", f"/{GONE}?tf-hub-format=compressed", 302),
            ("GET", "/models/google/never-migrated?tfhub-redirect=true", 200),
        ]
    )
    for cache in (caches.sdk, caches.modelhub):
        folders = [p for p in cache.iterdir() if p.is_dir()] if cache.exists() else []
        assert folders == []


def test_tensorflow_hub_uses_modelhubs_download_with_no_request(
    mirror: str, caches: Caches, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with Recorder(mirror) as rec:
        pulled = _modelhub_pull(f"{rec.url}/tfhub", HANDLE, caches, monkeypatch, tmp_path / "s")
        rec.clear()
        monkeypatch.setenv("TFHUB_CACHE_DIR", str(caches.modelhub))
        handle_url = f"{rec.url}/tfhub/{HANDLE}"
        assert hub.resolve(handle_url) == pulled.manifest.sdk_cache
        loaded = hub.load(handle_url)
        out = loaded.signatures["serving_default"](
            x=tf.ones((2, 4), tf.float32), k=tf.constant([1, 2], tf.int32)
        )
        assert _log(rec) == []
    assert out["doubled"].numpy().tolist() == [2, 4]
    np.testing.assert_allclose(out["probs"].numpy().sum(axis=1), 1.0, rtol=1e-5)


def test_modelhub_uses_tensorflow_hubs_download_with_no_request(
    mirror: str, caches: Caches, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with Recorder(mirror) as rec:
        sdk_dir = _sdk_resolve(f"{rec.url}/tfhub/{HANDLE}", caches, monkeypatch)
        rec.clear()
        monkeypatch.setenv("MODELHUB_TFHUB_URL", f"{rec.url}/tfhub")
        store = modelhub.Store(tmp_path / "s")
        pulled = modelhub.pull(f"tfhub:{HANDLE}", stage="pb", store=store)
        assert _log(rec) == []
    assert pulled.manifest.sdk_cache == sdk_dir
    assert pulled.manifest.details["cache_hit"] is True
    assert (store.root / "tensorflow" / "tfhub" / HANDLE / "saved_model.pb").read_bytes() == (
        Path(sdk_dir) / "saved_model.pb"
    ).read_bytes()
    assert pulled.manifest.staged[0].parity["max_abs_diff"] <= 1e-4

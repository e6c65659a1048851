"""Kaggle's own client, kagglehub 1.0.3 (kagglesdk 0.1.38), against the mirror and a test upstream.

kagglehub posts to a fixed host in its TEST environment (``KAGGLE_API_ENVIRONMENT=TEST``:
``http://localhost:7777/api/v1/...``, kagglesdk ``kaggle_env.py`` / ``kaggle_http_client.py``).
A :class:`~tests.support.recorder.Recorder` on a random port is its forward proxy
(``HTTP_PROXY``) and forwards everything to the server under test, so the client runs unchanged
and every request is on record. The cache layout asserted is kagglehub's ``cache.py``:
``models/<owner>/<model>/<framework>/<variation>/<version>/<files>``, a whole version's marker
``<version>.complete`` beside that folder, a single file's ``.complete/<version>/<path>.complete``.

Reusable: :func:`use_kagglehub` (the environment), the ``kaggle_mirror`` fixture (a store with
Kaggle versions, its mirror and a recorder in front) and :mod:`tests.support.kaggle_upstream`
(``store_version``, ``write_version``, ``KaggleUpstream``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from modelhub.mirror import running
from modelhub.store import Store
from tests.support.kaggle_upstream import KaggleUpstream, kaggle_ref, store_version, write_version
from tests.support.recorder import Recorder

kagglehub = pytest.importorskip("kagglehub")
from kagglehub.exceptions import DataCorruptionError, KaggleApiHTTPError  # noqa: E402

SMALL = {
    "config.json": b'{"hidden": 4}',
    "model.weights.h5": os.urandom(30_000),
    "assets/tokenizer/vocabulary.spm": os.urandom(900),
}
MANY = {f"shards/part-{i:02d}.bin": os.urandom(100 + i) for i in range(30)}
KAGGLE_CREDENTIAL_ENV = ("KAGGLE_API_TOKEN", "KAGGLE_USERNAME", "KAGGLE_KEY", "KAGGLE_CONFIG_DIR")


def use_kagglehub(
    monkeypatch: pytest.MonkeyPatch, proxy: str, home: Path, *, no_proxy: str = "127.0.0.1"
) -> Path:
    """Point kagglehub at ``proxy`` (its TEST environment's localhost:7777 goes there), with an
    empty ``home`` (no ``~/.kaggle`` credentials) and no Kaggle credentials in the environment;
    ``no_proxy`` hosts are reached directly. Return the ``KAGGLEHUB_CACHE`` folder."""
    from kagglehub.config import clear_kaggle_credentials

    cache = home / "kagglehub-cache"
    monkeypatch.setenv("KAGGLE_API_ENVIRONMENT", "TEST")
    for name in ("HTTP_PROXY", "http_proxy"):
        monkeypatch.setenv(name, proxy)
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.setenv(name, no_proxy)
    for name in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy", *KAGGLE_CREDENTIAL_ENV):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("KAGGLEHUB_CACHE", str(cache))
    monkeypatch.setenv("DISABLE_KAGGLE_CACHE", "true")
    monkeypatch.setenv("DISABLE_COLAB_CACHE", "true")
    clear_kaggle_credentials()
    return cache


def _files(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()
    }


@dataclass
class KaggleMirror:
    """A store with Kaggle versions, its mirror, and a recorder kagglehub talks through."""

    store: Store
    url: str
    recorder: Recorder
    cache: Path


@pytest.fixture
def kaggle_mirror(
    store_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[KaggleMirror]:
    """``acme/tiny/keras/small`` versions 1 and 2 (2 also pulled unversioned), and
    ``acme/tiny/keras/many/1`` (30 files), served; kagglehub set up to use them."""
    store = Store(store_root)
    store_version(store, "acme/tiny/keras/small/1", {"config.json": b"{}"})
    store_version(
        store,
        "acme/tiny/keras/small/2",
        SMALL,
        refs=[kaggle_ref("acme/tiny/keras/small/2"), kaggle_ref("acme/tiny/keras/small")],
    )
    store_version(store, "acme/tiny/keras/many/1", MANY)
    with running(store.root) as url, Recorder(url) as rec:
        cache = use_kagglehub(monkeypatch, rec.origin, tmp_path / "home", no_proxy="")
        yield KaggleMirror(store, url, rec, cache)


def _paths(rec: Recorder) -> list[tuple[str, str]]:
    rec.wait_idle()
    return [(r.method, r.path) for r in rec.log]


def test_per_file_download_fills_kagglehubs_cache(kaggle_mirror: KaggleMirror) -> None:
    path = Path(kagglehub.model_download("acme/tiny/keras/small/2"))
    cache = kaggle_mirror.cache
    assert path == cache / "models/acme/tiny/keras/small/2"
    assert _files(path) == SMALL
    assert (cache / "models/acme/tiny/keras/small/2.complete").is_file()
    assert not (cache / "models/acme/tiny/keras/small/2.archive").exists()
    seen = _paths(kaggle_mirror.recorder)
    rpc = "/api/v1/models.ModelApiService"
    assert seen.count(("POST", f"{rpc}/ListModelInstanceVersionFiles")) == 1
    assert seen.count(("POST", f"{rpc}/DownloadModelInstanceVersion")) == len(SMALL)
    gets = sorted(p for m, p in seen if m == "GET")
    assert gets == sorted(f"/kaggle/files/acme/tiny/keras/small/2/{name}" for name in SMALL)
    lists = kaggle_mirror.recorder.records(path=f"{rpc}/ListModelInstanceVersionFiles")
    assert lists[0].headers["host"] == "localhost:7777"  # the client did not know the port
    # Cached: the same call costs nothing.
    kaggle_mirror.recorder.clear()
    assert kagglehub.model_download("acme/tiny/keras/small/2") == str(path)
    assert _paths(kaggle_mirror.recorder) == []


def test_more_than_25_files_come_as_one_archive(kaggle_mirror: KaggleMirror) -> None:
    path = Path(kagglehub.model_download("acme/tiny/keras/many/1"))
    assert path == kaggle_mirror.cache / "models/acme/tiny/keras/many/1"
    assert _files(path) == MANY
    assert (kaggle_mirror.cache / "models/acme/tiny/keras/many/1.complete").is_file()
    assert not (kaggle_mirror.cache / "models/acme/tiny/keras/many/1.archive").exists()
    gets = [p for m, p in _paths(kaggle_mirror.recorder) if m == "GET"]
    assert gets == ["/kaggle/archives/acme/tiny/keras/many/1.tar.gz"]


def test_unversioned_handle_resolves_to_the_newest(kaggle_mirror: KaggleMirror) -> None:
    path = Path(kagglehub.model_download("ACME/tiny/Keras/small"))
    assert path == kaggle_mirror.cache / "models/ACME/tiny/Keras/small/2"
    assert _files(path) == SMALL
    seen = _paths(kaggle_mirror.recorder)
    assert seen[0] == ("POST", "/api/v1/models.ModelApiService/GetModelInstance")


def test_one_file_of_a_version(kaggle_mirror: KaggleMirror) -> None:
    name = "assets/tokenizer/vocabulary.spm"
    path = Path(kagglehub.model_download("acme/tiny/keras/small/2", path=name))
    cache = kaggle_mirror.cache
    assert path == cache / "models/acme/tiny/keras/small/2" / name
    assert path.read_bytes() == SMALL[name]
    assert (cache / f"models/acme/tiny/keras/small/.complete/2/{name}.complete").is_file()
    assert not (cache / "models/acme/tiny/keras/small/2.complete").exists()


def test_unknown_version_is_kagglehubs_not_found(kaggle_mirror: KaggleMirror) -> None:
    with pytest.raises(KaggleApiHTTPError, match="404") as err:
        kagglehub.model_download("acme/tiny/keras/small/7")
    assert err.value.response is not None and err.value.response.status_code == 404
    assert not (kaggle_mirror.cache / "models/acme/tiny/keras/small/7").exists()


# --- against the test upstream: credentials, storage on another origin, faults ---------------
GATED = "google/gemma-tiny/keras/gemma_tiny_en"
TOKEN = "kaggle-test-token-0123456789"


@pytest.fixture
def upstream(tmp_path: Path) -> Iterator[KaggleUpstream]:
    """A gated 3-file version, a 30-file public one (zip), one with a broken archive."""
    tree = tmp_path / "kaggle-tree"
    write_version(tree, f"{GATED}/2", SMALL)
    write_version(tree, "acme/zipped/pyTorch/default/3", MANY)
    write_version(tree, "acme/broken/pyTorch/default/1", MANY)
    with KaggleUpstream(
        tree,
        gated={GATED},
        tokens={TOKEN},
        keys={"larry": "legacy-key"},
        archive_format={"acme/zipped/pyTorch/default/3": "zip"},
        broken_archives={"acme/broken/pyTorch/default/1"},
    ) as up:
        yield up


@pytest.fixture
def via_upstream(
    upstream: KaggleUpstream, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[KaggleUpstream, Recorder, Path]]:
    """kagglehub → recorder (its proxy) → upstream. The redirects name the storage origin; they
    go through the proxy too (kagglesdk hands the proxy it resolved for the API URL to every
    redirect), so the upstream's API port answers them, and ``Host`` names the storage."""
    with Recorder(upstream.url) as rec:
        cache = use_kagglehub(monkeypatch, rec.origin, tmp_path / "home")
        yield upstream, rec, cache


def test_gated_model_without_credentials_is_403(
    via_upstream: tuple[KaggleUpstream, Recorder, Path],
) -> None:
    up, _, cache = via_upstream
    with pytest.raises(KaggleApiHTTPError, match="403") as err:
        kagglehub.model_download(f"{GATED}/2")
    assert err.value.response is not None
    assert err.value.response.json()["code"] == 403
    assert up.storage_requests() == [] and not (cache / "models/google").exists()


def test_gated_model_with_a_wrong_token_is_401(
    via_upstream: tuple[KaggleUpstream, Recorder, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KAGGLE_API_TOKEN", "not-the-token")
    with pytest.raises(KaggleApiHTTPError, match="401"):
        kagglehub.model_download(f"{GATED}/2")


@pytest.mark.parametrize("credential", ["token", "username-key"])
def test_gated_model_with_credentials_and_no_token_to_storage(
    via_upstream: tuple[KaggleUpstream, Recorder, Path],
    monkeypatch: pytest.MonkeyPatch,
    credential: str,
) -> None:
    up, rec, cache = via_upstream
    if credential == "token":
        monkeypatch.setenv("KAGGLE_API_TOKEN", TOKEN)
    else:
        monkeypatch.setenv("KAGGLE_USERNAME", "larry")
        monkeypatch.setenv("KAGGLE_KEY", "legacy-key")
    path = Path(kagglehub.model_download(GATED))  # unversioned: GetModelInstance → 2
    assert path == cache / f"models/{GATED}/2" and _files(path) == SMALL
    rec.wait_idle()
    api = [r for r in rec.log if r.path.startswith("/api/")]
    assert len(api) == 2 + len(SMALL) and all(r.authorization for r in api)
    # The signed storage URLs name another origin: the token is not sent there.
    storage = up.storage_requests()
    assert len(storage) == len(SMALL)
    assert {s.host for s in storage} == {up.storage_url.removeprefix("http://")}
    assert not any(s.authorization for s in storage)
    assert not any(r.authorization for r in rec.log if r.path.startswith("/storage/"))


def test_zip_archive_of_many_files(via_upstream: tuple[KaggleUpstream, Recorder, Path]) -> None:
    up, _, cache = via_upstream
    path = Path(kagglehub.model_download("acme/zipped/pyTorch/default/3"))
    assert (
        _files(path) == MANY and (cache / "models/acme/zipped/pyTorch/default/3.complete").is_file()
    )
    assert [s.target.split("?")[0] for s in up.storage_requests()] == [
        "/storage/archives/acme/zipped/pyTorch/default/3.zip"
    ]


def test_broken_archive_fails_and_marks_nothing(
    via_upstream: tuple[KaggleUpstream, Recorder, Path],
) -> None:
    _, _, cache = via_upstream
    with pytest.raises(ValueError, match="Unsupported archive type"):
        kagglehub.model_download("acme/broken/pyTorch/default/1")
    assert not (cache / "models/acme/broken/pyTorch/default/1.complete").exists()


def test_lying_md5_is_data_corruption(
    via_upstream: tuple[KaggleUpstream, Recorder, Path],
) -> None:
    up, _, cache = via_upstream
    up.gated.clear()
    up.lying_md5.add(f"{GATED}/2/model.weights.h5")
    with pytest.raises(DataCorruptionError):
        kagglehub.model_download(f"{GATED}/2")
    assert not (cache / f"models/{GATED}/2/model.weights.h5").exists()
    assert not (cache / f"models/{GATED}/2.complete").exists()


def _rpc_shape(rec: Recorder) -> list[tuple[str, str]]:
    """What was asked, prefix-free: (method, RPC name or download path)."""
    out = []
    for method, path in _paths(rec):
        tail = path.split("models.ModelApiService/")[-1]
        out.append((method, tail))
    return sorted(out)


@pytest.mark.parametrize("handle", ["acme/tiny/keras/small", "acme/tiny/keras/many/1"])
def test_modelhub_sends_what_kagglehub_sends_and_caches_are_interchangeable(
    handle: str, kaggle_mirror: KaggleMirror, store_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Through the same recording server: kagglehub, then (caches emptied) modelhub — the same
    RPCs and downloads; then each reads the other's cache with no request."""
    import shutil

    import modelhub

    rec, cache = kaggle_mirror.recorder, kaggle_mirror.cache
    sdk_path = Path(kagglehub.model_download(handle))
    sdk = _rpc_shape(rec)
    shutil.rmtree(cache)
    rec.clear()
    monkeypatch.setenv("MODELHUB_KAGGLE_URL", f"{rec.url}/kaggle")
    monkeypatch.setenv("MODELHUB_PATH", str(store_root.parent / "client-store"))
    model = modelhub.pull(f"kaggle:{handle}", stage="none")
    ours = _rpc_shape(rec)
    assert ours == sdk
    assert Path(str(model.manifest.sdk_cache)) == sdk_path
    rec.clear()
    version = model.manifest.revision
    versioned = handle if handle.count("/") == 4 else f"{handle}/{version}"
    assert kagglehub.model_download(versioned) == str(sdk_path)  # modelhub's download
    assert _paths(rec) == []

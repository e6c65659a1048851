"""Protocol proof for ``keras:``: Keras 3's own ``keras.utils.get_file`` (called with exactly the
arguments ``keras.applications.MobileNetV2`` passes it, its origin moved onto the mirror) and
modelhub, each against the same recording proxy (tests/support/recorder.py) in front of
``modelhub serve``, ask for the same resources (method, path and query, in the same order), and
each finds in the Keras cache (``$KERAS_HOME/models``) what the other downloaded, with no
request: ``get_file`` — and the application itself, in a process with no network — takes the
weights modelhub placed there, and modelhub links the file ``get_file`` downloaded.
"""

from __future__ import annotations

import hashlib
import inspect
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

keras = pytest.importorskip("keras")
pytest.importorskip("tensorflow")
pytest.importorskip("tf_keras")

import modelhub  # noqa: E402
from modelhub.importer import import_path  # noqa: E402
from modelhub.mirror.app import BackgroundMirror  # noqa: E402
from tests.support.keras_models import MOBILENET_V2_035_96, Published, mobilenet_v2_weights  # noqa: E402
from tests.support.recorder import Recorder  # noqa: E402

# Keras' own convert_to_numpy on TensorFlow tensors, under numpy 2: not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

OPTIONS = {"alpha": 0.35, "input_shape": "96,96,3"}
APP_KWARGS = {"alpha": 0.35, "input_shape": (96, 96, 3), "weights": "imagenet"}


@pytest.fixture(scope="module")
def published(tmp_path_factory: pytest.TempPathFactory) -> Published:
    return mobilenet_v2_weights(tmp_path_factory.mktemp("published"), seed=0)


@pytest.fixture(scope="module")
def mirror(published: Published, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    seed = modelhub.Store(tmp_path_factory.mktemp("seed"))
    import_path(seed, published.path, modelhub.parse("keras:MobileNetV2"))
    with BackgroundMirror(seed.root) as url:
        yield url


@pytest.fixture(scope="module")
def app_call() -> dict[str, Any]:
    """The arguments ``keras.applications.MobileNetV2(alpha=0.35, input_shape=(96, 96, 3))``
    gives ``get_file`` (read from the installed Keras by letting it call a stand-in)."""
    from keras.src.applications import mobilenet_v2

    seen: dict[str, Any] = {}

    class Stop(Exception):
        pass

    real = mobilenet_v2.file_utils.get_file
    signature = inspect.signature(real)

    def stand_in(*args: Any, **kwargs: Any) -> str:
        seen.update(signature.bind(*args, **kwargs).arguments)
        raise Stop

    mobilenet_v2.file_utils.get_file = stand_in
    try:
        with pytest.raises(Stop):
            keras.applications.MobileNetV2(**APP_KWARGS)
    finally:
        mobilenet_v2.file_utils.get_file = real
    assert seen["fname"] == MOBILENET_V2_035_96
    return seen


def _on(rec: Recorder, origin: str) -> str:
    """``origin`` (storage.googleapis.com) moved onto the recorder's ``/keras``."""
    return f"{rec.url}/keras{urlsplit(origin).path}"


def _get_file(rec: Recorder, app_call: dict[str, Any], home: Path) -> str:
    """Keras' own download, as the application makes it, into ``home`` (``$KERAS_HOME``)."""
    home.mkdir(parents=True, exist_ok=True)  # get_file falls back to /tmp/.keras otherwise
    args = {k: v for k, v in app_call.items() if k not in ("fname", "origin", "cache_dir")}
    return str(
        keras.utils.get_file(
            app_call["fname"], origin=_on(rec, app_call["origin"]), cache_dir=str(home), **args
        )
    )


def _pull(rec: Recorder, home: Path, store: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("KERAS_HOME", str(home))
    monkeypatch.setenv("MODELHUB_KERAS_URL", f"{rec.url}/keras")
    return modelhub.pull(
        "keras:MobileNetV2", stage="none", options=OPTIONS, store=modelhub.Store(store)
    )


def _log(rec: Recorder) -> list[tuple[str, str, int]]:
    """(method, target, status); 206 counts as 200 (modelhub asks ``Range: bytes=0-``)."""
    rec.wait_idle()
    return [(r.method, r.target, 200 if r.status == 206 else r.status) for r in rec.log]


def test_same_requests(
    mirror: str,
    app_call: dict[str, Any],
    published: Published,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with Recorder(mirror) as rec:
        got = _get_file(rec, app_call, tmp_path / "keras-sdk")
        sdk = _log(rec)
        rec.clear()
        pulled = _pull(rec, tmp_path / "keras-modelhub", tmp_path / "store", monkeypatch)
        ours = _log(rec)
    path = f"/keras/tensorflow/keras-applications/mobilenet_v2/{MOBILENET_V2_035_96}"
    assert sdk == ours == [("GET", path, 200)]
    assert Path(got) == tmp_path / "keras-sdk" / "models" / MOBILENET_V2_035_96
    assert pulled.manifest.sdk_cache == str(tmp_path / "keras-modelhub" / "models" / Path(got).name)
    assert Path(got).read_bytes() == Path(pulled.manifest.sdk_cache).read_bytes()
    assert Path(got).read_bytes() == published.path.read_bytes()


def test_get_file_and_the_application_use_modelhubs_download(
    mirror: str,
    app_call: dict[str, Any],
    published: Published,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    home = tmp_path / "keras-home"
    with Recorder(mirror) as rec:
        pulled = _pull(rec, home, tmp_path / "store", monkeypatch)
        rec.clear()
        got = _get_file(rec, app_call, home)
        assert _log(rec) == []
    assert got == pulled.manifest.sdk_cache
    # The application itself, in a process whose KERAS_HOME is that cache: its origin is the
    # real storage.googleapis.com, which this machine cannot reach, so building means no request.
    script = (
        "import sys, numpy as np, keras\n"
        "m = keras.applications.MobileNetV2(alpha=0.35, input_shape=(96, 96, 3), "
        "weights='imagenet')\n"
        "x = np.load(sys.argv[1])\n"
        "np.save(sys.argv[2], m.predict(x, verbose=0))\n"
    )
    np = pytest.importorskip("numpy")
    np.save(tmp_path / "x.npy", published.inputs)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KERAS_", "MODELHUB_"))}
    env.update(KERAS_HOME=str(home), TF_CPP_MIN_LOG_LEVEL="3", KERAS_BACKEND="tensorflow")
    done = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "x.npy"), str(tmp_path / "y.npy")],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    np.testing.assert_allclose(np.load(tmp_path / "y.npy"), published.outputs, atol=1e-4)


def test_modelhub_links_what_get_file_downloaded(
    mirror: str, app_call: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "keras-home"
    with Recorder(mirror) as rec:
        got = Path(_get_file(rec, app_call, home))
        rec.clear()
        pulled = _pull(rec, home, tmp_path / "store", monkeypatch)
        assert _log(rec) == []
    manifest = pulled.manifest
    assert manifest.details["cache_hit"] is True and manifest.sdk_cache == str(got)
    stored = pulled.store.abspath(manifest.files[0].path)
    assert stored.read_bytes() == got.read_bytes()
    assert manifest.files[0].sha256 == hashlib.sha256(got.read_bytes()).hexdigest()

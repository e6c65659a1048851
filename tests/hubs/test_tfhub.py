"""tfhub: and kaggle: through `modelhub serve`, TFHUB_CACHE_DIR shared with tensorflow_hub,
frozen to a flat GraphDef with parity."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

import modelhub  # noqa: E402
from modelhub.errors import ArchiveError  # noqa: E402
from modelhub.importer import import_path  # noqa: E402
from modelhub.mirror.app import BackgroundMirror  # noqa: E402
from modelhub.staging.freeze_tf import CALL_OPS, VARIABLE_OPS  # noqa: E402
from tests.support.httpserver import HTTPTestServer  # noqa: E402
from tests.support.tf_models import hostile_targz, make_saved_model, targz  # noqa: E402

HANDLE = "google/tiny-classifier/1"
KAGGLE = "google/tiny-classifier/tensorFlow2/default/1"


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_saved_model(tmp_path_factory.mktemp("sm") / "tiny")


@pytest.fixture
def served(saved_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A seed store holding the SavedModel as a tfhub: and a kaggle: model, served."""
    seed = modelhub.Store(tmp_path / "seed")
    import_path(seed, saved_model, modelhub.parse(f"tfhub:{HANDLE}"))
    import_path(seed, saved_model, modelhub.parse(f"kaggle:{KAGGLE}"))
    monkeypatch.setenv("TFHUB_CACHE_DIR", str(tmp_path / "tfhub-cache"))
    server = BackgroundMirror(seed.root)
    monkeypatch.setenv("MODELHUB_MIRROR", server.start())
    yield server
    server.stop()


@pytest.fixture
def mirror(served: BackgroundMirror) -> str:
    return served.url


def _is_flat(pb: Path) -> bool:
    graph = tf.compat.v1.GraphDef()
    graph.ParseFromString(pb.read_bytes())
    ops = {n.op for n in graph.node}
    return not (ops & (VARIABLE_OPS | CALL_OPS)) and not graph.library.function


def test_tfhub_pull_fills_cache_and_freezes(mirror: str, store_root: Path, tmp_path: Path) -> None:
    model = modelhub.pull(f"tfhub:{HANDLE}")
    handle_url = f"{mirror}/tfhub/{HANDLE}"
    cache_dir = tmp_path / "tfhub-cache" / hashlib.sha1(handle_url.encode()).hexdigest()
    assert (cache_dir / "saved_model.pb").is_file()
    assert (cache_dir.parent / f"{cache_dir.name}.descriptor.txt").is_file()
    assert model.manifest.sdk_cache == str(cache_dir)
    folder = store_root / "tensorflow" / "tfhub" / HANDLE
    assert (folder / "saved_model.pb").read_bytes() == (cache_dir / "saved_model.pb").read_bytes()
    assert model.path == store_root / "tensorflow" / "tfhub" / f"{HANDLE}.pb"
    assert _is_flat(model.path)
    staged = model.manifest.staged[0]
    assert staged.format == "pb" and staged.parity["max_abs_diff"] <= 1e-4
    assert sorted(staged.details["output_map"]) == ["doubled", "logits", "probs"]
    assert staged.details["loader"] == "tf2"
    graph = modelhub.load(f"tfhub:{HANDLE}")
    out = graph(x=np.ones((3, 4), np.float32), k=np.array([1, 2, 3], np.int32))
    assert out["doubled"].tolist() == [2, 4, 6]
    np.testing.assert_allclose(out["probs"].sum(axis=1), 1.0, rtol=1e-5)


def test_freezing_in_a_worker_process(mirror: str, store_root: Path) -> None:
    """What `modelhub sync --jobs N` does: the SavedModel frozen by a staging worker process
    (TensorFlow imported there), with the same flat graph and parity as in process."""
    from modelhub.hubs import StageRequest, get_hub
    from modelhub.stager import ProcessStager

    pulled = modelhub.pull(f"tfhub:{HANDLE}", stage="none")
    assert pulled.manifest.staged == []
    hub = get_hub("tfhub", pulled.store)
    with ProcessStager(1) as stager:
        staged = stager.stage(hub, pulled.ref, pulled.manifest, StageRequest("pb"))
    assert [s.format for s in staged] == ["pb"]
    assert staged[0].parity is not None and staged[0].parity["max_abs_diff"] <= 1e-4
    assert sorted(staged[0].details["output_map"]) == ["doubled", "logits", "probs"]
    frozen = store_root / staged[0].path
    assert _is_flat(frozen)
    assert hashlib.sha256(frozen.read_bytes()).hexdigest() == staged[0].sha256


def test_tensorflow_hub_reuses_modelhub_download(mirror: str) -> None:
    hub = pytest.importorskip("tensorflow_hub")
    pulled = modelhub.pull(f"tfhub:{HANDLE}", stage="none")
    assert hub.resolve(f"{mirror}/tfhub/{HANDLE}") == pulled.manifest.sdk_cache


def test_modelhub_reuses_tensorflow_hub_download(served: BackgroundMirror) -> None:
    hub = pytest.importorskip("tensorflow_hub")
    path = hub.resolve(f"{served.url}/tfhub/{HANDLE}")
    before = len(served.requests)
    model = modelhub.pull(f"tfhub:{HANDLE}")
    assert len(served.requests) == before, "a model in tensorflow_hub's cache needs no network"
    assert model.manifest.sdk_cache == path
    assert model.manifest.details["cache_hit"] is True
    assert model.manifest.staged[0].parity["max_abs_diff"] <= 1e-4


def test_kaggle_pull_and_compressed_storage(mirror: str, store_root: Path) -> None:
    model = modelhub.pull(f"kaggle:{KAGGLE}", storage="compressed")
    assert model.manifest.files[0].path == f"tensorflow/kaggle/{KAGGLE}.tar.gz"
    assert model.original.is_file()
    assert model.manifest.storage == "compressed"
    assert model.manifest.source == [f"{mirror}/kaggle/models/{KAGGLE}"]
    assert _is_flat(model.path)
    kaggle_url = f"https://www.kaggle.com/models/{KAGGLE}"
    assert modelhub.parse(kaggle_url) == modelhub.parse(f"kaggle:{KAGGLE}")


@pytest.mark.parametrize("kind", ["dotdot", "absolute", "symlink", "hardlink", "device"])
def test_hostile_archives_are_refused(
    kind: str, tmp_path: Path, store_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "tfhub-cache"
    monkeypatch.setenv("TFHUB_CACHE_DIR", str(cache))
    with HTTPTestServer({"/evil/model/1": hostile_targz(kind)}) as server:
        monkeypatch.setenv("MODELHUB_TFHUB_URL", server.url)
        with pytest.raises(ArchiveError) as info:
            modelhub.pull("tfhub:evil/model/1")
    assert info.value.exit_code == 5
    assert not (tmp_path / "evil.txt").exists() and not Path("/tmp/evil.txt").exists()
    assert not cache.exists() or not [p for p in cache.iterdir() if not p.name.endswith(".lock")]
    assert modelhub.Store().manifest(modelhub.parse("tfhub:evil/model/1")) is None


def test_served_archive_round_trip(
    saved_model: Path, tmp_path: Path, store_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A plain server (not the mirror) speaking the compressed format is enough."""
    monkeypatch.setenv("TFHUB_CACHE_DIR", str(tmp_path / "c"))
    with HTTPTestServer({"/a/b/3": targz(saved_model)}) as server:
        monkeypatch.setenv("MODELHUB_TFHUB_URL", server.url)
        model = modelhub.pull("tfhub:a/b/3")
        assert [r.path for r in server.requests] == ["/a/b/3?tf-hub-format=compressed"]
    assert model.manifest.staged[0].parity["max_abs_diff"] <= 1e-4


def test_tf1_legacy_saved_model_falls_back(tmp_path: Path) -> None:
    from modelhub.staging.freeze_tf import _freeze_tf1, check_flat, freeze_saved_model

    folder = tmp_path / "legacy"
    with tf.Graph().as_default() as graph, tf.compat.v1.Session(graph=graph) as sess:
        x = tf.compat.v1.placeholder(tf.float32, [None, 3], name="x")
        w = tf.compat.v1.get_variable("w", initializer=tf.constant([[1.0], [2.0], [3.0]]))
        y = tf.identity(tf.matmul(x, w), name="y")
        sess.run(tf.compat.v1.global_variables_initializer())
        builder = tf.compat.v1.saved_model.Builder(str(folder))
        sig = tf.compat.v1.saved_model.predict_signature_def({"x": x}, {"y": y})
        builder.add_meta_graph_and_variables(
            sess, ["serve"], signature_def_map={"serving_default": sig}
        )
        builder.save()
    graph_def, inputs, outputs, _, _ = _freeze_tf1(
        folder, "serving_default", np.random.default_rng(0)
    )
    check_flat(graph_def)
    assert inputs == {"x": "x:0"} and outputs == {"y": "y:0"}
    frozen = freeze_saved_model(folder)
    assert frozen.parity["max_abs_diff"] <= 1e-4

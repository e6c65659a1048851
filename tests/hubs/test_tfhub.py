"""tfhub: through `modelhub serve`, TFHUB_CACHE_DIR shared with tensorflow_hub,
frozen to a flat GraphDef with parity."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

import modelhub  # noqa: E402
from modelhub.errors import (  # noqa: E402
    ArchiveError,
    IntegrityError,
    ModelNotFoundError,
    UnsupportedError,
)
from modelhub.importer import import_path  # noqa: E402
from modelhub.mirror.app import BackgroundMirror  # noqa: E402
from modelhub.staging.freeze_tf import CALL_OPS, VARIABLE_OPS  # noqa: E402
from tests.support.httpserver import HTTPTestServer  # noqa: E402
from tests.support.tf_models import (  # noqa: E402
    hostile_targz,
    make_saved_model,
    make_tflite,
    targz,
)

HANDLE = "google/tiny-classifier/1"


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_saved_model(tmp_path_factory.mktemp("sm") / "tiny")


@pytest.fixture
def served(saved_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A seed store holding the SavedModel as a tfhub: model, served."""
    seed = modelhub.Store(tmp_path / "seed")
    import_path(seed, saved_model, modelhub.parse(f"tfhub:{HANDLE}"))
    monkeypatch.setenv("TFHUB_CACHE_DIR", str(tmp_path / "tfhub-cache"))
    server = BackgroundMirror(seed.root, record=True)
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


# --- what tfhub.dev answers today: pages for handles never migrated, other forms ------------
KAGGLE_PAGE = (
    b'<!DOCTYPE html>\n<html lang="en"><head><title>Kaggle Models</title></head>'
    b"<body>Model not found</body></html>\n"
) * 20


def tfjs_files(seed: int = 1) -> dict[str, bytes]:
    """A TF.js graph model's files: model.json naming two weight shards, and the shards."""
    import json
    import random

    rng = random.Random(seed)
    shards = {f"group1-shard{i}of2.bin": rng.randbytes(4000 + i) for i in (1, 2)}
    model = {
        "format": "graph-model",
        "generatedBy": "2.15.0",
        "convertedBy": "TensorFlow.js Converter v4.17.0",
        "modelTopology": {"node": [], "library": {}, "versions": {"producer": 1}},
        "weightsManifest": [
            {
                "paths": sorted(shards),
                "weights": [{"name": "w", "shape": [2001], "dtype": "float32"}],
            }
        ],
    }
    return {"model.json": json.dumps(model).encode(), **shards}


@pytest.fixture(scope="module")
def tflite_model(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    return make_tflite(tmp_path_factory.mktemp("tflite") / "m.tflite").read_bytes()


def _cache_entries(cache: Path) -> list[Path]:
    return [p for p in cache.iterdir() if not p.name.endswith(".lock")] if cache.exists() else []


def test_handle_never_migrated_is_not_found(
    tmp_path: Path, store_root: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    """tfhub.dev redirects such a handle to a Kaggle web page (200): exit 3 naming the handle,
    one line, nothing kept or extracted."""
    from modelhub.cli.main import main

    cache = tmp_path / "tfhub-cache"
    monkeypatch.setenv("TFHUB_CACHE_DIR", str(cache))
    with HTTPTestServer() as server:
        server.redirect("/google/old-model/1", "/models/google/old-model?tfhub-redirect=true")
        server.add("/models/google/old-model", KAGGLE_PAGE, {"Content-Type": "text/html"})
        monkeypatch.setenv("MODELHUB_TFHUB_URL", server.url)
        with pytest.raises(ModelNotFoundError) as info:
            modelhub.pull("tfhub:google/old-model/1")
        assert info.value.exit_code == 3
        assert "tfhub:google/old-model/1" in str(info.value) and "\n" not in str(info.value)
        capsys.readouterr()
        assert main(["pull", "tfhub:google/old-model/1"]) == 3
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "tfhub:google/old-model/1" in err
        assert "Traceback" not in err
        assert [r.path for r in server.requests][:2] == [
            "/google/old-model/1?tf-hub-format=compressed",
            "/models/google/old-model?tfhub-redirect=true",
        ]
    assert not _cache_entries(cache)
    assert not [p for p in store_root.rglob("*") if p.is_file() and "locks" not in p.parts]


def test_only_gzip_or_tar_bodies_are_extracted(
    saved_model: Path, tmp_path: Path, store_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A tar.bz2 (or anything but gzip / plain tar) is refused before extraction; a plain tar
    is accepted."""
    import io
    import tarfile

    def tar(mode: str) -> bytes:
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode=mode) as archive:
            for item in sorted(saved_model.rglob("*")):
                archive.add(
                    str(item), arcname=item.relative_to(saved_model).as_posix(), recursive=False
                )
        return buf.getvalue()

    cache = tmp_path / "tfhub-cache"
    monkeypatch.setenv("TFHUB_CACHE_DIR", str(cache))
    with HTTPTestServer({"/x/bz/1": tar("w:bz2"), "/x/plain/1": tar("w")}) as server:
        monkeypatch.setenv("MODELHUB_TFHUB_URL", server.url)
        with pytest.raises(ArchiveError, match=r"neither a tar\.gz nor a tar") as info:
            modelhub.pull("tfhub:x/bz/1", stage="none")
        assert info.value.exit_code == 5
        assert not _cache_entries(cache)
        assert modelhub.Store().manifest(modelhub.parse("tfhub:x/bz/1")) is None
        plain = modelhub.pull("tfhub:x/plain/1", stage="none")
    assert (Path(plain.manifest.sdk_cache) / "saved_model.pb").is_file()


def test_tflite_handle_fetches_the_file_and_validates_it(
    tflite_model: bytes, store_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    handle = "google/lite-model/tiny/1"
    with HTTPTestServer({f"/{handle}": tflite_model}) as server:
        monkeypatch.setenv("MODELHUB_TFHUB_URL", server.url)
        model = modelhub.pull(f"tfhub:{handle}")
        assert [r.path for r in server.requests] == [f"/{handle}?lite-format=tflite"]
    folder = store_root / "tensorflow" / "tfhub" / handle
    assert model.path == folder / "model.tflite"
    assert model.path.read_bytes() == tflite_model
    m = model.manifest
    assert [f.path for f in m.files] == [f"tensorflow/tfhub/{handle}/model.tflite"]
    assert m.details["form"] == "tflite" and m.sdk_cache is None
    (staged,) = m.staged
    assert staged.format == "tflite" and staged.path == m.files[0].path
    assert staged.inputs == ["serving_default_x:0"] and len(staged.outputs) == 1
    assert staged.details["io_ports"]["inputs"] == [
        {"name": "serving_default_x:0", "shape": [1, 4], "type": "float32"}
    ]
    assert staged.details["signatures"]["serving_default"] == {"inputs": ["x"], "outputs": ["y"]}
    assert staged.details["interpreter"] in ("ai_edge_litert", "tf.lite")
    assert modelhub.path(f"tfhub:{handle}") == model.path
    with pytest.raises(UnsupportedError, match="cannot be frozen to pb"):
        modelhub.pull(f"tfhub:{handle}", stage="pb")


def test_kaggle_tflite_handle_and_bad_tflite_bodies(
    tflite_model: bytes, store_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Kaggle-shaped handle whose framework is tfLite (tfhub.dev's redirect target); a web
    page is not found (3), bytes that are no TFLite model are refused (5), nothing kept."""
    kaggle = "google/yamnet/tfLite/classification-tflite/1"
    files = {
        f"/models/{kaggle}": tflite_model,
        "/models/google/gone/tfLite/default/1": KAGGLE_PAGE,
        "/models/google/junk/tfLite/default/1": b"\x00" * 64,
    }
    with HTTPTestServer(files) as server:
        monkeypatch.setenv("MODELHUB_TFHUB_URL", f"{server.url}/models")
        model = modelhub.pull(f"tfhub:{kaggle}")
        with pytest.raises(ModelNotFoundError) as missing:
            modelhub.pull("tfhub:google/gone/tfLite/default/1")
        with pytest.raises(IntegrityError, match="not a TFLite model") as junk:
            modelhub.pull("tfhub:google/junk/tfLite/default/1")
        assert [r.path for r in server.requests] == [
            f"/models/{kaggle}?lite-format=tflite",
            "/models/google/gone/tfLite/default/1?lite-format=tflite",
            "/models/google/junk/tfLite/default/1?lite-format=tflite",
        ]
    assert model.manifest.staged[0].format == "tflite"
    assert missing.value.exit_code == 3 and junk.value.exit_code == 5
    kept = [p for p in store_root.rglob("*") if p.is_file() and "locks" not in p.parts]
    assert not [p for p in kept if "gone" in p.parts or "junk" in p.parts]


def test_tfjs_handle_fetches_model_json_and_its_shards(
    store_root: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    from modelhub.cli.main import main

    handle = "mediapipe/tfjs-model/tiny/full/1"
    files = tfjs_files()
    with HTTPTestServer({f"/{handle}/{name}": data for name, data in files.items()}) as server:
        monkeypatch.setenv("MODELHUB_TFHUB_URL", server.url)
        model = modelhub.pull(f"tfhub:{handle}")
        assert [r.path for r in server.requests] == [
            f"/{handle}/model.json?tfjs-format=file",
            f"/{handle}/group1-shard1of2.bin?tfjs-format=file",
            f"/{handle}/group1-shard2of2.bin?tfjs-format=file",
        ]
    folder = store_root / "tensorflow" / "tfhub" / handle
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == files
    m = model.manifest
    assert m.staged == [] and m.details["form"] == "tfjs"
    assert "files only" in m.details["note"]
    assert model.path == folder
    capsys.readouterr()
    assert main(["info", f"tfhub:{handle}", "--json"]) == 0
    assert "files only" in capsys.readouterr().out


def test_tfjs_model_json_naming_unsafe_paths_is_refused(
    store_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import json

    handle = "evil/tfjs-model/x/1"
    doc = {"format": "graph-model", "weightsManifest": [{"paths": ["../../escape.bin"]}]}
    with HTTPTestServer({f"/{handle}/model.json": json.dumps(doc).encode()}) as server:
        monkeypatch.setenv("MODELHUB_TFHUB_URL", server.url)
        with pytest.raises(IntegrityError, match="unsafe weights path") as info:
            modelhub.pull(f"tfhub:{handle}")
        assert len(server.requests) == 1
    assert info.value.exit_code == 5
    assert not [p for p in store_root.rglob("*") if p.is_file() and "locks" not in p.parts]
    assert not (store_root.parent / "escape.bin").exists()


@pytest.mark.parametrize(
    ("handle", "form"),
    [
        ("google/imagenet/mobilenet_v2_100_224/classification/5", "savedmodel"),
        ("tensorflow/lite-model/mobilenet_v2_1.0_224/1/default/1", "tflite"),
        ("google/lite-model/aiy/vision/classifier/birds_V1/3", "tflite"),
        ("mediapipe/tfjs-model/face_detection/full/1", "tfjs"),
        ("google/yamnet/tfLite/classification-tflite/1", "tflite"),
        ("mediapipe/face-detection/tfJs/full/1", "tfjs"),
        ("google/yamnet/frameworks/tfLite/variations/classification-tflite/versions/1", "tflite"),
        ("google/yamnet/TensorFlow2/yamnet/1", "savedmodel"),
    ],
)
def test_handle_forms(handle: str, form: str) -> None:
    from modelhub.hubs.tfhub import handle_form

    assert handle_form(handle) == form

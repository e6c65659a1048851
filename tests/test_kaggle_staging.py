"""Staging building blocks for Kaggle versions, per framework: KerasHub presets (built with the
real keras_hub, saved whole, parity-checked), GGUF headers (files written by the real ``gguf``
package), PyTorch files (real facenet-pytorch state_dicts, a hostile pickle that must not run),
and a TFLite file inside a version folder (LiteRT interpreter)."""

from __future__ import annotations

import importlib.util
import json
import os
import pickle
import shutil
import struct
import zipfile
from pathlib import Path

import pytest

from modelhub.errors import IntegrityError, ParityError, UnsupportedError
from modelhub.refs import parse
from modelhub.staging.gguf_check import GGML_TYPES, check_gguf
from modelhub.staging.torch_files import check_torch_files
from modelhub.store import Store
from tests.support.keras_models import build_keras_hub_presets

VERSION_DIR = "keras/kaggle/someone/gpt2/tiny/1"


def _ref(framework: str = "keras", variation: str = "tiny") -> object:
    return parse(f"kaggle:someone/gpt2/{framework}/{variation}/1")


def _has(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


needs_gguf = pytest.mark.skipif(not _has("gguf"), reason="the gguf package (dev extra)")
needs_torch = pytest.mark.skipif(not _has("torch"), reason="torch (torch extra)")
needs_keras_hub = pytest.mark.skipif(not _has("keras_hub"), reason="keras_hub (tensorflow extra)")


# --- GGUF -------------------------------------------------------------------------------------
def _write_gguf(path: Path, *, big: bool = False) -> Path:
    import gguf
    import numpy as np

    endian = gguf.GGUFEndian.BIG if big else gguf.GGUFEndian.LITTLE
    writer = gguf.GGUFWriter(str(path), "llama", endianess=endian)
    writer.add_name("tiny-llama")
    writer.add_context_length(16)
    writer.add_token_list(["<s>", "</s>", "a", "b", "ab"])
    writer.add_token_scores([0.0, 0.0, -1.0, -1.0, -2.0])
    writer.add_string("general.description", "x" * 500)
    rng = np.random.default_rng(0)
    writer.add_tensor("token_embd.weight", rng.standard_normal((5, 8)).astype(np.float32))
    writer.add_tensor("output_norm.weight", rng.standard_normal(8).astype(np.float16))
    writer.add_tensor("blk.0.attn_q.weight", rng.standard_normal((8, 8)).astype(np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


@needs_gguf
def test_gguf_written_by_the_gguf_package_is_read(tmp_path: Path) -> None:
    import gguf

    path = _write_gguf(tmp_path / "tiny.gguf")
    info = check_gguf(path)
    reader = gguf.GGUFReader(str(path))  # the package's own reading, to compare against
    assert info["format"] == "gguf"
    assert info["version"] == 3
    assert info["byte_order"] == "little"
    assert info["tensor_count"] == len(reader.tensors) == 3
    assert info["metadata_kv_count"] == len(reader.fields) - 3  # the reader adds 3 GGUF.* fields
    assert info["architecture"] == "llama"
    assert info["name"] == "tiny-llama"
    assert info["tensor_types"] == {"F32": 2, "F16": 1}
    assert info["data_offset"] == reader.data_offset
    assert info["size"] == path.stat().st_size


@needs_gguf
def test_big_endian_gguf_is_read(tmp_path: Path) -> None:
    info = check_gguf(_write_gguf(tmp_path / "big.gguf", big=True))
    assert info["byte_order"] == "big"
    assert (info["version"], info["tensor_count"], info["architecture"]) == (3, 3, "llama")


@needs_gguf
def test_ggml_type_table_matches_the_gguf_package() -> None:
    import gguf

    assert {m.value for m in gguf.GGML_QUANT_SIZES} <= set(GGML_TYPES)
    for type_id, (name, block, block_bytes) in GGML_TYPES.items():
        member = gguf.GGMLQuantizationType(type_id)
        assert member.name == name
        assert gguf.GGML_QUANT_SIZES[member] == (block, block_bytes), name


@needs_gguf
@pytest.mark.parametrize("keep", [3, 10, 23, 40, 120, 300, -1])
def test_truncated_gguf_is_refused(tmp_path: Path, keep: int) -> None:
    data = _write_gguf(tmp_path / "tiny.gguf").read_bytes()
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(data[:keep])
    with pytest.raises(IntegrityError, match=r"^cut\.gguf") as err:
        check_gguf(cut)
    assert err.value.exit_code == 5
    assert "\n" not in str(err.value)


@needs_gguf
@pytest.mark.parametrize(
    "case",
    ["empty", "garbage", "version1", "version9", "huge_kv_count", "huge_key", "bad_type"],
)
def test_damaged_or_hostile_gguf_is_refused(tmp_path: Path, case: str) -> None:
    good = bytearray(_write_gguf(tmp_path / "tiny.gguf").read_bytes())
    header = b"GGUF" + struct.pack("<IQQ", 3, 0, 1)
    data = {
        "empty": b"",
        "garbage": os.urandom(64),
        "version1": b"GGUF" + struct.pack("<I", 1) + bytes(good[8:]),
        "version9": b"GGUF" + struct.pack("<I", 9) + bytes(good[8:]),
        "huge_kv_count": b"GGUF" + struct.pack("<IQQ", 3, 0, 2**62) + bytes(64),
        "huge_key": header + struct.pack("<Q", 2**60) + b"k",
        "bad_type": header + struct.pack("<Q", 1) + b"k" + struct.pack("<I", 77) + bytes(8),
    }[case]
    path = tmp_path / "bad.gguf"
    path.write_bytes(data)
    with pytest.raises(IntegrityError, match=r"^bad\.gguf"):
        check_gguf(path)


# --- PyTorch files ----------------------------------------------------------------------------
class _Evil:
    """Unpickling this runs a shell command that leaves a marker file (it must never run)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, (f"touch {self.marker}",))


@needs_torch
def test_real_facenet_files_are_opened_weights_only(real_models: dict[str, Path]) -> None:
    import torch

    names = ("pnet.pt", "rnet.pt", "onet.pt")
    paths = [real_models[n] for n in names]
    info = check_torch_files(paths)
    expected = {}
    for path in paths:
        state = torch.load(path, weights_only=True, map_location="cpu")
        expected[path.name] = (len(state), sum(int(v.numel()) for v in state.values()))
    assert [f["name"] for f in info["files"]] == list(names)
    for entry in info["files"]:
        assert entry["kind"] == "state_dict"
        assert (entry["tensors"], entry["parameters"]) == expected[entry["name"]]
        assert entry["dtypes"] == {"float32": entry["tensors"]}
    assert info["tensors"] == sum(t for t, _ in expected.values())
    assert info["parameters"] == sum(p for _, p in expected.values())
    assert info["skipped"] == []
    assert info["versions"]["torch"]


@needs_torch
def test_real_safetensors_by_header_and_other_files_skipped(
    real_models: dict[str, Path], tmp_path: Path
) -> None:
    from safetensors import safe_open

    path = real_models["silero_vad_16k.safetensors"]
    other = tmp_path / "config.json"
    other.write_text("{}")
    info = check_torch_files([path, other])
    with safe_open(str(path), framework="pt") as st:
        keys = list(st.keys())
        numel = sum(int(st.get_tensor(k).numel()) for k in keys)
    [entry] = info["files"]
    assert entry["kind"] == "safetensors"
    assert (entry["tensors"], entry["parameters"]) == (len(keys), numel)
    assert info["skipped"] == ["config.json"]


@needs_torch
@pytest.mark.parametrize("container", ["zip", "legacy_pickle"])
def test_pickle_needing_code_is_refused_and_never_run(tmp_path: Path, container: str) -> None:
    import torch

    marker = tmp_path / "pwned"
    path = tmp_path / ("evil.pt" if container == "zip" else "pytorch_model.bin")
    if container == "zip":
        torch.save({"w": torch.ones(2), "payload": _Evil(marker)}, path)
    else:
        path.write_bytes(pickle.dumps({"payload": _Evil(marker)}, protocol=2))
    with pytest.raises(IntegrityError, match=rf"^{path.name}: refused") as err:
        check_torch_files([path])
    assert err.value.exit_code == 5
    assert "posix.system" in str(err.value) or "os.system" in str(err.value)
    assert "\n" not in str(err.value)
    assert not marker.exists()
    # The payload is real: an ordinary unpickling runs it (what the check must never do).
    if container == "zip":
        torch.load(path, weights_only=False)
    else:
        pickle.loads(path.read_bytes())
    assert marker.exists()


@needs_torch
def test_files_that_are_no_pickle_are_kept_plain_and_pickles_are_not(tmp_path: Path) -> None:
    """A pyTorch version's raw-weights ``.bin`` and a text ``.ckpt`` (whose first byte is
    pickle's OBJ opcode: torch's weights-only loader says "Unsupported operand 111") are no
    pickles: kept as plain files, never unpickled. A protocol-0 pickle that calls os.system
    before its bytes turn to garbage is a pickle all the same: refused, never run."""
    import array

    raw = tmp_path / "model.bin"
    raw.write_bytes(array.array("f", [0.5, -1.0, 2.25] * 300).tobytes())
    text = tmp_path / "notes.ckpt"
    text.write_bytes(b"opaque notes about this checkpoint\n")
    marker = tmp_path / "pwned"
    hostile = tmp_path / "weights.pth"
    hostile.write_bytes(f"cos\nsystem\n(S'touch {marker}'\ntR".encode() + b"\xff" * 32)
    info = check_torch_files([raw, text])
    assert info["files"] == [] and sorted(info["plain"]) == ["model.bin", "notes.ckpt"]
    with pytest.raises(IntegrityError, match=r"^weights\.pth: refused to unpickle") as err:
        check_torch_files([raw, hostile])
    assert err.value.exit_code == 5 and "os.system" in str(err.value)
    assert not marker.exists()
    with pytest.raises(pickle.UnpicklingError):  # the payload is real: plain pickle runs it
        pickle.loads(hostile.read_bytes())
    assert marker.exists()


@needs_torch
def test_damaged_torch_files_are_refused(tmp_path: Path) -> None:
    import torch

    good = tmp_path / "good.pt"
    torch.save({"w": torch.arange(10.0)}, good)
    cut = tmp_path / "cut.pth"
    cut.write_bytes(good.read_bytes()[:120])
    with pytest.raises(IntegrityError, match=r"^cut\.pth is not a readable PyTorch file"):
        check_torch_files([cut])
    from safetensors.torch import save_file

    st = tmp_path / "w.safetensors"
    save_file({"a": torch.zeros(4, 4), "b": torch.ones(3)}, str(st))
    short = tmp_path / "short.safetensors"
    short.write_bytes(st.read_bytes()[:-8])
    with pytest.raises(IntegrityError, match=r"^short\.safetensors: tensor .* lies outside"):
        check_torch_files([short])
    lying = tmp_path / "lying.safetensors"
    header = json.dumps({"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 8]}}).encode()
    lying.write_bytes(struct.pack("<Q", len(header)) + header + bytes(8))
    with pytest.raises(IntegrityError, match="not what its shape needs"):
        check_torch_files([lying])
    huge = tmp_path / "huge.safetensors"
    huge.write_bytes(struct.pack("<Q", 2**40) + b"{}")
    with pytest.raises(IntegrityError, match="header length"):
        check_torch_files([huge])
    assert check_torch_files([st])["files"][0]["tensors"] == 2


@needs_torch
def test_torchscript_archive_is_counted_not_loaded(tmp_path: Path) -> None:
    import torch

    net = torch.jit.trace(torch.nn.Linear(3, 2).eval(), torch.zeros(1, 3))
    path = tmp_path / "traced.pt"
    net.save(str(path))
    [entry] = check_torch_files([path])["files"]
    assert entry["kind"] == "torchscript"
    assert entry["tensors"] == 2  # weight and bias


# --- TFLite inside a version folder -----------------------------------------------------------
def test_tflite_in_a_version_folder_runs_in_the_interpreter(store_root: Path) -> None:
    pytest.importorskip("tensorflow")
    from modelhub.staging.tflite_check import validate_entry
    from modelhub.store.files import sha256_file
    from tests.support.tf_models import make_tflite

    rel = "tflite/kaggle/someone/tiny/tflite/default/2/model.tflite"
    path = make_tflite(store_root / rel)
    sha, size = sha256_file(path)
    entry = validate_entry(path, rel, sha, size)
    assert (entry.path, entry.format, entry.sha256) == (rel, "tflite", sha)
    assert entry.details["interpreter"] == "ai_edge_litert"
    assert entry.details["io_ports"]["inputs"][0]["shape"] == [1, 4]
    assert entry.outputs
    (store_root / rel).write_bytes(path.read_bytes()[:200])
    with pytest.raises(IntegrityError):
        validate_entry(path, rel, sha, 200)


# --- KerasHub presets -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def presets(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("keras_hub")
    base = tmp_path_factory.mktemp("presets")
    build_keras_hub_presets(base)
    return base


def _in_store(presets: Path, store_root: Path, which: str) -> Path:
    folder = store_root / VERSION_DIR
    shutil.copytree(presets / which, folder)
    return folder


def test_backbone_preset_stages_to_keras_and_h5_with_parity(
    presets: Path, store_root: Path
) -> None:
    import keras
    import numpy as np

    from modelhub.staging.keras_preset import stage_preset

    folder = _in_store(presets, store_root, "backbone")
    entries = stage_preset(Store(store_root), _ref(), folder, {})
    assert [(e.path, e.format) for e in entries] == [
        (f"{VERSION_DIR}.keras", "keras"),
        (f"{VERSION_DIR}.h5", "h5"),
    ]
    for entry in entries:
        assert (store_root / entry.path).is_file()
        assert entry.inputs == ["token_ids", "padding_mask"]
        assert entry.parity["max_abs_diff"] <= 1e-4
        assert entry.converter.startswith("keras_hub.models.Backbone.from_preset+keras.Model.save")
        assert entry.versions["keras-hub"] and entry.versions["keras"]
        assert entry.details["class"] == "GPT2Backbone"
        assert entry.details["preset_metadata"]["tasks"] == ["CausalLM"]
    # The fixture holds the seeded inputs and the preset-built model's outputs: a fresh load of
    # the staged .keras gives them back.
    fixture = np.load(store_root / entries[0].fixture["path"])
    reloaded = keras.models.load_model(store_root / entries[0].path, compile=False)
    out = reloaded({"token_ids": fixture["input_0"], "padding_mask": fixture["input_1"]})
    assert fixture["input_0"].max() < 6  # token ids below the vocabulary size
    assert np.abs(keras.ops.convert_to_numpy(out) - fixture["output_0"]).max() <= 1e-4
    assert not list(Store(store_root).tmp_dir.iterdir())


def test_task_preset_is_built_as_the_task_json_class(presets: Path, store_root: Path) -> None:
    import keras

    from modelhub.staging.keras_preset import stage_preset

    folder = _in_store(presets, store_root, "task")
    entries = stage_preset(Store(store_root), _ref(), folder, {"formats": ["keras"]})
    [entry] = entries
    assert entry.details["built_with"] == "keras_hub.models.GPT2CausalLM.from_preset"
    assert entry.details["task"] is True
    assert entry.details["h5"] == "not asked for"
    assert entry.outputs and entry.parity["max_abs_diff"] <= 1e-4
    reloaded = keras.models.load_model(store_root / entry.path, compile=False)
    assert type(reloaded).__name__ == "GPT2CausalLM"
    # The tokenizer's vocabulary travelled inside the .keras file.
    assert reloaded.preprocessor.tokenizer.vocabulary_size() == 6


def test_parity_failure_publishes_nothing(presets: Path, store_root: Path) -> None:
    from modelhub.staging.keras_preset import stage_preset

    folder = _in_store(presets, store_root, "backbone")
    with pytest.raises(ParityError) as err:  # a tolerance no result can meet
        stage_preset(Store(store_root), _ref(), folder, {"tolerance": -1.0})
    assert err.value.exit_code == 5
    assert not list(folder.parent.glob("1.*"))
    assert not list(Store(store_root).tmp_dir.iterdir())


@pytest.mark.parametrize("damage", ["truncated_weights", "garbage_config", "wrong_shapes"])
def test_damaged_preset_is_exit_5_and_publishes_nothing(
    presets: Path, store_root: Path, damage: str
) -> None:
    from modelhub.staging.keras_preset import stage_preset

    folder = _in_store(presets, store_root, "backbone")
    if damage == "truncated_weights":
        weights = folder / "model.weights.h5"
        weights.write_bytes(weights.read_bytes()[:3000])
    elif damage == "garbage_config":
        (folder / "config.json").write_bytes(b"\x00\x01 not json")
    else:
        config = json.loads((folder / "config.json").read_text())
        config["config"]["hidden_dim"] = 12  # weights saved for 8
        (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(IntegrityError) as err:
        stage_preset(Store(store_root), _ref(), folder, {})
    assert err.value.exit_code == 5
    assert "\n" not in str(err.value)
    assert not list(folder.parent.glob("1.*"))


def test_folder_without_config_is_not_a_preset(store_root: Path) -> None:
    pytest.importorskip("keras_hub")
    from modelhub.staging.keras_preset import is_preset, stage_preset

    folder = store_root / VERSION_DIR
    folder.mkdir(parents=True)
    (folder / "model.keras").write_bytes(b"PK")
    assert not is_preset(folder)
    with pytest.raises(UnsupportedError, match="not a KerasHub preset"):
        stage_preset(Store(store_root), _ref(), folder, {})


def test_keras_file_of_a_preset_is_a_zip_with_its_config(presets: Path, store_root: Path) -> None:
    from modelhub.staging.keras_preset import stage_preset

    folder = _in_store(presets, store_root, "backbone")
    [entry] = stage_preset(Store(store_root), _ref(), folder, {"formats": "keras"})
    with zipfile.ZipFile(store_root / entry.path) as archive:
        config = json.loads(archive.read("config.json"))
    assert config["registered_name"] == "keras_hub>GPT2Backbone"

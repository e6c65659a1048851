"""``pull --for dl4j``: every staged ONNX file gets a ``<stem>.dl4j.onnx`` copy rewritten for
Deeplearning4j 1.0.0-M2.1, a Keras ``.h5`` a ``<stem>.dl4j.h5`` in the Keras 2 layout; each
is checked against the staged file's parity fixture (the source's outputs) and has its own.

Real frameworks (torch, transformers, Keras 3, tf_keras, onnxruntime), real servers on
127.0.0.1, and the real DL4J importers through ``modelhub check --importer dl4j`` (Java 17 and
Maven are required: a missing one fails the test saying so, it is not skipped).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import modelhub
from modelhub.cli.main import main
from modelhub.staging.onnx_dl4j import dl4j_path, make_dl4j_compatible, rewrite
from tests.support.httpserver import HTTPTestServer
from tests.support.onnx_models import make_mlp

pytestmark = pytest.mark.timeout(2400)


def _cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def _info(capsys: pytest.CaptureFixture[str], ref: str) -> dict[str, Any]:
    code, out, err = _cli(capsys, "info", ref, "--json")
    assert code == 0, err
    doc: dict[str, Any] = json.loads(out)
    return doc


def _forms(doc: dict[str, Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The staging's own entries and the ``--for dl4j`` ones."""
    staged = doc["staged"]
    own = [s for s in staged if s["details"].get("for") != "dl4j"]
    return own, [s for s in staged if s["details"].get("for") == "dl4j"]


def _check_form(store_root: Path, own: dict[str, Any], form: dict[str, Any]) -> None:
    """The DL4J-ready entry: beside its source, parity-checked, with a fixture holding the
    same arrays as its source's."""
    assert form["path"] == dl4j_path(own["path"]) and form["details"]["source"] == own["path"]
    assert (store_root / form["path"]).is_file()
    assert form["parity"]["max_abs_diff"] <= form["parity"]["tolerance"]
    assert form["inputs"] == own["inputs"] and form["outputs"] == own["outputs"]
    assert form["fixture"]["path"] == form["path"] + ".fixture.npz"
    with (
        np.load(store_root / own["fixture"]["path"]) as a,
        np.load(store_root / form["fixture"]["path"]) as b,
    ):
        assert sorted(a.files) == sorted(b.files)
        for key in a.files:
            assert np.array_equal(a[key], b[key])


def _require_jvm() -> None:
    for tool in ("java", "mvn"):
        assert shutil.which(tool), f"{tool} is not installed: the DL4J check needs it (CI has it)"


def _check_all(capsys: pytest.CaptureFixture[str]) -> dict[str, dict[str, Any]]:
    """``modelhub check --all --importer dl4j``: path → result."""
    _require_jvm()
    code, out, err = _cli(capsys, "check", "--all", "--importer", "dl4j", "--json")
    assert code in (0, 5), err
    return {Path(r["path"]).name: r for r in json.loads(out)}


# --- the rewrite itself -----------------------------------------------------------------------
def test_rewrite_keeps_the_interface_and_numbers_and_never_touches_its_input(
    tmp_path: Path,
) -> None:
    import onnx
    import onnxruntime

    path = make_mlp(tmp_path / "m.onnx", seed=4)
    model = onnx.load(str(path))
    before = model.SerializeToString()
    rewritten, counts = rewrite(model)
    assert model.SerializeToString() == before
    assert counts["matmul"] == 1 and counts["names"] > 0 and counts["gemm"] == 0
    assert [n.op_type for n in rewritten.graph.node] == ["Gemm", "Add", "Relu"]
    assert all(n.name for n in rewritten.graph.node)
    assert [i.name for i in rewritten.graph.input] == ["x"]
    assert [o.name for o in rewritten.graph.output] == ["y"]
    x = np.random.default_rng(0).standard_normal((3, 4)).astype(np.float32)
    runs = [
        onnxruntime.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(
            None, {"x": x}
        )[0]
        for m in (model, rewritten)
    ]
    assert np.array_equal(runs[0], runs[1])
    assert make_dl4j_compatible(model).SerializeToString() == rewritten.SerializeToString()
    with pytest.raises(ValueError, match="unknown steps"):
        rewrite(model, ["fold"])


def test_dl4j_path() -> None:
    assert dl4j_path("pytorch/net.onnx") == "pytorch/net.dl4j.onnx"
    assert dl4j_path("keras/m.staged.h5") == "keras/m.staged.dl4j.h5"
    assert dl4j_path("m.onnx") == "m.dl4j.onnx"


# --- ONNX zoo, url ONNX, torch, url Keras: pulled, then imported by DL4J -----------------------
@pytest.fixture
def torch_weights(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    pytest.importorskip("torchvision")
    from tests.support.torchvision_models import NAME, register

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    tiny = register()
    with HTTPTestServer({f"/models/{tiny.filename}": tiny.data}) as server:
        monkeypatch.setenv("MODELHUB_TORCH_URL", server.url)
        yield f"torch:{NAME}"


def _keras3_h5(path: Path, *, unknown_to_tf_keras: bool = False) -> Path:
    """A Keras 3 full model saved as ``.h5`` (Keras 3's layout, which DL4J refuses): a
    functional conv net with two inputs, BatchNormalization (statistics randomised) and a
    Concatenate; with ``unknown_to_tf_keras`` it has an RMSNormalization (no tf_keras twin)."""
    import keras

    keras.utils.set_random_seed(3)
    image = keras.Input((8, 8, 3), name="image")
    extra = keras.Input((5,), name="extra")
    x = keras.layers.Conv2D(4, 3, activation="relu", name="conv")(image)
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    e = keras.layers.Dense(4, name="dense_extra")(extra)
    if unknown_to_tf_keras:
        e = keras.layers.RMSNormalization(name="rms")(e)
    x = keras.layers.Concatenate()([x, e])
    out = keras.layers.Dense(3, activation="softmax", name="probs")(x)
    model = keras.Model([image, extra], out)
    bn = model.get_layer("bn")
    rng = np.random.default_rng(5)
    bn.set_weights([w + rng.uniform(0.1, 0.5, w.shape).astype(w.dtype) for w in bn.get_weights()])
    path.parent.mkdir(parents=True, exist_ok=True)
    model.save(str(path))
    return path


def test_pull_for_dl4j_publishes_checked_copies_that_dl4j_imports(
    capsys: pytest.CaptureFixture[str],
    zoo: Any,
    torch_weights: str,
    tmp_path: Path,
    store_root: Path,
) -> None:
    files = {
        "/m/mlp.onnx": make_mlp(tmp_path / "src" / "mlp.onnx", seed=9, width=6).read_bytes(),
        "/k/conv.h5": _keras3_h5(tmp_path / "src" / "conv.h5").read_bytes(),
    }
    with HTTPTestServer(files) as server:
        refs = {
            "zoo": "onnx:tiny-mlp",
            "torch": torch_weights,
            "url-onnx": f"url:{server.url}/m/mlp.onnx",
            "url-keras": f"url:{server.url}/k/conv.h5",
        }
        for ref in refs.values():
            code, _, err = _cli(capsys, "pull", ref, "--for", "dl4j")
            assert code == 0, err
    docs = {kind: _info(capsys, ref) for kind, ref in refs.items()}
    for kind, doc in docs.items():
        own, forms = _forms(doc)
        assert len(own) == 1 and len(forms) == 1, (kind, doc["staged"])
        assert doc["staged"][0] == own[0], "the staging's own form stays the primary path"
        _check_form(store_root, own[0], forms[0])
        assert forms[0]["format"] == own[0]["format"]
    # What each form needed (FINDINGS.md): unnamed onnx.helper nodes and a MatMul; torch's Gemm.
    assert {"matmul", "names"} <= set(_forms(docs["zoo"])[1][0]["details"]["rewrites"])
    # torch: the Linear's Gemm bias, and the GlobalAveragePool that crashes DL4J at batch 1.
    assert {"gemm", "pool"} <= set(_forms(docs["torch"])[1][0]["details"]["rewrites"])
    assert _forms(docs["url-keras"])[1][0]["details"]["rewrites"] == ["tf_keras"]
    # The zoo's file is validated in place and never modified.
    zoo_file = _forms(docs["zoo"])[0][0]
    assert (store_root / zoo_file["path"]).read_bytes() == zoo.files["tiny-mlp-13.onnx"]
    # The .dl4j.h5 is in the Keras 2 layout (what DL4J reads), the staged .h5 in Keras 3's.
    import h5py

    with h5py.File(store_root / _forms(docs["url-keras"])[1][0]["path"], "r") as h5:
        assert str(h5.attrs["keras_version"]).startswith("2.")
    with h5py.File(store_root / _forms(docs["url-keras"])[0][0]["path"], "r") as h5:
        assert str(h5.attrs["keras_version"]).startswith("3.")

    results = _check_all(capsys)
    for kind, doc in docs.items():
        own, forms = _forms(doc)
        form = results[Path(forms[0]["path"]).name]
        assert form["ok"], f"{kind}: DL4J refused {forms[0]['path']}: {form['error']}"
        assert form["max_abs_diff"] <= 1e-4
        original = results[Path(own[0]["path"]).name]
        # Each original is refused or wrong in DL4J 1.0.0-M2.1, with the importer's own words.
        assert not original["ok"] and original["error"], (kind, original)
    assert "no name" in results[Path(_forms(docs["zoo"])[0][0]["path"]).name]["error"]
    # Keras 3's functional layout (FINDINGS.md): its inbound_nodes are not what DL4J reads.
    assert "ClassCastException" in results["conv.staged.h5"]["error"]


def test_for_dl4j_and_later_pulls(
    capsys: pytest.CaptureFixture[str], zoo: Any, store_root: Path
) -> None:
    """A pull without --for takes a manifest with the extra forms as it is; a pull --for dl4j
    of a model staged without them stages again to add them (the original stays)."""
    assert _cli(capsys, "pull", "onnx:tiny-mlp")[0] == 0
    plain = _info(capsys, "onnx:tiny-mlp")
    assert _forms(plain)[1] == []
    requests = len(zoo.server.requests)
    model = modelhub.pull("onnx:tiny-mlp", options={"for": "dl4j"})
    own, forms = _forms(_info(capsys, "onnx:tiny-mlp"))
    assert len(forms) == 1 and own[0]["sha256"] == plain["staged"][0]["sha256"]
    assert model.path == store_root / own[0]["path"]
    assert len(zoo.server.requests) == requests, "adding the DL4J forms needs no request"
    before = _info(capsys, "onnx:tiny-mlp")
    assert _cli(capsys, "pull", "onnx:tiny-mlp")[0] == 0
    assert _cli(capsys, "pull", "onnx:tiny-mlp", "--for", "dl4j")[0] == 0
    assert _info(capsys, "onnx:tiny-mlp") == before, "both pulls are satisfied by the store"


def test_a_keras_model_tf_keras_cannot_rebuild_keeps_its_default_staging(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, store_root: Path
) -> None:
    data = _keras3_h5(tmp_path / "src" / "rms.h5", unknown_to_tf_keras=True).read_bytes()
    with HTTPTestServer({"/k/rms.h5": data}) as server:
        ref = f"url:{server.url}/k/rms.h5"
        code, _, err = _cli(capsys, "pull", ref, "--for", "dl4j")
        assert code == 0, err
        doc = _info(capsys, ref)
        own, forms = _forms(doc)
        assert forms == [] and len(own) == 1 and (store_root / own[0]["path"]).is_file()
        [line] = own[0]["details"]["dl4j_error"].splitlines()
        assert "tf_keras has no layer RMSNormalization" in line
        assert not list(store_root.rglob("*.dl4j.h5*"))
        # The reason is recorded: pulling --for dl4j again does not try again.
        assert _cli(capsys, "pull", ref, "--for", "dl4j")[0] == 0
        assert _info(capsys, ref) == doc


# --- Hugging Face → ONNX ----------------------------------------------------------------------
@pytest.fixture
def hf_served(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    pytest.importorskip("transformers")
    from modelhub.importer import import_path
    from modelhub.mirror.app import BackgroundMirror
    from tests.support.hf_models import make_transformers_model

    folder = make_transformers_model("bert-classifier", tmp_path / "bert")
    seed = modelhub.Store(tmp_path / "seed")
    import_path(seed, folder, modelhub.parse("hf:tiny/bert-classifier"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    with BackgroundMirror(seed.root) as url:
        monkeypatch.setenv("MODELHUB_MIRROR", url)
        yield "hf:tiny/bert-classifier"


def test_hf_onnx_for_dl4j(
    capsys: pytest.CaptureFixture[str], hf_served: str, store_root: Path
) -> None:
    code, _, err = _cli(capsys, "pull", hf_served, "--stage", "onnx", "--for", "dl4j")
    assert code == 0, err
    own, forms = _forms(_info(capsys, hf_served))
    assert len(own) == 1 and len(forms) == 1
    _check_form(store_root, own[0], forms[0])
    results = _check_all(capsys)
    form = results[Path(forms[0]["path"]).name]
    # DL4J 1.0.0-M2.1 has no mapping for ONNX LayerNormalization (opset 17, which BERT's
    # export uses): the rewrite does not decompose it, and the importer's error is recorded.
    assert not form["ok"] and "No import process defined for LayerNormalization" in form["error"]
    doc = _info(capsys, hf_served)
    recorded = _forms(doc)[1][0]["imports"]["dl4j"]
    assert recorded["ok"] == form["ok"] and recorded["error"] == form["error"]

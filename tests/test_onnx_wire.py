"""The wire-level ONNX reader: a by-reference view of a model is the same model (onnx reads it
back equal, onnxruntime computes bit-identical outputs) and runs the file's own weight bytes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402
from onnx.external_data_helper import load_external_data_for_model  # noqa: E402

from modelhub.staging.onnx_check import check_session  # noqa: E402
from modelhub.staging.onnx_wire import (  # noqa: E402
    BY_REFERENCE_MINIMUM,
    WireError,
    opset_in,
    weights_by_reference,
)


def _model(path: Path, *, big: int = 64, seed: int = 0) -> Path:
    """x[N,big] → MatMul(W big×big) → Add(b) → If(sum > 0: Mul by a subgraph initializer,
    else: Neg) → Mul by a Constant node; W large, b small (float_data), the rest inline."""
    rng = np.random.default_rng(seed)
    w = numpy_helper.from_array(rng.standard_normal((big, big)).astype(np.float32), "W")
    b = helper.make_tensor("b", TensorProto.FLOAT, [big], rng.standard_normal(big).tolist())
    scale = numpy_helper.from_array(rng.standard_normal(big).astype(np.float32), "scale")
    then = helper.make_graph(
        [helper.make_node("Mul", ["h", "scale"], ["then_out"])],
        "then",
        [],
        [helper.make_tensor_value_info("then_out", TensorProto.FLOAT, None)],
        initializer=[scale],
    )
    other = helper.make_graph(
        [helper.make_node("Neg", ["h"], ["else_out"])],
        "else",
        [],
        [helper.make_tensor_value_info("else_out", TensorProto.FLOAT, None)],
    )
    nodes = [
        helper.make_node("MatMul", ["x", "W"], ["m"]),
        helper.make_node("Add", ["m", "b"], ["h"]),
        helper.make_node("ReduceSum", ["h"], ["s"], keepdims=0),
        helper.make_node("Greater", ["s", "zero"], ["positive"]),
        helper.make_node("If", ["positive"], ["g"], then_branch=then, else_branch=other),
        helper.make_node(
            "Constant",
            [],
            ["k"],
            value=numpy_helper.from_array(rng.standard_normal(big).astype(np.float32)),
        ),
        helper.make_node("Mul", ["g", "k"], ["y"]),
    ]
    zero = numpy_helper.from_array(np.zeros((), np.float32), "zero")
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", big])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", big])],
        initializer=[w, b, zero],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def _run(session: object, x: np.ndarray) -> np.ndarray:
    return session.run(["y"], {"x": x})[0]  # type: ignore[attr-defined]


def test_the_view_reads_back_as_the_same_model(tmp_path: Path) -> None:
    path = _model(tmp_path / "m.onnx")
    view = weights_by_reference(path)
    assert view is not None
    assert len(view) < path.stat().st_size - 64 * 64 * 4 + 4096  # W's bytes are not in it
    restored = onnx.load_from_string(view)
    w = next(t for t in restored.graph.initializer if t.name == "W")
    assert w.data_location == TensorProto.EXTERNAL and not w.raw_data
    assert {e.key: e.value for e in w.external_data}["location"] == path.name
    load_external_data_for_model(restored, str(tmp_path))  # brings W's bytes back inline
    w.ClearField("data_location")  # the loader leaves it set to DEFAULT; the file had none
    original = onnx.load(str(path))
    assert restored.SerializeToString(deterministic=True) == original.SerializeToString(
        deterministic=True
    )


def test_a_session_on_the_view_computes_what_the_file_computes(tmp_path: Path) -> None:
    path = _model(tmp_path / "m.onnx")
    x = np.random.default_rng(1).standard_normal((3, 64)).astype(np.float32)
    np.testing.assert_array_equal(
        _run(check_session(path, weights_in_place=True), x), _run(check_session(path), x)
    )


def test_the_view_runs_the_bytes_in_the_file_not_a_copy(tmp_path: Path) -> None:
    path = _model(tmp_path / "m.onnx")
    x = np.ones((1, 64), np.float32)
    before = _run(check_session(path, weights_in_place=True), x)
    data = bytearray(path.read_bytes())
    w = np.random.default_rng(0).standard_normal((64, 64)).astype(np.float32).tobytes()
    at = bytes(data).index(w)  # W's raw_data inside the file
    data[at : at + 4] = np.float32(1e6).tobytes()  # W[0, 0]: moves every output of row 0
    path.write_bytes(bytes(data))
    after = _run(check_session(path, weights_in_place=True), x)
    assert not np.allclose(before, after)
    np.testing.assert_array_equal(after, _run(check_session(path), x))


def test_no_view_when_nothing_would_move(tmp_path: Path) -> None:
    small = _model(tmp_path / "small.onnx", big=8)  # W: 256 bytes
    assert BY_REFERENCE_MINIMUM > 8 * 8 * 4
    assert weights_by_reference(small) is None
    model = onnx.load(str(_model(tmp_path / "m.onnx")))
    external = tmp_path / "ext" / "m.onnx"
    external.parent.mkdir()
    onnx.save_model(model, str(external), save_as_external_data=True, location="m.data")
    assert weights_by_reference(external) is None  # already external: load the file itself
    x = np.ones((2, 64), np.float32)
    np.testing.assert_array_equal(
        _run(check_session(external, weights_in_place=True), x),
        _run(check_session(tmp_path / "m.onnx"), x),
    )


def test_a_malformed_file_is_a_wire_error(tmp_path: Path) -> None:
    path = _model(tmp_path / "m.onnx")
    cut = tmp_path / "cut.onnx"
    cut.write_bytes(path.read_bytes()[:-40])  # the last field runs past the end
    with pytest.raises(WireError):
        weights_by_reference(cut)
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x0f" + path.read_bytes())  # wire type 7 does not exist
    with pytest.raises(WireError, match="wire type"):
        weights_by_reference(bad)


def test_opset_in_reads_only_the_default_domain() -> None:
    model = helper.make_model(
        helper.make_graph([], "g", [], []),
        opset_imports=[
            helper.make_opsetid("ai.onnx.ml", 99),
            helper.make_opsetid("", 300),  # a two-byte varint
            helper.make_opsetid("ai.onnx", 12),
        ],
    )
    assert opset_in(model.SerializeToString()) == 300


@pytest.mark.parametrize(
    ("text", "expected"),
    [("1.32.0", (1, 32, 0)), ("1.21.0rc1", (1, 21, 0)), ("1.20.1+cu12", (1, 20, 1)), ("2", (2,))],
)
def test_onnxruntime_versions_compare_by_release_numbers(
    text: str, expected: tuple[int, ...]
) -> None:
    from modelhub.staging.onnx_check import _version

    assert _version(text) == expected

"""The checks behind every torch → ONNX export: the opset read from the file's top-level
fields, and parity on fresh inputs, which catches what a trace baked in as a constant."""

from __future__ import annotations

from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")

from modelhub.errors import ParityError, StagingError  # noqa: E402
from modelhub.staging.onnx_check import read_opset  # noqa: E402
from modelhub.staging.torch_onnx import export_module  # noqa: E402

AXES = {"x": {0: "batch"}, "y": {0: "batch"}}


class _Centred(torch.nn.Module):
    """Subtracts the batch mean — read as a Python float, so a trace freezes the number."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x - float(x.mean())


def _inputs(batch: int, seed: int) -> dict[str, torch.Tensor]:
    return {"x": torch.randn((batch, 4), generator=torch.Generator().manual_seed(seed))}


def test_parity_on_fresh_inputs_catches_a_constant_baked_in_by_the_trace(tmp_path: Path) -> None:
    target = tmp_path / "centred.onnx"
    with pytest.raises(ParityError, match="max abs diff"):
        export_module(
            _Centred(),
            _inputs(2, 0),
            ["y"],
            target,
            dynamic_axes=AXES,
            check_inputs=[_inputs(1, 1)],
        )
    assert not target.exists()  # nothing half-checked is left behind


def test_export_records_parity_on_the_check_inputs(tmp_path: Path) -> None:
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Tanh())
    exported = export_module(
        net,
        _inputs(2, 0),
        ["y"],
        tmp_path / "net.onnx",
        dynamic_axes=AXES,
        check_inputs=[_inputs(1, 1), _inputs(5, 2)],
        opset=15,
    )
    assert exported.parity["inputs_checked"] == 2 and exported.parity["max_abs_diff"] <= 1e-4
    assert exported.opset == 15 == onnx.load(str(exported.path)).opset_import[0].version


@pytest.mark.parametrize("opset", [13, 17])
def test_read_opset_agrees_with_onnx(tmp_path: Path, opset: int) -> None:
    x = onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1])
    y = onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1])
    graph = onnx.helper.make_graph([onnx.helper.make_node("Relu", ["x"], ["y"])], "g", [x], [y])
    model = onnx.helper.make_model(
        graph,
        opset_imports=[
            onnx.helper.make_opsetid("com.example", 99),
            onnx.helper.make_opsetid("", opset),
        ],
    )
    path = tmp_path / "m.onnx"
    onnx.save(model, str(path))
    assert read_opset(path) == opset
    path.write_bytes(path.read_bytes()[:-3])  # cut inside the opset entries
    with pytest.raises(StagingError, match="not a readable ONNX model"):
        read_opset(path)
    path.write_bytes(b"")
    with pytest.raises(StagingError, match="not a readable ONNX model"):
        read_opset(path)


_SETTLE = """
import gc, sys
from modelhub import _frameworks
import onnxruntime
_frameworks.settle()
assert gc.get_freeze_count() == 0, "a caller's process keeps its collector policy"
_frameworks.own_process()
_frameworks.settle()
frozen = gc.get_freeze_count()
assert frozen > 1000, frozen
junk = [[] for _ in range(100)]
_frameworks.settle()
assert gc.get_freeze_count() == frozen, "a framework is settled once"
print(frozen)
"""


def test_settle_freezes_framework_objects_only_in_modelhubs_own_process() -> None:
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-c", _SETTLE], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-800:]
    assert int(done.stdout) > 1000


_LEAVING = """
import gc
from modelhub import _frameworks
junk = [[] for _ in range(1000)]
_frameworks.leaving()
assert gc.get_freeze_count() == 0, "a caller's process keeps its collector policy"
_frameworks.own_process()
_frameworks.leaving()
assert gc.get_freeze_count() > 1000, gc.get_freeze_count()
"""


def test_leaving_spares_the_exit_collection_only_in_modelhubs_own_process() -> None:
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-c", _LEAVING], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-800:]

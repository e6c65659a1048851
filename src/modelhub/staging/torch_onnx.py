"""torch → ONNX export shared by every torch-based source (transformers, torchvision, TorchScript).

One file (no external data unless the model is over 2 GB), dynamic axes as asked, the opset
checked after export, exporter chatter kept off stdout, and parity against the torch module in
eval mode on the given inputs.
"""

from __future__ import annotations

import contextlib
import os
import sys
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._frameworks import torch_import_guard
from ..errors import StagingError
from .parity import DEFAULT_TOLERANCE, compare

torch_import_guard()  # before any torch import in this module (see _frameworks)

DEFAULT_OPSET = 17
TWO_GB = 2 * 2**30


@dataclass(frozen=True)
class Exported:
    """An exported ONNX file and its evidence."""

    path: Path
    inputs: list[str]
    outputs: list[str]
    opset: int
    parity: dict[str, Any]
    versions: dict[str, str]


@contextlib.contextmanager
def quiet_stdout() -> Any:
    """Send library chatter on stdout (the exporter prints progress) to stderr instead."""
    with contextlib.redirect_stdout(sys.stderr), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def _param_bytes(module: Any) -> int:
    return sum(p.numel() * p.element_size() for p in module.parameters())


def export_module(
    module: Any,
    inputs: Mapping[str, Any],
    output_names: Sequence[str],
    target: Path,
    *,
    dynamic_axes: Mapping[str, Mapping[int, str]],
    check_inputs: Sequence[Mapping[str, Any]] = (),
    opset: int = DEFAULT_OPSET,
    tolerance: float = DEFAULT_TOLERANCE,
    what: str = "model",
) -> Exported:
    """Export ``module`` (called with ``inputs`` as positional args in order) to ``target``.

    Parity is checked on ``inputs`` and each of ``check_inputs`` (other batch/sequence sizes
    prove the dynamic axes). Raises StagingError when export fails, ParityError when outputs
    differ beyond ``tolerance`` (``target`` is removed then).
    """
    import numpy as np
    import onnx
    import onnxruntime
    import torch

    module.eval()
    names = list(inputs)
    args = tuple(inputs[n] for n in names)
    large = _param_bytes(module) > TWO_GB
    # The exporter runs the module on ``inputs`` while tracing: keep those outputs as the
    # reference rather than paying for the same forward pass again (a ScriptModule is not
    # traced, and any other count of calls falls back to a fresh run).
    traced: list[Any] = []
    hook = (
        None
        if isinstance(module, torch.jit.ScriptModule)
        else module.register_forward_hook(lambda _m, _i, out: traced.append(out))
    )
    try:
        with quiet_stdout(), torch.no_grad():
            torch.onnx.export(
                module,
                args,
                str(target),
                input_names=names,
                output_names=list(output_names),
                dynamic_axes={k: dict(v) for k, v in dynamic_axes.items()},
                opset_version=opset,
                dynamo=False,
                do_constant_folding=True,
                external_data=large,
            )
    except Exception as exc:
        target.unlink(missing_ok=True)
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise StagingError(f"{what}: torch.onnx.export failed: {first}") from None
    finally:
        if hook is not None:
            hook.remove()
    try:
        model = onnx.load(str(target), load_external_data=False)
        got = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0)
        if got != opset:
            raise StagingError(f"{what}: asked for opset {opset}, the exporter wrote {got}")
        options = onnxruntime.SessionOptions()
        options.log_severity_level = 3
        session = onnxruntime.InferenceSession(
            str(target), options, providers=["CPUExecutionProvider"]
        )
        worst: dict[str, Any] | None = None
        for i, feed in enumerate([inputs, *check_inputs]):
            if i == 0 and len(traced) == 1:
                expected = traced[0]
            else:
                with torch.no_grad():
                    expected = module(*(feed[n] for n in names))
            if isinstance(expected, torch.Tensor):
                expected = (expected,)
            reference = [t.detach().cpu().numpy() for t in expected]
            onnx_feed = {n: np.asarray(feed[n].detach().cpu().numpy()) for n in names}
            actual = session.run(list(output_names), onnx_feed)
            record = compare(
                reference, actual, what=what, tolerance=tolerance, names=list(output_names)
            )
            if worst is None or record["max_abs_diff"] > worst["max_abs_diff"]:
                worst = record
    except Exception:
        target.unlink(missing_ok=True)
        raise
    assert worst is not None
    worst["inputs_checked"] = 1 + len(check_inputs)
    versions = {
        "torch": torch.__version__,
        "onnx": onnx.__version__,
        "onnxruntime": onnxruntime.__version__,
    }
    return Exported(target, names, list(output_names), got, worst, versions)


def scratch_path(tmp_dir: Path, stem: str) -> Path:
    """A unique temporary path for an export in the store's tmp folder."""
    return tmp_dir / f".{stem}.{os.getpid()}.{os.urandom(4).hex()}.onnx"


__all__ = ["DEFAULT_OPSET", "Exported", "export_module", "quiet_stdout", "scratch_path"]

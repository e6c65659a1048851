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

from .._frameworks import settle, torch_import_guard
from ..errors import StagingError
from .onnx_check import check_session, read_opset
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
    #: (inputs, the module's outputs) of the first parity check, for the staged fixture.
    fixture: tuple[list[Any], list[Any]]


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
    expected: Sequence[Any] | None = None,
    opset: int = DEFAULT_OPSET,
    tolerance: float = DEFAULT_TOLERANCE,
    what: str = "model",
) -> Exported:
    """Export ``module`` (called with ``inputs`` as positional args in order) to ``target``.

    ``inputs`` drive the exporter's trace; parity is checked on each of ``check_inputs``
    (fresh values at other batch/sequence sizes: they prove the dynamic axes, and catch values
    the trace baked in as constants, which the traced inputs themselves never could), or on
    ``inputs`` when no check inputs are given. ``expected`` may carry the module's outputs
    for the check inputs when the caller has them already. Raises StagingError when export
    fails, ParityError when outputs differ beyond ``tolerance`` (``target`` is removed then).
    """
    import numpy as np
    import onnx
    import onnxruntime
    import torch

    feeds = list(check_inputs) or [inputs]
    if expected is not None and len(expected) != len(feeds):
        raise ValueError(f"{len(expected)} expected outputs for {len(feeds)} check inputs")
    settle()
    module.eval()
    names = list(inputs)
    args = tuple(inputs[n] for n in names)
    large = _param_bytes(module) > TWO_GB
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
    try:
        got = read_opset(target)
        if got != opset:
            raise StagingError(f"{what}: asked for opset {opset}, the exporter wrote {got}")
        worst: dict[str, Any] | None = None
        fixture: tuple[list[Any], list[Any]] = ([], [])
        session = None
        for i, feed in enumerate(feeds):
            if expected is not None:
                reference_out = expected[i]
            else:
                with torch.inference_mode():
                    reference_out = module(*(feed[n] for n in names))
            if isinstance(reference_out, torch.Tensor):
                reference_out = (reference_out,)
            reference = [t.detach().cpu().numpy() for t in reference_out]
            if session is None:  # after the first reference: its threads would compete
                session = check_session(target, weights_in_place=True)
            onnx_feed = {n: np.asarray(feed[n].detach().cpu().numpy()) for n in names}
            actual = session.run(list(output_names), onnx_feed)
            if i == 0:
                fixture = ([onnx_feed[n] for n in names], reference)
            record = compare(
                reference, actual, what=what, tolerance=tolerance, names=list(output_names)
            )
            if worst is None or record["max_abs_diff"] > worst["max_abs_diff"]:
                worst = record
    except Exception:
        target.unlink(missing_ok=True)
        raise
    assert worst is not None
    worst["inputs_checked"] = len(feeds)
    versions = {
        "torch": torch.__version__,
        "onnx": onnx.__version__,
        "onnxruntime": onnxruntime.__version__,
    }
    return Exported(target, names, list(output_names), got, worst, versions, fixture)


def scratch_path(tmp_dir: Path, stem: str) -> Path:
    """A unique temporary path for an export in the store's tmp folder."""
    return tmp_dir / f".{stem}.{os.getpid()}.{os.urandom(4).hex()}.onnx"


__all__ = ["DEFAULT_OPSET", "Exported", "export_module", "quiet_stdout", "scratch_path"]

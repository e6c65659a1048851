"""torch → ONNX export shared by every torch-based source (transformers, torchvision, TorchScript).

One file (no external data unless the model is over 2 GB), dynamic axes as asked, the opset
checked after export, exporter chatter kept off stdout, and parity against the torch module in
eval mode on the given inputs. By default the file is then rewritten for Deeplearning4j
(:func:`modelhub.staging.onnx_dl4j.rewrite_if_parity_holds`) when the rewrite matches the
module on the same inputs; otherwise it stays as exported and the manifest says why.

A module that returns several tensors (a tuple, list or dict, nested or not) is exported with
every one of them as a named output (:func:`flat_outputs`), each parity-checked.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._frameworks import settle, torch_import_guard
from ..errors import StagingError
from .onnx_check import check_session, read_opset
from .onnx_wire import opset_in
from .parity import DEFAULT_TOLERANCE, compare

torch_import_guard()  # before any torch import in this module (see _frameworks)

DEFAULT_OPSET = 17
TWO_GB = 2 * 2**30


def flat_outputs(out: Any, prefix: str = "output") -> list[tuple[str, Any]]:
    """The tensors of a module's result with their ONNX output names, in a fixed order: a
    tensor is ``output``; a tuple/list ``output_0``, ``output_1``...; a dict its keys (made
    ONNX-friendly); nested containers join the parts with ``_``. Other values are left out."""
    import re

    import torch

    if isinstance(out, torch.Tensor):
        return [(prefix, out)]
    if isinstance(out, Mapping):
        items = [
            (re.sub(r"[^A-Za-z0-9_.]", "_", str(k)) or f"{prefix}_{i}", v)
            for i, (k, v) in enumerate(out.items())
        ]
    elif isinstance(out, list | tuple):
        items = [(f"{prefix}_{i}", v) for i, v in enumerate(out)]
    else:
        return []
    found: list[tuple[str, Any]] = []
    for name, value in items:
        found.extend(flat_outputs(value, name))
    return found


def flattened(module: Any) -> Any:
    """``module`` wrapped so that it returns the tuple of :func:`flat_outputs`' tensors."""
    import torch

    class Flat(torch.nn.Module):  # type: ignore[misc, unused-ignore]
        def __init__(self) -> None:
            super().__init__()
            self.inner = module

        def forward(self, *args: Any) -> Any:
            return tuple(t for _, t in flat_outputs(self.inner(*args)))

    return Flat().eval()


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
    #: What the DL4J rewrite did: ``{"dl4j_ready": True, "rewrites": [...]}`` (applied) or
    #: ``{"dl4j_error": why}`` (kept as exported); empty when it was not tried.
    dl4j: dict[str, Any] = field(default_factory=dict)


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
    dl4j: bool = True,
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
    # For the DL4J rewrite the export stays in memory: the file is written once, rewritten
    # or not (rewrite_if_parity_holds).
    in_memory = dl4j and not large
    sink: Any = io.BytesIO() if in_memory else str(target)
    try:
        with quiet_stdout(), torch.no_grad():
            torch.onnx.export(
                module,
                args,
                sink,
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
        exported = sink.getbuffer() if in_memory else memoryview(b"")
        try:
            got = opset_in(exported) if in_memory else read_opset(target)
        except ValueError as exc:  # onnx_wire's WireError
            raise StagingError(
                f"{what}: the exporter wrote no readable ONNX model: {exc}"
            ) from None
        if got != opset:
            raise StagingError(f"{what}: asked for opset {opset}, the exporter wrote {got}")
        checked: list[tuple[dict[str, Any], list[Any]]] = []
        for i, feed in enumerate(feeds):
            if expected is not None:
                reference_out = expected[i]
            else:
                with torch.inference_mode():
                    reference_out = module(*(feed[n] for n in names))
            reference = [t.detach().cpu().numpy() for _, t in flat_outputs(reference_out)]
            onnx_feed = {n: np.asarray(feed[n].detach().cpu().numpy()) for n in names}
            checked.append((onnx_feed, reference))
        fixture = ([checked[0][0][n] for n in names], checked[0][1])
        # The DL4J rewrite first: when it matches the source's outputs, it is the file, and
        # its check is the parity record (the export itself is not run a second time).
        rewrite: dict[str, Any] = {}
        worst: dict[str, Any] | None = None
        if in_memory:
            from .onnx_dl4j import rewrite_if_parity_holds

            rewrite, worst = rewrite_if_parity_holds(
                target,
                exported,
                [feed for feed, _ in checked],
                [reference for _, reference in checked],
                output_names,
                tolerance=tolerance,
                what=what,
            )
        if worst is None:  # kept as exported (or not tried): the export's own check
            session = check_session(target, weights_in_place=True)
            for onnx_feed, reference in checked:
                actual = session.run(list(output_names), onnx_feed)
                record = compare(
                    reference, actual, what=what, tolerance=tolerance, names=list(output_names)
                )
                if worst is None or record["max_abs_diff"] > worst["max_abs_diff"]:
                    worst = record
            del session
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
    return Exported(target, names, list(output_names), got, worst, versions, fixture, rewrite)


def scratch_path(tmp_dir: Path, stem: str) -> Path:
    """A unique temporary path for an export in the store's tmp folder."""
    return tmp_dir / f".{stem}.{os.getpid()}.{os.urandom(4).hex()}.onnx"


__all__ = [
    "DEFAULT_OPSET",
    "Exported",
    "export_module",
    "flat_outputs",
    "flattened",
    "quiet_stdout",
    "scratch_path",
]

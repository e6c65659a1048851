"""Stage ``onnx`` for a Hugging Face snapshot: transformers + torch.onnx, parity-checked.

Dynamic batch and sequence axes (on the inputs, and on every output axis that follows them),
the model's real input names (from its forward signature), seeded token inputs, parity against
transformers within 1e-4 on two input shapes.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from .._frameworks import torch_import_guard
from ..config import settings
from ..errors import StagingError, UsageError
from ..refs import ModelRef
from ..store import Manifest, StagedEntry, Store, layout
from .parity import write_fixture
from .torch_onnx import export_module, quiet_stdout, scratch_path

torch_import_guard()  # before any torch import in this module (see _frameworks)

# --task → transformers Auto class. None = the base model (AutoModel).
TASKS = {
    None: "AutoModel",
    "feature-extraction": "AutoModel",
    "masked-lm": "AutoModelForMaskedLM",
    "causal-lm": "AutoModelForCausalLM",
    "text-generation": "AutoModelForCausalLM",
    "sequence-classification": "AutoModelForSequenceClassification",
    "text-classification": "AutoModelForSequenceClassification",
    "token-classification": "AutoModelForTokenClassification",
    "question-answering": "AutoModelForQuestionAnswering",
}
# Aliases recorded under one name in the manifest.
_CANONICAL = {
    None: "feature-extraction",
    "text-generation": "causal-lm",
    "text-classification": "sequence-classification",
}
_TOKEN_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
# (batch, sequence) of the traced inputs and of the second parity check: an output axis whose
# size follows them from one to the other is dynamic.
_TRACE_SHAPE = (2, 8)
_CHECK_SHAPE = (3, 13)


def check_task(task: Any) -> None:
    """Raise UsageError unless ``task`` is a known ``--task`` (or None, the base model)."""
    if task not in TASKS:
        known = ", ".join(t for t in TASKS if t)
        raise UsageError(f"unknown --task {task!r}; expected one of {known}")


def canonical_task(task: str | None) -> str:
    """The name a task is recorded under in the manifest (aliases folded)."""
    check_task(task)
    return _CANONICAL.get(task, task) or "feature-extraction"


def _token_inputs(model: Any, batch: int, seq: int, seed: int) -> dict[str, Any]:
    import torch

    params = inspect.signature(model.forward).parameters
    names = [n for n in _TOKEN_INPUTS if n in params]
    if "input_ids" not in names:
        raise StagingError(
            f"{type(model).__name__} takes no input_ids: only text models stage to ONNX for now"
        )
    gen = torch.Generator().manual_seed(seed)
    vocab = int(getattr(model.config, "vocab_size", 100) or 100)
    feeds: dict[str, Any] = {"input_ids": torch.randint(0, vocab, (batch, seq), generator=gen)}
    if "attention_mask" in names:
        mask = torch.ones(batch, seq, dtype=torch.int64)
        mask[-1, seq // 2 :] = 0  # one padded row: the mask must really be an input
        feeds["attention_mask"] = mask
    if "token_type_ids" in names and getattr(model.config, "type_vocab_size", None):
        types = torch.zeros(batch, seq, dtype=torch.int64)
        types[:, seq // 2 :] = 1  # a second segment: the input must really be used
        feeds["token_type_ids"] = types
    return feeds


class _Outputs:
    """Wraps a transformers model so that it takes positional tensors and returns a tuple."""

    def __new__(cls, model: Any, names: list[str]) -> Any:
        import torch

        params = inspect.signature(model.forward).parameters
        extra: dict[str, Any] = {"return_dict": True}
        if "use_cache" in params:
            extra["use_cache"] = False  # no past_key_values among the outputs

        class Wrapper(torch.nn.Module):  # type: ignore[misc, unused-ignore]
            def __init__(self) -> None:
                super().__init__()
                self.inner = model
                self.output_names: list[str] = []

            def forward(self, *args: Any) -> Any:
                kwargs = dict(zip(names, args, strict=True))
                out = self.inner(**kwargs, **extra)
                keys = [k for k, v in out.items() if isinstance(v, torch.Tensor)]
                self.output_names = keys
                return tuple(out[k] for k in keys)

        return Wrapper()


def _output_axes(
    first: Sequence[Any], second: Sequence[Any], names: Sequence[str]
) -> dict[str, dict[int, str]]:
    """Dynamic axes of each output: those whose size follows batch or sequence between runs."""
    labels = {
        (_TRACE_SHAPE[0], _CHECK_SHAPE[0]): "batch",
        (_TRACE_SHAPE[1], _CHECK_SHAPE[1]): "sequence",
    }
    axes: dict[str, dict[int, str]] = {}
    for name, a, b in zip(names, first, second, strict=True):
        if a.dim() != b.dim():
            raise StagingError(f"output {name} changes rank with the input shape")
        axes[name] = {
            i: labels.get((x, y), f"{name}_{i}")
            for i, (x, y) in enumerate(zip(a.shape, b.shape, strict=True))
            if x != y
        }
    return axes


@contextlib.contextmanager
def _quiet_transformers() -> Iterator[None]:
    """No "Loading weights" bars or load reports from transformers unless the user sees them."""
    from transformers.utils import logging as tf_logging

    if not settings().quiet:
        yield
        return
    bars = tf_logging.is_progress_bar_enabled()
    verbosity = tf_logging.get_verbosity()
    tf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    tf_logging.set_verbosity_error()  # type: ignore[no-untyped-call]
    try:
        yield
    finally:
        tf_logging.set_verbosity(verbosity)
        if bars:
            tf_logging.enable_progress_bar()  # type: ignore[no-untyped-call]


def export_hf_onnx(
    store: Store, ref: ModelRef, manifest: Manifest, options: Mapping[str, Any]
) -> StagedEntry:
    """Export the snapshot of ``manifest`` to ``huggingface/ORG/NAME.onnx``; return its entry.

    Raises UsageError (unknown ``task``, torch/transformers missing), StagingError (the
    snapshot does not load or export), ParityError (outputs differ beyond 1e-4).
    """
    task = options.get("task")
    check_task(task)
    try:
        import torch
        import transformers
    except ImportError:
        raise UsageError(
            "staging hf: models to ONNX needs torch and transformers: "
            "pip install 'modelhub[torch]' transformers"
        ) from None
    folder = store.abspath(str(manifest.details.get("folder") or layout.model_dir(ref)))
    auto = getattr(transformers, TASKS[task])
    with quiet_stdout(), _quiet_transformers():
        try:
            model = auto.from_pretrained(str(folder))
        except Exception as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise StagingError(f"{ref}: transformers cannot load the snapshot: {first}") from None
    model.eval()
    feeds = _token_inputs(model, *_TRACE_SHAPE, seed=0)
    check = _token_inputs(model, *_CHECK_SHAPE, seed=1)
    names = list(feeds)
    wrapper = _Outputs(model, names)
    with torch.no_grad():
        second = wrapper(*check.values())
        first = wrapper(*feeds.values())
    outputs = list(wrapper.output_names)
    axes: dict[str, dict[int, str]] = {n: {0: "batch", 1: "sequence"} for n in names}
    axes.update(_output_axes(first, second, outputs))
    tmp = scratch_path(store.tmp_dir, ref.name.replace("/", "--"))
    exported = export_module(
        wrapper,
        feeds,
        outputs,
        tmp,
        dynamic_axes=axes,
        check_inputs=[check],
        expected=[second],
        what=f"{ref} → ONNX",
    )
    from ..store.files import sha256_file

    sha, size = sha256_file(exported.path)
    rel = layout.staged_path(ref, ref.name.rsplit("/", 1)[-1], "onnx")
    store.publish(exported.path, rel, ref, sha, size)
    fixture = write_fixture(store, ref, rel, *exported.fixture)
    versions = {**exported.versions, "transformers": transformers.__version__}
    return StagedEntry(
        path=rel,
        format="onnx",
        sha256=sha,
        size=size,
        converter="transformers+torch.onnx.export",
        versions=versions,
        inputs=exported.inputs,
        outputs=exported.outputs,
        parity=exported.parity,
        fixture=fixture,
        details={
            "opset": exported.opset,
            "task": canonical_task(task),
            "architecture": type(model).__name__,
            "dynamic_axes": {k: list(v.values()) for k, v in axes.items()},
            **exported.dl4j,
        },
    )

"""Stage ``onnx`` for a Hugging Face snapshot: transformers + torch.onnx, parity-checked.

Dynamic batch and sequence axes, the model's real input names (from its forward signature),
seeded token inputs, parity against transformers within 1e-4 on two input shapes.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

from ..errors import StagingError, UsageError
from ..refs import ModelRef
from ..store import Manifest, StagedEntry, Store, layout
from .torch_onnx import export_module, quiet_stdout, scratch_path

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
_TOKEN_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


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
    if "token_type_ids" in names and getattr(model.config, "type_vocab_size", 0):
        feeds["token_type_ids"] = torch.zeros(batch, seq, dtype=torch.int64)
    return feeds


class _Outputs:
    """Wraps a transformers model so that it takes positional tensors and returns a tuple."""

    def __new__(cls, model: Any, names: list[str]) -> Any:
        import torch

        class Wrapper(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.inner = model
                self.output_names: list[str] = []

            def forward(self, *args: Any) -> Any:
                kwargs = dict(zip(names, args, strict=True))
                out = self.inner(**kwargs, use_cache=False, return_dict=True)
                keys = [k for k, v in out.items() if isinstance(v, torch.Tensor)]
                self.output_names = keys
                return tuple(out[k] for k in keys)

        return Wrapper()


def export_hf_onnx(
    store: Store, ref: ModelRef, manifest: Manifest, options: Mapping[str, Any]
) -> StagedEntry:
    """Export the snapshot of ``manifest`` to ``huggingface/ORG/NAME.onnx``; return its entry."""
    task = options.get("task")
    if task not in TASKS:
        raise UsageError(
            f"unknown --task {task!r}; expected one of {', '.join(t for t in TASKS if t)}"
        )
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
    with quiet_stdout():
        try:
            model = auto.from_pretrained(str(folder))
        except Exception as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise StagingError(f"{ref}: transformers cannot load the snapshot: {first}") from None
    model.eval()
    feeds = _token_inputs(model, 2, 8, seed=0)
    names = list(feeds)
    wrapper = _Outputs(model, names)
    with torch.no_grad():
        wrapper(*feeds.values())
    outputs = list(wrapper.output_names)
    axes: dict[str, dict[int, str]] = {n: {0: "batch", 1: "sequence"} for n in names}
    for out in outputs:
        axes[out] = {0: "batch", 1: "sequence"} if out != "pooler_output" else {0: "batch"}
    tmp = scratch_path(store.tmp_dir, ref.name.replace("/", "--"))
    exported = export_module(
        wrapper,
        feeds,
        outputs,
        tmp,
        dynamic_axes=axes,
        check_inputs=[_token_inputs(model, 3, 13, seed=1)],
        what=f"{ref} → ONNX",
    )
    from ..store.files import sha256_file

    sha, size = sha256_file(exported.path)
    rel = layout.staged_path(ref, ref.name.rsplit("/", 1)[-1], "onnx")
    store.publish(exported.path, rel, ref, sha, size)
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
        details={
            "opset": exported.opset,
            "task": task or "feature-extraction",
            "architecture": type(model).__name__,
            "dynamic_axes": {k: list(v.values()) for k, v in axes.items()},
        },
    )

"""Which files of a Hugging Face repository a default ``hf:`` pull fetches: what
``from_pretrained`` reads, not every copy of the weights the repo carries.

Read from transformers 5.25 (``modeling_utils._get_resolved_checkpoint_files``): a model loads
``model[.VARIANT].safetensors`` or ``model[.VARIANT].safetensors.index.json`` and its shards, and
falls back to ``pytorch_model*.bin`` only when no safetensors file is there; TensorFlow, Flax,
GGUF (only with ``gguf_file=``), ONNX, Core ML and OpenVINO copies, and the ``original/``
checkpoints of the model's authors are never read. diffusers and PEFT read safetensors first in
the same way, folder by folder (``unet/``, ``text_encoder/``).

So, folder by folder: where a folder holds a ``.safetensors`` file, the other weight formats in
it (:data:`OTHER_WEIGHTS`) and its copies in other formats (:data:`OTHER_FORMAT_FOLDERS`) are
skipped. Everything else is kept: every safetensors file (variants too), configs, tokenizers,
processors, README and licence, code, images, and every weight file of a folder without
safetensors (a ``.bin``-only or GGUF-only repo is fetched whole). ``--all-files`` (``all_files``)
keeps everything; so does ``--include`` (the caller chose).

Pure: no I/O; the adapter passes the repo's file list (the Hub's ``siblings`` before a download,
the cached tree listing after it). :class:`Pick` turns a pull's options and that list into the
files it keeps and the ``allow``/``ignore`` patterns ``snapshot_download`` is given.
"""

from __future__ import annotations

import fnmatch
import posixpath
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..refs import ModelRef
    from .base import Plan

#: Weight files of other formats, by name (``fnmatch``, case-sensitive as the Hub's paths).
OTHER_WEIGHTS = (
    "pytorch_model*.bin",
    "pytorch_model*.bin.index.json",
    "diffusion_pytorch_model*.bin",
    "diffusion_pytorch_model*.bin.index.json",
    "adapter_model.bin",
    "tf_model*.h5",
    "tf_model*.h5.index.json",
    "flax_model*.msgpack",
    "flax_model*.msgpack.index.json",
    "diffusion_flax_model*.msgpack",
    "model.ckpt*",
    "rust_model.ot",
    "*.gguf",
    "*.onnx",
    "*.onnx_data",
    "*.onnx.data",
    "*.pt",
    "*.pth",
    "*.tflite",
    "*.mlmodel",
)
#: Folders holding the model in another format (or the authors' original checkpoints).
OTHER_FORMAT_FOLDERS = frozenset(
    {"original", "onnx", "openvino", "coreml", "tflite", "flax_model", "tf_model"}
)

RULE_FROM_PRETRAINED = "from_pretrained"
RULE_ALL = "all-files"
RULE_INCLUDE = "include"


def _skipped(rel: str, safetensors_dirs: set[str]) -> bool:
    """Whether ``rel`` (a path inside the model folder) is a weight copy of another format."""
    parts = rel.split("/")
    for depth, part in enumerate(parts[:-1]):
        if part in OTHER_FORMAT_FOLDERS and "/".join(parts[:depth]) in safetensors_dirs:
            return True
    folder, name = posixpath.split(rel)
    if folder not in safetensors_dirs or name.endswith(".safetensors"):
        return False
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in OTHER_WEIGHTS)


def select(
    names: Iterable[str], *, base: str = "", rule: str = RULE_FROM_PRETRAINED
) -> tuple[list[str], list[str]]:
    """(kept, skipped) repo paths of ``names``, both sorted. ``base`` is the model folder in
    the repo (``""``, or ``"sub/"`` for a folder reference): folders are judged relative to it.
    Any ``rule`` but ``from_pretrained`` keeps everything."""
    ordered = sorted(set(names))
    if rule != RULE_FROM_PRETRAINED:
        return ordered, []
    inner = {name: name[len(base) :] for name in ordered if name.startswith(base)}
    safetensors_dirs = {posixpath.dirname(r) for r in inner.values() if r.endswith(".safetensors")}
    skipped = [n for n in ordered if n in inner and _skipped(inner[n], safetensors_dirs)]
    dropped = set(skipped)
    return [n for n in ordered if n not in dropped], skipped


def summary(
    rule: str, kept: list[str], skipped: list[str], listing: Mapping[str, Any] | None
) -> dict[str, Any]:
    """The manifest's ``selection``: the rule, how many files were kept, which were skipped and
    their bytes (from the cached tree listing; files it does not list count 0)."""
    total = 0
    for name in skipped:
        info = listing.get(name) if listing is not None else None
        if isinstance(info, dict):
            size = info.get("lfs_size", info.get("size"))
            total += size if isinstance(size, int) else 0
    return {"rule": rule, "kept": len(kept), "skipped": list(skipped), "skipped_bytes": total}


def escape(name: str) -> str:
    """``name`` as an ``fnmatch`` pattern matching only itself (for the SDK's patterns)."""
    return "".join(f"[{c}]" if c in "*?[" else c for c in name)


def base_folder(ref: ModelRef) -> str:
    """The model's folder in the repo: ``""`` (the repo), or a folder reference's ``PATH/``."""
    return ref.entry if ref.entry is not None and ref.entry.endswith("/") else ""


def selection_rule(details: Mapping[str, Any]) -> str:
    """The rule a manifest's files were selected by (manifests from before selections: all)."""
    selection = details.get("selection")
    rule = selection.get("rule") if isinstance(selection, dict) else None
    return rule if isinstance(rule, str) else RULE_ALL


class Pick:
    """The files a pull of ``plan`` takes out of a repo's file list ``names``, and the patterns
    that make ``snapshot_download`` fetch exactly those (``allow``, ``ignore``: the caller's own
    patterns when the selection skips nothing, so that the SDK is asked as its users ask it)."""

    def __init__(self, plan: Plan, names: list[str]) -> None:
        from huggingface_hub.utils import filter_repo_objects  # type: ignore[attr-defined]

        details = plan.details
        include, exclude = details["include"] or None, details["exclude"] or None
        base = base_folder(plan.ref)
        scope = [n for n in names if n.startswith(base)]
        matched = list(filter_repo_objects(scope, allow_patterns=include, ignore_patterns=exclude))
        self.rule: str = details["rule"]
        self.kept, self.skipped = select(matched, base=base, rule=self.rule)
        self.empty_folder = bool(base) and not scope
        self.allow: list[str] | None = [base] if base else include
        offered = set(
            filter_repo_objects(names, allow_patterns=self.allow, ignore_patterns=exclude)
        )
        extra = [escape(n) for n in sorted(offered - set(self.kept))]
        self.ignore: list[str] | None = [*(exclude or []), *extra] or None

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
the cached tree listing after it).
"""

from __future__ import annotations

import fnmatch
import posixpath
from collections.abc import Iterable, Mapping
from typing import Any

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

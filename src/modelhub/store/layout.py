"""Pure path math of the store: where each reference's files live. No I/O.

The store mirrors DL4J omnihub's layout (``<root>/<framework>/<name>``), so Java's
``OmniHubUtils`` can read it with ``OMNIHUB_HOME=$MODELHUB_PATH``::

    onnx/<original file name>                 pytorch/<original weights name>
    keras/<original weights name>             tensorflow/<hub>/<handle>/   (+ .pb, .tar.gz)
    huggingface/<org>/<name>/...              .modelhub/{manifests,tmp,locks}/

Every function returns a path relative to the store root made of validated segments only;
``resolve_in_store`` is the one guard that turns a relative path into an absolute one and refuses
anything that would leave the root.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path, PurePosixPath

from ..errors import InvalidReferenceError
from ..refs import ModelRef, url_basename

META_DIR = ".modelhub"
MANIFESTS = f"{META_DIR}/manifests"
TMP = f"{META_DIR}/tmp"
LOCKS = f"{META_DIR}/locks"
CACHE = f"{META_DIR}/cache"

FRAMEWORK_BY_HUB = {
    "onnx": "onnx",
    "torch": "pytorch",
    "keras": "keras",
    "tfhub": "tensorflow",
    "kaggle": "tensorflow",
    "hf": "huggingface",
}

# File extensions → store folder, for url: and import.
FRAMEWORK_BY_SUFFIX = {
    ".onnx": "onnx",
    ".ort": "onnx",
    ".pth": "pytorch",
    ".pt": "pytorch",
    ".bin": "pytorch",
    ".ckpt": "pytorch",
    ".jit": "pytorch",
    ".safetensors": "pytorch",
    ".h5": "keras",
    ".hdf5": "keras",
    ".keras": "keras",
    ".pb": "tensorflow",
    ".tflite": "tensorflow",
    ".tgz": "tensorflow",
    ".tar.gz": "tensorflow",
}
OTHER_FRAMEWORK = "other"

_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]*")


def framework_for_filename(name: str) -> str:
    """Return the store folder a file of this name belongs to (``other`` if unknown)."""
    lowered = name.lower()
    for suffix in sorted(FRAMEWORK_BY_SUFFIX, key=len, reverse=True):
        if lowered.endswith(suffix):
            return FRAMEWORK_BY_SUFFIX[suffix]
    return OTHER_FRAMEWORK


def framework_for(ref: ModelRef) -> str:
    """Return the framework folder of ``ref`` (for url: from the file extension)."""
    if ref.hub == "url":
        return framework_for_filename(url_basename(ref.name))
    return FRAMEWORK_BY_HUB[ref.hub]


def check_relative(rel: str) -> PurePosixPath:
    """Validate a store-relative POSIX path: no absolute, empty, '.' or '..' parts.

    Raises InvalidReferenceError when the path could leave the store.
    """
    if not rel or "\\" in rel or "\x00" in rel:
        raise InvalidReferenceError(f"unsafe store path {rel!r}")
    path = PurePosixPath(rel)
    if path.is_absolute() or any(p in ("", ".", "..") for p in rel.split("/")):
        raise InvalidReferenceError(f"unsafe store path {rel!r}")
    return path


def safe_filename(name: str) -> str:
    """Validate one file name (a single path segment) from an untrusted source."""
    if len(name) > 255 or ".." in name or not _SAFE_NAME.fullmatch(name):
        raise InvalidReferenceError(f"unsafe file name {name!r}")
    return name


def resolve_in_store(root: Path, rel: str | PurePosixPath) -> Path:
    """Join ``rel`` to ``root`` and prove the result stays inside ``root``.

    This is the store's one path-traversal guard: every path the store writes goes through it.
    """
    checked = check_relative(str(rel))
    root_abs = root.absolute()
    target = root_abs.joinpath(*checked.parts)
    # Resolve symlinks of the parent chain too: a planted link must not lead outside.
    real_root = root_abs.resolve()
    real_parent = target.parent.resolve()
    if real_parent != real_root and real_root not in real_parent.parents:
        raise InvalidReferenceError(f"store path {rel!s} leaves the store")
    return target


def model_dir(ref: ModelRef) -> str:
    """The folder (relative to the root) owning a reference's files, for folder-shaped models.

    Hugging Face snapshots and SavedModels are folders; single-file models live directly in
    their framework folder (see :func:`file_path`).
    """
    fw = framework_for(ref)
    if ref.hub == "hf":
        if ref.revision:
            return f"{fw}/{ref.name}@{ref.revision.replace('/', '--')}"
        return f"{fw}/{ref.name}"
    if ref.hub in ("tfhub", "kaggle"):
        return f"{fw}/{ref.hub}/{ref.name}"
    if ref.is_torch_hub:
        rev = f"@{ref.revision.replace('/', '--')}" if ref.revision else ""
        return f"{fw}/hub/{ref.name}{rev}/{ref.entry}"
    return fw


def file_path(ref: ModelRef, filename: str) -> str:
    """Path of one original file of ``ref`` kept under its original ``filename``."""
    return f"{model_dir(ref)}/{safe_filename(filename)}"


def staged_path(ref: ModelRef, stem: str, fmt: str) -> str:
    """Path of a staged artifact: ``<framework>/<stem>.<fmt>`` beside the original."""
    ext = {"h5": "h5", "keras": "keras", "pb": "pb", "onnx": "onnx"}.get(fmt, fmt)
    if ref.hub in ("tfhub", "kaggle", "hf") or ref.is_torch_hub:
        return f"{model_dir(ref)}.{ext}"
    return f"{model_dir(ref)}/{safe_filename(stem)}.{ext}"


def ref_key(ref: ModelRef) -> str:
    """A file-name-safe, collision-free key for a reference (manifest and lock names).

    Readable prefix plus 16 hex digits of the sha256 of the canonical string.
    """
    canonical = ref.canonical
    digest = hashlib.sha256(canonical.encode()).hexdigest()[:16]
    readable = re.sub(r"[^A-Za-z0-9_.\-]+", "_", canonical.split(":", 1)[1])[:80].strip("._")
    return f"{readable or 'ref'}-{digest}"


def manifest_path(ref: ModelRef) -> str:
    """Manifest location (relative to the root) for ``ref``."""
    return f"{MANIFESTS}/{ref.hub}/{ref_key(ref)}.json"


def lock_path(ref: ModelRef) -> str:
    """Per-model lock file location (relative to the root)."""
    return f"{LOCKS}/{ref.hub}-{ref_key(ref)}.lock"

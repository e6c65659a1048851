"""Pure path math of the store: where each reference's files live. No I/O.

The store mirrors DL4J omnihub's layout (``<root>/<framework>/<name>``), which the DL4J harness
(interop/dl4j) resolves the way omnihub does::

    onnx/<original file name>                 pytorch/<original weights name>
    keras/<original weights name>             tensorflow/<hub>/<handle>/   (+ .pb, .tar.gz)
    huggingface/<org>/<name>/...              .modelhub/{manifests,tmp,locks}/

Every function returns a path relative to the store root made of validated segments only;
``resolve_in_store`` is the one guard that turns a relative path into an absolute one and refuses
anything that would leave the root.
"""

from __future__ import annotations

from ..errors import InvalidReferenceError
from ..refs import ModelRef, is_name
from ..registry import row

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: importing typing costs start-up time

if TYPE_CHECKING:  # pathlib is imported lazily: `modelhub path` must start fast
    from collections.abc import Callable
    from pathlib import Path, PurePosixPath
    from typing import Any

META_DIR = ".modelhub"
MANIFESTS = f"{META_DIR}/manifests"
TMP = f"{META_DIR}/tmp"
LOCKS = f"{META_DIR}/locks"
CACHE = f"{META_DIR}/cache"

__all__ = [
    "CACHE",
    "LOCKS",
    "MANIFESTS",
    "META_DIR",
    "TMP",
    "check_relative",
    "file_path",
    "framework_for",
    "lock_path",
    "manifest_path",
    "model_dir",
    "ref_key",
    "resolve_in_store",
    "safe_filename",
    "staged_path",
]


_KEY_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-")


_SHA256: Callable[[bytes], Any] | None = None


def _sha256_hex(data: bytes) -> str:
    """sha256 without importing hashlib when possible: hashlib loads OpenSSL (~2 ms), which the
    CLI's cache-hit path cannot spare; CPython's built-in sha256 gives the same digest. The
    constructor is looked up once: a failed import searches all of sys.path every time."""
    global _SHA256
    if _SHA256 is None:
        try:
            from _sha2 import sha256  # CPython >= 3.12
        except ImportError:
            try:
                from _sha256 import sha256  # 3.11
            except ImportError:
                from hashlib import sha256
        _SHA256 = sha256
    return str(_SHA256(data).hexdigest())


def framework_for(ref: ModelRef) -> str:
    """Return the framework folder of ``ref`` (its hub's row decides: e.g. from a file's
    extension, or from a Kaggle handle's framework segment)."""
    return row(ref.hub).framework(ref)


def check_relative(rel: str) -> tuple[str, ...]:
    """Validate a store-relative POSIX path: no absolute, empty, '.' or '..' parts.

    Returns its parts. Raises InvalidReferenceError when the path could leave the store.
    """
    if not rel or "\\" in rel or "\x00" in rel or rel.startswith("/"):
        raise InvalidReferenceError(f"unsafe store path {rel!r}")
    parts = tuple(rel.split("/"))
    if any(p in ("", ".", "..") for p in parts):
        raise InvalidReferenceError(f"unsafe store path {rel!r}")
    return parts


def safe_filename(name: str) -> str:
    """Validate one file name (a single path segment) from an untrusted source."""
    if len(name) > 255 or ".." in name or not is_name(name):
        raise InvalidReferenceError(f"unsafe file name {name!r}")
    return name


def resolve_in_store(root: Path, rel: str | PurePosixPath) -> Path:
    """Join ``rel`` to ``root`` and prove the result stays inside ``root``.

    This is the store's one path-traversal guard: every path the store writes goes through it.
    """
    parts = check_relative(str(rel))
    root_abs = root.absolute()
    target = root_abs.joinpath(*parts)
    # Resolve symlinks of the parent chain too: a planted link must not lead outside.
    real_root = root_abs.resolve()
    real_parent = target.parent.resolve()
    if real_parent != real_root and real_root not in real_parent.parents:
        raise InvalidReferenceError(f"store path {rel!s} leaves the store")
    return target


def model_dir(ref: ModelRef) -> str:
    """The folder (relative to the root) owning a reference's files (its hub's row decides).

    Folder-shaped models (snapshots, SavedModels) are that folder; single-file models live
    directly in their framework folder (see :func:`file_path`).
    """
    return row(ref.hub).model_dir(ref)


def file_path(ref: ModelRef, filename: str) -> str:
    """Path of one original file of ``ref`` kept under its original ``filename``."""
    return f"{model_dir(ref)}/{safe_filename(filename)}"


def staged_path(ref: ModelRef, stem: str, fmt: str) -> str:
    """Path of a staged artifact: ``<framework>/<stem>.<fmt>`` beside the original."""
    ext = fmt
    if row(ref.hub).folder_shaped(ref):
        return f"{model_dir(ref)}.{ext}"
    return f"{model_dir(ref)}/{safe_filename(stem)}.{ext}"


def ref_key(ref: ModelRef) -> str:
    """A file-name-safe, collision-free key for a reference (manifest and lock names).

    Readable prefix plus 16 hex digits of the sha256 of the canonical string.
    """
    canonical = ref.canonical
    digest = _sha256_hex(canonical.encode())[:16]
    body = canonical.split(":", 1)[1]
    readable = "".join(c if c in _KEY_CHARS else "_" for c in body)[:80].strip("._")
    return f"{readable or 'ref'}-{digest}"


def manifest_path(ref: ModelRef) -> str:
    """Manifest location (relative to the root) for ``ref``."""
    return f"{MANIFESTS}/{ref.hub}/{ref_key(ref)}.json"


def lock_path(ref: ModelRef) -> str:
    """Per-model lock file location (relative to the root)."""
    return f"{LOCKS}/{ref.hub}-{ref_key(ref)}.lock"

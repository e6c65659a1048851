"""Check PyTorch weight files without running their code: pickles weights-only, safetensors by
header.

- pickle-based files (``.pt``, ``.pth``, ``.bin``, ``.ckpt``) are opened only with
  ``torch.load(weights_only=True, map_location="cpu")`` (memory-mapped when the file is a zip
  archive): torch's restricted unpickler builds tensors, containers and plain values and
  refuses every other global, so a pickle that needs arbitrary code is refused before any of
  it runs (IntegrityError, exit 5, one line naming the file and the global it asked for);
- TorchScript archives (a zip with ``code/``) are recognised and counted from their entries,
  never loaded (loading one runs its TorchScript);
- ``.safetensors`` files are checked from their JSON header (length, dtypes, shapes, every
  tensor's byte range inside the file and of the size its shape says), without torch;
- a file with a pickle suffix that neither torch nor pickle would act on (not a zip, no pickle
  protocol header, and its bytes reach no opcode that imports or calls anything: raw weights
  for a C runtime, a vocabulary, text) is no PyTorch file: it is kept as a plain file and
  reported under ``plain``, never unpickled.

:func:`check_torch_files` returns a summary (tensor and parameter counts per file and in all);
other files in the list are reported as skipped. Stateless.
"""

from __future__ import annotations

import itertools
import json
import re
import struct
import warnings
import zipfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .._frameworks import torch_import_guard
from ..errors import IntegrityError, UsageError

torch_import_guard()  # before any torch import in this module (see _frameworks)

PICKLE_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt")
SAFETENSORS_SUFFIX = ".safetensors"
#: safetensors' own limit on the JSON header.
MAX_SAFETENSORS_HEADER = 100 * 2**20
# safetensors dtypes -> bits per element.
SAFETENSORS_BITS = {
    "BOOL": 8,
    "U8": 8,
    "I8": 8,
    "F8_E4M3": 8,
    "F8_E5M2": 8,
    "F8_E8M0": 8,
    "I16": 16,
    "U16": 16,
    "F16": 16,
    "BF16": 16,
    "I32": 32,
    "U32": 32,
    "F32": 32,
    "I64": 64,
    "U64": 64,
    "F64": 64,
    "C64": 64,
    "F4": 4,
    "F6_E2M3": 6,
    "F6_E3M2": 6,
}
_GLOBAL = re.compile(r"GLOBAL ([\w.]+)")
#: Pickle opcodes that import a global or call one (what makes a pickle run code on load).
_CALLING = frozenset(
    {"GLOBAL", "STACK_GLOBAL", "INST", "OBJ", "REDUCE", "NEWOBJ", "NEWOBJ_EX", "BUILD"}
    | {"EXT1", "EXT2", "EXT4"}
)
#: How much of a file :func:`is_pickle` reads to decide.
PICKLE_SCAN_BYTES = 2**20


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__


# --- safetensors ------------------------------------------------------------------------------
def check_safetensors(path: Path) -> dict[str, Any]:
    """Check a ``.safetensors`` file from its header; return ``{kind, tensors, parameters,
    dtypes, metadata}``. Raises IntegrityError (exit 5) naming the file for anything wrong."""
    name = path.name
    size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(8)
        if len(head) != 8:
            raise IntegrityError(f"{name} is not a safetensors file (shorter than 8 bytes)")
        (length,) = struct.unpack("<Q", head)
        if length > min(size - 8, MAX_SAFETENSORS_HEADER):
            raise IntegrityError(
                f"{name} is not a safetensors file (header length {length} does not fit)"
            )
        raw = fh.read(length)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise IntegrityError(f"{name} is not a safetensors file (header is not JSON)") from None
    if not isinstance(header, dict):
        raise IntegrityError(f"{name} is not a safetensors file (header is not an object)")
    data_len = size - 8 - length
    metadata = header.pop("__metadata__", None)
    dtypes: dict[str, int] = {}
    parameters = 0
    spans = []
    for key, info in header.items():
        if not isinstance(info, dict):
            raise IntegrityError(f"{name}: tensor {key!r} has no description")
        dtype, shape, offsets = info.get("dtype"), info.get("shape"), info.get("data_offsets")
        if dtype not in SAFETENSORS_BITS:
            raise IntegrityError(f"{name}: tensor {key!r} has the unknown dtype {dtype!r}")
        if not isinstance(shape, list) or not all(
            isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape
        ):
            raise IntegrityError(f"{name}: tensor {key!r} has an invalid shape {shape!r}")
        if (
            not isinstance(offsets, list)
            or len(offsets) != 2
            or not all(isinstance(o, int) and not isinstance(o, bool) for o in offsets)
            or not 0 <= offsets[0] <= offsets[1] <= data_len
        ):
            raise IntegrityError(
                f"{name}: tensor {key!r} lies outside the file ({offsets!r}, "
                f"{data_len} data bytes): truncated or damaged"
            )
        count = 1
        for d in shape:
            count *= d
        bits = count * SAFETENSORS_BITS[dtype]
        if -(-bits // 8) != offsets[1] - offsets[0]:
            raise IntegrityError(
                f"{name}: tensor {key!r} ({dtype} {shape}) has {offsets[1] - offsets[0]} "
                "bytes, not what its shape needs"
            )
        spans.append((offsets[0], offsets[1], key))
        dtypes[dtype] = dtypes.get(dtype, 0) + 1
        parameters += count
    spans.sort()
    for (_, end, first), (start, _, second) in itertools.pairwise(spans):
        if start < end:
            raise IntegrityError(f"{name}: tensors {first!r} and {second!r} overlap")
    return {
        "kind": "safetensors",
        "tensors": len(spans),
        "parameters": parameters,
        "dtypes": dtypes,
        "metadata": metadata if isinstance(metadata, dict) else None,
    }


# --- pickles ----------------------------------------------------------------------------------
def is_pickle(path: Path) -> bool:
    """True when ``torch.load`` would unpickle ``path`` and that could run code: a zip (torch's
    format; a truncated one too), a pickle protocol header, or bytes that, read as pickle
    opcodes with the unpickler's stack rules, reach an opcode that imports or calls before they
    stop making sense. Undecided within :data:`PICKLE_SCAN_BYTES` counts as a pickle (fail
    closed)."""
    import io
    import pickletools

    with open(path, "rb") as fh:
        data = fh.read(PICKLE_SCAN_BYTES)
    if data[:4] == b"PK\x03\x04" or data[:1] == b"\x80" or zipfile.is_zipfile(path):
        return True
    stack: list[Any] = []
    mark = pickletools.markobject
    try:
        for op, _, _ in pickletools.genops(io.BytesIO(data)):
            before = list(op.stack_before)
            if op.name == "POP" and stack and stack[-1] is mark:
                before = [mark]
            if mark in before:
                if mark not in stack:
                    return False  # "could not find MARK": the unpickler stops here
                while stack.pop() is not mark:
                    pass
                before = before[: before.index(mark)]
            if len(stack) < len(before):
                return False  # pops from an empty stack: the unpickler stops here
            if op.name in _CALLING:
                return True
            if op.name == "STOP":
                return True  # a whole pickle of plain values: the weights-only load decides
            del stack[len(stack) - len(before) :]
            stack.extend(op.stack_after)
    except ValueError:  # an unknown opcode or a bad argument: the unpickler stops there too
        return False
    return len(data) >= PICKLE_SCAN_BYTES  # the window ran out undecided: fail closed


def _is_torchscript(path: Path) -> list[str] | None:
    """The entry names of a TorchScript archive (a zip holding compiled ``code/``), else None."""
    try:
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
    except (zipfile.BadZipFile, OSError):
        return None
    return names if any("/code/" in n or n.startswith("code/") for n in names) else None


def _walk(obj: Any, found: dict[str, Any], depth: int = 0) -> None:
    import torch

    if depth > 64:
        return
    if isinstance(obj, torch.Tensor):
        found["tensors"] += 1
        found["parameters"] += int(obj.numel())
        dtype = str(obj.dtype).removeprefix("torch.")
        found["dtypes"][dtype] = found["dtypes"].get(dtype, 0) + 1
    elif isinstance(obj, dict):
        for value in obj.values():
            _walk(value, found, depth + 1)
    elif isinstance(obj, list | tuple | set):
        for value in obj:
            _walk(value, found, depth + 1)


def _kind(obj: Any) -> str:
    import torch

    if isinstance(obj, torch.Tensor):
        return "tensor"
    if isinstance(obj, dict):
        if obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
            return "state_dict"
        if any(k in obj for k in ("state_dict", "model", "model_state_dict", "module")):
            return "checkpoint"
        return "dict"
    return type(obj).__name__


def check_pickle(path: Path) -> dict[str, Any]:
    """Open a pickle-based PyTorch file with ``torch.load(weights_only=True)`` only; return
    ``{kind, tensors, parameters, dtypes}``. A TorchScript archive is counted, not loaded.

    Raises IntegrityError (exit 5) naming the file when the pickle needs code torch's
    weights-only loader refuses (nothing of it runs), or the file is not a readable one.
    """
    import pickle

    import torch

    name = path.name
    entries = _is_torchscript(path)
    if entries is not None:
        data = [n for n in entries if "/data/" in n or n.startswith("data/")]
        return {
            "kind": "torchscript",
            "tensors": len(data),
            "parameters": None,
            "dtypes": {},
            "note": "a TorchScript archive: counted from its entries, not loaded",
        }
    mmap = zipfile.is_zipfile(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            obj = torch.load(str(path), weights_only=True, map_location="cpu", mmap=mmap)
    except pickle.UnpicklingError as exc:
        needed = _GLOBAL.search(str(exc))
        what = (
            f"it needs {needed.group(1)}, code outside torch's weights-only allowlist"
            if needed
            else f"it uses pickle features torch's weights-only loader refuses ({_detail(exc)})"
        )
        raise IntegrityError(
            f"{name}: refused to unpickle: {what}; nothing of it was run "
            "(a file that needs code to load is not accepted)"
        ) from None
    except Exception as exc:  # torch raises RuntimeError, KeyError, EOFError, ... for damage
        raise IntegrityError(
            f"{name} is not a readable PyTorch file ({type(exc).__name__}: {_first_line(exc)})"
        ) from None
    found: dict[str, Any] = {"tensors": 0, "parameters": 0, "dtypes": {}}
    _walk(obj, found)
    return {"kind": _kind(obj), **found}


def _detail(exc: BaseException) -> str:
    """The line of torch's weights-only message that says what was refused."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    for line in lines:
        if line.startswith(("Unsupported", "Trying to")):
            return line[:200]
    return lines[-1][:200] if lines else type(exc).__name__


# --- the set ----------------------------------------------------------------------------------
def check_torch_files(paths: Iterable[Path]) -> dict[str, Any]:
    """Check every PyTorch weight file in ``paths``; return the summary:
    ``{files: [{path, name, kind, tensors, parameters, dtypes, ...}], tensors, parameters,
    skipped: [names of files that are no PyTorch weights], plain: [names of files with a pickle
    suffix that are no pickle (:func:`is_pickle`), kept unread], versions: {torch}}``.

    Pickles are opened only weights-only, ``.safetensors`` by header (:func:`check_pickle`,
    :func:`check_safetensors`); the first bad file raises IntegrityError (exit 5) naming it.
    Raises UsageError when a path is not a file.
    """
    import torch

    files = []
    skipped = []
    plain = []
    tensors = 0
    parameters = 0
    for raw in paths:
        path = Path(raw)
        if not path.is_file():
            raise UsageError(f"{path} is not a file")
        suffix = path.suffix.lower()
        if suffix == SAFETENSORS_SUFFIX:
            info = check_safetensors(path)
        elif suffix in PICKLE_SUFFIXES and is_pickle(path):
            info = check_pickle(path)
        elif suffix in PICKLE_SUFFIXES:
            plain.append(path.name)
            continue
        else:
            skipped.append(path.name)
            continue
        files.append({"path": str(path), "name": path.name, **info})
        tensors += int(info["tensors"] or 0)
        parameters += int(info["parameters"] or 0)
    return {
        "files": files,
        "tensors": tensors,
        "parameters": parameters,
        "skipped": skipped,
        "plain": plain,
        "versions": {"torch": str(torch.__version__).split("+")[0]},
    }


__all__ = ["check_pickle", "check_safetensors", "check_torch_files", "is_pickle"]

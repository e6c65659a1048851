"""Check a GGUF file (llama.cpp / ggml) by its header, without any framework.

The layout (GGUF versions 2 and 3; version 1's 32-bit counts are refused as obsolete)::

    magic "GGUF" | version u32 | tensor_count u64 | metadata_kv_count u64
    metadata_kv_count x (key: string, value_type u32, value)
    tensor_count x (name: string, n_dims u32, dims u64 x n_dims, ggml_type u32, offset u64)
    padding to ``general.alignment`` (default 32) | tensor data

``string`` is a u64 length and UTF-8 bytes; an array value is an element type u32, a count
u64 and the elements. Numbers are little-endian, or big-endian in a big-endian GGUF (told by
the version field). :func:`check_gguf` walks the whole header with every length checked
against the bytes left in the file, so a truncated, padded-short or hostile header fails with
one line and never makes it read or allocate past the file; then it checks that every tensor
of a known ggml type lies inside the file. Stateless; reads only the header bytes.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import IO, Any

from ..errors import IntegrityError

MAGIC = b"GGUF"
SUPPORTED_VERSIONS = (2, 3)
DEFAULT_ALIGNMENT = 32
#: ggml's limit on a tensor's rank.
MAX_DIMS = 4
#: A key longer than this is not a metadata key but damage.
MAX_KEY_BYTES = 65_535
#: Nesting of arrays of arrays accepted before the file is called hostile.
MAX_ARRAY_DEPTH = 4
#: Metadata string values recorded in the summary (longer ones are cut).
SUMMARY_STRING = 200
#: Keys reported in the summary when present.
SUMMARY_KEYS = (
    "general.architecture",
    "general.name",
    "general.type",
    "general.file_type",
    "general.quantization_version",
    "general.alignment",
)

# GGUF metadata value types: id -> (name, struct code or None for string/array).
_VALUE_TYPES: dict[int, tuple[str, str | None]] = {
    0: ("uint8", "B"),
    1: ("int8", "b"),
    2: ("uint16", "H"),
    3: ("int16", "h"),
    4: ("uint32", "I"),
    5: ("int32", "i"),
    6: ("float32", "f"),
    7: ("bool", "?"),
    8: ("string", None),
    9: ("array", None),
    10: ("uint64", "Q"),
    11: ("int64", "q"),
    12: ("float64", "d"),
}
_STRING, _ARRAY = 8, 9

# ggml tensor types: id -> (name, elements per block, bytes per block), from the GGUF spec.
GGML_TYPES: dict[int, tuple[str, int, int]] = {
    0: ("F32", 1, 4),
    1: ("F16", 1, 2),
    2: ("Q4_0", 32, 18),
    3: ("Q4_1", 32, 20),
    6: ("Q5_0", 32, 22),
    7: ("Q5_1", 32, 24),
    8: ("Q8_0", 32, 34),
    9: ("Q8_1", 32, 40),
    10: ("Q2_K", 256, 84),
    11: ("Q3_K", 256, 110),
    12: ("Q4_K", 256, 144),
    13: ("Q5_K", 256, 176),
    14: ("Q6_K", 256, 210),
    15: ("Q8_K", 256, 292),
    16: ("IQ2_XXS", 256, 66),
    17: ("IQ2_XS", 256, 74),
    18: ("IQ3_XXS", 256, 98),
    19: ("IQ1_S", 256, 50),
    20: ("IQ4_NL", 32, 18),
    21: ("IQ3_S", 256, 110),
    22: ("IQ2_S", 256, 82),
    23: ("IQ4_XS", 256, 136),
    24: ("I8", 1, 1),
    25: ("I16", 1, 2),
    26: ("I32", 1, 4),
    27: ("I64", 1, 8),
    28: ("F64", 1, 8),
    29: ("IQ1_M", 256, 56),
    30: ("BF16", 1, 2),
    34: ("TQ1_0", 256, 54),
    35: ("TQ2_0", 256, 66),
    39: ("MXFP4", 32, 17),
    40: ("NVFP4", 64, 36),
    41: ("Q1_0", 128, 18),
}


class _Reader:
    """Bounded reads from a file: every read is checked against the bytes left."""

    def __init__(self, fh: IO[bytes], size: int, name: str, order: str) -> None:
        self.fh = fh
        self.size = size
        self.name = name
        self.order = order
        self.pos = 0

    def fail(self, what: str) -> IntegrityError:
        return IntegrityError(f"{self.name} is not a valid GGUF file: {what} (at byte {self.pos})")

    def left(self) -> int:
        return self.size - self.pos

    def read(self, n: int, what: str) -> bytes:
        if n < 0 or n > self.left():
            raise self.fail(f"{what} runs past the end of the file (truncated?)")
        data = self.fh.read(n)
        if len(data) != n:
            raise self.fail(f"{what} runs past the end of the file (truncated?)")
        self.pos += n
        return data

    def skip(self, n: int, what: str) -> None:
        if n < 0 or n > self.left():
            raise self.fail(f"{what} runs past the end of the file (truncated?)")
        self.fh.seek(n, 1)
        self.pos += n

    def num(self, code: str, what: str) -> Any:
        fmt = self.order + code
        return struct.unpack(fmt, self.read(struct.calcsize(fmt), what))[0]

    def string(self, what: str, limit: int | None = None, keep: int | None = None) -> str:
        """A GGUF string: at most ``limit`` bytes (else damage); decoded when ``keep`` is None
        or the string is at most ``keep`` bytes, else skipped and described by its length."""
        n = self.num("Q", f"the length of {what}")
        if limit is not None and n > limit:
            raise self.fail(f"{what} is {n} bytes long (at most {limit})")
        if keep is not None and n > keep:
            self.skip(n, what)
            return f"<{n} bytes>"
        raw = self.read(n, what)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise self.fail(f"{what} is not UTF-8") from None

    def count(self, n: int, least: int, what: str) -> int:
        """``n`` items of at least ``least`` bytes each must fit in what is left."""
        if n * least > self.left():
            raise self.fail(f"{what} says {n} items, more than the file can hold")
        return n


def _value(r: _Reader, vtype: int, what: str, depth: int = 0) -> Any:
    """Read one metadata value; arrays are skipped and summarised as ``{type, count}``."""
    if vtype not in _VALUE_TYPES:
        raise r.fail(f"{what} has the unknown value type {vtype}")
    _, code = _VALUE_TYPES[vtype]
    if code is not None:
        return r.num(code, what)
    if vtype == _STRING:
        return r.string(what, keep=SUMMARY_STRING)
    if depth >= MAX_ARRAY_DEPTH:
        raise r.fail(f"{what} nests arrays deeper than {MAX_ARRAY_DEPTH}")
    etype = r.num("I", f"the element type of {what}")
    n = r.num("Q", f"the length of {what}")
    if etype not in _VALUE_TYPES:
        raise r.fail(f"{what} has elements of the unknown type {etype}")
    ename, ecode = _VALUE_TYPES[etype]
    if ecode is not None:
        width = struct.calcsize(r.order + ecode)
        r.count(n, width, what)
        r.skip(n * width, what)
    else:
        r.count(n, 8 if etype == _STRING else 12, what)
        for _ in range(n):
            if etype == _STRING:
                r.string(f"an element of {what}", keep=0)
            else:
                _value(r, etype, f"an element of {what}", depth + 1)
    return {"type": f"array[{ename}]", "count": n}


def _byte_order(r: _Reader) -> tuple[str, int]:
    raw = r.read(4, "the version")
    little = struct.unpack("<I", raw)[0]
    big = struct.unpack(">I", raw)[0]
    if little in SUPPORTED_VERSIONS:
        return "<", little
    if big in SUPPORTED_VERSIONS:
        return ">", big
    version = little if little < 1 << 16 else big
    if version == 1:
        raise r.fail("GGUF version 1 is obsolete (32-bit counts); convert it with llama.cpp")
    raise r.fail(f"unsupported GGUF version {version} (expected 2 or 3)")


def check_gguf(path: Path) -> dict[str, Any]:
    """Read and check the GGUF header of ``path``; return its summary.

    Returns ``{format: "gguf", version, byte_order, tensor_count, metadata_kv_count,
    architecture, name, metadata (the summary keys present, long strings cut), alignment,
    data_offset, tensor_types: {ggml type: count}, unknown_tensor_types, size}``
    (``architecture``/``name`` None when absent).

    Raises IntegrityError (exit 5) naming the file for anything else: a wrong magic or
    version, a header that runs past the end of the file, an unknown value type, a tensor of
    more than 4 dimensions, a tensor whose data lies outside the file, a duplicated key.
    """
    path = Path(path)
    size = path.stat().st_size
    with open(path, "rb") as fh:
        r = _Reader(fh, size, path.name, "<")
        magic = fh.read(4)
        r.pos = len(magic)
        if magic != MAGIC:
            raise IntegrityError(
                f"{path.name} is not a GGUF file (magic {magic!r}, expected {MAGIC!r})"
            )
        r.order, version = _byte_order(r)
        tensor_count = r.num("Q", "the tensor count")
        kv_count = r.num("Q", "the metadata count")
        # The smallest key/value: an empty key (8) + type (4) + a one-byte value.
        r.count(kv_count, 13, "the metadata count")
        # The smallest tensor info: an empty name (8) + n_dims (4) + type (4) + offset (8).
        r.count(tensor_count, 24, "the tensor count")
        metadata: dict[str, Any] = {}
        seen: set[str] = set()
        for index in range(kv_count):
            key = r.string(f"metadata key #{index}", limit=MAX_KEY_BYTES)
            if key in seen:
                raise r.fail(f"the metadata key {key!r} appears twice")
            seen.add(key)
            vtype = r.num("I", f"the value type of {key!r}")
            value = _value(r, vtype, repr(key))
            if key in SUMMARY_KEYS:
                metadata[key] = value
        tensors = []
        for index in range(tensor_count):
            name = r.string(f"tensor name #{index}", limit=MAX_KEY_BYTES)
            n_dims = r.num("I", f"the rank of tensor {name!r}")
            if n_dims > MAX_DIMS:
                raise r.fail(f"tensor {name!r} has {n_dims} dimensions (ggml allows {MAX_DIMS})")
            dims = [r.num("Q", f"a dimension of tensor {name!r}") for _ in range(n_dims)]
            ggml_type = r.num("I", f"the type of tensor {name!r}")
            offset = r.num("Q", f"the offset of tensor {name!r}")
            tensors.append((name, dims, ggml_type, offset))
        header_end = r.pos
    alignment = metadata.get("general.alignment", DEFAULT_ALIGNMENT)
    if not isinstance(alignment, int) or alignment <= 0 or alignment & (alignment - 1):
        raise IntegrityError(f"{path.name}: general.alignment {alignment!r} is not a power of two")
    data_offset = -(-header_end // alignment) * alignment
    types: dict[str, int] = {}
    unknown: dict[str, int] = {}
    for name, dims, ggml_type, offset in tensors:
        known = GGML_TYPES.get(ggml_type)
        if known is None:
            unknown[str(ggml_type)] = unknown.get(str(ggml_type), 0) + 1
            continue
        type_name, block, block_bytes = known
        types[type_name] = types.get(type_name, 0) + 1
        elements = 1
        for d in dims:
            elements *= d
        if elements % block:
            raise IntegrityError(
                f"{path.name}: tensor {name!r} ({type_name}) has {elements} elements, "
                f"not a multiple of its block of {block}"
            )
        if offset % alignment:
            raise IntegrityError(f"{path.name}: tensor {name!r} is not aligned to {alignment}")
        end = data_offset + offset + elements // block * block_bytes
        if end > size:
            raise IntegrityError(
                f"{path.name}: tensor {name!r} ends at byte {end}, past the end of the "
                f"file ({size} bytes): truncated"
            )
    architecture = metadata.get("general.architecture")
    model_name = metadata.get("general.name")
    return {
        "format": "gguf",
        "version": version,
        "byte_order": "little" if r.order == "<" else "big",
        "tensor_count": tensor_count,
        "metadata_kv_count": kv_count,
        "architecture": architecture if isinstance(architecture, str) else None,
        "name": model_name if isinstance(model_name, str) else None,
        "metadata": metadata,
        "alignment": alignment,
        "data_offset": data_offset,
        "tensor_types": types,
        "unknown_tensor_types": unknown,
        "size": size,
    }


__all__ = ["GGML_TYPES", "check_gguf"]

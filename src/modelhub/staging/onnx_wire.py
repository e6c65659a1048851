"""Reading an ONNX file at the protobuf wire level, without parsing (or copying) its weights.

An ONNX file is one ``ModelProto`` message; its graph holds the weights as ``raw_data`` byte
fields of the initializer tensors, usually almost the whole file. Two questions modelhub asks
of a file it just wrote do not need those bytes decoded:

- which opset it imports (``read_opset``): the top-level ``opset_import`` entries;
- running it in onnxruntime for a parity check (``weights_by_reference``): a copy of the
  message in which each large initializer, instead of carrying its bytes, points at where
  they lie in the file itself (ONNX's external-data fields ``location``/``offset``/``length``).
  onnxruntime maps those ranges of the file instead of parsing and copying ~all of it
  (resnet18, 45 MB: ~2 ms to create a session instead of ~25 ms), and runs exactly the bytes
  that the file holds. Every other field, nodes and attributes included, is copied verbatim.

Field numbers are those of ``onnx.proto`` (ModelProto, GraphProto, TensorProto,
OperatorSetIdProto, StringStringEntryProto).
"""

from __future__ import annotations

import mmap
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

# ModelProto
_MODEL_OPSET_IMPORT, _MODEL_GRAPH = 8, 7
# GraphProto
_GRAPH_INITIALIZER = 5
# TensorProto
_TENSOR_RAW_DATA, _TENSOR_EXTERNAL_DATA, _TENSOR_DATA_LOCATION = 9, 13, 14
_EXTERNAL = 1  # TensorProto.DataLocation.EXTERNAL
# OperatorSetIdProto
_OPSET_DOMAIN, _OPSET_VERSION = 1, 2

_VARINT, _FIXED64, _BYTES, _FIXED32 = 0, 1, 2, 5

#: initializers smaller than this stay inline in a by-reference view (not worth a mapping)
BY_REFERENCE_MINIMUM = 4096


class WireError(ValueError):
    """The bytes are not a well-formed protobuf message."""


class Field(NamedTuple):
    """One field of a message: its number, wire type, and where it lies in the buffer."""

    number: int
    wire: int
    start: int  # first byte of the field (its key)
    body: int  # first byte of the value (of a length-delimited field: after its length)
    end: int  # one past the field's last byte


def _varint(buf: Any, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        try:
            byte = buf[pos]
        except IndexError:
            raise WireError("a varint runs past the end") from None
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7
        if shift > 63:
            raise WireError("varint too long")


def fields(buf: Any, start: int, end: int) -> Iterator[Field]:
    """The fields of the message occupying ``buf[start:end]``, in order."""
    pos = start
    while pos < end:
        first = pos
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        body = pos
        if wire == _VARINT:
            _, pos = _varint(buf, pos)
        elif wire == _FIXED64:
            pos += 8
        elif wire == _FIXED32:
            pos += 4
        elif wire == _BYTES:
            size, body = _varint(buf, pos)
            pos = body + size
        else:
            raise WireError(f"unsupported wire type {wire}")
        if pos > end:
            raise WireError("a field runs past the end of its message")
        yield Field(number, wire, first, body, pos)


def _encode_varint(value: int) -> bytes:
    out = bytearray()
    while True:
        low, value = value & 0x7F, value >> 7
        if not value:
            out.append(low)
            return bytes(out)
        out.append(low | 0x80)


def _bytes_field(number: int, payload: bytes) -> bytes:
    return _encode_varint(number << 3 | _BYTES) + _encode_varint(len(payload)) + payload


def _entry(key: str, value: str) -> bytes:
    """A StringStringEntryProto (key = 1, value = 2) as TensorProto.external_data."""
    body = _bytes_field(1, key.encode()) + _bytes_field(2, value.encode())
    return _bytes_field(_TENSOR_EXTERNAL_DATA, body)


def opset_in(buf: Any) -> int:
    """The highest default-domain (``""``/``ai.onnx``) opset a ModelProto in ``buf`` imports."""
    best = 0
    for top in fields(buf, 0, len(buf)):
        if top.number != _MODEL_OPSET_IMPORT or top.wire != _BYTES:
            continue
        domain, version = "", 0
        for f in fields(buf, top.body, top.end):
            if f.number == _OPSET_DOMAIN and f.wire == _BYTES:
                domain = bytes(buf[f.body : f.end]).decode("utf-8", "replace")
            elif f.number == _OPSET_VERSION and f.wire == _VARINT:
                version, _ = _varint(buf, f.body)
        if domain in ("", "ai.onnx"):
            best = max(best, version)
    return best


def _tensor_by_reference(buf: Any, tensor: Field, location: str, minimum: int) -> bytes | None:
    """The tensor's fields with its ``raw_data`` replaced by a reference into the file, or
    None to keep it as it is (small, no raw_data, or already external)."""
    kept: list[bytes] = []
    data: Field | None = None
    for f in fields(buf, tensor.body, tensor.end):
        if f.number in (_TENSOR_EXTERNAL_DATA, _TENSOR_DATA_LOCATION):
            return None
        if f.number == _TENSOR_RAW_DATA and f.wire == _BYTES and f.end - f.body >= minimum:
            data = f
        else:
            kept.append(bytes(buf[f.start : f.end]))
    if data is None:
        return None
    kept += [
        _entry("location", location),
        _entry("offset", str(data.body)),
        _entry("length", str(data.end - data.body)),
        _encode_varint(_TENSOR_DATA_LOCATION << 3 | _VARINT) + _encode_varint(_EXTERNAL),
    ]
    return b"".join(kept)


def _graph_by_reference(buf: Any, graph: Field, location: str, minimum: int) -> tuple[bytes, int]:
    parts: list[bytes] = []
    moved = 0
    for f in fields(buf, graph.body, graph.end):
        tensor = None
        if f.number == _GRAPH_INITIALIZER and f.wire == _BYTES:
            tensor = _tensor_by_reference(buf, f, location, minimum)
        if tensor is None:
            parts.append(bytes(buf[f.start : f.end]))
        else:
            parts.append(_bytes_field(_GRAPH_INITIALIZER, tensor))
            moved += 1
    return b"".join(parts), moved


def weights_by_reference(path: Path, minimum: int = BY_REFERENCE_MINIMUM) -> bytes | None:
    """A copy of the ModelProto in ``path`` whose large initializers reference their bytes in
    ``path`` itself (external data: location = the file's name, offset, length).

    Load it in onnxruntime with the file's folder as the external-data folder. None when no
    initializer would move (no large ``raw_data``, or the weights are external already), in
    which case the file itself is the cheaper thing to load. Raises WireError for a file that
    is not a well-formed message.
    """
    with open(path, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as buf:
        parts: list[bytes] = []
        moved = 0
        for top in fields(buf, 0, len(buf)):
            if top.number == _MODEL_GRAPH and top.wire == _BYTES:
                graph, moved = _graph_by_reference(buf, top, path.name, minimum)
                parts.append(_bytes_field(_MODEL_GRAPH, graph))
            else:
                parts.append(bytes(buf[top.start : top.end]))
    return b"".join(parts) if moved else None


__all__ = [
    "BY_REFERENCE_MINIMUM",
    "Field",
    "WireError",
    "fields",
    "opset_in",
    "weights_by_reference",
]

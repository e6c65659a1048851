"""File responses: HEAD, Range (206/416), strong ETag, conditional requests, sendfile.

Why not ``aiohttp.web.FileResponse`` as it is: it (1) derives the ETag from mtime and size and
overwrites any ETag the handler sets, while a mirror needs a content ETag (the sha256 the
manifest records: stable across copies of a store and what Hugging Face clients name cache
blobs by); (2) silently sends a ``.gz``/``.br`` sibling file with ``Content-Encoding`` when the
client accepts it, which breaks exact ``Content-Length`` and could send a file no manifest
lists; (3) evaluates ``If-Range`` only as a date, so an ETag validator is ignored and a resumed
download could splice two versions. This module keeps what FileResponse does well — the file
is opened and stat'ed off the event loop and the body goes out through ``loop.sendfile``
(``os.sendfile``, no Python-level copy) — and implements RFC 9110 sections 13 and 14 itself.
"""

from __future__ import annotations

import asyncio
import contextvars
import email.utils
import mimetypes
import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from typing import IO, Any

from aiohttp import hdrs, web

from .index import ServedFile

_CHUNK = 1 << 20
#: True while the access check asks a handler whether a request names a model it withholds:
#: every route that would send bytes answers a bare 200 instead (see :func:`probed`).
PROBE: contextvars.ContextVar[bool] = contextvars.ContextVar("modelhub_probe", default=False)
_CLOSING: set[asyncio.Future[None]] = set()


def not_found(headers: Mapping[str, str] | None = None, text: str = "") -> web.Response:
    """A 404 with no file content (an optional short text body)."""
    return web.Response(status=404, text=text or "Not Found", headers=dict(headers or {}))


def probed() -> web.Response:
    """What a byte-sending route answers under :data:`PROBE`: 200, no body, nothing opened."""
    return web.Response(status=200)


def quote_etag(value: str) -> str:
    """``value`` as a strong entity tag."""
    return f'"{value}"'


def _etags(header: str) -> list[tuple[bool, str]] | None:
    """Parse an If-Match / If-None-Match list into (weak, opaque) pairs; None for ``*``."""
    if header.strip() == "*":
        return None
    tags = []
    for raw in header.split(","):
        item = raw.strip()
        weak = item.startswith("W/")
        if weak:
            item = item[2:]
        if len(item) >= 2 and item[0] == item[-1] == '"':
            tags.append((weak, item[1:-1]))
    return tags


def _http_date(value: str) -> float | None:
    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return parsed.timestamp() if parsed is not None else None


@dataclass(frozen=True)
class _Range:
    start: int
    count: int


def parse_range(header: str, size: int) -> _Range | bool | None:
    """One ``bytes=`` range against a representation of ``size`` bytes.

    Returns the range, None when the header must be ignored (syntax we do not honour, or
    several ranges: the full body is then sent), or False when it is unsatisfiable (416).
    """
    unit, _, spec = header.partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None
    first, dash, last = spec.strip().partition("-")
    first, last = first.strip(), last.strip()
    if not dash or not (first.isdigit() or first == "") or not (last.isdigit() or last == ""):
        return None
    if first == "":
        if last == "":
            return None
        suffix = int(last)
        if suffix == 0 or size == 0:
            return False
        start = max(0, size - suffix)
        return _Range(start, size - start)
    start = int(first)
    if last and int(last) < start:
        return None
    if start >= size:
        return False
    end = min(int(last), size - 1) if last else size - 1
    return _Range(start, end - start + 1)


def _open(path: os.PathLike[str] | str, size: int) -> tuple[IO[bytes], os.stat_result] | None:
    try:
        fobj = open(path, "rb")  # noqa: SIM115 - closed by the caller
    except OSError:
        return None
    st = os.fstat(fobj.fileno())
    if not stat.S_ISREG(st.st_mode) or st.st_size != size:
        fobj.close()
        return None
    return fobj, st


def _close_later(loop: asyncio.AbstractEventLoop, fobj: IO[bytes]) -> None:
    future = loop.run_in_executor(None, fobj.close)
    _CLOSING.add(future)
    future.add_done_callback(_CLOSING.discard)


# Model files: mimetypes guesses nonsense for some (".pt" → a SNES page table).
_BINARY_SUFFIXES = (
    ".pt",
    ".pth",
    ".bin",
    ".h5",
    ".hdf5",
    ".keras",
    ".onnx",
    ".safetensors",
    ".jit",
    ".pb",
    ".ckpt",
    ".tflite",
    ".msgpack",
    ".gguf",
)


def _content_type(name: str) -> str:
    if name.lower().endswith(_BINARY_SUFFIXES):
        return "application/octet-stream"
    guessed, encoding = mimetypes.guess_type(name, strict=False)
    if encoding or not guessed:
        return "application/octet-stream"
    return guessed


class SendFileResponse(web.StreamResponse):
    """A response whose body is ``count`` bytes of an open file from ``offset``, by sendfile."""

    def __init__(self, fobj: IO[bytes], offset: int, count: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._fobj = fobj
        self._offset = offset
        self._count = count

    async def _fallback(self, writer: Any) -> None:
        loop = asyncio.get_running_loop()
        remaining, offset = self._count, self._offset
        while remaining > 0:
            chunk = await loop.run_in_executor(
                None, os.pread, self._fobj.fileno(), min(_CHUNK, remaining), offset
            )
            if not chunk:
                raise ConnectionResetError("file shrank while being sent")
            await writer.write(chunk)
            remaining -= len(chunk)
            offset += len(chunk)

    async def prepare(self, request: web.BaseRequest) -> Any:
        loop = asyncio.get_running_loop()
        try:
            writer = await super().prepare(request)
            if writer is None or self._count == 0 or request.method == hdrs.METH_HEAD:
                return writer
            transport = request.transport
            if transport is None:
                raise ConnectionResetError("connection lost")
            try:
                await loop.sendfile(transport, self._fobj, self._offset, self._count)
                # Bytes sent by sendfile bypass the writer: count them for the access log.
                if hasattr(writer, "output_size"):
                    writer.output_size += self._count
            except NotImplementedError:
                await self._fallback(writer)
            await super().write_eof()
            return writer
        finally:
            _close_later(loop, self._fobj)


async def send_file(
    request: web.Request,
    served: ServedFile,
    *,
    etag: str | None = None,
    headers: Mapping[str, str] | None = None,
    content_type: str | None = None,
) -> web.StreamResponse:
    """Answer ``request`` (GET or HEAD) with ``served``, honouring validators and Range.

    ``etag`` defaults to the file's sha256. The file must still have the size the manifest
    records; otherwise (missing, replaced, not a regular file) the answer is a 404.
    """
    if PROBE.get():
        return probed()
    loop = asyncio.get_running_loop()
    opened = await loop.run_in_executor(None, _open, served.path, served.size)
    if opened is None:
        return not_found(headers)
    fobj, st = opened
    try:
        return _respond(request, served, fobj, st, etag, headers, content_type)
    except BaseException:
        _close_later(loop, fobj)
        raise


def _respond(
    request: web.Request,
    served: ServedFile,
    fobj: IO[bytes],
    st: os.stat_result,
    etag: str | None,
    headers: Mapping[str, str] | None,
    content_type: str | None,
) -> web.StreamResponse:
    loop = asyncio.get_running_loop()
    tag = etag or served.sha256
    size = served.size
    mtime = int(st.st_mtime)
    out = dict(headers or {})
    out[hdrs.ETAG] = quote_etag(tag)
    out[hdrs.LAST_MODIFIED] = email.utils.formatdate(mtime, usegmt=True)
    out[hdrs.ACCEPT_RANGES] = "bytes"

    def bare(status: int) -> web.StreamResponse:
        _close_later(loop, fobj)
        return web.Response(status=status, headers=out)

    # RFC 9110 13.2.2: If-Match, If-Unmodified-Since, If-None-Match, If-Modified-Since, If-Range.
    if_match = request.headers.get(hdrs.IF_MATCH)
    if if_match is not None:
        tags = _etags(if_match)
        if tags is not None and not any(not weak and t == tag for weak, t in tags):
            return bare(412)
    elif (since := request.headers.get(hdrs.IF_UNMODIFIED_SINCE)) is not None:
        when = _http_date(since)
        if when is not None and mtime > when:
            return bare(412)
    if_none_match = request.headers.get(hdrs.IF_NONE_MATCH)
    if if_none_match is not None:
        tags = _etags(if_none_match)
        if tags is None or any(t == tag for _, t in tags):
            return bare(304)
    elif (since := request.headers.get(hdrs.IF_MODIFIED_SINCE)) is not None:
        when = _http_date(since)
        if when is not None and mtime <= when:
            return bare(304)

    status, offset, count = 200, 0, size
    range_header = request.headers.get(hdrs.RANGE)
    if range_header is not None and request.method == hdrs.METH_GET:
        if_range = request.headers.get(hdrs.IF_RANGE)
        honour = True
        if if_range is not None:
            value = if_range.strip()
            if value.startswith(('"', "W/")):
                honour = value == quote_etag(tag)
            else:
                when = _http_date(value)
                honour = when is not None and int(when) == mtime
        if honour:
            rng = parse_range(range_header, size)
            if rng is False:
                out[hdrs.CONTENT_RANGE] = f"bytes */{size}"
                _close_later(loop, fobj)
                return web.Response(status=416, headers=out)
            if isinstance(rng, _Range):
                status, offset, count = 206, rng.start, rng.count
                out[hdrs.CONTENT_RANGE] = f"bytes {offset}-{offset + count - 1}/{size}"

    out[hdrs.CONTENT_TYPE] = content_type or _content_type(served.rel)
    response = SendFileResponse(fobj, offset, count, status=status, headers=out)
    response.content_length = count
    return response

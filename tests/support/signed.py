"""Signed storage URLs that expire mid-download: a real origin + storage pair on 127.0.0.1.

GitHub release assets, Hugging Face's storage bridge, S3 / GCS presigned URLs all work the same
way: the URL a user has (the *origin*) answers ``302`` with a ``Location`` on another host whose
query carries an expiry time and a signature; the *storage* host checks both when a request
starts (a response already flowing is not cut) and refuses the request once the expiry has
passed: 403 (S3 ``AccessDenied: Request has expired``, Azure, GitHub, the Hub's bridge) or 400
(GCS ``ExpiredToken``). A client that keeps asking the redirect's URL for more ranges fails as
soon as the signature is older than its lifetime; one that goes back to the origin gets a fresh
one. ::

    with SignedURLs({"/model.bin": data}, lifetime=1.0, rate=6 * MiB) as s:
        download_file(s.url("/model.bin"), part, connections=4)
        assert s.storage.expired, "the download outlived a signature"

- :class:`SignedStorage` serves ``/signed/<path>?expires=<ms>&sig=<hmac>`` (plus ``q=`` holding
  the original query, if any): single ``Range`` requests (206 / 416), ``If-Range``, a strong
  ``ETag`` (the quoted sha256, the same for every signature of a file), each response paced at
  ``rate`` bytes/s so a download outlives signatures, and optionally cut after ``cut_after``
  bytes (a link that drops). It serves ``files``, or forwards to ``upstream`` (another test
  server, or ``modelhub serve``): :meth:`SignedStorage.sign` gives a fresh signed URL for any
  path, so a fault proxy can hand out signed URLs in front of the mirror.
- :class:`SignedOrigin` answers every GET/HEAD with ``302`` to a freshly signed URL; with
  ``token`` it wants ``Authorization: Bearer <token>`` (401 without, 403 with another), and
  ``refuse_after`` makes it deny (403) every request after that many (a revoked token).

Both record every request (:class:`Hit`): what was asked, what was answered, the body bytes
really written.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import http.server
import os
import re
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self
from urllib.parse import parse_qs, quote, unquote, urlencode, urlsplit

from tests.support.httpserver import DaemonHTTPServer, ThreadedServer

__all__ = ["Hit", "SignedOrigin", "SignedStorage", "SignedURLs"]

_RANGE = re.compile(r"^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$", re.IGNORECASE)
_STEP = 64 * 1024
_HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "proxy-authorization", "te", "trailer", "transfer-encoding"}
)
_LAST_MODIFIED = "Tue, 01 Dec 2026 00:00:00 GMT"


@dataclass
class Hit:
    """One request as a server saw it (header names lower-cased) and what it answered."""

    method: str
    path: str  # without the query
    query: str
    headers: dict[str, str]
    status: int = 0
    sent: int = 0  # body bytes written to the client
    expired: bool = False  # storage: refused because the signature's time had passed


class _Server(DaemonHTTPServer):
    request_queue_size = 64
    owner: Any


class _Base(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: object) -> None:
        pass  # the hit log is the record

    def do_GET(self) -> None:
        self._handle()

    def do_HEAD(self) -> None:
        self._handle()

    def _handle(self) -> None:
        raise NotImplementedError

    def _hit(self) -> Hit:
        parts = urlsplit(self.path)
        headers = {k.lower(): v for k, v in self.headers.items()}
        hit = Hit(self.command, parts.path, parts.query, headers)
        self.server.owner._record(hit)
        return hit

    def _reply(self, hit: Hit, status: int, headers: Mapping[str, str], body: bytes = b"") -> None:
        hit.status = status
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body and self.command != "HEAD":
            self.wfile.write(body)
            hit.sent = len(body)


class _Recording(ThreadedServer):
    def _start_log(self) -> None:
        self._lock = threading.Lock()
        self.hits: list[Hit] = []

    def _record(self, hit: Hit) -> None:
        with self._lock:
            self.hits.append(hit)

    def gets(self, path: str | None = None) -> list[Hit]:
        """The GET requests so far (for ``path`` only, when given)."""
        with self._lock:
            return [h for h in self.hits if h.method == "GET" and path in (None, h.path)]


# --- storage -------------------------------------------------------------------------------------
class _StorageHandler(_Base):
    def _handle(self) -> None:
        owner: SignedStorage = self.server.owner
        hit = self._hit()
        if not hit.path.startswith("/signed/"):
            self._reply(hit, 404, {}, b"not found\n")
            return
        query = parse_qs(hit.query)
        path = "/" + unquote(hit.path[len("/signed/") :])
        original = query.get("q", [""])[0]
        expires = query.get("expires", [""])[0]
        sig = query.get("sig", [""])[0]
        if not hmac.compare_digest(owner._signature(path, original, expires), sig):
            self._error(hit, 403, "SignatureDoesNotMatch", "the signature does not match")
            return
        if time.time() * 1000 > int(expires):
            hit.expired = True
            code = "ExpiredToken" if owner.expired_status == 400 else "AccessDenied"
            self._error(hit, owner.expired_status, code, "Request has expired")
            return
        if not owner._admit():
            self._error(hit, 403, "AccessDenied", "Access Denied")
            return
        target = path + (f"?{original}" if original else "")
        if owner.upstream is not None:
            self._forward(hit, target)
        else:
            self._file(hit, path)

    def _error(self, hit: Hit, status: int, code: str, message: str) -> None:
        body = f"<Error><Code>{code}</Code><Message>{message}</Message></Error>\n".encode()
        self._reply(hit, status, {"Content-Type": "application/xml"}, body)

    def _file(self, hit: Hit, path: str) -> None:
        owner: SignedStorage = self.server.owner
        entry = owner._files.get(path)
        if entry is None:
            self._error(hit, 404, "NoSuchKey", "The specified key does not exist.")
            return
        data, etag = entry
        size = len(data) if isinstance(data, bytes) else data.stat().st_size
        start, end, status = 0, size, 200
        rng, if_range = hit.headers.get("range"), hit.headers.get("if-range")
        if rng and (if_range is None or if_range in (etag, _LAST_MODIFIED)):
            m = _RANGE.match(rng)
            if m and (m.group(1) or m.group(2)):
                if m.group(1):
                    start = int(m.group(1))
                    end = min(int(m.group(2)) + 1, size) if m.group(2) else size
                else:
                    start = max(0, size - int(m.group(2)))
                if start >= size or end <= start:
                    self._reply(hit, 416, {"Content-Range": f"bytes */{size}"})
                    return
                status = 206
        headers = {
            "Content-Type": "application/octet-stream",
            "ETag": etag,
            "Last-Modified": _LAST_MODIFIED,
            "Accept-Ranges": "bytes",
            "Content-Length": str(end - start),
        }
        if status == 206:
            headers["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
        hit.status = status
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self._paced(hit, _slices(data, start, end), end - start)

    def _forward(self, hit: Hit, target: str) -> None:
        owner: SignedStorage = self.server.owner
        assert owner.upstream is not None
        up = urlsplit(owner.upstream)
        conn = http.client.HTTPConnection(up.hostname or "127.0.0.1", up.port, timeout=60)
        try:
            conn.putrequest(self.command, up.path.rstrip("/") + target, skip_accept_encoding=True)
            for name, value in self.headers.items():
                if name.lower() not in _HOP_BY_HOP and name.lower() != "host":
                    conn.putheader(name, value)
            conn.endheaders()
            resp = conn.getresponse()
            hit.status = resp.status
            self.send_response(resp.status)
            length = resp.getheader("Content-Length")
            for name, value in resp.getheaders():
                if name.lower() not in _HOP_BY_HOP:
                    self.send_header(name, value)
            if length is None:
                self.send_header("Connection", "close")
                self.close_connection = True
            self.end_headers()
            if self.command != "HEAD" and resp.status not in (204, 304):
                self._paced(hit, iter(lambda: resp.read(_STEP), b""), int(length or -1))
        except OSError:
            self.close_connection = True
        finally:
            conn.close()

    def _paced(self, hit: Hit, pieces: Iterator[bytes], length: int) -> None:
        """Write ``pieces`` at the storage's rate; cut the connection after ``cut_after``."""
        owner: SignedStorage = self.server.owner
        began = time.monotonic()
        limit = owner.cut_after if owner.cut_after is not None else -1
        try:
            for piece in pieces:
                if limit >= 0 and hit.sent + len(piece) > limit:
                    piece = piece[: limit - hit.sent]
                self.wfile.write(piece)
                hit.sent += len(piece)
                owner._count(len(piece))
                if limit >= 0 and hit.sent >= limit and (length < 0 or hit.sent < length):
                    self.close_connection = True  # the link drops mid-body
                    return
                if owner.rate:
                    ahead = began + hit.sent / owner.rate - time.monotonic()
                    if ahead > 0 and owner._stopping.wait(ahead):
                        self.close_connection = True
                        return
        except OSError:
            self.close_connection = True


def _slices(data: bytes | Path, start: int, end: int) -> Iterator[bytes]:
    if isinstance(data, bytes):
        view = memoryview(data)
        for pos in range(start, end, _STEP):
            yield bytes(view[pos : min(end, pos + _STEP)])
        return
    with open(data, "rb") as f:
        f.seek(start)
        pos = start
        while pos < end:
            block = f.read(min(_STEP, end - pos))
            if not block:
                return
            pos += len(block)
            yield block


class SignedStorage(_Recording):
    """The storage host: serves signed URLs until they expire (see the module docstring).

    ``lifetime`` seconds from signing; ``rate`` bytes/s per response (None: as fast as it goes);
    ``cut_after``: each response closes the connection after that many body bytes;
    ``expired_status``: 403 (S3, Azure, GitHub, the Hub) or 400 (GCS); ``refuse_after``: after
    that many admitted requests every request is denied (403), expired or not.
    """

    _thread_name = "signed-storage"

    def __init__(
        self,
        files: Mapping[str, bytes | Path] | None = None,
        *,
        upstream: str | None = None,
        lifetime: float = 2.0,
        rate: float | None = None,
        cut_after: int | None = None,
        expired_status: int = 403,
        refuse_after: int | None = None,
    ) -> None:
        self.upstream = upstream.rstrip("/") if upstream else None
        self.lifetime = lifetime
        self.rate = rate
        self.cut_after = cut_after
        self.expired_status = expired_status
        self.refuse_after = refuse_after
        self._key = os.urandom(32)
        self._files: dict[str, tuple[bytes | Path, str]] = {}
        self._admitted = 0
        self._bytes = 0
        self._start_log()
        self._listen(_Server, _StorageHandler)
        for path, data in (files or {}).items():
            self.add(path, data)

    def add(self, path: str, data: bytes | Path) -> None:
        """Store ``data`` under ``path`` (served only through signed URLs)."""
        digest = hashlib.sha256()
        if isinstance(data, bytes):
            digest.update(data)
        else:
            with open(data, "rb") as f:
                while block := f.read(4 << 20):
                    digest.update(block)
        with self._lock:
            self._files[path] = (data, f'"{digest.hexdigest()}"')

    def sign(self, target: str, lifetime: float | None = None) -> str:
        """A signed URL for ``target`` (a path, with its query if any), valid ``lifetime`` s."""
        path, _, original = target.partition("?")
        seconds = self.lifetime if lifetime is None else lifetime
        expires = str(int((time.time() + seconds) * 1000))
        query = {"expires": expires, "sig": self._signature(path, original, expires)}
        if original:
            query["q"] = original
        return f"{self.url}/signed{quote(path)}?{urlencode(query)}"

    @property
    def expired(self) -> list[Hit]:
        """The requests refused because their signature had expired."""
        with self._lock:
            return [h for h in self.hits if h.expired]

    @property
    def bytes_sent(self) -> int:
        """Body bytes of files (or upstream bodies) written so far, error bodies not counted."""
        with self._lock:
            return self._bytes

    def _signature(self, path: str, original: str, expires: str) -> str:
        message = f"{path}\n{original}\n{expires}".encode()
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()

    def _admit(self) -> bool:
        with self._lock:
            if self.refuse_after is not None and self._admitted >= self.refuse_after:
                return False
            self._admitted += 1
            return True

    def _count(self, n: int) -> None:
        with self._lock:
            self._bytes += n


# --- origin --------------------------------------------------------------------------------------
class _OriginHandler(_Base):
    def _handle(self) -> None:
        owner: SignedOrigin = self.server.owner
        hit = self._hit()
        if owner.token is not None:
            auth = hit.headers.get("authorization")
            if auth is None:
                self._reply(hit, 401, {"WWW-Authenticate": "Bearer"}, b"token required\n")
                return
            if auth != f"Bearer {owner.token}":
                self._reply(hit, 403, {}, b"bad credentials\n")
                return
        if not owner._admit():
            self._reply(hit, 403, {}, b"access denied\n")
            return
        target = hit.path + (f"?{hit.query}" if hit.query else "")
        self._reply(hit, 302, {"Location": owner.storage.sign(target)})


class SignedOrigin(_Recording):
    """The URL users have: ``302`` to a freshly signed storage URL for every request."""

    _thread_name = "signed-origin"

    def __init__(
        self,
        storage: SignedStorage,
        *,
        token: str | None = None,
        refuse_after: int | None = None,
    ) -> None:
        self.storage = storage
        self.token = token
        self.refuse_after = refuse_after
        self._admitted = 0
        self._start_log()
        self._listen(_Server, _OriginHandler)

    def _admit(self) -> bool:
        with self._lock:
            if self.refuse_after is not None and self._admitted >= self.refuse_after:
                return False
            self._admitted += 1
            return True


class SignedURLs:
    """An origin and its storage, started and stopped together. Context manager.

    Keyword arguments go to :class:`SignedStorage`, except ``token`` and ``origin_refuse_after``
    (:class:`SignedOrigin`'s ``token`` and ``refuse_after``).
    """

    def __init__(
        self,
        files: Mapping[str, bytes | Path] | None = None,
        *,
        token: str | None = None,
        origin_refuse_after: int | None = None,
        **storage: Any,
    ) -> None:
        self.storage = SignedStorage(files, **storage)
        self.origin = SignedOrigin(self.storage, token=token, refuse_after=origin_refuse_after)

    def url(self, path: str) -> str:
        """The origin URL of ``path`` (what a user would download)."""
        return self.origin.url + path

    def __enter__(self) -> Self:
        self.storage.start()
        self.origin.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.origin.stop()
        self.storage.stop()

"""A fault-injecting reverse proxy: a real HTTP/1.1 server on 127.0.0.1 in front of the mirror.

Every request is forwarded to ``upstream`` (``modelhub serve``'s URL) with its method, path,
query and headers, ``Host`` included (so the mirror's absolute links, e.g. Hugging Face tree
pages, keep pointing at the proxy). The response goes back as the mirror sent it, unless a
:class:`ProxyFault` matches the request; then the proxy misbehaves the way networks and servers
do::

    reset        ``after`` body bytes, then a TCP RST (SO_LINGER 0): a connection cut mid-body
    status       a ``status`` reply (``Retry-After`` when given) instead of forwarding
    wrong_bytes  the mirror's body with one byte flipped (same length, same headers)
    truncate     ``after`` body bytes under the full Content-Length, then a clean close
    stall        headers and ``after`` body bytes, then silence for ``seconds``
    redirect     302 to ``location`` + the same path (the mirror's X-* headers kept, as the Hub
                 keeps X-Repo-Commit/X-Linked-Etag on its CDN redirects)
    expire       302 to a signed URL of the same path on this proxy (``?x-signed-expires=``,
                 as S3 / GCS / the Hub's storage put the expiry in the query) that is served
                 for ``seconds``, then refused with 403 ("Request has expired"): a request
                 already flowing is not cut, as storage hosts check a signature when a request
                 starts. Only unsigned requests are redirected; the other faults apply to
                 signed ones too (they are logged under the unsigned path).

A ``reset`` is sent once the bytes before it have left the proxy's socket (the client's kernel
acknowledged them; at most 10 s): a TCP RST discards whatever is still queued on the sending
side, so those bytes would be counted as sent but never reach the client.

Each exchange is logged (:attr:`FaultProxy.log`) with the body bytes the proxy really wrote to
the client socket, so a test measures what a client fetched where the network would: between
the two. Nothing is mocked: the client is modelhub's transfer or a hub's own SDK, the server is
the mirror.
"""

from __future__ import annotations

import array
import fcntl
import fnmatch
import http.client
import http.server
import re
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from tests.support.httpserver import DaemonHTTPServer, ThreadedServer

__all__ = ["Exchange", "FaultProxy", "ProxyFault", "matches"]

_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
    }
)
_STEP = 64 * 1024
KINDS = ("reset", "status", "wrong_bytes", "truncate", "stall", "redirect", "expire")
SIGNED = "x-signed-expires"
_TIOCOUTQ = 0x5411  # SIOCOUTQ: bytes in a TCP socket's send queue (Linux)
_SIGNED_QUERY = re.compile(r"[?&]" + SIGNED + r"=(\d+)$")


def matches(pattern: str, path: str) -> bool:
    """``pattern`` with ``*`` is a glob over the whole path (query included); else a substring."""
    return fnmatch.fnmatchcase(path, pattern) if "*" in pattern else pattern in path


@dataclass
class ProxyFault:
    """One misbehaviour for the next ``times`` requests whose path :func:`matches` ``match``.

    ``times`` -1 means every matching request. Only requests whose method is in ``methods``
    match (body faults make no sense on HEAD).
    """

    kind: str
    match: str
    times: int = 1
    after: int = 0
    status: int = 503
    retry_after: str | None = None
    seconds: float = 30.0
    location: str | None = None
    methods: tuple[str, ...] = ("GET",)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown fault {self.kind!r}; expected one of {', '.join(KINDS)}")


@dataclass
class Exchange:
    """One request as the proxy saw it and what it answered (header names lower-cased)."""

    method: str
    path: str
    headers: dict[str, str]
    started: float  # time.monotonic()
    status: int = 0
    sent: int = 0  # body bytes written to the client
    fault: str | None = None
    length: int | None = None  # Content-Length announced to the client
    signed: bool = False  # asked through a signed URL of an ``expire`` fault
    done: threading.Event = field(default_factory=threading.Event, repr=False)


class _Server(DaemonHTTPServer):
    request_queue_size = 128
    owner: FaultProxy


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: object) -> None:
        pass  # the exchange log is the record

    def do_GET(self) -> None:
        self._proxy()

    def do_HEAD(self) -> None:
        self._proxy()

    def do_POST(self) -> None:  # RPCs (Kaggle's): the body is read here and sent on
        self._proxy()

    # - forwarding -
    def _proxy(self) -> None:
        owner = self.server.owner
        headers = {k.lower(): v for k, v in self.headers.items()}
        length = headers.get("content-length", "0")
        self.body = self.rfile.read(int(length)) if length.isdigit() and int(length) else b""
        signed = _SIGNED_QUERY.search(self.path)
        if signed:
            self.path = self.path[: signed.start()]  # what the mirror is asked for
        ex = Exchange(self.command, self.path, headers, time.monotonic(), signed=bool(signed))
        owner._record(ex)
        try:
            if signed and time.time() * 1000 > int(signed.group(1)):
                ex.fault = "expired"
                self._reply(ex, 403, {}, b"AccessDenied: Request has expired\n")
                return
            fault = owner._take(self.command, self.path, bool(signed))
            ex.fault = fault.kind if fault else None
            if fault is not None and fault.kind == "expire":
                expires = int((time.time() + fault.seconds) * 1000)
                sep = "&" if "?" in self.path else "?"
                location = f"{self.path}{sep}{SIGNED}={expires}"
                self._reply(ex, 302, {"Location": location}, b"")
                return
            if fault is not None and fault.kind == "status":
                extra = {"Retry-After": fault.retry_after} if fault.retry_after else {}
                self._reply(ex, fault.status, extra, f"injected {fault.status}\n".encode())
                return
            if fault is not None and fault.kind == "redirect":
                self._redirect(ex, fault)
                return
            try:
                conn, resp = self._upstream(self.command)
            except OSError as exc:
                self._reply(ex, 502, {}, f"proxy: upstream unreachable: {exc}\n".encode())
                return
            try:
                self._relay(ex, resp, fault)
            finally:
                conn.close()
        finally:
            ex.done.set()

    def _upstream(self, method: str) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
        up = urlsplit(self.server.owner.upstream)
        conn = http.client.HTTPConnection(up.hostname, up.port, timeout=60)
        forward = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
        conn.putrequest(method, self.path, skip_host=True, skip_accept_encoding=True)
        for name, value in forward.items():
            conn.putheader(name, value)
        conn.endheaders(getattr(self, "body", b"") if method == self.command else None)
        return conn, conn.getresponse()

    def _reply(self, ex: Exchange, status: int, headers: dict[str, str], body: bytes) -> None:
        ex.status, ex.length = status, len(body)
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD" and body:
            self.wfile.write(body)
            ex.sent = len(body)

    def _redirect(self, ex: Exchange, fault: ProxyFault) -> None:
        assert fault.location is not None
        kept: dict[str, str] = {}
        try:
            conn, resp = self._upstream("HEAD")
            try:
                resp.read()
                for name, value in resp.getheaders():
                    if name.lower().startswith("x-") or name.lower() == "etag":
                        kept[name] = value
            finally:
                conn.close()
        except OSError:
            pass
        kept["Location"] = fault.location.rstrip("/") + self.path
        self._reply(ex, 302, kept, b"")

    def _relay(
        self, ex: Exchange, resp: http.client.HTTPResponse, fault: ProxyFault | None
    ) -> None:
        ex.status = resp.status
        length = resp.getheader("Content-Length")
        ex.length = int(length) if length is not None and length.isdigit() else None
        self.send_response(resp.status)
        for name, value in resp.getheaders():
            if name.lower() not in _HOP_BY_HOP:
                self.send_header(name, value)
        if ex.length is None:
            # A streamed (chunked) upstream body: close-delimited towards the client.
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        if self.command == "HEAD" or resp.status in (204, 304):
            return
        limit = None
        if fault is not None and fault.kind in ("reset", "truncate", "stall"):
            limit = fault.after
        flip_at = (ex.length or 0) // 2 if fault is not None and fault.kind == "wrong_bytes" else -1
        pos = 0
        try:
            while limit is None or pos < limit:
                want = _STEP if limit is None else min(_STEP, limit - pos)
                chunk = resp.read(want)
                if not chunk:
                    break
                if pos <= flip_at < pos + len(chunk):
                    i = flip_at - pos
                    chunk = chunk[:i] + bytes([chunk[i] ^ 0xFF]) + chunk[i + 1 :]
                self.wfile.write(chunk)
                pos += len(chunk)
                ex.sent = pos
            self.wfile.flush()
        except OSError:  # the client went away
            self.close_connection = True
            return
        if limit is None:
            return
        self.close_connection = True
        assert fault is not None
        if fault.kind == "stall":
            self.server.owner._stopping.wait(fault.seconds)
        elif fault.kind == "reset":
            ex.sent -= _drain(self.connection, self.server.owner._stopping)
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def _drain(sock: socket.socket, stopping: threading.Event, limit: float = 10.0) -> int:
    """Wait until ``sock``'s send queue is empty (at most ``limit`` s); return what is left."""
    left = array.array("i", [0])
    deadline = time.monotonic() + limit
    while True:
        try:
            fcntl.ioctl(sock.fileno(), _TIOCOUTQ, left)
        except OSError:
            return 0
        if not left[0] or time.monotonic() > deadline or stopping.wait(0.005):
            return left[0]


class FaultProxy(ThreadedServer):
    """The proxy, on a random free port of 127.0.0.1. Context manager; ``url`` once started."""

    _thread_name = "fault-proxy"

    def __init__(self, upstream: str, host: str = "127.0.0.1") -> None:
        self.upstream = upstream.rstrip("/")
        self.faults: list[ProxyFault] = []
        self.log: list[Exchange] = []
        self._lock = threading.Lock()
        self._listen(_Server, _Handler, host)

    # - faults -
    def add(self, kind: str, match: str, **kwargs: object) -> ProxyFault:
        """Arm a fault (see :class:`ProxyFault`); returns it."""
        fault = ProxyFault(kind, match, **kwargs)  # type: ignore[arg-type]
        with self._lock:
            self.faults.append(fault)
        return fault

    def clear(self) -> None:
        """Disarm every fault."""
        with self._lock:
            self.faults.clear()

    def _take(self, method: str, path: str, signed: bool = False) -> ProxyFault | None:
        with self._lock:
            # An unsigned request that an ``expire`` fault matches is redirected first.
            ordered = sorted(self.faults, key=lambda f: f.kind != "expire")
            for fault in ordered:
                if (
                    fault.times == 0
                    or method not in fault.methods
                    or not matches(fault.match, path)
                    or (signed and fault.kind == "expire")
                ):
                    continue
                if fault.times > 0:
                    fault.times -= 1
                    if fault.times == 0:
                        self.faults.remove(fault)
                return fault
        return None

    # - observation -
    def _record(self, ex: Exchange) -> None:
        with self._lock:
            self.log.append(ex)

    def exchanges(self, match: str = "", method: str | None = None) -> list[Exchange]:
        """Logged exchanges whose path :func:`matches` ``match`` (and of ``method`` if given)."""
        with self._lock:
            return [
                e
                for e in self.log
                if matches(match, e.path) and (method is None or e.method == method)
            ]

    def sent(self, match: str = "") -> int:
        """Body bytes sent to clients for paths that :func:`matches` ``match``."""
        return sum(e.sent for e in self.exchanges(match))

    def wait_sent(self, match: str, at_least: int, timeout: float = 60.0) -> bool:
        """Wait until ``at_least`` body bytes went out for ``match``; False on timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.sent(match) >= at_least:
                return True
            time.sleep(0.01)
        return False

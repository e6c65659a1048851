"""A real HTTP/1.1 server on 127.0.0.1 for tests, with fault injection and request recording.

Usage::

    with HTTPTestServer({"/model.bin": data}) as server:
        server.faults.append(Fault("drop", after=1 << 20))
        download_file(server.url + "/model.bin", part)
        assert server.requests[-1].headers["range"] == "bytes=1048576-"

Files are served with ETag (the quoted sha256 of the content), Last-Modified, Accept-Ranges,
single ``Range: bytes=a-b`` / ``a-`` / ``-n`` requests (206, or 416 when unsatisfiable) and
``If-Range``. Path-backed files are streamed with ``sendfile``, never loaded in memory. The
server also accepts absolute-URI request lines, so it can stand in for an HTTP proxy.
"""

from __future__ import annotations

import email.utils
import hashlib
import http.server
import re
import socket
import struct
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, Self
from urllib.parse import urlsplit

__all__ = ["Fault", "HTTPTestServer", "RecordedRequest"]

_FLIP = bytes(b ^ 0xFF for b in range(256))  # "wrong_bytes": same length, every byte different
_RANGE = re.compile(r"^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$", re.IGNORECASE)
_STEP = 1 << 20


@dataclass
class Fault:
    """One injected misbehaviour, applied to the next ``times`` matching requests.

    kind: "drop" (close the connection after ``after`` body bytes), "status" (reply ``status``
    with an optional ``Retry-After: retry_after``), "wrong_bytes" (different bytes, same length),
    "ignore_range" (always 200 with the full body), "stall" (headers + ``after`` bytes, then sleep
    ``seconds``), "truncate" (``after`` bytes under the full Content-Length, then a clean close),
    "reset" (like drop, but with a TCP RST: data still in flight may be lost).
    """

    kind: str
    times: int = 1  # -1 = forever
    after: int = 0
    status: int = 503
    retry_after: str | None = None
    seconds: float = 30.0
    path: str | None = None  # only requests for this path (None = any)


class RecordedRequest(NamedTuple):
    """A request as the server saw it (header names lower-cased)."""

    method: str
    path: str
    headers: dict[str, str]


@dataclass
class _Entry:
    data: bytes | Path
    size: int
    etag: str
    last_modified: str
    headers: dict[str, str] = field(default_factory=dict)


def _sha256_of(data: bytes | Path) -> str:
    if isinstance(data, bytes):
        return hashlib.sha256(data).hexdigest()
    h = hashlib.sha256()
    with open(data, "rb") as f:
        while chunk := f.read(4 << 20):
            h.update(chunk)
    return h.hexdigest()


class DaemonHTTPServer(http.server.ThreadingHTTPServer):
    """One daemon thread per connection; stopping never waits for handlers (stalls)."""

    daemon_threads = True
    block_on_close = False


class _Server(DaemonHTTPServer):
    request_queue_size = 64
    owner: HTTPTestServer


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def setup(self) -> None:
        super().setup()
        self.server.owner._connected()

    def log_message(self, format: str, *args: Any) -> None:
        pass  # keep test output clean

    def do_GET(self) -> None:
        self._serve(head=False)

    def do_HEAD(self) -> None:
        self._serve(head=True)

    # - helpers -
    def _reply(self, status: int, headers: Mapping[str, str], body: bytes = b"") -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        if "Content-Length" not in headers:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body and self.command != "HEAD":
            self.wfile.write(body)
            self.server.owner._count(len(body))

    def _serve(self, head: bool) -> None:
        owner = self.server.owner
        raw = self.path
        if raw.startswith(("http://", "https://")):  # proxy-style absolute URI
            parts = urlsplit(raw)
            raw = parts.path + (f"?{parts.query}" if parts.query else "")
        headers = {k.lower(): v for k, v in self.headers.items()}
        owner._record(RecordedRequest(self.command, self.path, headers))
        path = raw.split("?", 1)[0]
        fault = owner._take_fault(raw, path)
        if fault is not None and fault.kind == "status":
            extra = {"Retry-After": fault.retry_after} if fault.retry_after is not None else {}
            self._reply(fault.status, extra, f"injected {fault.status}\n".encode())
            return
        redirect = owner._redirects.get(raw) or owner._redirects.get(path)
        if redirect is not None:
            self._reply(redirect[1], {"Location": redirect[0]})
            return
        entry = owner._files.get(raw) or owner._files.get(path)
        if entry is None:
            self._reply(404, {"Content-Type": "text/plain"}, b"not found\n")
            return
        start, end, status = 0, entry.size, 200
        rng = headers.get("range")
        if_range = headers.get("if-range")
        honour = fault is None or fault.kind != "ignore_range"
        if rng and honour and (if_range is None or if_range in (entry.etag, entry.last_modified)):
            parsed = self._parse_range(rng, entry.size)
            if parsed is None:
                self._reply(416, {"Content-Range": f"bytes */{entry.size}"})
                return
            if isinstance(parsed, tuple):
                start, end, status = parsed[0], parsed[1], 206
        hdrs = {
            "Content-Type": "application/octet-stream",
            "Content-Length": str(end - start),
            "ETag": entry.etag,
            "Last-Modified": entry.last_modified,
            "Accept-Ranges": "bytes",
        }
        if status == 206:
            hdrs["Content-Range"] = f"bytes {start}-{end - 1}/{entry.size}"
        for name, value in entry.headers.items():
            for k in [k for k in hdrs if k.lower() == name.lower()]:
                del hdrs[k]
            if value:
                hdrs[name] = value
        self.send_response(status)
        for name, value in hdrs.items():
            self.send_header(name, value)
        self.end_headers()
        if head:
            return
        self._send_body(entry, start, end, fault)

    @staticmethod
    def _parse_range(value: str, size: int) -> tuple[int, int] | str | None:
        """(start, end) to serve, None when unsatisfiable, "ignore" for what we don't parse."""
        m = _RANGE.match(value)
        if not m or (not m.group(1) and not m.group(2)):
            return "ignore"  # malformed or multi-range: a server may serve the whole body
        if not m.group(1):  # suffix: the last n bytes
            n = int(m.group(2))
            return (max(0, size - n), size) if n > 0 and size > 0 else None
        first = int(m.group(1))
        last = int(m.group(2)) if m.group(2) else size - 1
        if first >= size or last < first:
            return None
        return first, min(last, size - 1) + 1

    def _send_body(self, entry: _Entry, start: int, end: int, fault: Fault | None) -> None:
        owner = self.server.owner
        limit = end
        if fault is not None and fault.kind in ("drop", "truncate", "stall", "reset"):
            limit = min(end, start + fault.after)
        flip = fault is not None and fault.kind == "wrong_bytes"
        sent = 0
        try:
            if isinstance(entry.data, bytes):
                view = memoryview(entry.data)
                pos = start
                while pos < limit:
                    piece = view[pos : min(limit, pos + _STEP)]
                    self.wfile.write(piece.tobytes().translate(_FLIP) if flip else piece)
                    pos += len(piece)
                    sent += len(piece)
            else:
                with open(entry.data, "rb") as f:
                    if flip:
                        f.seek(start)
                        pos = start
                        while pos < limit:
                            block = f.read(min(_STEP, limit - pos))
                            self.wfile.write(block.translate(_FLIP))
                            pos += len(block)
                            sent += len(block)
                    elif limit > start:
                        sent = self.connection.sendfile(f, start, limit - start)
        except OSError:
            self.close_connection = True
            return
        finally:
            owner._count(sent)
        if fault is None or limit >= end:
            return
        self.close_connection = True
        if fault.kind == "stall":
            owner._stopping.wait(fault.seconds)
        elif fault.kind == "reset":
            # SO_LINGER 0: close() sends RST, like a connection cut by the network (the client
            # may lose what was still in flight).
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.wfile.flush()


class ThreadedServer:
    """A ``ThreadingHTTPServer`` on a random free port, served from a background thread.

    Subclasses build ``self._server`` with :meth:`_listen` and get ``start``/``stop`` and the
    context-manager protocol; ``self._stopping`` wakes handlers that wait (stalls) at stop.
    """

    _thread_name = "test-http-server"

    def _listen(
        self,
        server_class: type[http.server.ThreadingHTTPServer],
        handler: type[http.server.BaseHTTPRequestHandler],
        host: str = "127.0.0.1",
    ) -> None:
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._server = server_class((host, 0), handler)
        self._server.owner = self  # type: ignore[attr-defined]
        self.port: int = self._server.server_address[1]
        self.url = f"http://{host}:{self.port}"

    def start(self) -> Self:
        """Serve in a background thread."""
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._server.serve_forever,
                kwargs={"poll_interval": 0.05},
                name=f"{self._thread_name}-{self.port}",
                daemon=True,
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving; waiting handlers are woken up and the socket closed."""
        self._stopping.set()
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self._server.server_close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class HTTPTestServer(ThreadedServer):
    """A threaded HTTP/1.1 server on 127.0.0.1 (random free port). Context manager."""

    _thread_name = "httptestserver"

    def __init__(self, files: Mapping[str, bytes | Path] | None = None) -> None:
        self._files: dict[str, _Entry] = {}
        self._redirects: dict[str, tuple[str, int]] = {}
        self._lock = threading.Lock()
        self._bytes_sent = 0
        self._connections = 0
        self.faults: list[Fault] = []
        self.requests: list[RecordedRequest] = []
        self._listen(_Server, _Handler)
        for path, data in (files or {}).items():
            self.add(path, data)

    # - content -
    def add(self, path: str, data: bytes | Path, headers: Mapping[str, str] | None = None) -> None:
        """Serve ``data`` at ``path``. ``headers`` override defaults; an empty value removes one."""
        size = len(data) if isinstance(data, bytes) else Path(data).stat().st_size
        entry = _Entry(
            data=data if isinstance(data, bytes) else Path(data),
            size=size,
            etag=f'"{_sha256_of(data)}"',
            last_modified=email.utils.formatdate(usegmt=True),
            headers=dict(headers or {}),
        )
        with self._lock:
            self._files[path] = entry

    def redirect(self, path: str, location: str, status: int = 302) -> None:
        """Answer ``path`` with a redirect to ``location`` (absolute or relative)."""
        with self._lock:
            self._redirects[path] = (location, status)

    # - observation -
    @property
    def bytes_sent(self) -> int:
        """Body bytes sent over all requests so far."""
        with self._lock:
            return self._bytes_sent

    @property
    def connections(self) -> int:
        """TCP connections accepted so far (keep-alive reuse keeps this low)."""
        with self._lock:
            return self._connections

    def _connected(self) -> None:
        with self._lock:
            self._connections += 1

    def _count(self, n: int) -> None:
        with self._lock:
            self._bytes_sent += n

    def _record(self, req: RecordedRequest) -> None:
        with self._lock:
            self.requests.append(req)

    def _take_fault(self, raw: str, path: str) -> Fault | None:
        with self._lock:
            for fault in self.faults:
                if fault.times == 0 or (fault.path is not None and fault.path not in (raw, path)):
                    continue
                if fault.times > 0:
                    fault.times -= 1
                    if fault.times == 0:
                        self.faults.remove(fault)
                return fault
        return None

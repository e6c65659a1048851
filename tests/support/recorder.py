"""A recording reverse proxy on 127.0.0.1 for protocol-proof tests.

Put it between a client (an SDK, urllib, modelhub) and an upstream (a running ``modelhub serve``
mirror, an :class:`~tests.support.httpserver.HTTPTestServer`, ...) and it logs what the client
asked, request by request, while forwarding everything unchanged::

    with Recorder(mirror_url) as rec:
        snapshot_download(repo, endpoint=f"{rec.url}/hf", cache_dir=tmp)
        assert ("GET", "/hf/api/models/org/name/revision/main") in rec.resources()
        sdk = normalize(rec.resources())  # HEAD folded into GET, queries sorted

What is forwarded as is: the method, the request target (path and query, byte for byte), every
header but the hop-by-hop ones (``Host`` too, unless ``preserve_host=False``), the body
(``Content-Length`` or chunked, streamed), ``Range``. The proxy never follows a redirect: the
3xx goes back to the client, with a ``Location`` (also ``Content-Location`` and the URLs of
``Link``) that pointed at the upstream's origin rewritten to point at the recorder, so that a
client following it comes back through the recorder. Bodies are streamed both ways, never held
whole in memory; an upstream body cut short is cut short for the client too (and the record says
so). Nothing else is rewritten: URLs inside bodies (JSON) still name whatever the upstream wrote.

It also serves as a client's forward proxy (``HTTP_PROXY=rec.origin``): absolute-form targets
are sent upstream in origin form with the client's ``Host`` kept, which is how a client pinned
to a fixed host and port (kagglehub's ``KAGGLE_API_ENVIRONMENT=TEST`` is localhost:7777) can be
pointed at a recorder on a random port.

Secrets never reach the log: ``Authorization``, ``Proxy-Authorization``, ``Cookie`` and headers
named like tokens or keys are recorded as ``<redacted>``; :attr:`Record.authorization` only says
whether one was sent.
"""

from __future__ import annotations

import contextlib
import http.client
import http.server
import re
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

from tests.support.httpserver import DaemonHTTPServer, ThreadedServer

__all__ = ["Record", "Recorder", "diff", "normalize"]

# RFC 9110 7.6.1: never forwarded by a proxy (plus whatever the Connection header names).
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "proxy-authenticate",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)
REDACTED = "<redacted>"
_SECRET_NAMES = frozenset({"authorization", "proxy-authorization", "cookie", "set-cookie"})
_SECRET_WORDS = ("token", "secret", "api-key", "apikey", "password")
_LINK_URL = re.compile(r"<([^>]*)>")
_STEP = 1 << 16
_DEFAULT_PORTS = {"http": 80, "https": 443}
_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_ESCAPE = re.compile(r"%([0-9A-Fa-f]{2})")


def _is_secret(name: str) -> bool:
    lowered = name.lower()
    return lowered in _SECRET_NAMES or any(word in lowered for word in _SECRET_WORDS)


def _redacted(headers: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Headers as {lower-case name: value}, secrets redacted, repeated names joined by ", "."""
    out: dict[str, str] = {}
    for name, value in headers:
        key = name.lower()
        shown = REDACTED if _is_secret(key) else value
        out[key] = f"{out[key]}, {shown}" if key in out else shown
    return out


def _origin(url: str) -> tuple[str, str, int]:
    """(scheme, lower-case host, port with the scheme's default filled in)."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    return scheme, (parts.hostname or "").lower(), parts.port or _DEFAULT_PORTS.get(scheme, 0)


@dataclass
class Record:
    """One request as the client sent it and the answer it got.

    ``target`` is the request target exactly as received (path and query, still
    percent-encoded). ``location`` is the ``Location`` the client got (rewritten when it named the
    upstream), ``upstream_location`` the one the upstream sent. ``body_bytes`` counts the response
    body bytes passed on; ``complete`` is False while they are still flowing and when the
    upstream's body ended early or the client went away. ``status`` is 502 when the upstream could
    not be reached (``error`` says why).

    A record joins the log when the response headers go out, before the body: a client may have
    read the whole body before ``body_bytes`` and ``complete`` are final, so call
    :meth:`Recorder.wait_idle` before asserting on them.
    """

    method: str
    target: str
    status: int
    reason: str = ""
    location: str | None = None
    upstream_location: str | None = None
    range: str | None = None
    authorization: bool = False
    user_agent: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    response_headers: dict[str, str] = field(default_factory=dict)
    request_body_bytes: int = 0
    body_bytes: int = 0
    complete: bool = False
    error: str | None = None

    @property
    def path(self) -> str:
        """The target without its query."""
        return self.target.split("?", 1)[0]

    @property
    def query(self) -> str:
        """The raw query string ("" when none)."""
        return self.target.split("?", 1)[1] if "?" in self.target else ""

    @property
    def resource(self) -> tuple[str, str]:
        """(method, path?query): what :meth:`Recorder.resources` collects."""
        return self.method, self.target


class _ProxyServer(DaemonHTTPServer):
    request_queue_size = 64
    owner: Recorder


class _ProxyHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _ProxyServer
    _upstream: http.client.HTTPConnection | None = None

    def log_message(self, format: str, *args: Any) -> None:
        pass  # keep test output clean

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self._drop_upstream()

    # Every method a client may send goes through the same path.
    def do_GET(self) -> None:
        self._proxy()

    do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = do_GET

    # - upstream connection (one per client connection, reused while both stay open) -
    def _connection(self) -> http.client.HTTPConnection:
        if self._upstream is None:
            owner = self.server.owner
            cls = (
                http.client.HTTPSConnection
                if owner.upstream_scheme == "https"
                else http.client.HTTPConnection
            )
            self._upstream = cls(owner.upstream_host, owner.upstream_port, timeout=owner.timeout)
        return self._upstream

    def _drop_upstream(self) -> None:
        if self._upstream is not None:
            self._upstream.close()
            self._upstream = None

    # - the exchange -
    def _proxy(self) -> None:
        owner = self.server.owner
        target = self.path
        if target.startswith(("http://", "https://")):  # absolute-form, as sent to a proxy
            parts = urlsplit(target)
            target = parts.path + (f"?{parts.query}" if parts.query else "")
        target = target or "/"
        raw_headers = list(self.headers.items())
        lowered = {name.lower(): value for name, value in raw_headers}
        record = Record(
            method=self.command,
            target=target,
            status=0,
            range=lowered.get("range"),
            authorization="authorization" in lowered,
            user_agent=lowered.get("user-agent"),
            headers=_redacted(raw_headers),
        )
        owner._begin()
        try:
            self._exchange(record, target, raw_headers, lowered)
        finally:
            owner._end()

    def _forwarded_headers(
        self, raw_headers: list[tuple[str, str]], lowered: Mapping[str, str]
    ) -> list[tuple[str, str]]:
        owner = self.server.owner
        named = {
            token.strip().lower() for token in lowered.get("connection", "").split(",") if token
        }
        drop = HOP_BY_HOP | named | {"expect"}  # 100-continue was answered here already
        out = []
        for name, value in raw_headers:
            key = name.lower()
            if key in drop and not (key == "transfer-encoding" and value.lower() == "chunked"):
                continue
            if key == "host" and not owner.preserve_host:
                value = owner.upstream_netloc
            out.append((name, value))
        if "host" not in lowered:
            out.append(("Host", owner.upstream_netloc))
        return out

    def _exchange(
        self,
        record: Record,
        target: str,
        raw_headers: list[tuple[str, str]],
        lowered: Mapping[str, str],
    ) -> None:
        owner = self.server.owner
        headers = self._forwarded_headers(raw_headers, lowered)
        chunked_in = lowered.get("transfer-encoding", "").lower().endswith("chunked")
        try:
            length_in = int(lowered.get("content-length", "0") or 0)
        except ValueError:
            length_in = 0
        try:
            response = self._send_upstream(record, target, headers, chunked_in, length_in)
        except (OSError, http.client.HTTPException) as exc:
            self._drop_upstream()
            self.close_connection = True  # the client's body may be half read: start afresh
            record.status, record.reason = 502, "Bad Gateway"
            record.error = f"upstream unreachable: {type(exc).__name__}: {exc}"
            body = f"recorder: {record.error}\n".encode()
            record.response_headers = {"content-type": "text/plain", "connection": "close"}
            owner._add(record)
            with contextlib.suppress(OSError):
                self.send_response_only(502, "Bad Gateway")
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Connection", "close")
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)
                    record.body_bytes = len(body)
                self.wfile.flush()
                record.complete = True
            return
        self._relay(record, response)

    def _send_upstream(
        self,
        record: Record,
        target: str,
        headers: list[tuple[str, str]],
        chunked_in: bool,
        length_in: int,
    ) -> http.client.HTTPResponse:
        """Send the request upstream (body streamed from the client) and read the status line.

        A kept-alive upstream connection that the upstream closed meanwhile is opened again and
        the request sent once more, when it has no body (a body is read from the client once).
        """
        has_body = chunked_in or length_in > 0
        while True:
            reused = self._upstream is not None and self._upstream.sock is not None
            conn = self._connection()
            try:
                conn.putrequest(self.command, target, skip_host=True, skip_accept_encoding=True)
                for name, value in headers:
                    conn.putheader(name, value)
                conn.endheaders()
                if chunked_in:
                    record.request_body_bytes = self._copy_chunked_body(conn)
                elif length_in > 0:
                    self._copy_body(conn, length_in)
                    record.request_body_bytes = length_in
                return conn.getresponse()
            except (ConnectionError, http.client.RemoteDisconnected):
                self._drop_upstream()
                if not reused or has_body:
                    raise

    def _copy_body(self, conn: http.client.HTTPConnection, length: int) -> None:
        left = length
        while left > 0:
            piece = self.rfile.read(min(_STEP, left))
            if not piece:
                raise ConnectionError("client body ended early")
            conn.send(piece)
            left -= len(piece)

    def _copy_chunked_body(self, conn: http.client.HTTPConnection) -> int:
        """Relay a chunked request body verbatim (sizes, data, trailers); its data length."""
        total = 0
        while True:
            line = self.rfile.readline(65537)
            if not line:
                raise ConnectionError("client body ended early")
            conn.send(line)
            size = int(line.split(b";", 1)[0].strip() or b"0", 16)
            if size == 0:
                while True:  # trailers, then the empty line
                    trailer = self.rfile.readline(65537)
                    conn.send(trailer)
                    if trailer in (b"\r\n", b"\n", b""):
                        return total
            self._copy_body(conn, size + 2)  # data and its CRLF
            total += size

    def _relay(self, record: Record, response: http.client.HTTPResponse) -> None:
        owner = self.server.owner
        upstream_headers = response.getheaders()
        named = {
            token.strip().lower()
            for name, value in upstream_headers
            if name.lower() == "connection"
            for token in value.split(",")
        }
        has_length = any(name.lower() == "content-length" for name, _ in upstream_headers)
        bodiless = self.command == "HEAD" or response.status in (204, 304) or response.status < 200
        rechunk = not bodiless and not has_length
        out: list[tuple[str, str]] = []
        for name, value in upstream_headers:
            key = name.lower()
            if key in HOP_BY_HOP or key in named:
                continue
            if key == "location":
                record.upstream_location = value
                value = owner.rewrite_url(value)
                record.location = value
            elif key == "content-location":
                value = owner.rewrite_url(value)
            elif key == "link":
                value = _LINK_URL.sub(lambda m: f"<{owner.rewrite_url(m.group(1))}>", value)
            out.append((name, value))
        if rechunk:
            out.append(("Transfer-Encoding", "chunked"))
        if self.close_connection:
            out.append(("Connection", "close"))
        record.status, record.reason = response.status, response.reason
        record.response_headers = _redacted(out)
        owner._add(record)  # logged before the body, so a client that read it all finds it
        try:
            self.send_response_only(response.status, response.reason)
            for name, value in out:
                self.send_header(name, value)
            self.end_headers()
            if not bodiless:
                self._relay_body(record, response, rechunk)
            else:
                response.read()
            record.complete = True
        except (OSError, http.client.HTTPException) as exc:
            # Upstream body cut short (or the client left): cut the client's short too.
            record.error = f"{type(exc).__name__}: {exc}"
            self.close_connection = True
            self._drop_upstream()
            return
        finally:
            with contextlib.suppress(OSError):
                self.wfile.flush()
        if response.will_close:
            self._drop_upstream()

    def _relay_body(
        self, record: Record, response: http.client.HTTPResponse, rechunk: bool
    ) -> None:
        while True:
            piece = response.read1(_STEP) if rechunk else response.read(_STEP)
            if not piece:
                break
            if rechunk:
                self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            else:
                self.wfile.write(piece)
            record.body_bytes += len(piece)
        if rechunk:
            self.wfile.write(b"0\r\n\r\n")
        if response.length not in (None, 0):  # http.client's count of what is still due
            raise http.client.IncompleteRead(b"", response.length)


class Recorder(ThreadedServer):
    """A recording reverse proxy to ``upstream_url`` on a random 127.0.0.1 port.

    ``url`` is the recorder's base URL with the upstream's path prefix
    (``Recorder("http://127.0.0.1:9/hf").url == "http://127.0.0.1:PORT/hf"``); paths are
    forwarded unchanged, so the recorder's ``/x`` is the upstream's ``/x``. ``log`` holds one
    :class:`Record` per request in arrival order. ``preserve_host`` forwards the client's
    ``Host`` header (the default: the upstream then builds absolute URLs that name the
    recorder); False sends the upstream's own host. ``timeout`` bounds each upstream socket
    operation. A context manager, like the other test servers.
    """

    _thread_name = "recorder"

    def __init__(
        self,
        upstream_url: str,
        *,
        preserve_host: bool = True,
        timeout: float = 60.0,
        aliases: Iterable[str] = (),
    ) -> None:
        parts = urlsplit(upstream_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"upstream must be an http(s) URL, not {upstream_url!r}")
        self.upstream_url = upstream_url.rstrip("/")
        self.upstream_scheme = parts.scheme
        self.upstream_host = parts.hostname
        self.upstream_port = parts.port or _DEFAULT_PORTS[parts.scheme]
        self.upstream_netloc = parts.netloc
        self.preserve_host = preserve_host
        self.timeout = timeout
        self._origins = {_origin(upstream_url), *(_origin(a) for a in aliases)}
        self._lock = threading.Condition()
        self._in_flight = 0
        self.log: list[Record] = []
        self._listen(_ProxyServer, _ProxyHandler)
        self.origin = self.url
        self.url = self.origin + parts.path.rstrip("/")

    # - rewriting -
    def rewrite_url(self, url: str) -> str:
        """``url`` with the upstream's origin replaced by the recorder's; others unchanged.

        Relative references stay relative (they already resolve against the recorder).
        """
        if not url.lower().startswith(("http://", "https://")):
            return url
        try:
            if _origin(url) not in self._origins:
                return url
        except ValueError:  # a port that is not a number
            return url
        parts = urlsplit(url)
        return self.origin + urlunsplit(("", "", parts.path or "/", parts.query, parts.fragment))

    # - observation -
    def resources(self) -> list[tuple[str, str]]:
        """Sorted distinct (method, path?query) of every request so far."""
        with self._lock:
            return sorted({r.resource for r in self.log})

    def records(self, method: str | None = None, path: str | None = None) -> list[Record]:
        """The log, optionally only one method and/or one path (without query)."""
        with self._lock:
            return [
                r
                for r in self.log
                if (method is None or r.method == method) and (path is None or r.path == path)
            ]

    def clear(self) -> None:
        """Forget every record so far (requests still in flight are recorded when answered)."""
        with self._lock:
            self.log.clear()

    def wait_idle(self, timeout: float = 5.0) -> bool:
        """Wait until no request is being relayed; False if some still are after ``timeout``."""
        with self._lock:
            return self._lock.wait_for(lambda: self._in_flight == 0, timeout)

    def _begin(self) -> None:
        with self._lock:
            self._in_flight += 1

    def _end(self) -> None:
        with self._lock:
            self._in_flight -= 1
            self._lock.notify_all()

    def _add(self, record: Record) -> None:
        with self._lock:
            self.log.append(record)


def _norm_path(path: str) -> str:
    """Percent-escapes of unreserved characters decoded, other escapes upper-cased (RFC 3986)."""

    def fix(match: re.Match[str]) -> str:
        char = chr(int(match.group(1), 16))
        return char if char in _UNRESERVED else f"%{match.group(1).upper()}"

    return _ESCAPE.sub(fix, path)


def _norm_query(query: str, drop: frozenset[str], lower_values: bool) -> str:
    pairs = [
        (key, value.lower() if lower_values else value)
        for key, value in parse_qsl(query, keep_blank_values=True)
        if key not in drop
    ]
    return urlencode(sorted(pairs), quote_via=quote)


def normalize(
    entries: Iterable[Record | tuple[str, str]],
    *,
    fold: Mapping[str, str] | None = None,
    drop_query: Iterable[str] = (),
    lower_query_values: bool = False,
    ignore: Callable[[str, str], bool] | None = None,
) -> list[tuple[str, str]]:
    """Sorted distinct (method, path?query) with what legitimately differs between clients
    taken out, so that two clients' traffic for the same download can be compared.

    - ``fold`` maps methods onto others; the default folds ``HEAD`` into ``GET`` (one client
      asks for the metadata first, another reads the headers of its GET).
    - Queries are parsed, their pairs sorted and re-encoded; keys in ``drop_query`` are removed
      (cache busters, pagination cursors); ``lower_query_values`` folds ``True``/``true``.
    - Percent-escapes of unreserved characters are decoded (``%7E`` is ``~``), others upper-cased.
    - ``ignore(method, path)`` drops entries altogether (telemetry, a probe only one client does).
    """
    mapping = {"HEAD": "GET"} if fold is None else {k.upper(): v.upper() for k, v in fold.items()}
    drop = frozenset(drop_query)
    out: set[tuple[str, str]] = set()
    for entry in entries:
        method, target = entry.resource if isinstance(entry, Record) else entry
        method = method.upper()
        path, _, query = target.partition("?")
        if ignore is not None and ignore(method, path):
            continue
        method = mapping.get(method, method)
        path = _norm_path(path)
        query = _norm_query(query, drop, lower_query_values)
        out.add((method, f"{path}?{query}" if query else path))
    return sorted(out)


def diff(
    a: Iterable[Record | tuple[str, str]],
    b: Iterable[Record | tuple[str, str]],
    **options: Any,
) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(only in ``a``, only in ``b``) after :func:`normalize` with ``options`` on both."""
    left, right = set(normalize(a, **options)), set(normalize(b, **options))
    return sorted(left - right), sorted(right - left)

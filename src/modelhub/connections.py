"""Keep-alive HTTP connections for :mod:`modelhub.transfer`: one verifying TLS context, a pool
of idle connections by (scheme, host, port, proxy) shared by threads, and the reads a download
makes through them. Standard library only (``http.client`` + ``ssl``).
"""

from __future__ import annotations

import contextlib
import http.client
import select
import socket
import ssl
import threading
import time
from collections.abc import Mapping

from ._http import DRAIN_LIMIT, MiB, Target, _proxy_headers, classify_os_error, proxy_for

# Bytes per readinto. An exception mid-read loses what that call had received (it is fetched
# again), so small files read 1 MiB at a time; from LARGE_READ_MIN on a whole 4 MiB receive
# buffer is one call: each recv then asks the socket for all that is left of it, and the kernel
# hands over what has arrived in fewer, fuller calls (1 GiB on loopback here: the whole pull
# went from ~0.86 to ~0.79 s; a reset then costs at most 4 MiB of ≥ 256 MiB).
READ_STEP = 1 * MiB
LARGE_READ_STEP = 4 * MiB
LARGE_READ_MIN = 256 * MiB

_ssl_context: ssl.SSLContext | None = None
_ssl_lock = threading.Lock()


def ssl_context() -> ssl.SSLContext:
    """One verifying TLS context per process (building it reads the CA store)."""
    global _ssl_context
    with _ssl_lock:
        if _ssl_context is None:
            _ssl_context = ssl.create_default_context()
        return _ssl_context


PoolKey = tuple[str, str, int, str | None]


class Conn:
    """An HTTPConnection plus what is needed to send requests through it and pool it again."""

    def __init__(self, target: Target, proxy: Target | None, timeout: float) -> None:
        self.key: PoolKey = (*target.origin, proxy.hostport if proxy else None)
        self.proxy = proxy
        self.reused = False
        self.idle_since = 0.0  # time.monotonic() when the pool took it back
        self.http: http.client.HTTPConnection
        if proxy is None:
            if target.scheme == "https":
                self.http = http.client.HTTPSConnection(
                    target.host, target.port, timeout=timeout, context=ssl_context()
                )
            else:
                self.http = http.client.HTTPConnection(target.host, target.port, timeout=timeout)
        elif target.scheme == "https":
            # CONNECT tunnel: TLS is end-to-end with the target, the proxy sees only bytes.
            self.http = http.client.HTTPSConnection(
                proxy.host, proxy.port, timeout=timeout, context=ssl_context()
            )
            self.http.set_tunnel(target.host, target.port, headers=_proxy_headers(proxy))
        else:
            self.http = http.client.HTTPConnection(proxy.host, proxy.port, timeout=timeout)

    def set_timeout(self, timeout: float) -> None:
        """Apply ``timeout`` to connect and to every later socket read."""
        self.http.timeout = timeout
        if self.http.sock is not None:
            self.http.sock.settimeout(timeout)

    def is_stale(self) -> bool:
        """An idle keep-alive socket that is readable has been closed by the server.

        ``poll``, not ``select``: ``select`` refuses descriptors from 1024 up (ValueError), so
        in a process with many files open every idle connection looked dead and none was
        reused."""
        sock = self.http.sock
        if sock is None:
            return False
        try:
            if hasattr(select, "poll"):
                poller = select.poll()
                poller.register(sock, select.POLLIN | select.POLLERR | select.POLLHUP)
                return bool(poller.poll(0))
            readable, _, _ = select.select([sock], [], [], 0)
        except (OSError, ValueError):
            return True
        return bool(readable)

    def request(
        self,
        method: str,
        target: Target,
        headers: Mapping[str, str],
        body: bytes | None = None,
    ) -> http.client.HTTPResponse:
        """Send one request (with ``body``, e.g. an RPC's JSON) and read the status line +
        headers.

        Raises Retryable (or NetworkError) for transport failures, classified by phase.
        """
        connecting = self.http.sock is None
        try:
            if connecting:
                self.http.connect()
        except Exception as exc:
            self.close()
            raise classify_os_error(exc, self.proxy or target, connecting=True) from None
        path = target.path
        hdrs = dict(headers)
        if self.proxy is not None and target.scheme == "http":
            path = target.absolute()  # http via proxy: absolute-URI request line
            hdrs.update(_proxy_headers(self.proxy))
        try:
            self.http.request(method, path, body=body, headers=hdrs)
            return self.http.getresponse()
        except Exception as exc:
            self.close()
            if isinstance(exc, (http.client.HTTPException, OSError)):
                raise classify_os_error(exc, target, connecting=False) from None
            raise

    def close(self) -> None:
        """Close the socket (the object can reconnect later)."""
        with contextlib.suppress(OSError):
            self.http.close()

    def abort(self) -> None:
        """Unblock a thread stuck reading this connection (used when a download is cancelled)."""
        sock = self.http.sock
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


#: An idle connection older than this is closed rather than reused (servers drop idle
#: keep-alive connections after 5–60 s; a dead one only costs a failed first read, but it holds
#: a descriptor until then).
IDLE_MAX = 60.0
#: Origins (scheme, host, port, proxy) with idle connections kept; the least recently used
#: one's connections are closed beyond it (a long sync or a mirror talks to many hosts).
MAX_ORIGINS = 32


class ConnectionPool:
    """Idle keep-alive connections by (scheme, host, port, proxy), shared by threads; at most
    ``max_idle_per_key`` per origin, :data:`MAX_ORIGINS` origins, none idle longer than
    :data:`IDLE_MAX` seconds."""

    def __init__(self, max_idle_per_key: int = 16) -> None:
        self._idle: dict[PoolKey, list[Conn]] = {}  # insertion order: least recently used first
        self._lock = threading.Lock()
        self._max = max_idle_per_key

    def get(self, target: Target, timeout: float) -> Conn:
        """An idle live connection for ``target`` or a new (not yet connected) one."""
        proxy = proxy_for(target)
        key: PoolKey = (*target.origin, proxy.hostport if proxy else None)
        while True:
            with self._lock:
                conns = self._idle.get(key)
                conn = conns.pop() if conns else None
            if conn is None:
                conn = Conn(target, proxy, timeout)
                break
            if time.monotonic() - conn.idle_since > IDLE_MAX or conn.is_stale():
                conn.close()
                continue
            conn.reused = True
            break
        conn.set_timeout(timeout)
        return conn

    def fresh(self, target: Target, timeout: float) -> Conn:
        """A new connection for ``target`` (used when an idle one turned out to be dead)."""
        return Conn(target, proxy_for(target), timeout)

    def put(self, conn: Conn, resp: http.client.HTTPResponse | None) -> None:
        """Return ``conn`` for reuse if its last response was read fully and keeps alive."""
        if resp is None or not resp.isclosed() or resp.will_close or conn.http.sock is None:
            conn.close()
            return
        now = time.monotonic()
        closing: list[Conn] = []
        with self._lock:
            conns = self._idle.pop(conn.key, [])
            self._idle[conn.key] = conns  # now the most recently used origin
            if len(conns) < self._max:
                conn.idle_since = now
                conns.append(conn)
            else:
                closing.append(conn)
            closing += self._evict(now)
        for old in closing:
            old.close()

    def _evict(self, now: float) -> list[Conn]:
        """Take out (under the lock) the connections idle too long and the origins beyond
        :data:`MAX_ORIGINS`; the caller closes them."""
        out: list[Conn] = []
        for key in list(self._idle):
            conns = self._idle[key]
            keep = [c for c in conns if now - c.idle_since <= IDLE_MAX]
            out += [c for c in conns if now - c.idle_since > IDLE_MAX]
            if keep:
                self._idle[key] = keep
            else:
                del self._idle[key]
        while len(self._idle) > MAX_ORIGINS:
            out += self._idle.pop(next(iter(self._idle)))
        return out

    def idle_count(self) -> int:
        """How many idle connections the pool holds now."""
        with self._lock:
            return sum(len(conns) for conns in self._idle.values())


POOL = ConnectionPool()


def drain_and_release(conn: Conn, resp: http.client.HTTPResponse) -> bytes:
    """Read a small unwanted body (redirect, error) so the connection can be reused."""
    length = resp.length
    if length is not None and length > DRAIN_LIMIT:
        resp.close()
        conn.close()
        return b""
    try:
        body = resp.read(DRAIN_LIMIT + 1) if length is None else resp.read()
    except (OSError, http.client.HTTPException):
        conn.close()
        return b""
    POOL.put(conn, resp)
    return body


def header_dict(resp: http.client.HTTPResponse) -> dict[str, str]:
    """Response headers with lower-cased names; repeated headers joined by ", "."""
    out: dict[str, str] = {}
    for name, value in resp.getheaders():
        key = name.lower()
        out[key] = f"{out[key]}, {value}" if key in out else value
    return out


def read_into(
    resp: http.client.HTTPResponse, mv: memoryview, step: int = READ_STEP
) -> tuple[int, Exception | None]:
    """Fill ``mv`` from ``resp`` until full or EOF, ``step`` bytes per read; return (bytes
    read, transport error)."""
    filled, total = 0, len(mv)
    try:
        while filled < total:
            n = resp.readinto(mv[filled : min(total, filled + step)])
            if not n:
                break
            filled += n
    except (OSError, http.client.HTTPException) as exc:
        return filled, exc
    return filled, None

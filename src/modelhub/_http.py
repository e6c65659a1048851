"""Plumbing for :mod:`modelhub.transfer`: URLs, redirect policy, proxies, connections, retry
classification, and the hash + write pipeline that receives a download's bytes.

Only the standard library is used (``http.client`` + ``ssl``), so every byte modelhub moves goes
through code we control: redirects, token scoping and retries are decided here, not by a library.
"""

from __future__ import annotations

import base64
import contextlib
import email.utils
import hashlib
import http.client
import mmap
import os
import queue
import random
import re
import select
import socket
import ssl
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urljoin, urlsplit

from modelhub.errors import InsecureRedirectError, NetworkError, UsageError

REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
MAX_REDIRECTS = 10
RETRY_AFTER_CAP = 60.0
BACKOFF_BASE = 0.2  # seconds; small so tests stay quick, doubled per failure
BACKOFF_CAP = 10.0
DRAIN_LIMIT = 64 * 1024  # read at most this much of an unwanted body to keep the connection
USER_AGENT = "modelhub/0.1 (python http.client)"
MiB = 2**20
BUF_SIZE = 4 * MiB  # prefix re-hash buffer
# Bytes per readinto. An exception mid-read loses what that call had received (it is fetched
# again), so small files read 1 MiB at a time; from LARGE_READ_MIN on a whole 4 MiB receive
# buffer is one call: each recv then asks the socket for all that is left of it, and the kernel
# hands over what has arrived in fewer, fuller calls (1 GiB on loopback here: the whole pull
# went from ~0.86 to ~0.79 s; a reset then costs at most 4 MiB of ≥ 256 MiB).
READ_STEP = 1 * MiB
LARGE_READ_STEP = 4 * MiB
LARGE_READ_MIN = 256 * MiB
WRITE_STEP = 1 * MiB  # bytes per os.write (see Sink._write)
WRITEBACK_STEP = 64 * MiB  # start writeback of the part file every this many bytes
DIRECT_MIN = 64 * MiB  # files this large bypass the page cache on local filesystems
DIRECT_ALIGN = 4096  # O_DIRECT offset/length/address alignment that every local fs accepts
DIRECT_STEP = 4 * MiB  # bytes per O_DIRECT write (measured here, 1 GiB in process: 4 and 8 MiB
# steps ~10% faster than 2 MiB, 1 MiB ~20% slower; an earlier, busier run had favoured 2 MiB)
# Local block filesystems where O_DIRECT is both supported and fast (not NFS, overlay, tmpfs).
_DIRECT_FS = frozenset({"ext2", "ext3", "ext4", "xfs", "btrfs", "f2fs"})
_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)", re.IGNORECASE)
_DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass(frozen=True)
class Target:
    """A parsed http(s) URL: where to connect and what to ask for."""

    scheme: str
    host: str
    port: int
    path: str  # path + query, never empty
    userinfo: str | None = None

    @property
    def origin(self) -> tuple[str, str, int]:
        """(scheme, host, port): the unit a token is scoped to."""
        return (self.scheme, self.host, self.port)

    @property
    def hostport(self) -> str:
        """``host:port`` as a user would type it (IPv6 in brackets)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def netloc(self) -> str:
        """Host (and port when not the scheme's default), for Host headers and absolute URIs."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if _DEFAULT_PORTS[self.scheme] == self.port else f"{host}:{self.port}"

    def absolute(self) -> str:
        """The URL without user info (the form sent to an http proxy)."""
        return f"{self.scheme}://{self.netloc}{self.path}"


def parse_url(url: str) -> Target:
    """Parse an http(s) URL; anything else is a usage error (never silently fetched)."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise UsageError(f"invalid URL: {redact(url)}") from exc
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.hostname:
        raise UsageError(f"not an http(s) URL: {redact(url)}")
    path = parts.path or "/"
    if parts.query:
        path = f"{path}?{parts.query}"
    userinfo = parts.netloc.rpartition("@")[0] or None
    return Target(scheme, parts.hostname.lower(), port or _DEFAULT_PORTS[scheme], path, userinfo)


def redact(url: str) -> str:
    """``url`` without user info, query or fragment: safe for messages (tokens live there)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return "<invalid URL>"
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{host}:{port}" if port else host
    return f"{parts.scheme}://{netloc}{parts.path}"


def same_origin(url_a: str, url_b: str) -> bool:
    """True when both URLs share scheme, host and port (the only case a token may follow)."""
    try:
        return parse_url(url_a).origin == parse_url(url_b).origin
    except UsageError:
        return False


def redirect_target(current_url: str, location: str, status: int, method: str) -> tuple[str, str]:
    """Decide where a redirect goes: ``(next_url, next_method)``.

    A relative ``Location`` is resolved against ``current_url``. A redirect from https to http is
    refused with :class:`InsecureRedirectError` (it would expose the request and the bytes).
    303 turns every method but HEAD into GET; 301/302 turn POST into GET (as browsers do).
    """
    nxt = urljoin(current_url, location.strip())
    cur_scheme = urlsplit(current_url).scheme.lower()
    new_scheme = urlsplit(nxt).scheme.lower()
    if new_scheme not in _DEFAULT_PORTS:
        raise NetworkError(f"redirect to an unsupported URL refused: {redact(nxt)}")
    if cur_scheme == "https" and new_scheme == "http":
        raise InsecureRedirectError(
            f"refused redirect from https to http: {redact(current_url)} -> {redact(nxt)}"
        )
    if (status == 303 and method != "HEAD") or (status in (301, 302) and method == "POST"):
        method = "GET"
    return nxt, method


def parse_retry_after(value: str) -> float | None:
    """Seconds to wait from a ``Retry-After`` value (delta-seconds or HTTP date), capped at 60 s.

    Returns None when the value is unusable; a date in the past gives 0.
    """
    value = value.strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when is None:
            return None
        seconds = when.timestamp() - time.time()
    if seconds != seconds:  # NaN
        return None
    return min(max(seconds, 0.0), RETRY_AFTER_CAP)


def backoff_delay(failures: int) -> float:
    """Exponential backoff with "equal jitter": half fixed, half random, so clients spread out."""
    delay = min(BACKOFF_CAP, BACKOFF_BASE * 2.0 ** max(failures - 1, 0))
    return delay / 2 + random.uniform(0, delay / 2)


class Retryable(Exception):
    """Internal: an attempt failed in a way worth retrying (never leaves transfer)."""

    def __init__(
        self,
        reason: str,
        *,
        retry_after: float | None = None,
        timeout: bool = False,
        unreachable: bool = False,
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after
        self.timeout = timeout
        self.unreachable = unreachable


def classify_os_error(exc: BaseException, target: Target, connecting: bool) -> Exception:
    """Map a socket/TLS/protocol exception to a Retryable (or a final NetworkError)."""
    where = target.hostport
    if isinstance(exc, ssl.SSLCertVerificationError):
        return NetworkError(
            f"TLS certificate verification failed for {where}: {exc.verify_message}"
        )
    if isinstance(exc, socket.gaierror):
        # Only "try again" is transient; an unknown name will not appear by retrying.
        if exc.errno == socket.EAI_AGAIN:
            return Retryable(f"cannot reach {where}: name resolution failed", unreachable=True)
        return NetworkError(f"cannot reach {where}: name resolution failed")
    if isinstance(exc, TimeoutError):
        what = "connecting" if connecting else "waiting for data"
        return Retryable(f"timed out {what} from {where}", timeout=True, unreachable=connecting)
    if connecting:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
        return Retryable(f"cannot reach {where}: {reason.lower()}", unreachable=True)
    return Retryable(f"connection to {where} failed: {type(exc).__name__}")


# --- proxies ----------------------------------------------------------------------------------
def proxy_for(target: Target) -> Target | None:
    """The proxy to use for ``target`` from HTTP(S)_PROXY / NO_PROXY (the usual conventions)."""
    if not any(name.lower().endswith("_proxy") for name in os.environ):
        return None  # the common case, without importing urllib.request (~3 ms)
    import urllib.request
    from urllib.request import proxy_bypass_environment  # type: ignore[attr-defined]

    proxies = urllib.request.getproxies_environment()
    proxy = proxies.get(target.scheme)
    if not proxy:
        return None
    if proxy_bypass_environment(target.hostport, proxies):
        return None
    if "://" not in proxy:
        proxy = f"http://{proxy}"
    try:
        return parse_url(proxy)
    except UsageError:
        return None


def _proxy_headers(proxy: Target) -> dict[str, str]:
    if not proxy.userinfo:
        return {}
    raw = unquote(proxy.userinfo).encode()
    return {"Proxy-Authorization": "Basic " + base64.b64encode(raw).decode("ascii")}


# --- connections ------------------------------------------------------------------------------
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
        """An idle keep-alive socket that is readable has been closed by the server."""
        sock = self.http.sock
        if sock is None:
            return False
        try:
            readable, _, _ = select.select([sock], [], [], 0)
        except (OSError, ValueError):
            return True
        return bool(readable)

    def request(
        self, method: str, target: Target, headers: Mapping[str, str]
    ) -> http.client.HTTPResponse:
        """Send one request and read the status line + headers.

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
            self.http.request(method, path, headers=hdrs)
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


class ConnectionPool:
    """Idle keep-alive connections by (scheme, host, port, proxy), shared by threads."""

    def __init__(self, max_idle_per_key: int = 16) -> None:
        self._idle: dict[PoolKey, list[Conn]] = {}
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
            if conn.is_stale():
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
        with self._lock:
            conns = self._idle.setdefault(conn.key, [])
            if len(conns) < self._max:
                conns.append(conn)
                return
        conn.close()


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


def parse_content_range(value: str | None) -> tuple[int, int, int | None] | None:
    """(first, last, total or None) from a ``Content-Range`` header, None if unusable."""
    m = _CONTENT_RANGE.search(value or "")
    if not m:
        return None
    total = None if m.group(3) == "*" else int(m.group(3))
    return int(m.group(1)), int(m.group(2)), total


def strong_etag(etag: str | None) -> str | None:
    """``etag`` if it is a strong validator, else None."""
    # Weak validators cannot be used with If-Range (RFC 9110 13.1.5).
    return etag if etag and not etag.startswith("W/") else None


def make_bar(progress: bool | None, desc: str | None, url: str, initial: int) -> Any:
    """A tqdm bar on stderr (bytes), or None: shown when asked, or on a TTY unless quiet."""
    from modelhub.config import settings

    cfg = settings()
    if progress is None:
        try:
            progress = not cfg.quiet and sys.stderr is not None and sys.stderr.isatty()
        except (AttributeError, ValueError):
            progress = False
    if not progress:
        return None
    from tqdm import tqdm  # lazy: only needed when a bar is shown; plain text bar on stderr

    name = desc or redact(url).rstrip("/").rsplit("/", 1)[-1]
    return tqdm(
        total=None,
        initial=initial,
        unit="B",
        unit_scale=True,
        unit_divisor=1024,
        desc=name,
        file=sys.stderr,
        leave=True,
        dynamic_ncols=True,
    )


def remove_files(*paths: Path) -> None:
    """Unlink each path that exists."""
    for path in paths:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


# --- the hash + write stage of download_file ---------------------------------------------------
class Sink:
    """Hash then write filled buffers, in file order, into the part file.

    Two threads form a pipeline behind the receiver: one hashes each buffer, then hands it to one
    that writes it (O_DIRECT for large files, see use_direct; otherwise through the page cache,
    kicking off writeback early so the final fsync has little left to do). The receiver goes on
    filling the next buffer meanwhile; hashlib, os.pwrite and socket reads all release the GIL,
    so the stages overlap on separate cores. Hashing and writing stay in file order, so the file
    is always a contiguous prefix of the content, which keeps resume trivial.

    The threads start with the first buffer that is not the file's last: a file that fits in
    one buffer (most files of a model: configs, tokenizers, small weights) is hashed and written
    by the receiver itself, with nothing to overlap and no threads to start and hand over to.
    """

    def __init__(self, fd: int, path: Path, prefix: int, bar: Any) -> None:
        self.fd = fd
        self.path = path
        self.prefix = prefix
        self.size = prefix
        self.hash = hashlib.sha256()
        self.bar = bar
        self.error: BaseException | None = None
        self.hash_q: queue.SimpleQueue[tuple[Any, ...]] = queue.SimpleQueue()
        self.write_q: queue.SimpleQueue[tuple[Any, ...]] = queue.SimpleQueue()
        self.written = prefix  # file offset of the next write
        self.synced = prefix  # writeback already started up to here
        self.direct = False  # set by use_direct(); read by the writer thread
        self.dfd = -1  # the O_DIRECT descriptor, opened by the writer on first use
        self.threads: list[threading.Thread] = []  # started by the first submit() needing them
        self.prefix_pending = prefix > 0  # the resumed prefix is hashed before any new byte

    def use_direct(self) -> None:
        """Write aligned blocks with O_DIRECT from now on (large files on local filesystems).

        The device then reads our buffers by DMA: no copy into the page cache, no page cache
        to allocate and write back (measured here: about 0.3 to 1.4 CPU-seconds per GiB saved,
        on a 2-core machine where the sha256 alone takes 0.6), and a large download does not
        evict what else is cached. Unaligned pieces (the tail) still go through the page cache.
        """
        self.direct = hasattr(os, "O_DIRECT")

    def submit(
        self, buf: mmap.mmap, n: int, release: queue.Queue[mmap.mmap], last: bool = False
    ) -> None:
        """Queue ``buf[:n]``; the buffer goes back to ``release`` once written.

        ``last``: these are the file's final bytes. When nothing was queued before them, they
        are hashed and written here and now (see the class docstring).
        """
        if self.error is not None:
            release.put(buf)
            raise self.error
        msg = ("data", buf, n, release)
        if last and not self.threads:
            self._prefix_only()
            self._hash_one(msg)
            self._write_one(msg)
            return
        self._start()
        self.hash_q.put(msg)

    def _start(self) -> None:
        if self.threads:
            return
        self.threads = [
            threading.Thread(target=self._hasher, name="modelhub-hash", daemon=True),
            threading.Thread(target=self._writer, name="modelhub-write", daemon=True),
        ]
        for t in self.threads:
            t.start()

    def reset(self) -> None:
        """Drop everything (after what is already queued): the file restarts from byte 0.

        Waits until the truncation happened, so a sidecar written next can never describe
        bytes of another version of the file.
        """
        done = threading.Event()
        self._start()
        self.hash_q.put(("reset", done))
        while not done.wait(0.5):
            if not self.threads[1].is_alive():
                break
        if self.error is not None:
            raise self.error

    def finish(self) -> tuple[str, int]:
        """Wait for the queues to drain, fsync, and return (sha256 hex, size)."""
        self._join()
        self._prefix_only()  # a resumed file to which nothing new was added: hash it now
        if self.error is not None:
            raise self.error
        os.fsync(self.fd)  # data (also what O_DIRECT wrote: device cache flush) + metadata
        return self.hash.hexdigest(), self.size

    def abort(self) -> None:
        """Stop after writing what is queued (the prefix stays usable for a later resume)."""
        self._join(timeout=60)

    def _join(self, timeout: float | None = None) -> None:
        if self.threads:
            self.hash_q.put(("stop",))
            for t in self.threads:
                t.join(timeout)
        if self.dfd >= 0 and not any(t.is_alive() for t in self.threads):
            os.close(self.dfd)
            self.dfd = -1

    def _hash_prefix(self) -> None:
        # Bytes from an earlier process: hashed once, before anything new is appended.
        buf = bytearray(BUF_SIZE)
        mv = memoryview(buf)
        left = self.prefix
        with open(self.path, "rb", buffering=0) as f:
            while left > 0:
                n = f.readinto(mv[: min(left, len(buf))])
                if not n:
                    raise OSError(f"part file shorter than expected: {self.path}")
                self.hash.update(mv[:n])
                left -= n

    def _prefix_only(self) -> None:
        # Hash the resumed prefix once, before any byte that follows it.
        if not self.prefix_pending:
            return
        self.prefix_pending = False
        try:
            self._hash_prefix()
        except OSError as exc:
            self.error = exc

    def _hash_one(self, msg: tuple[Any, ...]) -> None:
        if msg[0] == "data":
            _, buf, n, _release = msg
            if self.error is None:
                self.hash.update(memoryview(buf)[:n])
                self.size += n
        elif msg[0] == "reset":
            self.hash = hashlib.sha256()
            self.size = 0

    def _write_one(self, msg: tuple[Any, ...]) -> None:
        try:
            if msg[0] == "data":
                _, buf, n, release = msg
                try:
                    if self.error is None:
                        self._write(memoryview(buf)[:n])
                finally:
                    release.put(buf)
            elif msg[0] == "reset":
                try:
                    os.ftruncate(self.fd, 0)
                    self.written = self.synced = 0
                    if self.bar is not None:
                        self.bar.reset(total=self.bar.total)
                finally:
                    msg[1].set()
        except BaseException as exc:  # disk full, I/O error: reported to submit()/finish()
            self.error = exc

    def _hasher(self) -> None:
        self._prefix_only()
        while True:
            msg = self.hash_q.get()
            self._hash_one(msg)
            self.write_q.put(msg)
            if msg[0] == "stop":
                return

    def _writer(self) -> None:
        while True:
            msg = self.write_q.get()
            if msg[0] == "stop":
                return
            self._write_one(msg)

    def _write(self, mv: memoryview) -> None:
        n, off, done = len(mv), self.written, 0
        if self.direct and off % DIRECT_ALIGN == 0 and n >= DIRECT_ALIGN:
            # Buffers are page-aligned mmaps and chunks are MiB multiples, so everything but
            # the file's tail (or what follows an odd-sized piece after a dropped connection)
            # qualifies.
            aligned = n - n % DIRECT_ALIGN
            try:
                if self.dfd < 0:
                    self.dfd = os.open(self.path, os.O_WRONLY | os.O_DIRECT | os.O_CLOEXEC)
                while done < aligned:
                    piece = mv[done : min(aligned, done + DIRECT_STEP)]
                    done += os.pwrite(self.dfd, piece, off + done)
            except OSError:
                self.direct = False  # not supported here after all: the page cache it is
        while done < n:
            # Bounded writes: the page cache sizes its folios after the write, and very large
            # folios are much dearer to allocate (measured: 4 MiB writes cost 3-5x the kernel
            # time of 1 MiB writes for the same bytes).
            done += os.pwrite(self.fd, mv[done : done + WRITE_STEP], off + done)
        self.written += n
        if self.bar is not None:
            self.bar.update(n)
        if not self.direct and self.written - self.synced >= WRITEBACK_STEP:
            # Start writeback now so the final fsync does not wait for a whole file of dirty
            # pages: the disk works while we receive and hash.
            start_writeback(self.fd, self.synced, self.written - self.synced)
            self.synced = self.written


def alloc_buffer(size: int) -> mmap.mmap:
    """A receive buffer: anonymous memory, page-aligned (O_DIRECT can DMA from it) and zeroed
    lazily by the kernel (no up-front memset of every page)."""
    buf = mmap.mmap(-1, size)
    if size >= 2 * MiB and hasattr(mmap, "MADV_HUGEPAGE"):
        # Huge pages where the kernel allows them: fewer page faults and TLB misses while the
        # kernel copies socket data in and sha256 reads it back.
        with contextlib.suppress(OSError):
            buf.madvise(mmap.MADV_HUGEPAGE)
    return buf


def direct_io_ok(path: Path) -> bool:
    """True when ``path``'s folder is on a local block filesystem where O_DIRECT is fast.

    Network (NFS, CIFS), overlay and memory filesystems keep the page cache: O_DIRECT there is
    unsupported or synchronous round trips.
    """
    if not hasattr(os, "O_DIRECT"):
        return False
    target = os.path.realpath(path.parent)
    best, fstype = "", ""
    try:
        with open("/proc/self/mounts", encoding="utf-8", errors="replace") as f:
            for line in f:
                fields = line.split()
                if len(fields) < 3:
                    continue
                mnt = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), fields[1])
                inside = target == mnt or target.startswith(mnt.rstrip("/") + "/")
                if inside and len(mnt) >= len(best):
                    best, fstype = mnt, fields[2]
    except OSError:
        return False
    return fstype in _DIRECT_FS


_sync_file_range: Callable[[int, int, int, int], int] | None = None
_SYNC_FILE_RANGE_WRITE = 2


def start_writeback(fd: int, offset: int, length: int) -> None:
    """Ask the kernel to start writing a range back, without waiting and without evicting it.

    Linux's sync_file_range(2) has no binding in ``os``; ctypes reaches it. Elsewhere this is a
    no-op (the final fsync then does all the work).
    """
    global _sync_file_range
    if _sync_file_range is None:
        fn: Any = None
        if sys.platform.startswith("linux"):
            import ctypes  # lazy: only the download path needs it

            with contextlib.suppress(OSError, AttributeError):
                libc = ctypes.CDLL(None, use_errno=True)
                fn = libc.sync_file_range
                fn.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
                fn.restype = ctypes.c_int
        _sync_file_range = fn or (lambda *_: 0)
    _sync_file_range(fd, offset, length, _SYNC_FILE_RANGE_WRITE)

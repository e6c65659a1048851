"""modelhub's transfer engine: the only module that speaks HTTP for modelhub's own downloads.

``fetch`` gets small resources (manifests, metadata) into memory; ``download_file`` streams a
file into a part file chosen by the store, hashing it inline, resuming within the call and across
processes, and pulling large files over several ranged connections. Redirects, token scoping,
retries and proxies are handled here (plumbing in :mod:`modelhub._http`), with the standard
library only, so the behaviour is the same everywhere and fully under our control.
"""

from __future__ import annotations

import http.client
import json
import mmap
import os
import queue
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from modelhub._http import (
    DIRECT_MIN,
    LARGE_READ_MIN,
    LARGE_READ_STEP,
    MAX_REDIRECTS,
    POOL,
    READ_STEP,
    REDIRECT_STATUSES,
    USER_AGENT,
    Conn,
    MiB,
    Retryable,
    Sink,
    alloc_buffer,
    backoff_delay,
    classify_os_error,
    direct_io_ok,
    drain_and_release,
    header_dict,
    make_bar,
    parse_content_range,
    parse_retry_after,
    parse_url,
    read_into,
    redact,
    redirect_target,
    remove_files,
    same_origin,
    strong_etag,
)
from modelhub.config import settings
from modelhub.errors import (
    AuthError,
    HashMismatchError,
    HTTPStatusError,
    ModelhubError,
    ModelNotFoundError,
    NetworkError,
    OfflineError,
    SizeMismatchError,
    TransferTimeoutError,
)

__all__ = ["Download", "Response", "download_file", "fetch", "parse_retry_after"]

BUF_SIZE = 4 * MiB  # single-connection receive buffers (readinto target, then hashed + written)
SINGLE_BUFFERS = 8  # in flight between receive, hash and write: absorbs stalls in any stage
CHUNK_SIZE = 8 * MiB  # parallel path: one Range request per chunk
PARALLEL_MIN = 32 * MiB  # below this, one connection is as fast and simpler
MAX_WORKERS = 16
# A first chunk whose second half arrives at least this fast (bytes/s; the first half absorbs
# connection set-up, time to first byte and TCP slow start) means one connection already
# outruns sha256 and the disk (~1-2 GB/s each here): more connections would only add threads,
# memory and copies, so the rest comes over that one connection. Slower links (a CDN over the
# internet, tens of MB/s per connection; 1 Gbit/s Ethernet, whose link is the limit either
# way) go parallel.
SINGLE_STREAM_RATE = 128 * MiB
MAX_WINDOW = 12  # chunks in memory at most (~96 MiB) unless more workers than that
MAX_RESTARTS = 3  # the file changed under us this often: give up
PROGRESS_RESET = 1 * MiB  # an attempt that moved this much does not count as a failure
T = TypeVar("T")


@dataclass(frozen=True)
class Response:
    """A small HTTP response held in memory."""

    status: int
    headers: dict[str, str]  # lower-cased names
    body: bytes
    url: str  # final URL after redirects


@dataclass(frozen=True)
class Download:
    """What ``download_file`` did: the content's identity and how it was fetched."""

    sha256: str  # hex of the whole file
    size: int
    url: str  # final URL
    etag: str | None
    last_modified: str | None
    resumed_from: int  # bytes already present from an earlier process (0 if none)
    connections: int  # connections used for the body
    bytes_fetched: int  # body bytes actually received over the network in this call


class _Restart(Exception):
    """Internal: the remote file changed (validator mismatch); start again from byte 0."""


# --- requests, redirects, status mapping, retries ----------------------------------------------
class _Session:
    """One logical transfer: the original URL, its token scope, timeout and retry budget."""

    def __init__(self, url: str, headers: Mapping[str, str] | None, token: str | None) -> None:
        cfg = settings()
        if cfg.offline:
            raise OfflineError(f"offline mode is on; not fetching {redact(url)}")
        parse_url(url)  # reject non-http(s) URLs before any I/O
        self.url = url
        self.token = token
        self.extra = dict(headers or {})
        self.timeout = cfg.timeout
        self.retries = max(0, cfg.retries)

    def headers_for(self, url: str, extra: Mapping[str, str]) -> dict[str, str]:
        """Headers for a request to ``url``: credentials only to the original origin."""
        trusted = same_origin(self.url, url)
        out = {"User-Agent": USER_AGENT}
        for name, value in self.extra.items():
            if trusted or name.lower() not in ("authorization", "cookie", "proxy-authorization"):
                out[name] = value
        if self.token and trusted:
            out["Authorization"] = f"Bearer {self.token}"
        out.update(extra)
        return out

    def open(
        self,
        method: str,
        extra: Mapping[str, str],
        url: str | None = None,
        follow: bool = True,
    ) -> tuple[Conn, http.client.HTTPResponse, str]:
        """Send one request and follow redirects; return the first non-redirect response."""
        url = url or self.url
        for _ in range(MAX_REDIRECTS + 1):
            target = parse_url(url)
            headers = self.headers_for(url, extra)
            conn = POOL.get(target, self.timeout)
            try:
                resp = conn.request(method, target, headers)
            except Retryable as exc:
                if not conn.reused or exc.timeout:
                    raise
                # An idle keep-alive connection the server had closed: one free retry.
                conn = POOL.fresh(target, self.timeout)
                resp = conn.request(method, target, headers)
            location = resp.getheader("Location")
            if not follow or resp.status not in REDIRECT_STATUSES or not location:
                return conn, resp, url
            drain_and_release(conn, resp)
            url, method = redirect_target(url, location, resp.status, method)
        raise NetworkError(f"too many redirects (> {MAX_REDIRECTS}) from {redact(self.url)}")

    def check(
        self,
        conn: Conn,
        resp: http.client.HTTPResponse,
        url: str,
        allow_not_found: bool = False,
    ) -> None:
        """Raise the typed error for a failure status (Retryable for the transient ones)."""
        status = resp.status
        if status < 300 or status == 304 or (status == 404 and allow_not_found):
            return
        if status in REDIRECT_STATUSES:
            return  # only seen when not following redirects
        retry_after = parse_retry_after(resp.getheader("Retry-After") or "")
        drain_and_release(conn, resp)
        where = redact(self.url)
        if url != self.url:
            where += f" (redirected to {redact(url)})"
        if status in (401, 403):
            sent = self.token is not None and same_origin(self.url, url)
            hint = "the token was refused" if sent else "no token was sent"
            raise AuthError(f"HTTP {status}: access denied to {where} ({hint})")
        if status in (404, 410):
            raise ModelNotFoundError(f"not found (HTTP {status}): {where}")
        if status in (408, 429) or status >= 500:
            raise Retryable(f"HTTP {status} from {where}", retry_after=retry_after)
        raise HTTPStatusError(f"HTTP {status} {resp.reason} from {where}", status)

    def final_error(self, exc: Retryable, attempts: int) -> ModelhubError:
        """The error to raise once retries are exhausted."""
        tail = f"{attempts} attempt{'s' if attempts != 1 else ''}"
        if exc.timeout:
            return TransferTimeoutError(
                f"{exc.reason} (timeout {self.timeout:g} s, {tail}): {redact(self.url)}"
            )
        if exc.unreachable:
            return NetworkError(f"{exc.reason} ({tail})")
        return NetworkError(f"{exc.reason} (gave up after {tail})")

    def run(
        self,
        attempt: Callable[[], T],
        progress: Callable[[], int] | None = None,
        stop: threading.Event | None = None,
    ) -> T:
        """Call ``attempt`` until it succeeds, backing off on Retryable failures.

        An attempt that moved the transfer forward (``progress``) resets the failure count, so
        a long download over a flaky link is not capped by the number of drops.
        """
        failures = attempts = 0
        while True:
            before = progress() if progress else 0
            attempts += 1
            try:
                return attempt()
            except Retryable as exc:
                moved = (progress() - before) if progress else 0
                failures = 1 if moved >= PROGRESS_RESET else failures + 1
                if failures > self.retries:
                    raise self.final_error(exc, attempts) from None
                delay = exc.retry_after if exc.retry_after is not None else backoff_delay(failures)
                if stop is not None:
                    if stop.wait(delay):
                        raise NetworkError("transfer cancelled") from None
                else:
                    time.sleep(delay)


def fetch(
    url: str,
    *,
    method: str = "GET",
    headers: Mapping[str, str] | None = None,
    token: str | None = None,
    max_bytes: int = 64 * 2**20,
    allow_not_found: bool = False,
    follow_redirects: bool = True,
) -> Response:
    """Fetch a small resource (JSON manifest, metadata) into memory.

    Follows redirects (token only to the original origin), retries transient failures and maps
    failure statuses to typed errors. ``allow_not_found=True`` returns a 404 Response instead of
    raising. A body larger than ``max_bytes`` raises :class:`ModelhubError`.
    ``follow_redirects=False`` returns the first 3xx response as is (e.g. to read its headers).
    """
    session = _Session(url, headers, token)

    def attempt() -> Response:
        conn, resp, final = session.open(method.upper(), {}, follow=follow_redirects)
        session.check(conn, resp, final, allow_not_found)
        hdrs = header_dict(resp)
        if resp.length is not None and resp.length > max_bytes:
            resp.close()
            conn.close()
            raise ModelhubError(f"response larger than {max_bytes} bytes: {redact(final)}")
        parts: list[bytes] = []
        got = 0
        try:
            while True:
                data = resp.read(min(MiB, max_bytes + 1 - got))
                if not data:
                    break
                parts.append(data)
                got += len(data)
                if got > max_bytes:
                    conn.close()
                    raise ModelhubError(f"response larger than {max_bytes} bytes: {redact(final)}")
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            raise classify_os_error(exc, parse_url(final), connecting=False) from None
        if resp.length:  # the connection closed before Content-Length bytes arrived
            conn.close()
            raise Retryable(f"response truncated from {redact(final)}")
        POOL.put(conn, resp)
        return Response(resp.status, hdrs, b"".join(parts), final)

    return session.run(attempt)


# --- download_file -------------------------------------------------------------------------------
class _Job:
    """The state of one download_file call."""

    def __init__(
        self,
        session: _Session,
        part: Path,
        expected_size: int | None,
        connections: int,
        bar: Any,
    ) -> None:
        self.session = session
        self.url = session.url
        self.part = part
        self.sidecar = part.with_name(part.name + ".json")
        self.expected_size = expected_size
        self.connections = max(1, connections)
        self.bar = bar
        self.size: int | None = None  # total size when known
        self.etag: str | None = None
        self.last_modified: str | None = None
        self.final_url = self.url
        self.offset = 0  # bytes handed to the sink: the next byte to request
        self.fetched = 0
        self.resumed_from = 0
        self.used_connections = 1
        self.restarts = 0
        self.probed = False  # the first request of a (re)start may probe for range support
        self.conn: Conn | None = None
        self.resp: http.client.HTTPResponse | None = None
        self.resp_end: int | None = None  # offset where the current response ends (None: EOF)
        self.parallel_first = False  # the response is a ranged probe: time it, then decide
        self.marks: list[tuple[int, float]] = []  # (offset, monotonic time) per buffer pumped
        self.buffers: queue.Queue[mmap.mmap] | None = None
        self.direct_ok: bool | None = None  # O_DIRECT suits the part's filesystem (lazy)
        self.sink: Sink

    # - resume bookkeeping -
    def prepare_resume(self) -> int:
        """Validate an earlier process's part file + sidecar; return the usable prefix length."""
        try:
            have = self.part.stat().st_size
            meta = json.loads(self.sidecar.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return 0
        if not isinstance(meta, dict) or meta.get("url") != self.url or have <= 0:
            return 0
        etag, modified, size = meta.get("etag"), meta.get("last_modified"), meta.get("size")
        if not (strong_etag(etag) or modified) or (size is not None and not isinstance(size, int)):
            return 0
        if size is not None:
            if self.expected_size is not None and size != self.expected_size:
                return 0
            if have > size:
                return 0
            # A complete part still needs its validator checked: re-request the last byte.
            have = min(have, size - 1)
        self.etag, self.last_modified, self.size = etag, modified, size
        return max(have, 0)

    def write_sidecar(self) -> None:
        meta = {
            "url": self.url,
            "etag": self.etag,
            "last_modified": self.last_modified,
            "size": self.size,
        }
        self.sidecar.write_text(json.dumps(meta), encoding="utf-8")

    def validator(self) -> str | None:
        return strong_etag(self.etag) or self.last_modified

    def restart(self) -> None:
        """Start over from byte 0 (content changed, or the server ignored our Range)."""
        self.restarts += 1
        if self.restarts > MAX_RESTARTS:
            raise NetworkError(f"the file kept changing on the server: {redact(self.url)}")
        self.sink.reset()
        self.offset = 0
        self.resumed_from = 0
        self.probed = False

    def drop_response(self) -> None:
        if self.conn is not None:
            self.conn.close()
        self.conn = self.resp = None

    # - the main loop -
    def transfer(self) -> None:
        """Fetch until the sink has the whole file (restarting on validator changes)."""
        while True:
            try:
                self.session.run(self.attempt, progress=lambda: self.offset)
                return
            except _Restart:
                self.drop_response()
                self.restart()

    def attempt(self) -> None:
        while True:
            if self.resp is None:
                if self.size is not None and self.offset >= self.size:
                    return
                self.open_next()
                continue
            if self.parallel_first:
                if not self.single_stream_suffices():
                    self.parallel()
                continue
            self.pump()
            if self.size is None:
                return  # length unknown: EOF was the end

    def open_next(self) -> None:
        """Request the rest of the file from ``offset`` and check the reply."""
        start = self.offset
        known = self.size if self.size is not None else self.expected_size
        hdrs: dict[str, str] = {}
        probe = (
            not self.probed
            and self.connections > 1
            and (known is None or known - start >= PARALLEL_MIN)
        )
        if probe:
            # A bounded first range tells whether ranges work and the size, and how fast one
            # connection is (see single_stream_suffices); its connection stays usable.
            hdrs["Range"] = f"bytes={start}-{start + CHUNK_SIZE - 1}"
        elif start > 0:
            hdrs["Range"] = f"bytes={start}-"
        validator = self.validator()
        if start > 0 and validator:
            hdrs["If-Range"] = validator
        self.probed = True
        conn, resp, final = self.session.open("GET", hdrs)
        if resp.status == 416 and "Range" in hdrs:
            drain_and_release(conn, resp)
            if start > 0:
                self.restart()  # our prefix is longer than the file: it changed
            return  # an empty file cannot satisfy a range: ask again without one
        self.session.check(conn, resp, final)
        etag = resp.getheader("ETag")
        modified = resp.getheader("Last-Modified")
        if resp.status == 206:
            cr = parse_content_range(resp.getheader("Content-Range"))
            if cr is None or cr[0] != start:
                conn.close()
                raise Retryable(f"bad Content-Range from {redact(final)}")
            changed = (self.etag and etag and etag != self.etag) or (
                not self.etag and self.last_modified and modified != self.last_modified
            )
            if start > 0 and changed:
                conn.close()
                raise _Restart()
            total: int | None = cr[2]
            end: int | None = cr[1] + 1
        elif resp.status == 200:
            if start > 0:
                self.restart()  # the server ignored Range or If-Range failed: body from 0
            total = end = resp.length
        else:
            drain_and_release(conn, resp)
            raise HTTPStatusError(
                f"unexpected HTTP {resp.status} from {redact(final)}", resp.status
            )
        if total is not None and self.expected_size is not None and total != self.expected_size:
            conn.close()
            raise SizeMismatchError(
                f"size mismatch for {redact(self.url)}: expected {self.expected_size} bytes, "
                f"server has {total}"
            )
        if (self.etag, self.last_modified, self.size) != (etag, modified, total):
            self.etag, self.last_modified, self.size = etag, modified, total
            self.write_sidecar()
        if total is not None and total >= DIRECT_MIN and not self.sink.direct:
            if self.direct_ok is None:
                self.direct_ok = direct_io_ok(self.part)
            if self.direct_ok:
                self.sink.use_direct()
        if self.bar is not None and total is not None and self.bar.total != total:
            self.bar.total = total
            self.bar.refresh()
        self.final_url = final
        self.conn, self.resp, self.resp_end = conn, resp, end
        self.parallel_first = (
            resp.status == 206
            and probe
            and total is not None
            and end is not None
            and end < total
            and total - start >= PARALLEL_MIN
        )

    def pump(self) -> None:
        """Single connection: read the current response into buffers handed to the sink."""
        if self.buffers is None:
            self.buffers = queue.Queue()
            for _ in range(SINGLE_BUFFERS):
                self.buffers.put(alloc_buffer(BUF_SIZE))
        conn, resp, end = self.conn, self.resp, self.resp_end
        assert conn is not None and resp is not None
        large = self.size is not None and self.size >= LARGE_READ_MIN
        step = LARGE_READ_STEP if large else READ_STEP
        while end is None or self.offset < end:
            buf = self.buffers.get()
            want = BUF_SIZE if end is None else min(BUF_SIZE, end - self.offset)
            n, err = read_into(resp, memoryview(buf)[:want], step)
            if n:
                last = self.size is not None and self.offset + n >= self.size
                self.sink.submit(buf, n, self.buffers, last=last)
                self.offset += n
                self.fetched += n
                self.marks.append((self.offset, time.monotonic()))
            else:
                self.buffers.put(buf)
            if err is not None:
                self.drop_response()
                raise classify_os_error(err, parse_url(self.final_url), connecting=False)
            if n < want:
                if end is None:
                    break
                self.drop_response()
                raise Retryable(
                    f"connection closed at byte {self.offset} of {self.size} "
                    f"from {redact(self.final_url)}"
                )
        POOL.put(conn, resp)
        self.conn = self.resp = None

    def single_stream_suffices(self) -> bool:
        """Receive the probe's chunk on its connection and time its second half: True (and one
        connection from now on) when that arrived at SINGLE_STREAM_RATE or faster."""
        self.parallel_first = False
        self.marks = []
        self.pump()
        if len(self.marks) >= 2:
            (a, t0), (b, t1) = self.marks[0], self.marks[-1]
            if (b - a) / max(t1 - t0, 1e-6) >= SINGLE_STREAM_RATE:
                self.connections = 1
                return True
        self.parallel_first = self.size is not None and self.offset < self.size
        return not self.parallel_first

    # - the parallel path -
    def parallel(self) -> None:
        """Fetch fixed chunks over several keep-alive connections; write them in order."""
        assert self.size is not None
        start, total = self.offset, self.size
        nchunks = -(-(total - start) // CHUNK_SIZE)
        workers = min(self.connections, nchunks, MAX_WORKERS)
        # Bounded window: chunks being fetched + fetched-but-not-written. Caps memory.
        window = min(nchunks, max(workers + 1, min(2 * workers, MAX_WINDOW)))
        pool: queue.Queue[mmap.mmap] = queue.Queue()
        for _ in range(window):
            pool.put(alloc_buffer(CHUNK_SIZE))
        done: dict[int, tuple[mmap.mmap, int]] = {}
        errors: list[BaseException] = []
        cond = threading.Condition()
        stop = threading.Event()
        fetched = [0] * workers
        active: list[Conn | None] = [None] * workers
        counter = [0]  # the next chunk index to hand out
        self.parallel_first = False

        def take_buffer() -> mmap.mmap | None:
            while not stop.is_set():
                try:
                    return pool.get(timeout=0.2)
                except queue.Empty:
                    continue
            return None

        def worker(w: int) -> None:
            try:
                while not stop.is_set():
                    buf = take_buffer()
                    if buf is None:
                        return
                    with cond:
                        idx = counter[0]
                        counter[0] += 1
                    if idx >= nchunks:
                        pool.put(buf)
                        return
                    a = start + idx * CHUNK_SIZE
                    b = min(total, a + CHUNK_SIZE)
                    mv = memoryview(buf)[: b - a]
                    n = self.fetch_chunk(w, a, mv, stop, fetched, active)
                    with cond:
                        done[idx] = (buf, n)
                        cond.notify_all()
            except BaseException as exc:
                with cond:
                    errors.append(exc)
                    stop.set()
                    cond.notify_all()

        threads = [
            threading.Thread(target=worker, args=(w,), name=f"modelhub-get-{w}", daemon=True)
            for w in range(workers)
        ]
        for t in threads:
            t.start()
        self.used_connections = max(self.used_connections, workers)
        try:
            for idx in range(nchunks):
                with cond:
                    while idx not in done and not errors:
                        cond.wait(0.5)
                    if errors:
                        raise errors[0]
                    buf, n = done.pop(idx)
                self.sink.submit(buf, n, pool)
                self.offset += n
        finally:
            stop.set()
            for conn in list(active):
                if conn is not None:
                    conn.abort()
            for t in threads:
                t.join(timeout=30)
            self.fetched += sum(fetched)

    def fetch_chunk(
        self,
        w: int,
        a: int,
        mv: memoryview,
        stop: threading.Event,
        fetched: list[int],
        active: list[Conn | None],
    ) -> int:
        """Fill ``mv`` with bytes ``a..a+len(mv)`` (retrying from what arrived, not from ``a``)."""
        got = 0
        validator = self.validator()
        state: dict[str, Any] = {"conn": None, "resp": None}

        def attempt() -> int:
            nonlocal got
            if state["resp"] is None:
                hdrs = {"Range": f"bytes={a + got}-{a + len(mv) - 1}"}
                if validator:
                    hdrs["If-Range"] = validator
                c, r, final = self.session.open("GET", hdrs, url=self.final_url)
                active[w] = c
                self.session.check(c, r, final)
                cr = parse_content_range(r.getheader("Content-Range"))
                if r.status == 200:
                    c.close()
                    raise _Restart()  # If-Range failed: the file changed
                if r.status != 206 or cr is None or cr[0] != a + got:
                    c.close()
                    raise Retryable(f"bad range reply from {redact(final)}")
                state["conn"], state["resp"] = c, r
            c, r = state["conn"], state["resp"]
            active[w] = c
            n, err = read_into(r, mv[got:])
            got += n
            fetched[w] += n
            if err is None and got < len(mv) and r.isclosed() and not r.length:
                POOL.put(c, r)  # the server sent a shorter range than asked: ask for the rest
                state["conn"] = state["resp"] = None
                return attempt()
            if err is not None or got < len(mv):
                c.close()
                state["conn"] = state["resp"] = None
                if err is not None:
                    raise classify_os_error(err, parse_url(self.final_url), False)
                raise Retryable(f"connection closed mid-chunk: {redact(self.final_url)}")
            POOL.put(c, r)
            return got

        return self.session.run(attempt, progress=lambda: got, stop=stop)


def download_file(
    url: str,
    part_path: Path,
    *,
    expected_sha256: str | None = None,
    expected_size: int | None = None,
    token: str | None = None,
    headers: Mapping[str, str] | None = None,
    progress: bool | None = None,
    desc: str | None = None,
    connections: int | None = None,
) -> Download:
    """Download ``url`` into ``part_path`` (plus a resume sidecar), hashing sha256 inline.

    On success ``part_path`` holds the complete, fsynced content and the sidecar
    (``<part>.json``) is gone; the caller renames the part into place. A part + sidecar left by
    an interrupted process is resumed (``Range`` + ``If-Range``) when the validator still
    matches; otherwise the download restarts from 0. Large files (>= 32 MiB, ranges supported)
    are fetched over up to ``connections`` keep-alive connections (default:
    settings().connections) when the first 8 MiB arrive slower than SINGLE_STREAM_RATE;
    from 64 MiB on a local filesystem they are written with O_DIRECT (no page-cache copy).

    Raises HashMismatchError / SizeMismatchError (part removed), AuthError, ModelNotFoundError,
    HTTPStatusError, OfflineError, TransferTimeoutError or NetworkError (part kept for resume).
    """
    session = _Session(url, headers, token)
    part_path = Path(part_path)
    part_path.parent.mkdir(parents=True, exist_ok=True)
    nconn = settings().connections if connections is None else connections
    job = _Job(session, part_path, expected_size, nconn, None)
    prefix = job.prepare_resume()
    if not prefix:
        remove_files(job.sidecar)
    job.offset = job.resumed_from = prefix
    bar = job.bar = make_bar(progress, desc, url, prefix)
    fd = os.open(part_path, os.O_WRONLY | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
    try:
        os.ftruncate(fd, prefix)
        job.sink = Sink(fd, part_path, prefix, bar)
        try:
            job.transfer()
            digest, size = job.sink.finish()
        except BaseException:
            job.drop_response()
            job.sink.abort()
            raise
    except BaseException as exc:
        os.close(fd)
        if bar is not None:
            bar.close()
        # A network failure keeps the prefix + sidecar for a later resume; anything else means
        # the bytes are useless or wrong.
        if not isinstance(exc, (NetworkError, KeyboardInterrupt)):
            remove_files(part_path, job.sidecar)
        raise
    os.close(fd)
    if bar is not None:
        bar.close()
    for expected in (expected_size, job.size):
        if expected is not None and size != expected:
            remove_files(part_path, job.sidecar)
            raise SizeMismatchError(
                f"size mismatch for {redact(url)}: expected {expected} bytes, got {size}"
            )
    if expected_sha256 is not None and digest != expected_sha256.strip().lower():
        remove_files(part_path, job.sidecar)
        raise HashMismatchError(
            f"sha256 mismatch for {redact(url)}: expected {expected_sha256.strip()[:16]}..., "
            f"got {digest[:16]}..."
        )
    remove_files(job.sidecar)
    return Download(
        sha256=digest,
        size=size,
        url=job.final_url,
        etag=job.etag,
        last_modified=job.last_modified,
        resumed_from=job.resumed_from,
        connections=job.used_connections,
        bytes_fetched=job.fetched,
    )

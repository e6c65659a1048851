"""The state machine of one ``download_file`` call: resume bookkeeping (part file + sidecar),
the single-connection pump into the :class:`~modelhub.sink.Sink`, the ranged probe that decides
whether more connections pay, and the parallel chunked path.
"""

from __future__ import annotations

import http.client
import json
import mmap
import queue
import threading
import time
from pathlib import Path
from typing import Any

from modelhub._http import (
    MiB,
    Retryable,
    classify_os_error,
    parse_content_range,
    parse_url,
    redact,
    strong_etag,
)
from modelhub.connections import (
    LARGE_READ_MIN,
    LARGE_READ_STEP,
    POOL,
    READ_STEP,
    Conn,
    drain_and_release,
    read_into,
)
from modelhub.errors import HTTPStatusError, NetworkError, SizeMismatchError
from modelhub.http_session import Session
from modelhub.sink import DIRECT_MIN, Sink, alloc_buffer, direct_io_ok

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


class Restart(Exception):
    """Internal: the remote file changed (validator mismatch); start again from byte 0."""


class Job:
    """The state of one download_file call."""

    def __init__(
        self,
        session: Session,
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
            except Restart:
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
                raise Restart()
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
                # The URL the last response came from (a signed redirect target, re-resolved
                # from the original URL once its signature has expired).
                c, r, final = self.session.open_again(hdrs, self.final_url)
                active[w] = c
                self.session.check(c, r, final)
                self.final_url = final
                cr = parse_content_range(r.getheader("Content-Range"))
                if r.status == 200:
                    c.close()
                    raise Restart()  # If-Range failed: the file changed
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

"""The state machine of one ``download_file`` call: resume bookkeeping (part file + sidecar),
the single-connection pump into the :class:`~modelhub.sink.Sink`, the ranged probe that decides
whether more connections pay, and the parallel chunked path.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import mmap
import os
import queue
import threading
import time
from pathlib import Path
from typing import Any

from modelhub._http import (
    MiB,
    Retryable,
    classify_os_error,
    declared_md5,
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
from modelhub.sink import DIRECT_MIN, Ranges, Sink, alloc_buffer, direct_io_ok

BUF_SIZE = 4 * MiB  # single-connection receive buffers (readinto target, then hashed + written)
SINGLE_BUFFERS = 8  # in flight between receive, hash and write: absorbs stalls in any stage
# The first request of a file that may be split asks for this much (a ranged probe): its reply
# tells whether ranges work, the size, the request's latency and one connection's rate.
PROBE_SIZE = 8 * MiB
MARK_STEP = 1 * MiB  # the probe is received in steps this large, each one timed
CHUNK_SIZE = 8 * MiB  # parallel path: the shortest run one Range request asks for
CHUNK_MIN = 1 * MiB
CHUNK_MAX = 16 * MiB
RUN_MAX = 64 * MiB  # the longest
PIECE = 4 * MiB  # a parallel connection writes what it received every this many bytes
MAX_WORKERS = 16
# A probe whose body (its second half; the first absorbs connection set-up, time to first
# byte and TCP slow start) arrives at least this fast (bytes/s) means one connection already
# outruns sha256 and the disk (~1-2 GB/s each here): more connections would only add threads,
# memory and copies, so the rest comes over that one connection. Slower links (a CDN over the
# internet, tens of MB/s per connection) may go parallel.
SINGLE_STREAM_RATE = 128 * MiB
# Splitting must save this much wall time at least (seconds), beyond the latency a new
# connection costs: a file that one connection fetches in a blink is never split.
MIN_GAIN = 0.1
# The parallel path starts with this many connections (within the ceiling, settings().
# connections), then doubles them while the measured throughput grows by GROWTH per doubling;
# a rest the probe's rate needs LONG_REST seconds or more for starts at the ceiling.
START_CONNECTIONS = 4
LONG_REST = 20.0
GROWTH = 1.3
MEASURE_MIN = 0.25  # seconds of measurement per step (at least; more on a high-latency link)
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
        self.sidecar_tmp = part.with_name(part.name + ".json.tmp")
        # What of the part file is written. One stream: its size says so; once the parallel
        # path writes out of order (sparse), the sidecar lists the ranges as they land.
        self.done = Ranges()
        self.sparse = False
        self.sidecar_lock = threading.Lock()
        self.expected_size = expected_size
        self.connections = max(1, connections)
        self.bar = bar
        self.size: int | None = None  # total size when known
        self.etag: str | None = None
        self.content_md5: str | None = None
        self.last_modified: str | None = None
        self.final_url = self.url
        self.offset = 0  # bytes handed to the sink: the next byte to request
        self.fetched = 0
        self.resumed_from = 0
        self.used_connections = 1
        self.restarts = 0
        # Whether one connection or several: decided once per (re)start, by a ranged probe
        # received to its end. A probe cut short is sent again from where it stopped.
        self.decided = False
        self.rate = 0.0  # one connection's rate measured by the probe (bytes/s)
        self.latency = 0.0  # the probe's request: sent to headers received (seconds)
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
        """Validate an earlier process's part file + sidecar; return the usable prefix length
        (``self.done`` then holds every usable range, the prefix and any written beyond it)."""
        with contextlib.suppress(OSError):
            self.sidecar_tmp.unlink()  # a sidecar update cut short by a kill
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
        if size is not None and self.expected_size is not None and size != self.expected_size:
            return 0
        spans = meta.get("ranges") or []
        sparse = meta.get("sparse") is True
        try:
            spans = [(int(a), int(b)) for a, b in spans]
        except (TypeError, ValueError):
            return 0
        if not sparse:
            spans.append((0, have))  # written in order: the file's size is the prefix
        limit = min(have, size if size is not None else have)
        if (size is not None and have > size) or any(b > limit for _, b in spans):
            return 0
        done = Ranges(spans)
        if size is not None and done.covering(0) == size:
            # A complete part still needs its validator checked: re-request the last byte.
            done = Ranges([(0, size - 1)])
        self.etag, self.last_modified, self.size = etag, modified, size
        self.done, self.sparse = done, sparse
        return done.covering(0) or 0

    def write_sidecar(self) -> None:
        """Record the validator (and, once chunks land out of order, the written ranges); the
        file is replaced whole, so a kill never leaves half a sidecar."""
        with self.sidecar_lock:
            meta: dict[str, Any] = {
                "url": self.url,
                "etag": self.etag,
                "last_modified": self.last_modified,
                "size": self.size,
            }
            if self.sparse:
                meta.update(sparse=True, ranges=self.done.copy())
            tmp = self.sidecar_tmp
            tmp.write_text(json.dumps(meta), encoding="utf-8")
            os.replace(tmp, self.sidecar)

    def written(self, a: int, b: int) -> None:
        """The sink wrote ``a..b``: record it (in the sidecar too once writes are sparse)."""
        self.done.add(a, b)
        if self.sparse:
            self.write_sidecar()

    def missing_from(self, pos: int) -> int:
        """Bytes from ``pos`` to the end that are still to fetch (the size must be known)."""
        return sum(b - a for a, b in self.done.missing(pos, self.size or 0))

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
        self.decided = False
        self.done = Ranges()
        if self.sparse:
            self.sparse = False
            self.write_sidecar()

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
                end = self.done.covering(self.offset)
                if end is not None:  # written already (out of order, or by another process)
                    self.sink.hash_range(self.offset, end)
                    self.offset = end
                    continue
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
        # Bytes written beyond ``start`` (out of order, by this or an earlier process): ask
        # only for the gap before them, and hash them from the file when the gap is in.
        upto = self.done.next_start(start)
        resuming = start > 0 or upto is not None
        if self.size is not None:
            known = start + self.missing_from(start)
        probe = (
            not self.decided
            and self.connections > 1
            and (known is None or known - start > PROBE_SIZE)
        )
        if probe:
            # A bounded first range tells whether ranges work and the size, and how fast one
            # connection is (see single_stream_suffices); its connection stays usable.
            last = start + PROBE_SIZE if upto is None else min(upto, start + PROBE_SIZE)
            hdrs["Range"] = f"bytes={start}-{last - 1}"
        elif upto is not None:
            hdrs["Range"] = f"bytes={start}-{upto - 1}"
        elif start > 0:
            hdrs["Range"] = f"bytes={start}-"
        validator = self.validator()
        if resuming and validator:
            hdrs["If-Range"] = validator
        self.decided = self.decided or not probe
        sent_at = time.monotonic()
        conn, resp, final = self.session.open("GET", hdrs)
        if probe:
            self.latency = time.monotonic() - sent_at
        if resp.status == 416 and "Range" in hdrs:
            drain_and_release(conn, resp)
            if start > 0:
                self.restart()  # our prefix is longer than the file: it changed
            return  # an empty file cannot satisfy a range: ask again without one
        self.session.check(conn, resp, final)
        etag = resp.getheader("ETag")
        modified = resp.getheader("Last-Modified")
        self.content_md5 = declared_md5(resp, whole=resp.status == 200) or self.content_md5
        if resp.status == 206:
            cr = parse_content_range(resp.getheader("Content-Range"))
            if cr is None or cr[0] != start:
                conn.close()
                raise Retryable(f"bad Content-Range from {redact(final)}")
            changed = (self.etag and etag and etag != self.etag) or (
                not self.etag and self.last_modified and modified != self.last_modified
            )
            if resuming and changed:
                conn.close()
                raise Restart()
            total: int | None = cr[2]
            end: int | None = cr[1] + 1
        elif resp.status == 200:
            if resuming:
                self.restart()  # the server ignored Range or If-Range failed: body from 0
            self.decided = True  # no ranges: one stream it is
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
            and self.missing_from(end) >= 2 * CHUNK_MIN
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
            if self.parallel_first:
                want = min(want, MARK_STEP)  # the probe: every step timed
            n, err = read_into(resp, memoryview(buf)[:want], step)
            if n:
                last = self.size is not None and self.offset + n >= self.size
                self.sink.submit(buf, n, self.buffers, last=last)
                self.offset += n
                self.fetched += n
                if self.parallel_first:
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
        """Receive the probe's body on its connection, timing each step; then decide whether
        the rest comes over that one connection (True) or over several (False).

        One connection it is when the probe arrived at SINGLE_STREAM_RATE or faster (it
        already outruns the disk), or when splitting the rest in two would not save MIN_GAIN
        seconds beyond the latency a new connection costs (a small file, or a slow one on a
        long round trip)."""
        self.marks = [(self.offset, time.monotonic())]
        self.pump()  # parallel_first is still set: pump times every MARK_STEP
        self.parallel_first = False
        marks = self.marks[len(self.marks) // 2 :] if len(self.marks) > 2 else self.marks
        (a, t0), (b, t1) = marks[0], marks[-1]
        self.rate = (b - a) / max(t1 - t0, 1e-6)
        self.decided = True
        left = self.missing_from(self.offset)
        if self.rate >= SINGLE_STREAM_RATE or left < 2 * CHUNK_MIN:
            self.connections = 1
            return True
        saved = left / self.rate / 2 - self.latency  # two connections instead of one
        if saved < MIN_GAIN + self.latency:
            self.connections = 1
            return True
        self.parallel_first = True
        return False

    # - the parallel path -
    def chunk_size(self, left: int, first: int) -> int:
        """The shortest run: CHUNK_SIZE, or 4 latencies' worth at the probe's rate when more
        (CHUNK_MAX at most), but no more than gives each of the ``first`` connections one; at
        least CHUNK_MIN, a multiple of it."""
        want = min(max(self.rate * self.latency * 4, CHUNK_SIZE), CHUNK_MAX, left / first)
        return int(-(-max(want, CHUNK_MIN) // CHUNK_MIN) * CHUNK_MIN)

    def parallel(self) -> None:
        """Fetch the rest over several keep-alive connections, a run of bytes per request.
        Each connection writes what it receives where it belongs (listed in the sidecar: a kill
        loses at most a PIECE per connection); the hash follows in file order, reading back the
        written prefix as it grows. Runs go out in file order, each a share of what is left
        (half of it over the connections, one chunk to RUN_MAX): long while much is left (a
        round trip per run, not per chunk), short at the end so the connections end together.
        START_CONNECTIONS first (within the ceiling), doubled while the measured throughput
        grows by GROWTH or more per doubling."""
        assert self.size is not None
        total = self.size
        ceiling = min(self.connections, MAX_WORKERS)
        gaps = self.done.missing(self.offset, total)  # what is not written yet
        left = sum(b - a for a, b in gaps)
        long_rest = left >= LONG_REST * max(self.rate, 1.0)
        first = ceiling if long_rest else max(1, min(ceiling, START_CONNECTIONS))
        chunk = self.chunk_size(left, first)
        if self.bar is not None:
            self.bar.update(total - self.offset - left)  # written by an earlier process
        # From here on the part file has holes: the sidecar lists what is written, before the
        # first byte lands. The hash reads the bytes back: keep them in the page cache.
        self.sparse = True
        self.write_sidecar()
        self.sink.direct = False
        errors: list[BaseException] = []
        cond = threading.Condition()
        stop = threading.Event()
        fetched = [0] * MAX_WORKERS
        active: list[Conn | None] = [None] * MAX_WORKERS
        cursor = [0, gaps[0][0] if gaps else total]  # [gap index, next byte to hand out]
        self.parallel_first, threads, target = False, list[threading.Thread](), [first]

        def take_run() -> tuple[int, int] | None:
            with cond:
                gap, pos = cursor
                while gap < len(gaps) and pos >= gaps[gap][1]:
                    gap += 1
                    pos = gaps[gap][0] if gap < len(gaps) else total
                if gap >= len(gaps):
                    cursor[:] = [gap, pos]
                    return None
                rest = sum(b - max(a, pos) for a, b in gaps[gap:])
                want = min(max(rest // (2 * target[0]), chunk), RUN_MAX)
                end = min(pos + -(-want // CHUNK_MIN) * CHUNK_MIN, gaps[gap][1])
                if gaps[gap][1] - end < CHUNK_MIN:
                    end = gaps[gap][1]  # no sliver left behind
                cursor[:] = [gap, end]
                return pos, end

        def worker(w: int) -> None:
            try:
                buf = memoryview(alloc_buffer(PIECE))
                while not stop.is_set():
                    run = take_run()
                    if run is None:
                        return
                    self.fetch_run(w, run, buf, stop, fetched, active, cond)
            except BaseException as exc:
                with cond:
                    errors.append(exc)
                    stop.set()
                    cond.notify_all()

        def spawn(workers: int) -> None:
            target[0] = workers
            for w in range(len(threads), workers):
                t = threading.Thread(
                    target=worker, args=(w,), name=f"modelhub-get-{w}", daemon=True
                )
                threads.append(t)
                t.start()
            self.used_connections = max(self.used_connections, len(threads))

        # Growth: after each step, let the new connections settle (a handshake and a request:
        # two latencies), then measure the total rate for MEASURE_MIN (or 4 latencies).
        settle, window = 2 * self.latency, max(MEASURE_MIN, 4 * self.latency)
        step: dict[str, Any] = {"rate": self.rate, "at": 0.0, "bytes": 0, "growing": True}

        def steer() -> None:
            now = time.monotonic()
            if step["at"] == 0.0:
                if now - step["t0"] >= settle:
                    step["at"], step["bytes"] = now, sum(fetched)
                return
            if now - step["at"] < window:
                return
            rate = (sum(fetched) - step["bytes"]) / (now - step["at"])
            more = min(2 * len(threads), ceiling)
            unassigned = cursor[0] < len(gaps) and cursor[1] < gaps[-1][1]
            if rate >= GROWTH * step["rate"] and more > len(threads) and unassigned:
                step.update(rate=rate, at=0.0, t0=now)
                spawn(more)
            else:
                step["growing"] = False

        step["t0"] = time.monotonic()
        spawn(first)
        try:
            while self.offset < total:
                with cond:
                    end = self.done.covering(self.offset)
                    while end is None and not errors:
                        cond.wait(0.05 if step["growing"] else 0.5)
                        if step["growing"] and not errors:
                            steer()
                        end = self.done.covering(self.offset)
                    if errors or end is None:
                        raise errors[0]
                self.sink.hash_range(self.offset, end, count=False)
                self.offset = end
        finally:
            stop.set()
            for conn in list(active):
                if conn is not None:
                    conn.abort()
            for t in threads:
                t.join(timeout=30)
            self.fetched += sum(fetched)

    def fetch_run(
        self,
        w: int,
        run: tuple[int, int],
        buf: memoryview,
        stop: threading.Event,
        fetched: list[int],
        active: list[Conn | None],
        landed: threading.Condition,
    ) -> None:
        """Receive bytes ``run`` over one request (retrying from what arrived, not from its
        start), writing them into the part file every ``len(buf)`` bytes."""
        a, b = run
        got = kept = 0  # bytes of the run received; of those, written (the rest are in buf)
        validator = self.validator()
        state: dict[str, Any] = {"conn": None, "resp": None}

        def flush() -> None:
            nonlocal kept
            if got > kept:
                self.sink.write_at(buf[: got - kept], a + kept)  # recorded by written()
                kept = got
                with landed:
                    landed.notify_all()

        def attempt() -> None:
            nonlocal got
            if state["resp"] is None:
                hdrs = {"Range": f"bytes={a + got}-{b - 1}"}
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
            err = None
            while got < b - a and err is None:
                want = min(READ_STEP, b - a - got, len(buf) - (got - kept))
                n, err = read_into(r, buf[got - kept : got - kept + want])
                got += n
                fetched[w] += n  # per step: the growth measurement reads it
                if got - kept == len(buf) or got == b - a:
                    flush()
                if n < want:
                    break
            if err is None and got < b - a and r.isclosed() and not r.length:
                POOL.put(c, r)  # the server sent a shorter range than asked: ask for the rest
                state["conn"] = state["resp"] = None
                return attempt()
            if err is not None or got < b - a:
                c.close()
                state["conn"] = state["resp"] = None
                if err is not None:
                    raise classify_os_error(err, parse_url(self.final_url), False)
                raise Retryable(f"connection closed mid-run: {redact(self.final_url)}")
            POOL.put(c, r)

        try:
            self.session.run(attempt, progress=lambda: got, stop=stop)
        finally:
            with contextlib.suppress(OSError):
                flush()  # what arrived before a failure is kept for the next process

"""The state machine of one ``download_file`` call: resume bookkeeping (part file + sidecar),
the single-connection pump into the :class:`~modelhub.sink.Sink` and the ranged probe that
decides whether more connections pay (the parallel path itself is :mod:`modelhub.parallel_path`).
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
from modelhub.parallel_path import CHUNK_MIN, ParallelPath, Restart
from modelhub.sink import DIRECT_MIN, Ranges, Sink, alloc_buffer, direct_io_ok

BUF_SIZE = 4 * MiB  # single-connection receive buffers (readinto target, then hashed + written)
SINGLE_BUFFERS = 8  # in flight between receive, hash and write: absorbs stalls in any stage
# The first request of a file that may be split asks for this much (a ranged probe): its reply
# tells whether ranges work, the size, the request's latency and one connection's rate.
PROBE_SIZE = 8 * MiB
MARK_STEP = 1 * MiB  # the probe is received in steps this large, each one timed
# A probe whose body (its second half; the first absorbs connection set-up, time to first
# byte and TCP slow start) arrives at least this fast (bytes/s) means one connection already
# outruns sha256 and the disk (~1-2 GB/s each here): more connections would only add threads,
# memory and copies, so the rest comes over that one connection. Slower links (a CDN over the
# internet, tens of MB/s per connection) may go parallel.
SINGLE_STREAM_RATE = 128 * MiB
# Splitting must save this much wall time at least (seconds), beyond the latency a new
# connection costs: a file that one connection fetches in a blink is never split.
MIN_GAIN = 0.1
MAX_RESTARTS = 3  # the file changed under us this often: give up


class Job(ParallelPath):
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

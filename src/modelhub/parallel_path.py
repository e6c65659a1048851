"""The parallel path of a download: the rest of a file after the ranged probe, fetched as
runs of bytes over several keep-alive connections whose number grows while throughput does.

:class:`ParallelPath` is a part of :class:`modelhub.download_job.Job` (its state lives there);
this module holds the threads, the run schedule and the per-run retries.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from typing import Any

from modelhub._http import MiB, Retryable, classify_os_error, parse_content_range, parse_url, redact
from modelhub.connections import POOL, READ_STEP, Conn, read_into
from modelhub.errors import NetworkError
from modelhub.http_session import Session
from modelhub.sink import Ranges, Sink, alloc_buffer

CHUNK_SIZE = 8 * MiB  # parallel path: the shortest run one Range request asks for
CHUNK_MIN = 1 * MiB
CHUNK_MAX = 16 * MiB
RUN_MAX = 64 * MiB  # the longest
PIECE = 4 * MiB  # a parallel connection writes what it received every this many bytes
MAX_WORKERS = 16
# The parallel path starts with this many connections (within the ceiling, settings().
# connections), then doubles them while the measured throughput grows by GROWTH per doubling;
# a rest the probe's rate needs LONG_REST seconds or more for starts at the ceiling.
START_CONNECTIONS = 4
LONG_REST = 20.0
GROWTH = 1.3
MEASURE_MIN = 0.25  # seconds of measurement per step (at least; more on a high-latency link)


class Restart(Exception):
    """Internal: the remote file changed (validator mismatch); start again from byte 0."""


class ParallelPath:
    """The parallel half of a download job (mixed into :class:`~modelhub.download_job.Job`)."""

    session: Session
    sink: Sink
    done: Ranges
    bar: Any
    size: int | None
    offset: int
    fetched: int
    connections: int
    used_connections: int
    rate: float
    latency: float
    sparse: bool
    parallel_first: bool
    final_url: str
    write_sidecar: Callable[[], None]
    validator: Callable[[], str | None]

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
            # Cancelled (an error, an interrupt): unblock the workers still reading. After the
            # last byte landed they are only handing their connections back to the pool.
            with cond:  # see fetch_run: only connections being read are in ``active``
                stop.set()
                for conn in active if self.offset < total else ():
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

        # ``active[w]`` names the connection only while this worker reads its body, set and
        # cleared under the job's lock, which the cancel path aborts under: a connection handed
        # back to the shared pool (or about to be) is never shut down under another request.
        def hold(c: Conn) -> None:
            with landed:
                if stop.is_set():
                    c.close()
                    state["conn"] = state["resp"] = None
                    raise NetworkError("transfer cancelled")
                active[w] = c

        def let_go() -> None:
            with landed:
                active[w] = None

        def attempt() -> None:
            nonlocal got
            if state["resp"] is None:
                hdrs = {"Range": f"bytes={a + got}-{b - 1}"}
                if validator:
                    hdrs["If-Range"] = validator
                # The URL the last response came from (a signed redirect target, re-resolved
                # from the original URL once its signature has expired).
                c, r, final = self.session.open_again(hdrs, self.final_url)
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
            hold(c)
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
            let_go()
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

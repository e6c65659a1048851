"""The receiving end of a download: hash then write filled buffers, in file order, into the
part file (:class:`Sink`), with O_DIRECT for large files on local filesystems and early
writeback otherwise. Used by :mod:`modelhub.transfer` and the shared store's downloads
(:mod:`modelhub.remote`).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import mmap
import os
import queue
import re
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ._http import MiB

BUF_SIZE = 4 * MiB  # prefix re-hash buffer
WRITE_STEP = 1 * MiB  # bytes per os.write (see Sink._write)
WRITEBACK_STEP = 64 * MiB  # start writeback of the part file every this many bytes
DIRECT_MIN = 64 * MiB  # files this large bypass the page cache on local filesystems
DIRECT_ALIGN = 4096  # O_DIRECT offset/length/address alignment that every local fs accepts
DIRECT_STEP = 4 * MiB  # bytes per O_DIRECT write (measured here, 1 GiB in process: 4 and 8 MiB
# steps ~10% faster than 2 MiB, 1 MiB ~20% slower; an earlier, busier run had favoured 2 MiB)
# Local block filesystems where O_DIRECT is both supported and fast (not NFS, overlay, tmpfs).
_DIRECT_FS = frozenset({"ext2", "ext3", "ext4", "xfs", "btrfs", "f2fs"})


def remove_files(*paths: Path) -> None:
    """Unlink each path that exists."""
    for path in paths:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


class Ranges:
    """The byte ranges ``[a, b)`` of a part file known to be written: sorted, merged and
    safe to update from several threads (the parallel path's connections write out of order).
    """

    def __init__(self, spans: list[tuple[int, int]] | None = None) -> None:
        self.lock = threading.Lock()
        self.spans: list[tuple[int, int]] = []
        for a, b in spans or []:
            self.add(a, b)

    def add(self, a: int, b: int) -> None:
        """Record ``[a, b)`` as written."""
        if b <= a:
            return
        with self.lock:
            out: list[tuple[int, int]] = []
            for x, y in self.spans:
                if y < a or x > b:
                    out.append((x, y))
                else:
                    a, b = min(a, x), max(b, y)
            out.append((a, b))
            self.spans = sorted(out)

    def copy(self) -> list[tuple[int, int]]:
        """The spans as they are now."""
        with self.lock:
            return list(self.spans)

    def covering(self, pos: int) -> int | None:
        """The end of the span holding byte ``pos``, or None."""
        return next((b for a, b in self.copy() if a <= pos < b), None)

    def next_start(self, pos: int) -> int | None:
        """The first written byte after ``pos`` (the start of the next span), or None."""
        return next((a for a, _ in self.copy() if a > pos), None)

    def missing(self, a: int, b: int) -> list[tuple[int, int]]:
        """The gaps of ``[a, b)``: what is still to fetch there."""
        gaps, pos = [], a
        for x, y in self.copy():
            if y <= pos or x >= b:
                continue
            if x > pos:
                gaps.append((pos, x))
            pos = max(pos, y)
        if pos < b:
            gaps.append((pos, b))
        return gaps


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

    The parallel path writes its chunks itself, out of order, as they arrive (:meth:`write_at`,
    so a process killed while one chunk stalls keeps the later ones) and submits them for the
    hash with ``on_disk=True``; ranges an earlier process wrote are hashed from the file
    (:meth:`hash_range`). The hash always advances in file order. ``on_written(a, b)``, when
    set, hears of every range that reached the file.
    """

    def __init__(self, fd: int, path: Path, prefix: int, bar: Any, md5: bool = False) -> None:
        self.fd = fd
        self.path = path
        self.prefix = prefix
        self.size = prefix
        self.hash = hashlib.sha256()
        self.want_md5 = md5  # also an MD5 of the whole content, beside the sha256
        self.md5 = hashlib.md5(usedforsecurity=False) if md5 else None
        self.bar = bar
        self.error: BaseException | None = None
        self.hash_q: queue.SimpleQueue[tuple[Any, ...]] = queue.SimpleQueue()
        self.write_q: queue.SimpleQueue[tuple[Any, ...]] = queue.SimpleQueue()
        self.written = prefix  # the end of the last in-order write
        self.queued_to = prefix  # the file offset after everything submitted so far
        self.synced = prefix  # writeback already started up to here
        self.direct = False  # set by use_direct(); read by the writer thread
        self.dfd = -1  # the O_DIRECT descriptor, opened by the writer on first use
        self.threads: list[threading.Thread] = []  # started by the first submit() needing them
        self.prefix_pending = prefix > 0  # the resumed prefix is hashed before any new byte
        self.on_written: Callable[[int, int], None] | None = None
        self.dfd_lock = threading.Lock()

    def use_direct(self) -> None:
        """Write aligned blocks with O_DIRECT from now on (large files on local filesystems).

        The device then reads our buffers by DMA: no copy into the page cache, no page cache
        to allocate and write back (measured here: about 0.3 to 1.4 CPU-seconds per GiB saved,
        on a 2-core machine where the sha256 alone takes 0.6), and a large download does not
        evict what else is cached. Unaligned pieces (the tail) still go through the page cache.
        """
        self.direct = hasattr(os, "O_DIRECT")

    def submit(
        self,
        buf: mmap.mmap,
        n: int,
        release: queue.Queue[mmap.mmap],
        last: bool = False,
        on_disk: bool = False,
    ) -> None:
        """Queue ``buf[:n]``, the file's next bytes; the buffer goes back to ``release`` once
        written (``on_disk``: already written by :meth:`write_at`, only hashed).

        ``last``: these are the file's final bytes. When nothing was queued before them, they
        are hashed and written here and now (see the class docstring).
        """
        if self.error is not None:
            release.put(buf)
            raise self.error
        msg = ("data", buf, n, release, self.queued_to, on_disk)
        self.queued_to += n
        if last and not self.threads:
            self._prefix_only()
            self._hash_one(msg)
            self._write_one(msg)
            return
        self._start()
        self.hash_q.put(msg)

    def hash_range(self, a: int, b: int, count: bool = True) -> None:
        """Hash bytes ``a..b`` from the part file (written earlier, out of order or by an
        earlier process), in their place in file order; ``a`` must be where the hash is.
        ``count``: add them to the progress bar (False: write_at already did)."""
        if self.error is not None:
            raise self.error
        assert a == self.queued_to, (a, self.queued_to)
        self._start()
        self.hash_q.put(("disk", a, b, count))
        self.queued_to = b

    def write_at(self, mv: memoryview, off: int) -> None:
        """Write ``mv`` at ``off`` now, in the caller's thread (out of order; hashed later)."""
        self._write(mv, off)
        if not self.direct:
            start_writeback(self.fd, off, len(mv))

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
        self.queued_to = 0
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

    def md5_b64(self) -> str | None:
        """The base64 MD5 of the content (after :meth:`finish`), when asked for at creation."""
        return base64.b64encode(self.md5.digest()).decode() if self.md5 is not None else None

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

    def _hash_file(self, a: int, b: int) -> None:
        # Bytes already in the part file (an earlier process's, or written out of order).
        buf = bytearray(min(BUF_SIZE, max(b - a, 1)))
        mv = memoryview(buf)
        with open(self.path, "rb", buffering=0) as f:
            f.seek(a)
            while a < b:
                n = f.readinto(mv[: min(b - a, len(buf))])
                if not n:
                    raise OSError(f"part file shorter than expected: {self.path}")
                self._update(mv[:n])
                a += n

    def _hash_prefix(self) -> None:
        self._hash_file(0, self.prefix)

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
            _, buf, n, _release, _at, _on_disk = msg
            if self.error is None:
                self._update(memoryview(buf)[:n])
                self.size += n
        elif msg[0] == "disk":
            _, a, b, count = msg
            if self.error is None:
                try:
                    self._hash_file(a, b)
                except OSError as exc:
                    self.error = exc
                self.size += b - a
                if self.bar is not None and count:
                    self.bar.update(b - a)
        elif msg[0] == "reset":
            self.hash = hashlib.sha256()
            self.md5 = hashlib.md5(usedforsecurity=False) if self.want_md5 else None
            self.size = 0

    def _update(self, data: memoryview) -> None:
        self.hash.update(data)
        if self.md5 is not None:
            self.md5.update(data)

    def _write_one(self, msg: tuple[Any, ...]) -> None:
        try:
            if msg[0] == "data":
                _, buf, n, release, at, on_disk = msg
                try:
                    if self.error is None and not on_disk:
                        self._write(memoryview(buf)[:n], at)
                        self._writeback(at + n)
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

    def _direct_fd(self) -> int:
        with self.dfd_lock:  # the writer thread and the parallel path's connections
            if self.dfd < 0:
                self.dfd = os.open(self.path, os.O_WRONLY | os.O_DIRECT | os.O_CLOEXEC)
            return self.dfd

    def _write(self, mv: memoryview, off: int) -> None:
        n, done = len(mv), 0
        if self.direct and off % DIRECT_ALIGN == 0 and n >= DIRECT_ALIGN:
            # Buffers are page-aligned mmaps and chunks are MiB multiples, so everything but
            # the file's tail (or what follows an odd-sized piece after a dropped connection)
            # qualifies.
            aligned = n - n % DIRECT_ALIGN
            try:
                dfd = self._direct_fd()
                while done < aligned:
                    piece = mv[done : min(aligned, done + DIRECT_STEP)]
                    done += os.pwrite(dfd, piece, off + done)
            except OSError:
                self.direct = False  # not supported here after all: the page cache it is
        while done < n:
            # Bounded writes: the page cache sizes its folios after the write, and very large
            # folios are much dearer to allocate (measured: 4 MiB writes cost 3-5x the kernel
            # time of 1 MiB writes for the same bytes).
            done += os.pwrite(self.fd, mv[done : done + WRITE_STEP], off + done)
        if self.bar is not None:
            self.bar.update(n)
        if self.on_written is not None:
            self.on_written(off, off + n)

    def _writeback(self, end: int) -> None:
        self.written = end
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

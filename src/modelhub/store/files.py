"""Low-level file operations the store is built from: hashing, fsync, atomic writes, links."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
import shutil
from pathlib import Path

from ..errors import UsageError

_CHUNK = 4 * 2**20
# Linux FICLONE ioctl: share extents copy-on-write (btrfs, xfs, bcachefs, ...).
_FICLONE = 0x40049409


def sha256_file(path: Path) -> tuple[str, int]:
    """Return (sha256 hex, size) of a file, read once in 4 MiB blocks."""
    digest = hashlib.sha256()
    size = 0
    buf = bytearray(_CHUNK)
    view = memoryview(buf)
    with open(path, "rb", buffering=0) as fh:
        while n := fh.readinto(buf):
            digest.update(view[:n])
            size += n
    return digest.hexdigest(), size


def fsync_dir(path: Path) -> None:
    """fsync a directory so a rename inside it survives a crash (best effort)."""
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def fsync_file(path: Path) -> None:
    """Flush a file's data to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_bytes(target: Path, data: bytes, tmp_dir: Path) -> None:
    """Write ``data`` to ``target`` via a temporary file in ``tmp_dir`` + fsync + rename."""
    tmp_dir.mkdir(parents=True, exist_ok=True)
    tmp = tmp_dir / f".{target.name}.{os.getpid()}.{os.urandom(4).hex()}.tmp"
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp, target)
        fsync_dir(target.parent)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


# Filesystems (st_dev) that refused a reflink: not tried again in this process. Each attempt
# creates and removes the destination file (~0.5 ms on ext4), once per file of every pull.
_NO_REFLINK: set[int] = set()
_NO_REFLINK_ERRNOS = frozenset({errno.EOPNOTSUPP, errno.ENOTTY, errno.EINVAL, errno.ENOSYS})


def _reflink(src: Path, dst: Path) -> None:
    device = os.stat(dst.parent).st_dev
    if device in _NO_REFLINK:
        raise OSError(errno.EOPNOTSUPP, "reflinks are not supported here", str(dst))
    with open(src, "rb") as fin, open(dst, "wb") as fout:
        try:
            fcntl.ioctl(fout.fileno(), _FICLONE, fin.fileno())
        except OSError as exc:
            fout.close()
            dst.unlink(missing_ok=True)
            if exc.errno in _NO_REFLINK_ERRNOS and os.fstat(fin.fileno()).st_dev == device:
                _NO_REFLINK.add(device)  # the filesystem cannot, not this pair (EXDEV)
            raise


def link_or_copy(src: Path, dst: Path, mode: str) -> str:
    """Create ``dst`` from ``src`` by link ``mode``; return the mode actually used.

    ``auto`` tries reflink, then hardlink, then copy. An explicit mode that the filesystem
    cannot do falls back to copy as well (a link mode saves disk; it is never a reason to fail),
    except ``symlink``, which always works. ``dst`` must not exist.
    """
    if mode not in ("auto", "reflink", "hardlink", "symlink", "copy"):
        raise UsageError(f"unknown link mode {mode!r}: use auto, reflink, hardlink, symlink, copy")
    order = {
        "auto": ["reflink", "hardlink", "copy"],
        "reflink": ["reflink", "copy"],
        "hardlink": ["hardlink", "copy"],
        "symlink": ["symlink"],
        "copy": ["copy"],
    }[mode]
    for how in order:
        try:
            if how == "reflink":
                _reflink(src, dst)
            elif how == "hardlink":
                os.link(src, dst)
            elif how == "symlink":
                os.symlink(src.resolve(), dst)
            else:
                shutil.copyfile(src, dst)
            return how
        except OSError as exc:
            if how == order[-1] or exc.errno not in (
                errno.EXDEV,
                errno.EPERM,
                errno.EOPNOTSUPP,
                errno.ENOTTY,
                errno.EINVAL,
                errno.EMLINK,
                errno.EACCES,
                errno.ENOSYS,
            ):
                raise
    raise AssertionError("unreachable")  # pragma: no cover


def prune_empty(root: Path, folder: Path) -> None:
    """Remove ``folder`` and its parents up to (not including) ``root`` while they are empty."""
    root = root.absolute()
    while folder != root and root in folder.parents:
        try:
            folder.rmdir()
        except OSError:
            return
        folder = folder.parent


def place_file(src: Path, target: Path, mode: str) -> None:
    """Put ``src`` at ``target`` by link ``mode``, atomically (a temporary name beside it, then
    a rename): for SDK caches outside the store, whose readers must never see half a file.
    Nothing is done when ``target`` already is ``src``."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(OSError):
        if os.path.samefile(src, target):
            return
    tmp = target.with_name(f".{target.name}.{os.getpid()}.{os.urandom(4).hex()}.tmp")
    try:
        link_or_copy(src, tmp, mode)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)

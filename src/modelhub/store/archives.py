"""Safe extraction of untrusted archives (tar, tar.gz, zip) into a fresh folder.

Refused, with ArchiveError (exit 5) and nothing left behind: absolute member names, ``..``,
backslashes, symlinks or hard links pointing out of the archive's folder, symlinks that loop,
devices and FIFOs, more members or more bytes than the limits (decompression bombs; bytes are
counted as they are written, header sizes are not trusted). Tar uses the stdlib ``data``
filter on top of our checks.
"""

from __future__ import annotations

import gzip
import shutil
import stat
import tarfile
import zipfile
from pathlib import Path, PurePosixPath

from ..errors import ArchiveError

MAX_MEMBERS = 100_000
MAX_BYTES = 64 * 2**30  # far above any model, far below a bomb's "fill the disk"
MAX_RATIO = 200  # zip: uncompressed / compressed for one member


def _check_name(name: str, archive: str) -> PurePosixPath:
    if not name or "\x00" in name or "\\" in name:
        raise ArchiveError(f"{archive}: member {name!r} has an unsafe name")
    path = PurePosixPath(name)
    if path.is_absolute() or ".." in path.parts or (path.parts and ":" in path.parts[0]):
        raise ArchiveError(f"{archive}: member {name!r} would be written outside its folder")
    return path


def _link_stays_inside(member: str, target: str) -> bool:
    if target.startswith("/"):
        return False
    depth = len(PurePosixPath(member).parent.parts)
    for part in PurePosixPath(target).parts:
        depth = depth - 1 if part == ".." else depth + (part != ".")
        if depth < 0:
            return False
    return True


def extract_tar(
    src: Path, dest: Path, *, max_bytes: int = MAX_BYTES, max_members: int = MAX_MEMBERS
) -> None:
    """Extract a (possibly compressed) tar ``src`` into the new folder ``dest``.

    ``dest`` must not exist; on any error it is removed. Raises ArchiveError.
    """
    shown = src.name
    dest.mkdir(parents=True)
    total = 0
    count = 0
    try:
        # A compressed archive may expand MAX_RATIO times its size (weights barely compress; a
        # bomb of zeros expands ~1000×), with a floor so that tiny archives are not judged by
        # ratio.
        max_bytes = min(max_bytes, max(MAX_RATIO * src.stat().st_size, 16 * 2**20))
        with open(src, "rb") as fh:
            gzipped = fh.read(2) == b"\x1f\x8b"
        # gzip through GzipFile, read to its end below: tarfile's stream mode never checks the
        # gzip trailer (CRC32 + length), so a corrupted byte would land in the extracted model.
        with (
            gzip.open(src, "rb") if gzipped else open(src, "rb") as stream,
            tarfile.open(fileobj=stream, mode="r|" if gzipped else "r|*") as tar,
        ):
            for member in tar:
                count += 1
                if count > max_members:
                    raise ArchiveError(f"{shown}: more than {max_members} members")
                _check_name(member.name, shown)
                if member.isdev() or member.isfifo():
                    raise ArchiveError(f"{shown}: member {member.name!r} is a device or FIFO")
                if (member.issym() or member.islnk()) and not (
                    member.linkname
                    and _link_stays_inside(member.name if member.issym() else "x", member.linkname)
                ):
                    raise ArchiveError(f"{shown}: link {member.name!r} points outside the archive")
                total += max(member.size, 0)
                if total > max_bytes:
                    raise ArchiveError(
                        f"{shown}: expands beyond {max_bytes} bytes (refused as a "
                        "decompression bomb)"
                    )
                tar.extract(member, dest, filter="data")
            while gzipped and stream.read(1 << 20):
                pass
        _refuse_link_loops(dest, shown)
    except ArchiveError:
        shutil.rmtree(dest, ignore_errors=True)
        raise
    except tarfile.FilterError as exc:
        shutil.rmtree(dest, ignore_errors=True)
        raise ArchiveError(f"{shown}: unsafe member refused: {exc}") from None
    except (tarfile.TarError, EOFError, OSError, KeyError, RecursionError, zlib_error()) as exc:
        # KeyError: a hard link to a member that is not in the archive; RecursionError: tarfile
        # copying a link it cannot create from a target that resolves to itself.
        shutil.rmtree(dest, ignore_errors=True)
        raise ArchiveError(f"{shown}: not a readable tar archive: {exc}") from None


def _refuse_link_loops(dest: Path, shown: str) -> None:
    """A symlink that runs through itself (``a -> a/a``, ``a -> b -> a``) escapes nothing but
    fails every use with ELOOP, and path checks that resolve it go astray: refuse it."""
    import errno
    import os

    for path in dest.rglob("*"):
        if path.is_symlink():
            try:
                os.stat(path)
            except OSError as exc:
                if exc.errno == errno.ELOOP:
                    name = path.relative_to(dest).as_posix()
                    raise ArchiveError(f"{shown}: link {name!r} points to itself") from None


def zlib_error() -> type[Exception]:
    """zlib's error type (a corrupt gzip stream raises it from inside tarfile)."""
    import zlib

    return zlib.error


def extract_zip(
    src: Path, dest: Path, *, max_bytes: int = MAX_BYTES, max_members: int = MAX_MEMBERS
) -> None:
    """Extract zip ``src`` into the new folder ``dest``; symlinks refused. Raises ArchiveError."""
    shown = src.name
    dest.mkdir(parents=True)
    total = 0
    try:
        with zipfile.ZipFile(src) as zf:
            infos = zf.infolist()
            if len(infos) > max_members:
                raise ArchiveError(f"{shown}: more than {max_members} members")
            for info in infos:
                rel = _check_name(info.filename, shown)
                mode = info.external_attr >> 16
                if stat.S_ISLNK(mode):
                    raise ArchiveError(f"{shown}: member {info.filename!r} is a symlink")
                kind = stat.S_IFMT(mode)
                if kind and kind not in (stat.S_IFREG, stat.S_IFDIR):
                    raise ArchiveError(f"{shown}: member {info.filename!r} is not a file")
                if info.compress_size and info.file_size / info.compress_size > MAX_RATIO:
                    raise ArchiveError(
                        f"{shown}: member {info.filename!r} compresses more than "
                        f"{MAX_RATIO}:1 (refused as a decompression bomb)"
                    )
                target = dest.joinpath(*rel.parts)
                if info.is_dir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(info) as fin, open(target, "wb") as fout:
                    while block := fin.read(1 << 20):
                        total += len(block)
                        if total > max_bytes:
                            raise ArchiveError(
                                f"{shown}: expands beyond {max_bytes} bytes "
                                "(refused as a decompression bomb)"
                            )
                        fout.write(block)
    except ArchiveError:
        shutil.rmtree(dest, ignore_errors=True)
        raise
    except (zipfile.BadZipFile, OSError, EOFError, zlib_error()) as exc:
        shutil.rmtree(dest, ignore_errors=True)
        raise ArchiveError(f"{shown}: not a readable zip archive: {exc}") from None

"""SavedModels served as one archive per handle (``?tf-hub-format=compressed``): the machinery
that the TF Hub and Kaggle adapters share (each is its own module and names its own URLs).

Follows tensorflow_hub 0.16.1: ``compressed_module_resolver.py`` (``HttpCompressedFileResolver``:
the handle with ``tf-hub-format=compressed`` appended to its query, one GET, redirects followed,
the body read as a tar stream) and ``resolver.py`` (``_module_dir``: the cache folder is the
sha1 of the handle string as given; ``atomic_download``: the ``<sha1>.lock`` file,
``<sha1>.<uuid>.tmp`` during extraction, ``<sha1>.descriptor.txt``). A model is fetched by
modelhub's transfer and written into ``tensorflow_hub``'s own cache layout (``TFHUB_CACHE_DIR``,
default ``$TMPDIR/tfhub_modules``), so ``hub.load(URL)`` finds modelhub's download and modelhub
finds ``hub.load``'s, with no network either way.

Unlike tensorflow_hub, which hands any 200 body to ``tarfile`` (an HTML page fails there as
"does not appear to be a valid module"), the body's first bytes are checked before anything
is extracted: a gzip stream (``1f 8b``) or a tar (``ustar`` at offset 257) is an archive; an
HTML page is *not found* (exit 3: what tfhub.dev answers, through a redirect to a Kaggle page,
for handles never migrated to Kaggle Models); anything else is refused (exit 5).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import socket
import tarfile
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from ..errors import ArchiveError, ModelNotFoundError, OfflineError, StagingError
from ..refs import ModelRef
from ..store import FileEntry, Manifest, StagedEntry, layout
from ..store.archives import extract_tar
from ..store.files import sha256_file
from ..upstream import Memo, Recorded, UpstreamStatus, check_http
from .base import ModelHub, Plan, RemoteFile, StageRequest

COMPRESSED_QUERY = "tf-hub-format=compressed"
LOCK_TIMEOUT = 600.0
#: How many first bytes of a body :func:`body_kind` looks at.
SNIFF_BYTES = 512


def body_kind(head: bytes) -> str:
    """What the first bytes of a response body are: ``gzip``, ``tar``, ``html`` or ``other``."""
    if head[:2] == b"\x1f\x8b":
        return "gzip"
    if head[257:262] == b"ustar":
        return "tar"
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if text.startswith((b"<!doctype html", b"<html")) or (
        text.startswith(b"<") and b"<html" in text
    ):
        return "html"
    return "other"


def read_head(path: Path, size: int = SNIFF_BYTES) -> bytes:
    """The first ``size`` bytes of ``path``."""
    with open(path, "rb") as fh:
        return fh.read(size)


@dataclass(frozen=True)
class HandleFile(RemoteFile):
    """A file a handle serves, with what its body must be (``archive``: a tar/tar.gz) and the
    one-line message for a web page served instead (the handle names no model)."""

    expect: str = "archive"
    missing: str = ""


def tfhub_cache_dir() -> Path:
    """tensorflow_hub's cache folder, resolved from the environment now."""
    env = os.environ.get("TFHUB_CACHE_DIR", "").strip()
    return Path(env).expanduser() if env else Path(tempfile.gettempdir()) / "tfhub_modules"


def module_dir_for(handle_url: str) -> Path:
    """The cache folder tensorflow_hub uses for ``handle_url`` (sha1 of the string as given)."""
    return tfhub_cache_dir() / hashlib.sha1(handle_url.encode("utf8")).hexdigest()


def _is_complete(module_dir: Path) -> bool:
    return module_dir.is_dir() and any(module_dir.iterdir())


def _owner_dead(lock: Path) -> bool:
    """True when ``lock`` names a process of this host that no longer runs (killed)."""
    try:
        host, pid, _ = lock.read_text(encoding="utf-8").rsplit(".", 2)
        if host != socket.gethostname():
            return False
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except (OSError, ValueError):
        return False
    return False


@contextlib.contextmanager
def tfhub_lock(module_dir: Path, handle_url: str) -> Iterator[bool]:
    """Hold tensorflow_hub's lock file for ``module_dir``; yields False if it appeared meanwhile.

    Same protocol as tensorflow_hub: an exclusively created ``<dir>.lock`` whose owner removes it;
    a waiter gives up on a lock whose owner made no progress for ``LOCK_TIMEOUT`` seconds, or at
    once when the lock names a process of this host that is gone (killed mid-extraction).
    """
    lock = module_dir.with_name(module_dir.name + ".lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    contents = f"{socket.gethostname()}.{os.getpid()}.{uuid.uuid4().hex}"
    waited_since = time.monotonic()
    while True:
        try:
            fd = os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            if _is_complete(module_dir):
                yield False
                return
            if _owner_dead(lock) or time.monotonic() - waited_since > LOCK_TIMEOUT:
                lock.unlink(missing_ok=True)  # the owner died: revoke, as tensorflow_hub does
            time.sleep(0.2)
            continue
        with os.fdopen(fd, "w") as fh:
            fh.write(contents)
        break
    try:
        yield not _is_complete(module_dir)
    finally:
        lock.unlink(missing_ok=True)


def tree_digest(entries: list[FileEntry], prefix: str) -> str:
    """A content id for a folder: sha256 over its sorted (relative path, sha256) pairs."""
    digest = hashlib.sha256()
    for entry in sorted(entries, key=lambda e: e.path):
        digest.update(f"{entry.path.removeprefix(prefix)}\0{entry.sha256}\n".encode())
    return digest.hexdigest()


def deterministic_targz(folder: Path, target: Path) -> None:
    """Write ``folder``'s files as a reproducible tar.gz (sorted, zeroed owners and times)."""
    import gzip

    with (
        open(target, "wb") as raw,
        gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as gz,
        tarfile.open(fileobj=gz, mode="w") as tar,
    ):
        for path in sorted(folder.rglob("*")):
            info = tar.gettarinfo(str(path), arcname=path.relative_to(folder).as_posix())
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            info.mtime = 0
            if path.is_file():
                with open(path, "rb") as fh:
                    tar.addfile(info, fh)
            elif path.is_dir():
                tar.addfile(info)


class SavedModelArchiveHub(ModelHub):
    """A hub serving each SavedModel as one archive at ``handle_url(ref)`` plus the compressed
    query, cached as ``tensorflow_hub`` caches it. Subclasses set ``name`` and
    ``handle_url``."""

    default_stage = "pb"
    stages: ClassVar[tuple[str, ...]] = ("none", "pb")

    @classmethod
    def sdk_caches(cls) -> dict[str, str]:
        """tensorflow_hub's cache (``TFHUB_CACHE_DIR``), for ``modelhub doctor``."""
        return {"tensorflow_hub cache": str(tfhub_cache_dir().absolute())}

    def handle_url(self, ref: ModelRef) -> str:
        """The handle as tensorflow_hub would be given it (its cache key)."""
        raise NotImplementedError

    def resolve(
        self,
        ref: ModelRef,
        *,
        offline: bool = False,
        options: Mapping[str, Any] | None = None,
        force: bool = False,
    ) -> Plan:
        """The compressed archive URL and tensorflow_hub's cache folder for it."""
        opts = dict(options or {})
        handle = self.handle_url(ref)
        url = f"{handle}?{COMPRESSED_QUERY}"
        archive = HandleFile(
            url, f"{layout.model_dir(ref)}.tar.gz", missing=self.page_message(ref, url)
        )
        return Plan(
            ref=ref,
            revision=None,
            files=[archive],
            source=[handle],
            sdk_cache=str(module_dir_for(handle)),
            details={
                "handle": handle,
                "folder": layout.model_dir(ref),
                "storage": opts.get("storage", "uncompressed"),
            },
        )

    def page_message(self, ref: ModelRef, url: str) -> str:
        """The one-line message when ``url`` answers with a web page instead of ``ref``."""
        return (
            f"{ref} not found: {url} answered with a web page (HTML), not the model; "
            "check the handle"
        )

    @staticmethod
    def _check_download(part: Path, rf: RemoteFile, sha256: str, size: int) -> None:
        """The base checks, then what the body must be (before it is kept or extracted): an
        HTML page means the handle names no model (exit 3); an archive must be gzip or tar."""
        ModelHub._check_download(part, rf, sha256, size)
        expect = getattr(rf, "expect", "archive")
        kind = body_kind(read_head(part))
        if kind == "html":
            raise ModelNotFoundError(getattr(rf, "missing", "") or f"{rf.url}: a web page")
        if expect == "archive" and kind not in ("gzip", "tar"):
            raise ArchiveError(
                f"{rf.url} is neither a tar.gz nor a tar archive ({size} bytes); nothing was kept"
            )

    def fetch(
        self,
        plan: Plan,
        *,
        progress: bool | None = None,
        offline: bool = False,
        force: bool = False,
    ) -> list[FileEntry]:
        """Fill (or reuse) tensorflow_hub's cache (``force``: it may be stale, download
        again), then enter the model into the store."""
        module_dir = Path(str(plan.sdk_cache))
        archive: FileEntry | None = None
        plan.details["cache_hit"] = not force and _is_complete(module_dir)
        if not plan.details["cache_hit"]:
            if offline:
                raise OfflineError(f"offline: {plan.ref} is not in the TF Hub cache {module_dir}")
            archive = self._fetch_one(
                plan.ref, plan.files[0], progress, offline, record=plan.details
            )
            try:
                self._install(
                    self.store.abspath(archive.path), module_dir, plan.details["handle"], force
                )
            except BaseException:
                # Not a usable archive: it must not stay under its final name unlisted.
                self.store.abspath(archive.path).unlink(missing_ok=True)
                raise
        folder = plan.details["folder"]
        files = [p for p in sorted(module_dir.rglob("*")) if p.is_file()]
        if not files:
            raise ArchiveError(f"{plan.ref}: the archive holds no files")
        if plan.details["storage"] == "compressed":
            if archive is None:
                archive = self._pack(plan, module_dir)
            entries = [archive]
            plan.revision = archive.sha256
        else:
            if archive is not None:  # the folder is the original now; the archive was transport
                self.store.abspath(archive.path).unlink(missing_ok=True)
            entries = []
            for path in files:
                rel = f"{folder}/{path.relative_to(module_dir).as_posix()}"
                entry, _ = self.store.link_in(path, rel, plan.ref)
                entries.append(entry)
            plan.revision = tree_digest(entries, folder + "/")
        if plan.details["storage"] == "compressed":
            plan.details.pop("folder", None)  # no folder in the store: the archive is the model
        return entries

    def _install(self, archive: Path, module_dir: Path, handle: str, force: bool = False) -> None:
        with tfhub_lock(module_dir, handle) as needed:
            if not (needed or force):
                return
            tmp = module_dir.with_name(f"{module_dir.name}.{uuid.uuid4().hex}.tmp")
            try:
                extract_tar(archive, tmp)
                descriptor = module_dir.with_name(module_dir.name + ".descriptor.txt")
                descriptor.write_text(
                    f"Module: {handle}\nDownload Time: {time.ctime()}\n"
                    f"Downloader Hostname: {socket.gethostname()} (PID:{os.getpid()})\n"
                )
                if module_dir.exists():
                    shutil.rmtree(module_dir)
                os.replace(tmp, module_dir)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)

    def _pack(self, plan: Plan, module_dir: Path) -> FileEntry:
        """A cache hit kept compressed: pack the cached folder reproducibly."""
        tmp = self.store.tmp_path(plan.ref, Path(plan.files[0].rel).name)
        deterministic_targz(module_dir, tmp)
        sha, size = sha256_file(tmp)
        return self.store.publish(tmp, plan.files[0].rel, plan.ref, sha, size)

    def saved_model_dir(self, manifest: Manifest) -> Path:
        """The SavedModel folder to stage from: the store folder, else the SDK cache."""
        folder = manifest.details.get("folder")
        if folder:
            return self.store.abspath(str(folder))
        if manifest.sdk_cache and _is_complete(Path(manifest.sdk_cache)):
            return Path(manifest.sdk_cache)
        raise StagingError(
            f"{manifest.ref}: no uncompressed SavedModel to freeze; pull with "
            "--storage uncompressed"
        )

    def check_upstream(self, recorded: Recorded, memo: Memo) -> UpstreamStatus:
        """HEAD the archive a pull fetches: ETag / Last-Modified as for a plain URL. A pull
        answered from tensorflow_hub's cache recorded none: *unknown*."""
        url = f"{self.handle_url(recorded.ref)}?{COMPRESSED_QUERY}"
        # A compressed pull keeps the archive itself: its sha256 is comparable to a sha256 ETag.
        archive = recorded.files[0][1] if len(recorded.files) == 1 else None
        return check_http(recorded, url, "HEAD", archive)

    def import_kind(self, src: Path, ref: ModelRef) -> str:
        """A SavedModel folder, or its archive (``.tar.gz``/``.tgz``/``.tar``)."""
        if src.is_dir():
            return "savedmodel-dir"
        if src.is_file() and src.name.lower().endswith((".tar.gz", ".tgz", ".tar")):
            return "savedmodel-tar"
        return super().import_kind(src, ref)

    def stage(self, ref: ModelRef, manifest: Manifest, request: StageRequest) -> list[StagedEntry]:
        """``pb``: freeze the signature into one flat GraphDef beside the model folder."""
        if request.fmt != "pb":
            return super().stage(ref, manifest, request)
        from ..staging.freeze_tf import stage_pb

        return [stage_pb(self.store, ref, self.saved_model_dir(manifest), request.options)]

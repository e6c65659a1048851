"""``tfhub:HANDLE`` and ``kaggle:OWNER/MODEL/FRAMEWORK/VARIATION[/VERSION]`` SavedModels.

Both are fetched in the compressed format (``?tf-hub-format=compressed``) by modelhub's transfer
and written into ``tensorflow_hub``'s own cache layout (``TFHUB_CACHE_DIR``, default
``$TMPDIR/tfhub_modules``): the folder ``sha1(handle URL)``, ``<sha1>.descriptor.txt``, the
``<sha1>.lock`` file protocol and ``<sha1>.<uuid>.tmp`` during extraction — so ``hub.load(URL)``
finds modelhub's download and modelhub finds ``hub.load``'s, with no network either way.
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
from pathlib import Path
from typing import Any

from ..errors import ArchiveError, OfflineError, StagingError
from ..refs import ModelRef
from ..store import FileEntry, Manifest, StagedEntry, layout
from ..store.archives import extract_tar
from ..store.files import sha256_file
from .base import ModelHub, Plan, RemoteFile, StageRequest

COMPRESSED_QUERY = "tf-hub-format=compressed"
LOCK_TIMEOUT = 600.0


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


class TFHubHub(ModelHub):
    """TensorFlow Hub handles (``tfhub:google/imagenet/.../5``, ``https://tfhub.dev/...``)."""

    name = "tfhub"
    framework_name = "tensorflow"
    default_stage = "pb"
    stages = ("none", "pb")

    def handle_url(self, ref: ModelRef) -> str:
        """The handle as tensorflow_hub would be given it (its cache key)."""
        return f"{self.hub_url}/{ref.name}"

    def resolve(
        self, ref: ModelRef, *, offline: bool = False, options: Mapping[str, Any] | None = None
    ) -> Plan:
        """The compressed archive URL and tensorflow_hub's cache folder for it."""
        opts = dict(options or {})
        handle = self.handle_url(ref)
        return Plan(
            ref=ref,
            revision=None,
            files=[RemoteFile(f"{handle}?{COMPRESSED_QUERY}", f"{layout.model_dir(ref)}.tar.gz")],
            source=[handle],
            sdk_cache=str(module_dir_for(handle)),
            details={
                "handle": handle,
                "folder": layout.model_dir(ref),
                "storage": opts.get("storage", "uncompressed"),
                "_force": bool(opts.get("force")),
            },
        )

    def fetch(
        self, plan: Plan, *, progress: bool | None = None, offline: bool = False
    ) -> list[FileEntry]:
        """Fill (or reuse) tensorflow_hub's cache, then enter the model into the store."""
        module_dir = Path(str(plan.sdk_cache))
        archive: FileEntry | None = None
        force = bool(plan.details.pop("_force", False))  # --force: the cache may be stale
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

    def stage(self, ref: ModelRef, manifest: Manifest, request: StageRequest) -> list[StagedEntry]:
        """``pb``: freeze the signature into one flat GraphDef beside the model folder."""
        if request.fmt != "pb":
            return super().stage(ref, manifest, request)
        from ..staging.freeze_tf import stage_pb

        return [stage_pb(self.store, ref, self.saved_model_dir(manifest), request.options)]


class KaggleHub(TFHubHub):
    """Kaggle Models, TensorFlow 2 variations (``kaggle:OWNER/MODEL/TensorFlow2/VAR[/VER]``)."""

    name = "kaggle"

    def handle_url(self, ref: ModelRef) -> str:
        """``{base}/models/{handle}``, the form kaggle.com and tensorflow_hub use."""
        return f"{self.hub_url}/models/{ref.name}"

"""RemoteStore: fetch models from, and publish models to, a shared store on S3.

Decides from manifests, then acts: :meth:`RemoteStore.fetch_model` reads the remote manifest
and enters each object into the local store through the Store's own API (temporary file,
:meth:`Store.publish`, :meth:`Store.write_manifest` last); :meth:`RemoteStore.publish_model`
uploads under a :class:`~modelhub.remote.lease.Lease`, objects first, the manifest last and only
if absent. The protocol is described in the package docstring (:mod:`modelhub.remote`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

from ..errors import (
    HashMismatchError,
    IntegrityError,
    PreconditionFailed,
    SizeMismatchError,
    StoreConflictError,
)
from ..refs import ModelRef, parse
from ..store import Manifest, Store
from ..store.files import sha256_file
from ..store.layout import MANIFESTS, lock_path, manifest_path
from .lease import Lease
from .objects import S3Objects

LEASE_SECONDS = 60.0
SETTLE_SECONDS = 0.5


@dataclass(frozen=True)
class Published:
    """What :meth:`RemoteStore.publish_model` did.

    ``manifest`` is the manifest now on the remote: this node's when ``created``, else the one
    another node published first (same reference; its staged bytes may differ from ours).
    ``uploaded`` lists the store-relative paths this call uploaded.
    """

    manifest: Manifest
    created: bool
    uploaded: list[str] = field(default_factory=list)


class RemoteStore:
    """A model store on S3-compatible object storage, same layout and manifests as the local one.

    ``url`` is ``s3://BUCKET[/PREFIX]``. ``lease_seconds``: how long a publication lease may go
    without a heartbeat before another node takes it over. ``conditional``: None probes the
    service on the first publication, True/False forces the mode. ``settle``: the
    write-then-verify delay of the fallback. ``fs``: an ``s3fs.S3FileSystem`` to use (default:
    a new one from the standard AWS environment).
    """

    def __init__(
        self,
        url: str,
        *,
        lease_seconds: float = LEASE_SECONDS,
        conditional: bool | None = None,
        settle: float = SETTLE_SECONDS,
        fs: Any = None,
    ) -> None:
        self.objects = S3Objects(url, fs)
        self.url = self.objects.url
        self.lease_seconds = float(lease_seconds)
        self.settle = float(settle)
        self._conditional = conditional

    def __repr__(self) -> str:
        return f"RemoteStore({self.url!r})"

    # --- reading -------------------------------------------------------------------------------
    def manifest_url(self, ref: ModelRef) -> str:
        """The ``s3://`` URL of the manifest of ``ref`` (whether or not it exists)."""
        return self.objects.where(manifest_path(ref))

    def manifest(self, ref: ModelRef) -> Manifest | None:
        """The remote manifest of ``ref``, or None when it has not been published.

        Raises AuthError (exit 4), NetworkError (exit 6), NotFoundError (no such bucket) and
        IntegrityError (a malformed manifest, or one written for another reference).
        """
        data = self.objects.get_bytes(manifest_path(ref))
        if data is None:
            return None
        found = Manifest.from_json(data)
        if found.ref != ref.canonical:
            raise IntegrityError(f"{self.manifest_url(ref)} is the manifest of {found.ref}")
        return found

    def list_models(self) -> list[Manifest]:
        """Every published model (unreadable manifests are skipped), sorted by reference."""
        found = []
        for rel in self.objects.list_under(MANIFESTS):
            data = self.objects.get_bytes(rel) if rel.endswith(".json") else None
            if data is None:
                continue
            try:
                found.append(Manifest.from_json(data))
            except IntegrityError:
                continue
        return sorted(found, key=lambda m: m.ref)

    def fetch_model(
        self, ref: ModelRef, local: Store, *, progress: bool | None = None
    ) -> Manifest | None:
        """Copy ``ref`` from the remote into ``local``; return its manifest, None if absent.

        Each object is streamed into ``local``'s temporary folder with its sha256 computed
        inline, checked against the remote manifest, and published by :meth:`Store.publish`;
        files already in ``local`` with the right sha256 are kept. The manifest (the remote's,
        byte for byte) is written last. The caller holds ``local.lock(ref)``.

        Raises IntegrityError (exit 5: an object missing or not matching the manifest),
        AuthError (exit 4), NetworkError (exit 6), StoreConflictError (a local path owned by
        another reference with other content).
        """
        from ..config import settings

        manifest = self.manifest(ref)
        if manifest is None:
            return None
        retries = settings().retries
        for rel, sha, size in _entries(manifest):
            target = local.abspath(rel)
            if target.is_file() and target.stat().st_size == size and sha256_file(target)[0] == sha:
                continue
            part = local.tmp_path(ref, PurePosixPath(rel).name)
            try:
                got_sha, got_size = self.objects.download(
                    rel, part, size, retries=retries, progress=progress
                )
                if got_size != size:
                    raise SizeMismatchError(
                        f"{self.objects.where(rel)}: got {got_size} bytes, the manifest says {size}"
                    )
                if got_sha != sha:
                    raise HashMismatchError(
                        f"{self.objects.where(rel)}: sha256 {got_sha[:16]}… does not match the "
                        f"manifest's {sha[:16]}…"
                    )
            except BaseException:
                part.unlink(missing_ok=True)
                raise
            local.publish(part, rel, ref, got_sha, got_size)
        local.write_manifest(manifest, ref)
        return manifest

    def mirror_into(self, local: Store) -> list[Manifest]:
        """Fetch every published model not yet in ``local`` (each under its local lock).

        Returns the manifests of all published models. ``modelhub serve --root s3://...``
        uses this to serve a remote store from a node-local copy.
        """
        manifests = self.list_models()
        for manifest in manifests:
            ref = parse(manifest.ref)
            with local.lock(ref):
                if local.manifest(ref) is None:
                    self.fetch_model(ref, local, progress=False)
        return manifests

    # --- publication ---------------------------------------------------------------------------
    def conditional_writes(self) -> bool:
        """True when the service honours If-None-Match / If-Match on PUT (probed once)."""
        if self._conditional is None:
            self._conditional = self.objects.conditional_writes()
        return self._conditional

    def publish_model(self, ref: ModelRef, local: Store) -> Published:
        """Publish ``ref`` from ``local`` to the remote: objects first, the manifest last.

        Waits while another node holds the model's lease. Returns :class:`Published`:
        ``created`` is False when a manifest was already there (or another node's won). The
        caller holds ``local.lock(ref)``.

        Raises NotInStoreError (exit 3), IntegrityError (exit 5: local files do not match
        their manifest), AuthError (exit 4), NetworkError (exit 6), StoreConflictError (the
        lease was taken over by another node: nothing was committed).
        """
        manifest = local.require(ref)
        problems = local.verify(manifest)
        if problems:
            raise IntegrityError(f"{ref}: not publishing, the local copy is damaged: {problems[0]}")
        existing = self.manifest(ref)
        if existing is not None:
            return Published(existing, created=False)
        lease = Lease(
            self.objects,
            lock_path(ref),
            ref,
            seconds=self.lease_seconds,
            conditional=self.conditional_writes(),
            settle=self.settle,
        )
        poll = min(1.0, max(0.05, self.lease_seconds / 4))
        while not lease.acquire():
            time.sleep(poll)
            existing = self.manifest(ref)
            if existing is not None:
                return Published(existing, created=False)
        try:
            existing = self.manifest(ref)
            if existing is not None:
                return Published(existing, created=False)
            uploaded = []
            for rel, sha, size in _entries(manifest):
                lease.check()
                head = self.objects.head(rel)
                if head is None or head.sha256 != sha or head.size != size:
                    self.objects.upload(local.abspath(rel), rel, sha)
                    uploaded.append(rel)
            lease.check()
            winner = self._commit(ref, manifest)
            if winner is not None:
                return Published(winner, created=False, uploaded=uploaded)
            uploaded += self._repair(local, manifest)
            return Published(manifest, created=True, uploaded=uploaded)
        finally:
            lease.release()

    def _commit(self, ref: ModelRef, manifest: Manifest) -> Manifest | None:
        """Create the manifest if absent; return None if ours is now there, else the winner."""
        rel = manifest_path(ref)
        data = manifest.to_json().encode()
        if self.conditional_writes():
            try:
                self.objects.put_bytes(rel, data, if_none_match=True)
                return None
            except PreconditionFailed:
                pass
        elif self.objects.head(rel) is None:
            self.objects.put_bytes(rel, data)
            time.sleep(self.settle)
            if self.objects.get_bytes(rel) == data:
                return None
        winner = self.manifest(ref)
        if winner is None:
            raise StoreConflictError(f"{ref}: the manifest on {self.url} vanished while publishing")
        return winner

    def _repair(self, local: Store, manifest: Manifest) -> list[str]:
        """Re-upload objects whose recorded sha256 no longer matches the committed manifest
        (a stale publisher, taken over, may have written one after our upload)."""
        fixed = []
        for rel, sha, size in _entries(manifest):
            head = self.objects.head(rel)
            if head is None or head.sha256 != sha or head.size != size:
                self.objects.upload(local.abspath(rel), rel, sha)
                fixed.append(rel)
        return fixed


def remote_store(url: str | None = None) -> RemoteStore:
    """The RemoteStore at ``url``, else at ``$MODELHUB_REMOTE``.

    Raises UsageError (exit 2) when neither names one, or the URL is not ``s3://BUCKET[/PREFIX]``.
    """
    from ..config import settings
    from ..errors import UsageError

    url = url or settings().remote
    if not url:
        raise UsageError(
            "no remote store: pass --remote s3://BUCKET[/PREFIX] or set MODELHUB_REMOTE"
        )
    return RemoteStore(url)


def _entries(manifest: Manifest) -> list[tuple[str, str, int]]:
    """(path, sha256, size) of every file, staged artifact and fixture, each path once."""
    seen: dict[str, tuple[str, int]] = {}
    for rel, sha, size in manifest.records():
        if rel in seen and seen[rel] != (sha, size):
            raise IntegrityError(f"manifest of {manifest.ref} lists {rel} twice, differently")
        seen[rel] = (sha, size)
    return [(rel, sha, size) for rel, (sha, size) in seen.items()]

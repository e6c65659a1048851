"""``pull --dry-run`` / ``sync --dry-run``: what a pull would fetch, from where, how many bytes,
without writing anything.

A model the store already holds as asked is answered from its manifest (no network). Any
other is resolved from metadata only, through the hub's :meth:`ModelHub.preview` (its file
list, and sizes where the hub lists them); a file whose size the hub does not list is asked
with one ``HEAD``. The hub is handed a throw-away store in the system's temporary folder, so
whatever metadata it would cache (the ONNX zoo's index) is not written into the user's store.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .config import settings
from .errors import EXIT_OK, UsageError, exit_code_for
from .hubs import RemoteFile, get_hub
from .hubs.base import PREVIEW_CACHED
from .pipeline import _damaged, _pin, _refuse_folder_pin, _satisfied, _stage_for, as_ref
from .store import Store


@dataclass
class PlannedFile:
    """One file the hub lists for the model: where from, where to, its size if known, and
    whether the store (or the hub's SDK cache) already holds it."""

    url: str
    path: str
    abspath: str
    size: int | None
    present: bool


@dataclass
class DryRun:
    """What a pull of ``ref`` would do (``status``: ``in store``, ``would fetch``, ``failed``)."""

    ref: str
    status: str
    path: str | None = None
    stage: str | None = None
    source: list[str] = field(default_factory=list)
    files: list[PlannedFile] = field(default_factory=list)
    error: BaseException | None = None

    @property
    def fetch(self) -> list[PlannedFile]:
        """The files a pull would download."""
        return [f for f in self.files if not f.present]

    @property
    def fetch_bytes(self) -> int:
        """Bytes of the files to download whose size is known."""
        return sum(f.size or 0 for f in self.fetch)

    @property
    def unknown_sizes(self) -> int:
        """Files to download whose size the hub does not tell."""
        return sum(f.size is None for f in self.fetch)

    @property
    def exit_code(self) -> int:
        """The contract's code of the error (0 when planned)."""
        return exit_code_for(self.error) if self.error is not None else EXIT_OK

    def as_dict(self, error: str | None = None) -> dict[str, Any]:
        """The plan object of ``--dry-run --json`` (``error``: the error's line as shown)."""
        return {
            "ref": self.ref,
            "status": self.status,
            "path": self.path,
            "stage": self.stage,
            "source": list(self.source),
            "files": [vars(f).copy() for f in self.files],
            "fetch_files": len(self.fetch),
            "fetch_bytes": self.fetch_bytes,
            "unknown_sizes": self.unknown_sizes,
            "error": error,
            "exit_code": self.exit_code,
        }


def _head_size(url: str) -> int | None:
    """The size a ``HEAD`` of ``url`` announces (None when it does not say)."""
    from . import transfer

    headers = transfer.fetch(url, method="HEAD", max_bytes=1 << 20).headers
    length = headers.get("content-length", "")
    return int(length) if length.isdigit() else None


def _planned(
    store: Store, rf: RemoteFile, sdk_cache: str | None, cached: bool, offline: bool
) -> PlannedFile:
    target = store.abspath(rf.rel)
    present = cached or (target.is_file() and (rf.size is None or target.stat().st_size == rf.size))
    if not present and sdk_cache and Path(sdk_cache).is_file():
        present = rf.size is None or Path(sdk_cache).stat().st_size == rf.size
    size = rf.size
    if size is None and not present and not offline:
        size = _head_size(rf.url)
    if size is None and present:
        size = target.stat().st_size if target.is_file() else None
    return PlannedFile(rf.url, rf.rel, str(target), size, present)


def dry_run(
    ref: str,
    *,
    stage: str = "auto",
    storage: str = "uncompressed",
    revision: str | None = None,
    offline: bool | None = None,
    force: bool = False,
    sha256: str | None = None,
    options: dict[str, Any] | None = None,
    store: Store | None = None,
) -> DryRun:
    """What ``pull(ref, ...)`` would fetch; errors are returned in the result, not raised."""
    st = store if store is not None else Store()
    try:
        mref = as_ref(ref, revision)
    except Exception as exc:
        return DryRun(ref, "failed", error=exc)
    try:
        return _dry_run(mref, st, stage, storage, offline, force, sha256, dict(options or {}))
    except Exception as exc:
        return DryRun(mref.canonical, "failed", error=exc)


def _dry_run(
    mref: Any,
    st: Store,
    stage: str,
    storage: str,
    offline: bool | None,
    force: bool,
    sha256: str | None,
    opts: dict[str, Any],
) -> DryRun:
    _refuse_folder_pin(mref, sha256)  # refused as the pull refuses it, before any I/O
    hub = get_hub(mref.hub, st)
    if storage not in hub.storages:
        raise UsageError(
            f"{mref}: --storage {storage}: this hub has no {storage} form; leave the option out"
        )
    fmt = _stage_for(hub, mref, stage)
    found = st.manifest(mref)
    if (
        found is not None
        and not force
        and not _damaged(found)
        and _satisfied(hub, found, fmt, storage, sha256, opts)
    ):
        path = str(st.abspath(found.primary_path))
        return DryRun(mref.canonical, "in store", path=path, stage=fmt, source=found.source)
    offline = settings().offline if offline is None else offline
    scratch = Path(tempfile.mkdtemp(prefix="modelhub-dry-run-"))
    try:
        probe = get_hub(mref.hub, Store(scratch, link_mode=st.link_mode))
        plan = probe.preview(mref, offline=offline, options={**opts, "storage": storage})
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    if sha256:
        _pin(plan, sha256)  # a hub that lists other bytes, or several files: as the pull says
    cached = set(plan.details.get(PREVIEW_CACHED) or ()) if not force else set()
    files = [
        _planned(st, rf, None if force else plan.sdk_cache, rf.rel in cached, offline)
        for rf in plan.files
    ]
    if force:
        files = [PlannedFile(f.url, f.path, f.abspath, f.size, False) for f in files]
    return DryRun(mref.canonical, "would fetch", stage=fmt, source=plan.source, files=files)


__all__ = ["DryRun", "PlannedFile", "dry_run"]

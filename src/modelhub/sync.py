"""``modelhub sync``: a declared set of models, pulled in parallel, pinned by ``modelhub.lock``.

The set is a TOML file (``modelhub.toml``, :mod:`modelhub.modelset`) of ``[[model]]`` tables.

Each model goes through :func:`modelhub.pipeline.pull` (its own per-model lock; a model already
in the store costs no network). The set's lock, written next to the TOML file and named after
it (``dev.toml`` → ``dev.lock``; ``lock=`` / ``--lock FILE`` chooses another), records for every
model the immutable revision it resolved to and the sha256 of every file and staged artifact.
A sync in which every model failed leaves the lock as it was.

The lock's format is :mod:`modelhub.lockfile`'s.

Modes (decided per model from the TOML entry, the lock and the store before any pull):

- plain ``sync``: a model whose lock entry matches its TOML entry is installed as locked (as
  ``--locked`` would); a new or edited entry is resolved afresh; the lock is rewritten.
- ``--locked``: every TOML entry must have a matching lock entry (else LockMismatchError, exit 5,
  before anything is pulled); a model whose store copy differs from the lock is checked against
  upstream (metadata only) and pulled only when upstream still serves the locked revision; the
  pulled result is compared with the lock again. The lock is never written.
- ``--update``: every model is re-resolved: upstream is asked (metadata only) and a model that
  changed (or whose hub cannot tell) is pulled again with ``force``; the lock is rewritten.
- ``check()`` (``sync --check``): :mod:`modelhub.outdated` for the lock's entries; nothing pulled.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import (
    EXIT_ERROR,
    EXIT_INTEGRITY,
    EXIT_OK,
    LockMismatchError,
    ModelhubError,
    NetworkError,
    NotFoundError,
    UsageError,
    exit_code_for,
)
from .hubs import get_hub
from .lockfile import LOCK_NAME, LockEntry, lock_path_for, read_lock, write_lock
from .modelset import DEFAULT_FILE, ModelSpec, load_specs
from .pipeline import pull
from .store import Manifest, Store
from .sync_order import Picker

if TYPE_CHECKING:
    from .offload import Offload
    from .stager import ProcessStager

MODES = ("sync", "locked", "update")


def default_jobs() -> int:
    """Models pulled at once by default: ``min(4, 2 × CPUs)``.

    Pulls mostly wait (network, fsync, the hub's metadata round trips), so two per core keep
    the machine busy; staging is CPU- and memory-heavy (model exports), hence the cap of 4.
    """
    return max(1, min(4, 2 * (os.cpu_count() or 1)))


# --- one sync -----------------------------------------------------------------------------------
@dataclass
class SyncResult:
    """How one model went: ``ok`` (pulled or staged now), ``cached`` (store already had it)
    or ``failed`` (``error`` says why)."""

    spec: ModelSpec
    status: str = "queued"
    manifest: Manifest | None = None
    error: BaseException | None = None
    seconds: float = 0.0
    entry: LockEntry | None = None

    @property
    def failed(self) -> bool:
        """True when the model could not be installed."""
        return self.status == "failed"

    @property
    def exit_code(self) -> int:
        """The contract's exit code of the failure (0 when it did not fail)."""
        return exit_code_for(self.error) if self.error is not None else EXIT_OK


@dataclass(frozen=True)
class SyncEvent:
    """Progress of one model, for a display: ``kind`` is ``start``, ``phase`` or ``done``."""

    kind: str
    index: int
    total: int
    result: SyncResult
    phase: str = ""


@dataclass
class SyncReport:
    """The outcome of a sync: one result per model (TOML order) and what happened to the lock."""

    path: Path
    lock_path: Path
    mode: str
    results: list[SyncResult]
    lock_written: bool = False
    seconds: float = 0.0

    @property
    def failed(self) -> list[SyncResult]:
        """The models that failed."""
        return [r for r in self.results if r.failed]

    @property
    def exit_code(self) -> int:
        """0 when every model is installed; 5 if any differed from the lock; else the first
        failure's code (TOML order)."""
        codes = [r.exit_code or EXIT_ERROR for r in self.failed]
        if not codes:
            return EXIT_OK
        return EXIT_INTEGRITY if EXIT_INTEGRITY in codes else codes[0]


class _Syncer:
    """Runs the per-model decision and pull; one instance per sync call."""

    def __init__(
        self,
        store: Store,
        mode: str,
        lock: dict[str, LockEntry],
        offline: bool | None,
        emit: Callable[[SyncEvent], None],
        total: int,
    ) -> None:
        self.store, self.mode, self.lock, self.offline = store, mode, lock, offline
        self.emit, self.total = emit, total
        self._emit_lock = threading.Lock()
        self.stager: ProcessStager | None = None
        self.offloads: dict[str, Offload] = {}

    def event(self, kind: str, index: int, result: SyncResult, phase: str = "") -> None:
        with self._emit_lock:
            self.emit(SyncEvent(kind, index, self.total, result, phase))

    def run(self, index: int, result: SyncResult) -> SyncResult:
        spec = result.spec
        started = time.monotonic()
        result.status = "running"
        self.event("start", index, result)
        try:
            before = self.store.manifest(spec.ref)
            manifest = self._install(index, result, before)
            result.manifest = manifest
            result.status = "cached" if manifest == before else "ok"
            entry = self.lock.get(spec.name)
            if (
                entry is not None
                and entry.request == spec.request()
                and not entry.differences(manifest)
            ):
                result.entry = entry  # keep the locked entry verbatim: the lock stays stable
            else:
                result.entry = LockEntry.from_manifest(spec.request(), manifest)
        except Exception as exc:
            result.status, result.error = "failed", exc
        result.seconds = time.monotonic() - started
        self.event("done", index, result)
        return result

    def _pull(
        self,
        spec: ModelSpec,
        *,
        force: bool = False,
        sha256: str | None = None,
        locked: str | None = None,
    ) -> Manifest:
        # ``locked``: the lock's revision, for a hub that resolves a moving name (a Kaggle
        # variation's newest version) to fetch exactly that one.
        options = spec.pull_options()
        if locked:
            options["locked_revision"] = locked
        model = pull(
            spec.ref,
            stage=spec.stage,
            storage=spec.storage,
            offline=self.offline,
            force=force,
            sha256=sha256 or spec.sha256,
            store=self.store,
            progress=False,
            options=options,
            stager=self.stager,
            offload=self.offloads.get(spec.ref.hub),
        )
        return model.manifest

    def _install(self, index: int, result: SyncResult, before: Manifest | None) -> Manifest:
        spec = result.spec
        entry = self.lock.get(spec.name)
        if entry is not None and entry.request != spec.request():
            entry = None  # the TOML entry was edited: resolve it afresh
        if self.mode == "update":
            return self._update(index, result, before)
        if entry is None:
            return self._pull(spec)
        return self._locked(index, result, entry, before)

    def _locked(
        self, index: int, result: SyncResult, entry: LockEntry, before: Manifest | None
    ) -> Manifest:
        """Install exactly ``entry``: from the store when it matches, else from upstream when
        upstream still serves the locked revision."""
        spec = result.spec
        pinned = _pin(self.store, entry)
        if before is not None and not entry.differences(before, staged=False):
            manifest = self._pull(spec, sha256=pinned)  # a cache hit unless a stage is missing
        elif before is None:
            # Nothing local to protect: pull, then hold the result against the lock (as pip's
            # hash-checking mode does). Asking upstream first would cost every model of a
            # fresh node its metadata round trips twice.
            self.event("phase", index, result, "pulling")
            manifest = self._pull(spec, sha256=pinned, locked=entry.revision)
            problems = entry.differences(manifest)
            if problems:
                with self.store.lock(spec.ref):
                    self.store.remove(spec.ref)  # keep nothing the lock does not vouch for
                raise LockMismatchError(
                    f"{spec.name}: upstream no longer serves the locked revision "
                    f"({_describe(problems)}); run `modelhub sync --update` to accept it"
                )
            return manifest
        else:
            self.event("phase", index, result, "checking upstream")
            status = _upstream_status(self.store, entry)
            if status.state in ("changed", "missing"):
                raise LockMismatchError(
                    f"{spec.name}: upstream no longer serves the locked revision "
                    f"({status.describe()}); run `modelhub sync --update` to accept it"
                )
            if status.state == "unreachable":
                raise NetworkError(f"{spec.name}: {status.message}")
            self.event("phase", index, result, "pulling")
            manifest = self._pull(
                spec, force=before is not None, sha256=pinned, locked=entry.revision
            )
        problems = entry.differences(manifest)
        if problems:
            raise LockMismatchError(f"{spec.name} differs from the lock: {_describe(problems)}")
        return manifest

    def _update(self, index: int, result: SyncResult, before: Manifest | None) -> Manifest:
        """Re-resolve: ask upstream and pull again what changed (or what no hub can vouch for)."""
        spec = result.spec
        if before is None:
            self.event("phase", index, result, "pulling")
            return self._pull(spec)
        from .outdated import Recorded, check

        self.event("phase", index, result, "checking upstream")
        status = check(Recorded.from_manifest(before), self.store)
        if status.state == "unreachable":
            raise NetworkError(f"{spec.name}: {status.message}")
        if status.state == "error" and status.error is not None:
            raise status.error
        self.event("phase", index, result, "pulling")
        manifest = self._pull(spec, force=status.state != "current")
        old = LockEntry.from_manifest(spec.request(), before)
        if status.changed and not old.differences(manifest, staged=False):
            # The hub answered the forced pull from an SDK cache that still holds the old
            # version (tensorflow_hub never refreshes a handle it has): say so, do not lock it.
            where = f" ({manifest.sdk_cache})" if manifest.sdk_cache else ""
            raise ModelhubError(
                f"{spec.name} changed upstream ({status.describe()}) but pulling it again gave "
                f"the old version, kept by the SDK's cache{where}; remove that and sync again"
            )
        return manifest


def _describe(problems: list[str]) -> str:
    more = f" (+{len(problems) - 3} more)" if len(problems) > 3 else ""
    return "; ".join(problems[:3]) + more


def _pin(store: Store, entry: LockEntry) -> str | None:
    """The sha256 the hub checks a locked model's download against before keeping it."""
    return get_hub(entry.hub, store).lock_pin(entry.files)


def _upstream_status(store: Store, entry: LockEntry) -> Any:
    from .outdated import Recorded, check

    return check(Recorded.from_lock(entry), store)


def sync(
    path: Path | str = DEFAULT_FILE,
    *,
    mode: str = "sync",
    jobs: int | None = None,
    store: Store | None = None,
    offline: bool | None = None,
    on_event: Callable[[SyncEvent], None] | None = None,
    stage_in_processes: bool = False,
    lock: Path | str | None = None,
) -> SyncReport:
    """Install the model set at ``path`` (``mode``: sync, locked or update); return the report.

    ``jobs`` models are pulled at once, in threads. With ``stage_in_processes`` (the CLI's
    choice when ``jobs`` > 1) their heavy staging (exports, freezing, checks of large ONNX
    files: ``hub.heavy_stage``) runs in up to one worker process per CPU instead
    (:mod:`modelhub.stager`): it is CPU-bound and threads would share one GIL; quick checks stay
    in threads. Likewise the SDK work of hubs that download through their SDK (Hugging Face)
    goes to one helper process per such hub (:mod:`modelhub.offload`). Worker
    processes re-import the ``__main__`` module, so a script calling this needs the usual
    ``if __name__ == "__main__":`` guard.

    ``lock`` is the lock file (default: the set's own, :func:`lock_path_for`).

    Every model is attempted even when others fail; failures are in the report (its
    ``exit_code``), not raised; when every model failed the lock is not written. Raises
    NotFoundError / UsageError for the TOML file, and LockMismatchError (exit 5) in
    ``locked`` mode when the lock is missing or does not cover the TOML file exactly (before
    anything is pulled).
    """
    if mode not in MODES:
        raise UsageError(f"unknown sync mode {mode!r}")
    started = time.monotonic()
    path = Path(path)
    specs = load_specs(path)
    lock_file = lock_path_for(path, lock)
    locked = read_lock(lock_file)
    if mode == "locked":
        _check_lock_covers(specs, locked, lock_file)
    st = store if store is not None else Store()
    results = [SyncResult(spec) for spec in specs]
    workers = max(1, jobs if jobs and jobs > 0 else default_jobs())
    syncer = _Syncer(st, mode, locked or {}, offline, on_event or (lambda e: None), len(specs))
    if results:
        picker = Picker(specs)
        threads = min(workers, len(results))

        def work() -> None:
            while (picked := picker.next()) is not None:
                index, first = picked
                if first:
                    if specs[index].ref.hub not in syncer.offloads:
                        # A hub that cannot set up fails its models in run(), with the reason.
                        with contextlib.suppress(Exception):
                            get_hub(specs[index].ref.hub, st).warm_up()
                    picker.warm(index)
                syncer.run(index, results[index])

        with contextlib.ExitStack() as stack:
            if stage_in_processes and threads > 1:
                syncer.offloads = _start_offloads(specs, st, mode, threads, stack)
                from .stager import ProcessStager

                cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
                syncer.stager = stack.enter_context(
                    ProcessStager(min(threads, cpus or os.cpu_count() or 1))
                )
            with ThreadPoolExecutor(max_workers=threads) as pool:
                for future in [pool.submit(work) for _ in range(threads)]:
                    future.result()
    report = SyncReport(path, lock_file, mode, results)
    if mode != "locked" and not (results and all(r.failed for r in results)):
        entries = [r.entry for r in results if r.entry is not None]
        # A model that failed keeps its previous entry, so one bad pull does not unpin it.
        for r in results:
            old = (locked or {}).get(r.spec.name)
            if r.entry is None and old is not None and old.request == r.spec.request():
                entries.append(old)
        report.lock_written = write_lock(lock_file, entries)
    report.seconds = time.monotonic() - started
    return report


def _start_offloads(
    specs: list[ModelSpec], store: Store, mode: str, threads: int, stack: contextlib.ExitStack
) -> dict[str, Offload]:
    """A helper process per hub whose SDK downloads (``offload_warm``) and that has a model to
    download: one not in the store yet (or any, with ``update``). Started now, so that the SDK
    import overlaps the other hubs' first pulls."""
    by_hub: dict[str, int] = {}
    for spec in specs:
        if mode == "update" or not store.has(spec.ref):
            by_hub[spec.ref.hub] = by_hub.get(spec.ref.hub, 0) + 1
    found: dict[str, Offload] = {}
    for name, count in by_hub.items():
        try:
            warm = type(get_hub(name, store)).offload_warm
        except ModelhubError:  # a hub not supported here: its models fail with the reason
            continue
        if warm is not None:
            from .offload import Offload

            found[name] = stack.enter_context(Offload(min(threads, count), warm, name))
    return found


def _check_lock_covers(
    specs: list[ModelSpec], lock: dict[str, LockEntry] | None, lock_file: Path
) -> None:
    if lock is None:
        raise LockMismatchError(f"--locked needs {lock_file}; run `modelhub sync` to write it")
    problems = []
    names = {s.name for s in specs}
    for spec in specs:
        entry = lock.get(spec.name)
        if entry is None:
            problems.append(f"{spec.name} is not in the lock")
        elif entry.request != spec.request():
            problems.append(f"{spec.name} has other settings in the lock")
    problems += [f"{ref} is locked but not in the model set" for ref in sorted(set(lock) - names)]
    if problems:
        more = f" (+{len(problems) - 3} more)" if len(problems) > 3 else ""
        raise LockMismatchError(
            f"{lock_file} does not match the model set: {'; '.join(problems[:3])}{more}; "
            "run `modelhub sync` to update it"
        )


def check(
    path: Path | str = DEFAULT_FILE,
    *,
    jobs: int | None = None,
    store: Store | None = None,
    lock: Path | str | None = None,
) -> list[Any]:
    """``sync --check``: ask upstream about every model of the lock of ``path`` (or ``lock``).

    Returns :class:`modelhub.outdated.UpstreamStatus` records in lock order (metadata requests
    only). Raises NotFoundError (exit 3) when there is no lock.
    """
    from .outdated import Recorded, check_many

    lock_file = lock_path_for(Path(path), lock)
    entries = read_lock(lock_file)
    if entries is None:
        raise NotFoundError(f"no lock at {lock_file}; run `modelhub sync` first")
    records = [Recorded.from_lock(entries[ref]) for ref in sorted(entries)]
    return check_many(records, store if store is not None else Store(), jobs=jobs)


__all__ = [
    "DEFAULT_FILE",
    "LOCK_NAME",
    "LockEntry",
    "LockMismatchError",
    "ModelSpec",
    "SyncEvent",
    "SyncReport",
    "SyncResult",
    "check",
    "default_jobs",
    "load_specs",
    "lock_path_for",
    "read_lock",
    "sync",
    "write_lock",
]

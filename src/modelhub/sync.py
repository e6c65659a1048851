"""``modelhub sync``: a declared set of models, pulled in parallel, pinned by ``modelhub.lock``.

The set is a TOML file (``modelhub.toml``), one ``[[model]]`` table per model::

    [[model]]
    ref = "onnx:mnist"              # required
    stage = "onnx"                  # optional: as ``pull --stage`` (default auto)
    storage = "uncompressed"        # optional
    revision = "v1.0"               # optional: as ``pull --revision``
    include = ["*.safetensors"]     # optional (hf:)
    exclude = ["*.bin"]             # optional (hf:)
    sha256 = "..."                  # optional (url:)
    # also task, signature, input_shape (str) and trust (bool), as the pull options

Each model goes through :func:`modelhub.pipeline.pull` (its own per-model lock; a model already
in the store costs no network). ``modelhub.lock``, written next to the TOML file, records for
every model the immutable revision it resolved to and the sha256 of every file and staged
artifact.

Why the lock is JSON and not TOML: ``tomllib`` reads TOML but cannot write it, and a lock is
written by a machine on every sync; ``json.dumps(sort_keys=True, indent=2)`` gives a
deterministic, line-per-field document with the standard library alone (no ``tomli-w``
dependency, no hand-written TOML emitter), the same way the manifests are written. It is
sorted by reference, keyed and indented so that it diffs well in git, and carries no timestamp,
host or mirror URL, so two syncs of an unchanged set produce byte-identical files.

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
import json
import os
import threading
import time
import tomllib
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import (
    EXIT_ERROR,
    EXIT_INTEGRITY,
    EXIT_OK,
    IntegrityError,
    ModelhubError,
    NetworkError,
    NotFoundError,
    UsageError,
    exit_code_for,
)
from .hubs import get_hub
from .pipeline import STAGES, STORAGES, as_ref, pull
from .refs import ModelRef
from .store import Manifest, Store
from .store.files import atomic_write_bytes
from .sync_order import Picker, schedule

if TYPE_CHECKING:
    from .offload import Offload
    from .stager import ProcessStager

DEFAULT_FILE = "modelhub.toml"
LOCK_NAME = "modelhub.lock"
LOCK_VERSION = 1
MODES = ("sync", "locked", "update")

_STR_OPTIONS = ("task", "signature", "input_shape")
_KEYS = frozenset(
    {"ref", "stage", "storage", "revision", "include", "exclude", "sha256", "trust", *_STR_OPTIONS}
)
_HEX = frozenset("0123456789abcdef")


class LockMismatchError(IntegrityError):
    """The lock does not match the TOML file, the store or what upstream serves now."""


def default_jobs() -> int:
    """Models pulled at once by default: ``min(4, 2 × CPUs)``.

    Pulls mostly wait (network, fsync, the hub's metadata round trips), so two per core keep
    the machine busy; staging is CPU- and memory-heavy (model exports), hence the cap of 4.
    """
    return max(1, min(4, 2 * (os.cpu_count() or 1)))


# --- the TOML model set -------------------------------------------------------------------------
@dataclass(frozen=True)
class ModelSpec:
    """One ``[[model]]`` table: the reference (revision applied) and its pull settings."""

    ref: ModelRef
    stage: str = "auto"
    storage: str = "uncompressed"
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    sha256: str | None = None
    options: tuple[tuple[str, Any], ...] = ()

    @property
    def name(self) -> str:
        """The canonical reference: the key of the model in the store and in the lock."""
        return self.ref.canonical

    def request(self) -> dict[str, Any]:
        """The settings the lock records, so that an edited TOML entry is seen as new."""
        doc: dict[str, Any] = {
            "stage": self.stage,
            "storage": self.storage,
            "include": list(self.include),
            "exclude": list(self.exclude),
        }
        if self.sha256:
            doc["sha256"] = self.sha256
        doc.update(dict(self.options))
        return doc

    def pull_options(self) -> dict[str, Any]:
        """The ``options`` argument of :func:`modelhub.pipeline.pull`."""
        options: dict[str, Any] = dict(self.options)
        if self.include:
            options["include"] = list(self.include)
        if self.exclude:
            options["exclude"] = list(self.exclude)
        return options


def _globs(value: Any, where: str, key: str) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise UsageError(f"{where}: {key} must be a string or a list of strings")
    return tuple(value)


def _spec(table: Any, where: str) -> ModelSpec:
    if not isinstance(table, dict):
        raise UsageError(f"{where}: each [[model]] must be a table")
    unknown = sorted(set(table) - _KEYS)
    if unknown:
        raise UsageError(
            f"{where}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(_KEYS))}"
        )
    ref = table.get("ref")
    if not isinstance(ref, str) or not ref.strip():
        raise UsageError(f"{where}: 'ref' (a model reference string) is required")
    for key in ("stage", "storage", "revision", "sha256", *_STR_OPTIONS):
        if key in table and not isinstance(table[key], str):
            raise UsageError(f"{where}: {key} must be a string")
    stage = table.get("stage", "auto")
    if stage not in STAGES:
        raise UsageError(f"{where}: stage {stage!r} is not one of {', '.join(STAGES)}")
    storage = table.get("storage", "uncompressed")
    if storage not in STORAGES:
        raise UsageError(f"{where}: storage {storage!r} is not one of {', '.join(STORAGES)}")
    sha256 = table.get("sha256")
    if sha256 is not None:
        sha256 = sha256.strip().lower()
        if len(sha256) != 64 or not set(sha256) <= _HEX:
            raise UsageError(f"{where}: sha256 needs 64 hex digits")
    if "trust" in table and not isinstance(table["trust"], bool):
        raise UsageError(f"{where}: trust must be true or false")
    options = [(k, table[k]) for k in (*_STR_OPTIONS, "trust") if k in table]
    try:
        mref = as_ref(ref.strip(), table.get("revision"))
    except ModelhubError as exc:
        raise UsageError(f"{where}: {exc}") from None
    return ModelSpec(
        ref=mref,
        stage=stage,
        storage=storage,
        include=_globs(table.get("include", []), where, "include"),
        exclude=_globs(table.get("exclude", []), where, "exclude"),
        sha256=sha256,
        options=tuple(sorted(options)),
    )


def load_specs(path: Path) -> list[ModelSpec]:
    """Read the model set at ``path``; return its models in file order.

    Raises NotFoundError (no file, exit 3) and UsageError (not TOML, unknown keys, bad values,
    the same model twice; exit 2).
    """
    try:
        with open(path, "rb") as fh:
            doc = tomllib.load(fh)
    except FileNotFoundError:
        raise NotFoundError(f"no model set at {path} (write [[model]] tables with a ref)") from None
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{path}: not valid TOML: {exc}") from None
    extra = sorted(set(doc) - {"model"})
    if extra:
        raise UsageError(f"{path}: unknown top-level key(s) {', '.join(extra)}; use [[model]]")
    tables = doc.get("model", [])
    if not isinstance(tables, list):
        raise UsageError(f"{path}: 'model' must be an array of tables ([[model]])")
    specs = [_spec(t, f"{path}: model #{i + 1}") for i, t in enumerate(tables)]
    seen: dict[str, int] = {}
    for i, spec in enumerate(specs):
        if spec.name in seen:
            raise UsageError(
                f"{path}: model #{i + 1} ({spec.name}) repeats model #{seen[spec.name] + 1}"
            )
        seen[spec.name] = i
    return specs


# --- the lock -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class LockEntry:
    """What one model resolved to: its immutable revision and the sha256 of every file."""

    ref: str
    hub: str
    revision: str
    request: dict[str, Any]
    files: list[dict[str, Any]]  # {path, sha256, size}, sorted by path
    staged: list[dict[str, Any]]  # {path, format, sha256, size}, sorted by (format, path)
    upstream: dict[str, Any] = field(default_factory=dict)  # HTTP validators, if recorded

    @classmethod
    def from_manifest(cls, spec: ModelSpec, manifest: Manifest) -> LockEntry:
        """The entry for ``spec`` as pulled into ``manifest``."""
        validators = manifest.details.get("validators")
        return cls(
            ref=manifest.ref,
            hub=manifest.hub,
            revision=manifest.revision,
            request=spec.request(),
            files=_file_records(manifest),
            staged=_staged_records(manifest),
            upstream=dict(validators) if isinstance(validators, dict) else {},
        )

    def as_dict(self) -> dict[str, Any]:
        """The JSON form (``upstream`` only when there is something in it)."""
        doc: dict[str, Any] = {
            "ref": self.ref,
            "hub": self.hub,
            "revision": self.revision,
            "request": self.request,
            "files": self.files,
            "staged": self.staged,
        }
        if self.upstream:
            doc["upstream"] = self.upstream
        return doc

    def differences(self, manifest: Manifest, *, staged: bool = True) -> list[str]:
        """How ``manifest`` differs from this entry (revision, files and, with ``staged``, the
        staged artifacts); [] when equal."""
        found = []
        if manifest.revision != self.revision:
            found.append(f"revision {_short(self.revision)} → {_short(manifest.revision)}")
        locked = {f["path"]: f["sha256"] for f in self.files}
        got = {f["path"]: f["sha256"] for f in _file_records(manifest)}
        for rel in sorted(set(locked) | set(got)):
            if rel not in got:
                found.append(f"{rel}: missing (locked sha256 {_short(locked[rel])})")
            elif rel not in locked:
                found.append(f"{rel}: not in the lock")
            elif locked[rel] != got[rel]:
                found.append(f"{rel}: sha256 {_short(locked[rel])} → {_short(got[rel])}")
        if not staged:
            return found
        wanted = {(s["format"], s["path"]): s["sha256"] for s in self.staged}
        have = {(s["format"], s["path"]): s["sha256"] for s in _staged_records(manifest)}
        for key in sorted(wanted):
            if key not in have:
                found.append(f"staged {key[0]} {key[1]}: missing")
            elif have[key] != wanted[key]:
                found.append(
                    f"staged {key[0]} {key[1]}: sha256 {_short(wanted[key])} → {_short(have[key])}"
                )
        return found


def _short(sha: str) -> str:
    return sha[:12] if len(sha) > 12 else sha


def _file_records(manifest: Manifest) -> list[dict[str, Any]]:
    return sorted(
        ({"path": f.path, "sha256": f.sha256, "size": f.size} for f in manifest.files),
        key=lambda d: d["path"],
    )


def _staged_records(manifest: Manifest) -> list[dict[str, Any]]:
    return sorted(
        (
            {"path": s.path, "format": s.format, "sha256": s.sha256, "size": s.size}
            for s in manifest.staged
        ),
        key=lambda d: (d["format"], d["path"]),
    )


def lock_path_for(toml_path: Path) -> Path:
    """``modelhub.lock`` in the folder of the TOML file."""
    return Path(toml_path).absolute().parent / LOCK_NAME


def render_lock(entries: Sequence[LockEntry]) -> bytes:
    """The lock document: sorted by reference, sorted keys, two-space indent, final newline."""
    doc = {
        "generated_by": "modelhub sync; do not edit by hand",
        "lock_version": LOCK_VERSION,
        "models": [e.as_dict() for e in sorted(entries, key=lambda e: e.ref)],
    }
    return (json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode()


def _entry(doc: Any, where: str) -> LockEntry:
    try:
        files = [
            {"path": str(f["path"]), "sha256": str(f["sha256"]), "size": int(f["size"])}
            for f in doc["files"]
        ]
        staged = [
            {
                "path": str(s["path"]),
                "format": str(s["format"]),
                "sha256": str(s["sha256"]),
                "size": int(s["size"]),
            }
            for s in doc.get("staged") or []
        ]
        request = doc["request"]
        upstream = doc.get("upstream") or {}
        if not isinstance(request, dict) or not isinstance(upstream, dict):
            raise TypeError("request/upstream must be objects")
        return LockEntry(
            ref=str(doc["ref"]),
            hub=str(doc["hub"]),
            revision=str(doc["revision"]),
            request=request,
            files=files,
            staged=staged,
            upstream=upstream,
        )
    except (KeyError, TypeError, ValueError, OverflowError) as exc:
        raise IntegrityError(f"{where}: malformed entry ({exc})") from None


def read_lock(path: Path) -> dict[str, LockEntry] | None:
    """The entries of the lock at ``path`` by reference, or None when there is no lock.

    Raises IntegrityError (exit 5) for a lock that is not a lock document.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except UnicodeDecodeError as exc:
        raise IntegrityError(f"{path}: not a modelhub lock (not UTF-8: {exc})") from None
    try:
        doc = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise IntegrityError(f"{path}: not a modelhub lock (invalid JSON: {exc})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("models"), list):
        raise IntegrityError(f"{path}: not a modelhub lock (no 'models' list)")
    if doc.get("lock_version") != LOCK_VERSION:
        raise IntegrityError(
            f"{path}: lock version {doc.get('lock_version')!r} is not {LOCK_VERSION}"
        )
    entries = [_entry(m, f"{path}: model #{i + 1}") for i, m in enumerate(doc["models"])]
    return {e.ref: e for e in entries}


def write_lock(path: Path, entries: Sequence[LockEntry]) -> bool:
    """Write the lock atomically if its content changes; return True when it was written."""
    data = render_lock(entries)
    path = Path(path)
    try:
        if path.read_bytes() == data:
            return False
    except FileNotFoundError:
        pass
    atomic_write_bytes(path, data, path.parent)
    return True


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
                result.entry = LockEntry.from_manifest(spec, manifest)
        except Exception as exc:
            result.status, result.error = "failed", exc
        result.seconds = time.monotonic() - started
        self.event("done", index, result)
        return result

    def _pull(self, spec: ModelSpec, *, force: bool = False, sha256: str | None = None) -> Manifest:
        model = pull(
            spec.ref,
            stage=spec.stage,
            storage=spec.storage,
            offline=self.offline,
            force=force,
            sha256=sha256 or spec.sha256,
            store=self.store,
            progress=False,
            options=spec.pull_options(),
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
        pinned = _url_sha(entry)
        if before is not None and not entry.differences(before, staged=False):
            manifest = self._pull(spec, sha256=pinned)  # a cache hit unless a stage is missing
        elif before is None:
            # Nothing local to protect: pull, then hold the result against the lock (as pip's
            # hash-checking mode does). Asking upstream first would cost every model of a
            # fresh node its metadata round trips twice.
            self.event("phase", index, result, "pulling")
            manifest = self._pull(spec, sha256=pinned)
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
            manifest = self._pull(spec, force=before is not None, sha256=pinned)
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
        old = LockEntry.from_manifest(spec, before)
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


def _url_sha(entry: LockEntry) -> str | None:
    """For url: models, the locked file's sha256: the download is checked before it is kept."""
    if entry.hub == "url" and len(entry.files) == 1:
        return str(entry.files[0]["sha256"])
    return None


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

    Every model is attempted even when others fail; failures are in the report (its
    ``exit_code``), not raised. Raises NotFoundError / UsageError for the TOML file, and
    LockMismatchError (exit 5) in ``locked`` mode when the lock is missing or does not cover
    the TOML file exactly (before anything is pulled).
    """
    if mode not in MODES:
        raise UsageError(f"unknown sync mode {mode!r}")
    started = time.monotonic()
    path = Path(path)
    specs = load_specs(path)
    lock_file = lock_path_for(path)
    lock = read_lock(lock_file)
    if mode == "locked":
        _check_lock_covers(specs, lock, lock_file)
    st = store if store is not None else Store()
    results = [SyncResult(spec) for spec in specs]
    workers = max(1, jobs if jobs and jobs > 0 else default_jobs())
    syncer = _Syncer(st, mode, lock or {}, offline, on_event or (lambda e: None), len(specs))
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
    if mode != "locked":
        entries = [r.entry for r in results if r.entry is not None]
        # A model that failed keeps its previous entry, so one bad pull does not unpin it.
        for r in results:
            old = (lock or {}).get(r.spec.name)
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
    path: Path | str = DEFAULT_FILE, *, jobs: int | None = None, store: Store | None = None
) -> list[Any]:
    """``sync --check``: ask upstream about every model of the lock next to ``path``.

    Returns :class:`modelhub.outdated.UpstreamStatus` records in lock order (metadata requests
    only). Raises NotFoundError (exit 3) when there is no lock.
    """
    from .outdated import Recorded, check_many

    lock_file = lock_path_for(Path(path))
    lock = read_lock(lock_file)
    if lock is None:
        raise NotFoundError(f"no lock at {lock_file}; run `modelhub sync` first")
    records = [Recorded.from_lock(lock[ref]) for ref in sorted(lock)]
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
    "render_lock",
    "schedule",
    "sync",
    "write_lock",
]

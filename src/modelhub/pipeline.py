"""``pull()``: reference → hub adapter → store → staging → manifest. One direction.

The pipeline knows only the hub adapter and the store. It decides from the store first
(a model already present with the wanted stage costs no network and no framework import),
then, under the model's lock, resolves, fetches, stages and writes the manifest last.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .config import STAGES, STORAGES, settings
from .errors import HashMismatchError, UnsupportedError, UsageError
from .hubs import ModelHub, Plan, StageRequest, get_hub
from .refs import ModelRef, parse, with_revision
from .registry import EXTRAS_BY_MODULE, row
from .store import FileEntry, Manifest, StagedEntry, Store
from .store.layout import framework_for
from .store.manifest import utc_now

if TYPE_CHECKING:
    from .offload import Offload
    from .remote import RemoteStore
    from .stager import ProcessStager


@dataclass(frozen=True)
class Model:
    """A model in the store: its reference, manifest and absolute paths."""

    ref: ModelRef
    manifest: Manifest
    store: Store
    #: What this pull has to tell once (a re-fetch of damaged files, what a file is): said by
    #: the CLI after the pull that did it, never again on a cache hit.
    notes: tuple[str, ...] = ()

    @property
    def path(self) -> Path:
        """The primary artifact: the staged file if any, else the original."""
        return self.store.abspath(self.manifest.primary_path)

    @property
    def original(self) -> Path:
        """The original artifact (the snapshot folder for folder-shaped models)."""
        folder = self.manifest.details.get("folder")
        return self.store.abspath(str(folder) if folder else self.manifest.files[0].path)

    @property
    def files(self) -> list[Path]:
        """Absolute paths of the original files."""
        return [self.store.abspath(f.path) for f in self.manifest.files]

    @property
    def staged(self) -> list[Path]:
        """Absolute paths of the staged artifacts."""
        return [self.store.abspath(s.path) for s in self.manifest.staged]


def as_ref(ref: str | ModelRef, revision: str | None = None) -> ModelRef:
    """Parse ``ref`` if needed and apply ``revision`` (``--revision``)."""
    parsed = parse(ref) if isinstance(ref, str) else ref
    return with_revision(parsed, revision) if revision else parsed


def _stage_for(hub: ModelHub, ref: ModelRef, stage: str) -> str:
    if stage not in STAGES:
        raise UsageError(f"unknown stage {stage!r}; expected one of {', '.join(STAGES)}")
    if stage == "auto":
        stage = hub.auto_stage(ref)
    if stage not in hub.stages:
        raise UnsupportedError(
            f"{ref}: cannot stage to {stage!r} (this hub stages to {', '.join(hub.stages)})"
        )
    return stage


def _satisfied(
    hub: ModelHub,
    manifest: Manifest,
    fmt: str,
    storage: str,
    sha256: str | None,
    options: dict[str, Any],
) -> bool:
    if manifest.storage != storage:
        return False
    if sha256 and (not manifest.files or manifest.files[0].sha256 != sha256):
        return False
    if not hub.satisfies(manifest, fmt, options):
        return False
    if fmt == "none":
        return True
    if not any(s.format == fmt for s in manifest.staged):
        return False
    if options.get("for"):
        from .staging.for_dl4j import has_dl4j_forms, wants_dl4j

        # A pull --for dl4j needs the DL4J-ready copies; one without takes a manifest with them.
        return not wants_dl4j(options) or has_dl4j_forms(manifest, fmt)
    return True


#: A plan's ``details`` key for a note the pull says once (not kept in the manifest).
NOTE_ONCE = "note_once"


def _refuse_folder_pin(ref: ModelRef, sha256: str | None) -> None:
    """``--sha256`` pins one file: refuse it (exit 2, before any I/O) for a model that is a
    folder of files, pointing at the lock, which pins each of them."""
    if sha256 is not None and row(ref.hub).folder_shaped(ref):
        raise UsageError(
            f"--sha256 pins one file and {ref} is a folder of files: pin it in a model set "
            "instead (`modelhub sync` writes every file's sha256 to its lock; `sync --locked` "
            "holds each pull to it)"
        )


def _pin(plan: Plan, sha256: str) -> None:
    """Make the plan's one file carry ``sha256``: a download is then checked against it before
    it gets its final name. A hub that lists another sha256 is answered at once (exit 5)."""
    if len(plan.files) > 1:
        _refuse_folder_pin(plan.ref, sha256)
        raise UsageError(f"--sha256 pins one file and {plan.ref} has {len(plan.files)}; use a lock")
    if not plan.files:
        return  # the hub's SDK fetches: checked once the file is in (``_check_pin``)
    rf = plan.files[0]
    if rf.sha256 is not None and rf.sha256 != sha256:
        raise HashMismatchError(
            f"{plan.ref}: the hub lists sha256 {rf.sha256[:16]}…, not the --sha256 "
            f"{sha256[:16]}… asked; nothing was downloaded"
        )
    plan.files = [dataclasses.replace(rf, sha256=sha256)]


def _check_pin(ref: ModelRef, files: list[FileEntry], sha256: str) -> None:
    if len(files) != 1:
        raise UsageError(f"--sha256 pins one file and {ref} has {len(files)}; use a lock")
    if files[0].sha256 != sha256:
        raise HashMismatchError(
            f"{ref}: sha256 {files[0].sha256[:16]}… does not match the --sha256 "
            f"{sha256[:16]}… asked; the file was not kept"
        )


def _damaged(manifest: Manifest | None) -> list[str]:
    """The paths ``modelhub verify`` found damaged in ``manifest`` (none: intact)."""
    found = manifest.details.get("damaged") if manifest is not None else None
    return [str(p) for p in found] if isinstance(found, list) else []


def _files_present(store: Store, manifest: Manifest) -> bool:
    for entry in manifest.files:
        path = store.abspath(entry.path)
        if not path.is_file() or path.stat().st_size != entry.size:
            return False
    return True


def pull(
    ref: str | ModelRef,
    *,
    stage: str = "auto",
    storage: str = "uncompressed",
    revision: str | None = None,
    offline: bool | None = None,
    force: bool = False,
    sha256: str | None = None,
    store: Store | None = None,
    progress: bool | None = None,
    options: dict[str, Any] | None = None,
    remote: str | RemoteStore | None = None,
    stager: ProcessStager | None = None,
    offload: Offload | None = None,
) -> Model:
    """Pull ``ref`` into the store and stage it; return the :class:`Model`.

    A model already present with the wanted stage is returned with no network access. Else
    ``remote`` (an ``s3://`` URL or a RemoteStore; default ``$MODELHUB_REMOTE``, ``""`` for
    none) is looked up before the hub, and a model pulled from the hub is published to it.
    ``stager`` runs heavy staging (``hub.heavy_stage``) in worker processes (see
    :mod:`modelhub.stager`); default, and for quick checks: in this thread. ``offload`` is a
    helper process started for this hub's SDK (``hub.offload_warm``, :mod:`modelhub.offload`)
    that does the SDK's share of the download.

    ``sha256`` pins a single-file model of any hub: other bytes raise HashMismatchError (exit
    5) and nothing is kept; a model that is a folder of files raises UsageError (exit 2), its
    pin is a lock's. A model ``modelhub verify`` found damaged is fetched again (the returned
    :attr:`Model.notes` say so). A failed pull leaves nothing but resumable partial downloads:
    the files it placed that no manifest owns are removed.
    Raises the typed errors of :mod:`modelhub.errors` (each with its exit code).
    """
    if storage not in STORAGES:
        raise UsageError(f"unknown storage {storage!r}; expected compressed or uncompressed")
    if sha256 is not None:
        sha256 = sha256.strip().lower()
        if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
            raise UsageError("--sha256 needs 64 hex digits")
    mref = as_ref(ref, revision)
    _refuse_folder_pin(mref, sha256)
    st = store if store is not None else Store()
    hub = get_hub(mref.hub, st)
    hub.offload = offload
    if storage not in hub.storages:
        raise UsageError(
            f"{mref}: --storage {storage}: this hub has no {storage} form; leave the option out"
        )
    fmt = _stage_for(hub, mref, stage)
    offline = settings().offline if offline is None else offline
    request = StageRequest(fmt, dict(options or {}), auto=stage == "auto")
    auto = _stage_for(hub, mref, "auto")

    opts = dict(options or {})
    found = st.manifest(mref)
    if (
        found is not None
        and not force
        and not _damaged(found)
        and _satisfied(hub, found, fmt, storage, sha256, opts)
    ):
        return Model(mref, found, st)

    with st.lock(mref), st.journal(mref) as placed:
        try:
            return _pull_locked(
                hub,
                mref,
                st,
                request,
                auto,
                storage,
                sha256,
                opts,
                offline,
                force,
                progress,
                remote,
                stager,
            )
        except BaseException:
            # Nothing of a failed pull stays but its resumable partial downloads: the files it
            # placed that no manifest owns go (a half-made export, the links of a snapshot).
            st.discard(placed)
            raise
        finally:
            st.prune_tmp(mref)


def _pull_locked(
    hub: ModelHub,
    mref: ModelRef,
    st: Store,
    request: StageRequest,
    auto: str,
    storage: str,
    sha256: str | None,
    opts: dict[str, Any],
    offline: bool,
    force: bool,
    progress: bool | None,
    remote: str | RemoteStore | None,
    stager: ProcessStager | None,
) -> Model:
    """:func:`pull` under the model's lock, once the store alone could not answer it."""
    fmt = request.fmt
    found = st.manifest(mref)
    notes: list[str] = []
    damaged = _damaged(found)
    if damaged:
        force = True  # the bytes in place are bad; an SDK cache may hold the same bad copy
        shown = ", ".join(damaged[:3]) + (", ..." if len(damaged) > 3 else "")
        notes.append(
            f"fetched again: `modelhub verify` found {len(damaged)} damaged file(s) ({shown})"
        )
    if found is not None and not force:
        if _satisfied(hub, found, fmt, storage, sha256, opts):
            return Model(mref, found, st)
        if (
            found.storage == storage
            and _satisfied(hub, found, "none", storage, sha256, opts)
            and _files_present(st, found)
        ):
            return _restage(hub, mref, found, request, st, stager)
    shared = _remote_for(remote, offline)
    if shared is not None and found is None and not force:
        fetched = shared.fetch_model(mref, st, progress=progress)
        if fetched is not None and _satisfied(hub, fetched, "none", storage, sha256, opts):
            if _satisfied(hub, fetched, fmt, storage, sha256, opts):
                return Model(mref, fetched, st)
            return _restage(hub, mref, fetched, request, st, stager)
    fetch_options = {**opts, "sha256": sha256, "storage": storage}
    plan = hub.resolve(mref, offline=offline, options=fetch_options, force=force)
    if sha256 is not None:
        _pin(plan, sha256)
    files = hub.fetch(plan, progress=progress, offline=offline, force=force)
    if sha256 is not None:
        _check_pin(mref, files, sha256)
    once = plan.details.pop(NOTE_ONCE, None)
    if once:
        notes.append(str(once))
    staged: list[StagedEntry] = []
    if damaged and found is not None:
        # Staged forms of the very same originals stay valid, unless they were damaged too.
        same = {(f.path, f.sha256) for f in files} == {(f.path, f.sha256) for f in found.files}
        staged = [s for s in found.staged if same and s.path not in damaged]
    manifest = Manifest(
        ref=mref.canonical,
        hub=mref.hub,
        framework=framework_for(mref),
        revision=plan.revision or files[0].sha256,
        source=plan.source,
        storage=storage,
        sdk_cache=plan.sdk_cache,
        files=files,
        staged=staged,
        created=utc_now(),
        details={**plan.details, "auto_stage": auto},
    )
    model = _restage(hub, mref, manifest, request, st, stager)
    if shared is not None:
        shared.publish_model(mref, st)
    return dataclasses.replace(model, notes=tuple(notes))


def repair(
    ref: str | ModelRef, *, store: Store | None = None, progress: bool | None = None
) -> Model:
    """Fetch ``ref`` again as it was pulled (``modelhub verify --repair``): its files, with the
    same file selection and storage (a single file: with its recorded sha256), and any staged
    form that was damaged, staged again; intact staged forms of unchanged originals are kept.
    Raises NotInStoreError when absent, HashMismatchError when upstream now serves other
    bytes for a single-file model."""
    st = store if store is not None else Store()
    mref = as_ref(ref)
    manifest = st.require(mref)
    problems = {p.split(": ", 1)[0] for p in st.verify(manifest)} | set(_damaged(manifest))
    details = manifest.details
    options: dict[str, Any] = {
        key: details[key] for key in ("include", "exclude", "hub_args") if details.get(key)
    }
    selection = details.get("selection")
    if isinstance(selection, dict) and selection.get("rule") == "all-files":
        options["all_files"] = True
    stage = "none"
    for entry in manifest.staged:
        if entry.path in problems or (entry.fixture and entry.fixture.get("path") in problems):
            stage = entry.format
            if entry.details.get("task"):
                options["task"] = entry.details["task"]
            break
    # A single file must come back as it was recorded (upstream may have changed since).
    single = len(manifest.files) == 1 and not row(mref.hub).folder_shaped(mref)
    return pull(
        mref,
        stage=stage,
        storage=manifest.storage,
        sha256=manifest.files[0].sha256 if single else None,
        force=True,
        store=st,
        progress=progress,
        options=options,
        remote="",
    )


def _remote_for(remote: str | RemoteStore | None, offline: bool) -> RemoteStore | None:
    """The shared store to use: ``remote``, else ``$MODELHUB_REMOTE``; none when offline."""
    if offline:
        return None
    if remote is None:
        remote = settings().remote
    if not remote:
        return None
    if isinstance(remote, str):
        from .remote import RemoteStore

        return RemoteStore(remote)
    return remote


def _restage(
    hub: ModelHub,
    ref: ModelRef,
    manifest: Manifest,
    request: StageRequest,
    store: Store,
    stager: ProcessStager | None = None,
) -> Model:
    try:
        if request.fmt == "none":
            staged = []
        elif stager is not None and hub.heavy_stage(ref, manifest, request):
            staged = stager.stage(hub, ref, manifest, request)
        else:
            staged = hub.stage(ref, manifest, request)
    except ModuleNotFoundError as exc:  # a framework extra is not installed
        extra = EXTRAS_BY_MODULE.get((exc.name or "").split(".")[0], "all")
        raise UsageError(
            f"staging {ref} to {request.fmt} needs {exc.name}: pip install 'modelhub[{extra}]' "
            "(or pull with --stage none)"
        ) from None
    if staged and request.options.get("for"):
        from .staging.for_dl4j import dl4j_forms, wants_dl4j

        if wants_dl4j(request.options):
            staged = dl4j_forms(store, ref, staged)
    replaced = {request.fmt, *(s.format for s in staged)}
    keep = [s for s in manifest.staged if s.format not in replaced]
    manifest = dataclasses.replace(manifest, staged=staged + keep)
    store.write_manifest(manifest, ref)
    return Model(ref, manifest, store)


def stage_existing(
    ref: str | ModelRef,
    stage: str = "auto",
    *,
    store: Store | None = None,
    options: dict[str, Any] | None = None,
) -> Model:
    """Stage a model already in the store (no download). Raises NotInStoreError when absent."""
    mref = as_ref(ref)
    st = store if store is not None else Store()
    hub = get_hub(mref.hub, st)
    fmt = _stage_for(hub, mref, stage)
    with st.lock(mref), st.journal(mref) as placed:
        manifest = st.require(mref)
        request = StageRequest(fmt, dict(options or {}), auto=stage == "auto")
        try:
            return _restage(hub, mref, manifest, request, st)
        except BaseException:
            st.discard(placed)
            raise


def path(ref: str | ModelRef, *, store: Store | None = None) -> Path:
    """The primary artifact of ``ref`` in the store. Never touches the network.

    Raises NotInStoreError (exit 3) when the model has not been pulled.
    """
    st = store if store is not None else Store()
    mref = as_ref(ref)
    return st.abspath(st.require(mref).primary_path)


def load(ref: str | ModelRef, *, store: Store | None = None, **pull_kwargs: Any) -> Any:
    """Pull (if needed) and open ``ref``.

    Returns an onnxruntime session for ONNX, a callable over the frozen graph for ``pb``, a
    Keras model for ``h5``/``keras``, and the artifact's path (e.g. a Hugging Face snapshot
    folder) for anything else.
    """
    model = pull(ref, store=store, **pull_kwargs)
    fmt = model.manifest.staged[0].format if model.manifest.staged else None
    if fmt == "pb":
        from .staging.freeze_tf import FrozenGraph

        details = model.manifest.staged[0].details
        return FrozenGraph(model.path, details["input_map"], details["output_map"])
    if fmt in ("h5", "keras"):
        from .frameworks.keras_files import load_keras_model

        return load_keras_model(model.path)
    if fmt == "onnx" or model.path.suffix == ".onnx":
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.log_severity_level = 3
        return onnxruntime.InferenceSession(
            str(model.path), options, providers=["CPUExecutionProvider"]
        )
    return model.path

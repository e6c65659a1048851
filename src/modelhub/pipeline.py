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
from .errors import UnsupportedError, UsageError
from .hubs import ModelHub, StageRequest, get_hub
from .refs import ModelRef, parse, with_revision
from .registry import EXTRAS_BY_MODULE
from .store import Manifest, Store
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
    Raises the typed errors of :mod:`modelhub.errors` (each with its exit code).
    """
    if storage not in STORAGES:
        raise UsageError(f"unknown storage {storage!r}; expected compressed or uncompressed")
    if sha256 is not None:
        sha256 = sha256.strip().lower()
        if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
            raise UsageError("--sha256 needs 64 hex digits")
    mref = as_ref(ref, revision)
    st = store if store is not None else Store()
    hub = get_hub(mref.hub, st)
    hub.offload = offload
    fmt = _stage_for(hub, mref, stage)
    offline = settings().offline if offline is None else offline
    request = StageRequest(fmt, dict(options or {}), auto=stage == "auto")
    auto = _stage_for(hub, mref, "auto")

    opts = dict(options or {})
    found = st.manifest(mref)
    if found is not None and not force and _satisfied(hub, found, fmt, storage, sha256, opts):
        return Model(mref, found, st)

    with st.lock(mref):
        found = st.manifest(mref)
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
        fetch_options = {**(options or {}), "sha256": sha256, "storage": storage}
        plan = hub.resolve(mref, offline=offline, options=fetch_options, force=force)
        files = hub.fetch(plan, progress=progress, offline=offline, force=force)
        manifest = Manifest(
            ref=mref.canonical,
            hub=mref.hub,
            framework=framework_for(mref),
            revision=plan.revision or files[0].sha256,
            source=plan.source,
            storage=storage,
            sdk_cache=plan.sdk_cache,
            files=files,
            staged=[],
            created=utc_now(),
            details={**plan.details, "auto_stage": auto},
        )
        model = _restage(hub, mref, manifest, request, st, stager)
        if shared is not None:
            shared.publish_model(mref, st)
        return model


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
    with st.lock(mref):
        manifest = st.require(mref)
        request = StageRequest(fmt, dict(options or {}), auto=stage == "auto")
        return _restage(hub, mref, manifest, request, st)


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

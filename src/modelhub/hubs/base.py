"""The ModelHub base class: the one seam every hub adapter plugs into.

A hub does three things, in this order, and nothing else:

1. ``resolve(ref)`` → a :class:`Plan`: the immutable revision and the remote files, decided from
   metadata only (no model bytes move yet);
2. ``fetch(plan)`` → the files, entered into the store (downloaded through ``transfer``, or linked
   from the SDK's cache), each verified before it gets its final name;
3. ``stage(ref, manifest, fmt)`` → staged artifacts with their evidence (names, parity).

``pipeline.pull`` drives these steps under the model's lock and writes the manifest last; the
adapter never calls back up into it. Everything else a hub may do differently is a declared
method here with a default: ``auto_stage``, ``satisfies``, ``heavy_stage``, ``warm_up``,
``preview`` (``--dry-run``), ``sdk_caches`` (``modelhub doctor``),
``check_upstream`` (``modelhub outdated``), ``import_kind`` (``modelhub import``) and
``lock_pin`` (``sync --locked``). What modelhub knows of a hub without importing it (grammar,
endpoints, store folders) is its row in :mod:`modelhub.registry`. The seed interface
(``download_model``/``stage_model``) sits above the pipeline, in :mod:`modelhub.seed`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from .. import registry
from ..config import settings
from ..errors import (
    HashMismatchError,
    LFSPointerError,
    OfflineError,
    SizeMismatchError,
    UnsupportedError,
)
from ..refs import ModelRef
from ..store import FileEntry, Manifest, StagedEntry, Store
from ..store.files import sha256_file

if TYPE_CHECKING:
    from ..offload import Offload
    from ..upstream import Memo, Recorded, UpstreamStatus


@dataclass(frozen=True)
class RemoteFile:
    """One file to fetch: where from, where to (store-relative), and what it must be."""

    url: str
    rel: str
    sha256: str | None = None
    size: int | None = None


@dataclass
class Plan:
    """What a hub resolved for a reference, before any model bytes are fetched."""

    ref: ModelRef
    revision: str | None
    files: list[RemoteFile]
    source: list[str]
    details: dict[str, Any] = field(default_factory=dict)
    sdk_cache: str | None = None


@dataclass(frozen=True)
class StageRequest:
    """Options for staging, from the CLI or the API."""

    fmt: str
    options: dict[str, Any] = field(default_factory=dict)
    #: ``fmt`` came from ``--stage auto``: a hub may then keep a file it cannot stage as it is.
    auto: bool = False


_LFS_PREFIX = b"version https://git-lfs.github.com/spec/"
#: A preview plan's ``details`` key: the ``rel`` of files the SDK's cache already holds.
PREVIEW_CACHED = "preview_cached"


class ModelHub(ABC):
    """Base class of every hub adapter (see the module docstring for the contract)."""

    #: The reference prefix, e.g. ``"onnx"``: the name of the hub's row in the registry.
    name: ClassVar[str]
    #: The stage ``--stage auto`` means for this hub (``"none"`` = keep the original).
    default_stage: ClassVar[str] = "none"
    #: Stages this hub can produce.
    stages: ClassVar[tuple[str, ...]] = ("none",)
    #: For a hub whose SDK does its downloads: a module-level function that imports the SDK.
    #: ``modelhub sync --jobs N`` then starts a helper process with it (:mod:`modelhub.offload`)
    #: and hands the hub's SDK work there (``offload``), off the GIL of the other pulls.
    offload_warm: ClassVar[Callable[[], None] | None] = None

    def __init__(self, store: Store | None = None) -> None:
        self.store = store if store is not None else Store()
        #: The helper process this hub's SDK work goes to, when a sync started one.
        self.offload: Offload | None = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}(hub_url={self.hub_url!r}, store={self.store!r})"

    @property
    def row(self) -> registry.HubRow:
        """This hub's registry row (grammar, endpoints, store folders)."""
        return registry.row(self.name)

    @property
    def storages(self) -> tuple[str, ...]:
        """``--storage`` values this hub honours (its registry row's)."""
        return self.row.storages

    @property
    def hub_url(self) -> str:
        """The base URL this hub talks to (upstream, an override, or the mirror); ``""`` for a
        hub without an endpoint of its own (plain URLs: each reference is its own address)."""
        if not self.row.endpoints:
            return ""
        return settings().hub_url(self.row.endpoints[0].key)

    @property
    def framework_name(self) -> str:
        """The store folder of this hub's models (``other`` when it depends on the model)."""
        folders = self.row.folders
        return folders[0] if len(folders) == 1 else registry.OTHER_FRAMEWORK

    # --- the three steps -----------------------------------------------------------------------
    @abstractmethod
    def resolve(
        self,
        ref: ModelRef,
        *,
        offline: bool = False,
        options: Mapping[str, Any] | None = None,
        force: bool = False,
    ) -> Plan:
        """Resolve ``ref`` to an immutable revision and its remote files (metadata only).

        ``options`` carries per-pull settings (``sha256``, ``include``, ``exclude``, ...); a hub
        ignores those it has no use for. ``force`` (``pull --force``): cached metadata may be
        stale, ask upstream again.

        Raises ModelNotFoundError (exit 3) for unknown models, OfflineError (exit 6) when the
        metadata is needed and ``offline`` is set.
        """

    def fetch(
        self,
        plan: Plan,
        *,
        progress: bool | None = None,
        offline: bool = False,
        force: bool = False,
    ) -> list[FileEntry]:
        """Enter every file of ``plan`` into the store; return their records.

        ``force`` (``pull --force``): an SDK cache's copy may be stale, download again. The
        default downloads through ``transfer`` into the store's temporary folder, checks
        size, sha256 and that no Git LFS pointer came instead of the content, then publishes.
        A file already at its final path with the expected sha256 is kept (no download); with
        ``offline`` any other file raises OfflineError (exit 6) before a connection is made.
        """
        return [
            self._fetch_one(plan.ref, rf, progress, offline, record=plan.details)
            for rf in plan.files
        ]

    def stage(self, ref: ModelRef, manifest: Manifest, request: StageRequest) -> list[StagedEntry]:
        """Produce staged artifacts for ``manifest`` in ``request.fmt``.

        The base class stages nothing; hubs override this for the formats in ``stages``.
        """
        if request.fmt == "none":
            return []
        raise UnsupportedError(
            f"{self.name}: cannot stage to {request.fmt!r} (supported: {', '.join(self.stages)})"
        )

    def preview(
        self, ref: ModelRef, *, offline: bool = False, options: Mapping[str, Any] | None = None
    ) -> Plan:
        """What a pull of ``ref`` would fetch (``--dry-run``): a plan listing every file, with
        its size where the hub's metadata gives it, from metadata requests only; nothing is
        downloaded. A hub whose ``resolve`` leaves the files to its SDK lists them here; files
        the SDK's cache already holds go in ``details[PREVIEW_CACHED]`` (their ``rel``).
        Default: ``resolve``."""
        return self.resolve(ref, offline=offline, options=options)

    @classmethod
    def sdk_caches(cls) -> dict[str, str]:
        """The folders this hub's SDK caches models in, as the environment sets them now
        (``modelhub doctor``): {what: absolute path}. Default: none."""
        return {}

    def warm_up(self) -> None:
        """Do the one-time set-up of pulls from this hub now (importing its SDK).

        ``modelhub sync`` calls it once per hub before that hub's first model, so that other
        workers know when the hub is ready for more models. Default: ``offload_warm`` when the
        hub has one, else nothing.
        """
        warm = type(self).offload_warm
        if warm is not None:
            warm()

    def heavy_stage(self, ref: ModelRef, manifest: Manifest, request: StageRequest) -> bool:
        """Whether staging to ``request.fmt`` is CPU-heavy: a conversion (a framework import,
        seconds of CPU) or the check of a large model, rather than a quick check.
        ``modelhub sync --jobs N`` runs heavy staging in worker processes (the frameworks hold
        the GIL while they work) and quick checks in its own threads."""
        return request.fmt != "none"

    def auto_stage(self, ref: ModelRef) -> str:
        """The stage ``--stage auto`` means for ``ref``: ``default_stage`` unless a hub decides
        per model (e.g. by file type)."""
        return self.default_stage

    def check_upstream(self, recorded: Recorded, memo: Memo) -> UpstreamStatus:
        """Whether upstream still serves what ``recorded`` describes (``modelhub outdated``):
        metadata requests only, never model bytes. ``memo`` shares metadata between the models
        of one run. Raises the typed errors of the request (the caller turns them into states);
        the default says the hub cannot tell."""
        raise UnsupportedError(f"{self.name}: models cannot be checked upstream yet")

    def import_kind(self, src: Path, ref: ModelRef) -> str:
        """What ``modelhub import`` does with ``src`` as ``ref``, decided from names alone: one
        of the importer's kinds (``onnx-model``, ``onnx-file``, ``snapshot``,
        ``savedmodel-dir``, ``savedmodel-tar``, ``weights-file``, ``keras-file``, ``file``,
        ``plain-file``).
        Raises UnsupportedError (exit 2) for what this hub cannot import."""
        what = "folder" if src.is_dir() else f"file {src.name!r}"
        kinds = "; ".join(r.import_help for r in registry.rows() if r.import_help)
        raise UnsupportedError(f"cannot import a {what} as {ref}: {kinds}")

    def lock_pin(self, files: list[dict[str, Any]]) -> str | None:
        """The sha256 a pull of a locked model must produce before anything is kept (``sync
        --locked``), from the lock's ``files``; None when the hub's own revision pins it."""
        return None

    def satisfies(self, manifest: Manifest, fmt: str, options: Mapping[str, Any]) -> bool:
        """Whether ``manifest``, already in the store, is what a pull with ``options`` asks.

        Called before any network access, for the hub's own options (``include``/``exclude``,
        ``task``, ...); storage, sha256 and stage are checked by the pipeline. Default: True.
        """
        return True

    # --- helpers for subclasses ----------------------------------------------------------------
    def _fetch_one(
        self,
        ref: ModelRef,
        rf: RemoteFile,
        progress: bool | None,
        offline: bool,
        record: dict[str, Any] | None = None,
    ) -> FileEntry:
        """Download ``rf`` (unless already in place) and publish it.

        With ``record`` (a plan's ``details``), the response's ETag / Last-Modified go into
        ``record["validators"][rf.rel]``: what ``modelhub outdated`` compares a HEAD against.
        """
        store = self.store
        target = store.abspath(rf.rel)
        if rf.sha256 and target.is_file() and not target.is_symlink():
            sha, size = sha256_file(target)
            if sha == rf.sha256:
                return FileEntry(rf.rel, sha, size)
        if offline:
            raise OfflineError(
                f"offline: {ref} needs {Path(rf.rel).name}, which is not in the store"
            )
        from .. import transfer

        part = store.tmp_path(ref, Path(rf.rel).name)
        result = transfer.download_file(
            rf.url, part, token=self._token(rf.url), progress=progress, desc=Path(rf.rel).name
        )
        try:
            self._check_download(part, rf, result.sha256, result.size)
        except Exception:
            part.unlink(missing_ok=True)
            raise
        validators = {"etag": result.etag, "last_modified": result.last_modified}
        if record is not None and any(validators.values()):
            record.setdefault("validators", {})[rf.rel] = {k: v for k, v in validators.items() if v}
        return store.publish(part, rf.rel, ref, result.sha256, result.size)

    @staticmethod
    def _check_download(part: Path, rf: RemoteFile, sha256: str, size: int) -> None:
        with open(part, "rb") as fh:
            head = fh.read(len(_LFS_PREFIX))
        if head == _LFS_PREFIX and (rf.sha256 is None or sha256 != rf.sha256):
            raise LFSPointerError(
                f"{rf.url} served a Git LFS pointer file ({size} bytes), not the model; "
                "the server must resolve LFS objects"
            )
        if rf.size is not None and size != rf.size:
            raise SizeMismatchError(f"{rf.url}: got {size} bytes, expected {rf.size}")
        if rf.sha256 is not None and sha256 != rf.sha256:
            raise HashMismatchError(
                f"{rf.url}: sha256 {sha256[:16]}… does not match the expected {rf.sha256[:16]}…"
            )

    def _token(self, url: str) -> str | None:
        """The credential to send to ``url`` (none by default; transfer keeps it on one host)."""
        return None

"""Which URL serves which store file: an index built from the store's manifests.

The mirror serves nothing but files that a manifest lists (``files`` and ``staged``). Every
route looks a decoded path up in the dictionaries of a :class:`Snapshot`; no request path is
ever joined to the store root. :class:`StoreIndex` rebuilds the snapshot when the manifests
folder (or one of its per-hub folders) changes, so a model imported or pulled while the
mirror runs appears on the next request: the Store writes manifests by atomic rename, which
always updates the folder's mtime.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import hashlib
import logging
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import InvalidReferenceError
from ..hubs.access import RESTRICTED, access_of, stricter
from ..refs import ModelRef, parse
from ..store import Manifest, Store, layout

log = logging.getLogger("modelhub.mirror")

HEX40 = re.compile(r"[0-9a-f]{40}")

#: What the current request may see: every model (``FULL``) or only public ones (``OPEN``).
#: Set per request by the mirror's access middleware; a handler's task inherits it.
FULL, OPEN = "full", "open"
VIEW: contextvars.ContextVar[str] = contextvars.ContextVar("modelhub_mirror_view", default=FULL)


def join_access(details: dict[str, Any], manifest: Manifest) -> dict[str, Any]:
    """``details`` (of a revision another manifest made) with the stricter of its access and
    ``manifest``'s: files two manifests share are as restricted as the stricter one says."""
    current = details.get("access")
    access = stricter(current if isinstance(current, str) else "public", access_of(manifest))
    return details if access == current else {**details, "access": access}


@dataclass(frozen=True)
class ServedFile:
    """One store file the mirror may send: where it is and what it must be."""

    rel: str
    path: Path
    sha256: str
    size: int


@dataclass
class HfRevision:
    """One revision of a Hugging Face repo: its commit, names and repo-relative files."""

    repo_id: str
    commit: str
    names: set[str]
    files: dict[str, ServedFile]
    last_modified: str
    details: dict[str, Any]


@dataclass
class HfRepo:
    """A Hugging Face repo: revisions by branch/tag name and by commit sha."""

    repo_id: str
    by_name: dict[str, HfRevision] = field(default_factory=dict)
    by_commit: dict[str, HfRevision] = field(default_factory=dict)

    def revision(self, rev: str) -> HfRevision | None:
        """The revision named ``rev`` (branch, tag or full commit sha), or None."""
        return self.by_name.get(rev) or self.by_commit.get(rev)

    def default(self) -> HfRevision | None:
        """The revision ``/api/models/{repo}`` describes: 'main', else the newest."""
        if "main" in self.by_name:
            return self.by_name["main"]
        revisions = sorted(self.by_commit.values(), key=lambda r: r.last_modified)
        return revisions[-1] if revisions else None


@dataclass(frozen=True)
class SavedModel:
    """A SavedModel folder of a tfhub:/kaggle: manifest, served as one tar.gz."""

    hub: str
    handle: str
    ref: str
    files: dict[str, ServedFile]  # folder-relative path -> file
    created: str

    @property
    def digest(self) -> str:
        """Identity of the archive: changes whenever a file of the folder changes."""
        h = hashlib.sha256(b"modelhub-savedmodel-tar-v1\n")
        for rel, served in sorted(self.files.items()):
            h.update(f"{rel}\0{served.sha256}\0{served.size}\n".encode())
        return h.hexdigest()


@dataclass(frozen=True)
class ModelEntry:
    """One model of the store as the mirror's front page lists it."""

    ref: str
    hub: str
    size: int
    files: int
    access: str
    created: str


@dataclass
class Snapshot:
    """Everything the mirror can serve, as of one reading of the manifests."""

    by_rel: dict[str, ServedFile] = field(default_factory=dict)
    hf: dict[str, HfRepo] = field(default_factory=dict)
    saved_models: dict[tuple[str, str], SavedModel] = field(default_factory=dict)
    onnx_entries: list[dict[str, Any]] = field(default_factory=list)
    onnx_files: dict[str, ServedFile] = field(default_factory=dict)
    zipballs: dict[tuple[str, str], ServedFile] = field(default_factory=dict)
    #: hub name → (path under the hub's mirror path → file), for hubs served plainly.
    plain: dict[str, dict[str, ServedFile]] = field(default_factory=dict)
    #: hub name → a table that hub's routes build for themselves (Kaggle: its versions).
    extra: dict[str, Any] = field(default_factory=dict)
    #: Every model this snapshot serves, by reference.
    models: list[ModelEntry] = field(default_factory=list)
    #: Models left out of this snapshot (the ``OPEN`` view): gated, private or of unknown access.
    withheld: int = 0


#: Called for every manifest while a snapshot is built: (snapshot, manifest, ref, its files).
Collector = Callable[[Snapshot, Manifest, ModelRef, dict[str, ServedFile]], None]


def folder_of(manifest: Manifest, ref: ModelRef) -> str:
    """The model folder a manifest records (checked), else the layout's for ``ref``."""
    folder = manifest.details.get("folder")
    if isinstance(folder, str) and folder:
        try:
            layout.check_relative(folder)
            return folder.rstrip("/")
        except InvalidReferenceError:
            pass
    return layout.model_dir(ref)


def under(files: dict[str, ServedFile], folder: str) -> dict[str, ServedFile]:
    """The files under ``folder``, keyed by their path inside it."""
    prefix = folder + "/"
    return {rel[len(prefix) :]: f for rel, f in files.items() if rel.startswith(prefix)}


def derived_commit(files: dict[str, ServedFile]) -> str:
    """A 40-hex id of a set of files (for snapshots with no real commit sha)."""
    h = hashlib.sha1(b"modelhub-hf-tree-v1\n", usedforsecurity=False)
    for rel, served in sorted(files.items()):
        h.update(f"{rel}\0{served.sha256}\0{served.size}\n".encode())
    return h.hexdigest()


def build_snapshot(
    root: Path, collectors: Sequence[Collector] = (), *, public_only: bool = False
) -> Snapshot:
    """Read every manifest under ``root`` and index what the mirror may serve: every file a
    manifest lists by its store path, and whatever each hub's routes ``collectors`` add.
    ``public_only`` leaves out the models whose access is :data:`~..hubs.access.RESTRICTED`
    (counted in ``withheld``), and every file one of them owns, also where a public manifest
    lists it too, or lists another path to the same file (a link)."""
    snap = Snapshot()
    store = Store(root)
    loaded: list[tuple[Manifest, ModelRef, dict[str, ServedFile]]] = []
    manifests = list(store.manifests())
    hidden = _restricted_files(store, manifests) if public_only else _Hidden()
    for path, manifest in manifests:
        if public_only and access_of(manifest) in RESTRICTED:
            snap.withheld += 1
            continue
        try:
            ref = parse(manifest.ref)
            own = {}
            for rel, sha, size in manifest.records():
                served = ServedFile(rel, store.abspath(rel), sha, size)
                if not hidden.holds(served):
                    own[rel] = served
        except InvalidReferenceError as exc:
            log.warning("skipping manifest %s: %s", path.name, exc)
            continue
        for rel, served in own.items():
            known = snap.by_rel.get(rel)
            if known is not None and known.sha256 != served.sha256:
                # The Store never lets this happen; if a hand edit did, serve neither version.
                log.warning("%s is listed with two different sha256; not serving it", rel)
                snap.by_rel[rel] = ServedFile(rel, served.path, "", -1)
                continue
            snap.by_rel.setdefault(rel, served)
        loaded.append((manifest, ref, own))
    for manifest, ref, own in loaded:
        own = {rel: f for rel, f in own.items() if snap.by_rel[rel].size >= 0}
        sizes = [f.size for f in own.values()]
        snap.models.append(
            ModelEntry(
                manifest.ref, ref.hub, sum(sizes), len(sizes), access_of(manifest), manifest.created
            )
        )
        for collect in collectors:
            collect(snap, manifest, ref, own)
    snap.by_rel = {rel: f for rel, f in snap.by_rel.items() if f.size >= 0}
    snap.models.sort(key=lambda m: m.ref)
    snap.onnx_entries.sort(key=lambda e: (e["model"], e["opset_version"], e["model_path"]))
    return snap


@dataclass
class _Hidden:
    """The files of restricted models: their store paths and the files they are (device and
    inode, links followed), so that no other path or manifest serves them in the open view."""

    rels: set[str] = field(default_factory=set)
    files: set[tuple[int, int]] = field(default_factory=set)

    def holds(self, served: ServedFile) -> bool:
        """Whether ``served`` is one of these files, by path or by what it links to."""
        if not self.rels:
            return False
        return served.rel in self.rels or _identity(served.path) in self.files


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)  # follows symlinks: a link and its target are one file
    except OSError:
        return None
    return st.st_dev, st.st_ino


def _restricted_files(store: Store, manifests: Sequence[tuple[Path, Manifest]]) -> _Hidden:
    hidden = _Hidden()
    for _, manifest in manifests:
        if access_of(manifest) not in RESTRICTED:
            continue
        for rel, _, _ in manifest.records():
            hidden.rels.add(rel)
            try:
                ident = _identity(store.abspath(rel))
            except InvalidReferenceError:
                continue
            if ident is not None:
                hidden.files.add(ident)
    return hidden


class StoreIndex:
    """The current :class:`Snapshot` of a store, rebuilt when its manifests change."""

    def __init__(self, root: Path, collectors: Sequence[Collector] = ()) -> None:
        self.root = Path(root)
        #: Each hub's routes add what they serve to every snapshot (see build_snapshot).
        self.collectors: list[Collector] = list(collectors)
        self._manifests = self.root / layout.MANIFESTS
        #: view (FULL, OPEN) → (stamp, snapshot)
        self._built: dict[str, tuple[tuple[Any, ...], Snapshot]] = {}
        self._lock = asyncio.Lock()

    def stamp(self) -> tuple[Any, ...]:
        """A cheap fingerprint of the manifests folders (a few stat calls)."""
        entries: list[Any] = []
        try:
            st = os.stat(self._manifests)
        except OSError:
            return ()
        entries.append(("", st.st_ino, st.st_mtime_ns))
        try:
            with os.scandir(self._manifests) as it:
                for entry in it:
                    if entry.is_dir(follow_symlinks=False):
                        sub = entry.stat(follow_symlinks=False)
                        entries.append((entry.name, sub.st_ino, sub.st_mtime_ns))
        except OSError:
            pass
        entries.sort()
        return tuple(entries)

    async def snapshot(self) -> Snapshot:
        """The snapshot for the manifests as they are now (rebuilt off the event loop), of the
        current request's :data:`VIEW`: every model, or only those of public sources."""
        view = VIEW.get()
        stamp = self.stamp()
        built = self._built.get(view)
        if built is not None and built[0] == stamp:
            return built[1]
        async with self._lock:
            stamp = self.stamp()
            built = self._built.get(view)
            if built is None or built[0] != stamp:
                loop = asyncio.get_running_loop()
                snap = await loop.run_in_executor(
                    None,
                    functools.partial(
                        build_snapshot,
                        self.root,
                        list(self.collectors),
                        public_only=view == OPEN,
                    ),
                )
                built = self._built[view] = (stamp, snap)
                log.debug("index rebuilt (%s): %d files", view, len(snap.by_rel))
            return built[1]

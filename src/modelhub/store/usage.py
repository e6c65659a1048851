"""What the store holds: ``modelhub du``, and the walking ``modelhub gc`` shares.

Sizes count each inode once (by ``(st_dev, st_ino)``): a file hard-linked from an SDK cache or
shared by two models costs its bytes once. Symbolic links (link mode ``symlink``) cost nothing
in the store and are counted as 0 bytes. Reflinked copies are separate inodes and are counted
in full (the filesystem shares their extents, which ``stat`` cannot see).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import registry
from .manifest import Manifest
from .store import Store


# Store folders modelhub writes models into (the omnihub layout); nothing else is touched by gc.
def framework_dirs() -> frozenset[str]:
    """Store folders modelhub writes models into (the omnihub layout; every registered hub's):
    nothing else is touched by gc."""
    return registry.framework_folders()


# --- walking ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Entry:
    rel: str
    key: tuple[int, int] | None  # (st_dev, st_ino) of a regular file; None for links/others
    size: int  # bytes of a regular file, 0 otherwise
    nlink: int


def entry_of(root: Path, path: Path) -> Entry | None:
    try:
        st = path.lstat()
    except OSError:
        return None
    rel = path.relative_to(root).as_posix()
    if stat.S_ISREG(st.st_mode):
        return Entry(rel, (st.st_dev, st.st_ino), st.st_size, st.st_nlink)
    return Entry(rel, None, 0, 1)


def walk(root: Path, top: Path) -> Iterator[Entry]:
    """Every file and symlink under ``top`` (symlinks not followed)."""
    for dirpath, dirnames, filenames in os.walk(top, followlinks=False):
        base = Path(dirpath)
        names = list(filenames) + [d for d in dirnames if (base / d).is_symlink()]
        dirnames[:] = sorted(d for d in dirnames if not (base / d).is_symlink())
        for name in sorted(names):
            entry = entry_of(root, base / name)
            if entry is not None:
                yield entry


def unique_bytes(entries: Iterable[Entry]) -> int:
    seen: set[tuple[int, int]] = set()
    total = 0
    for e in entries:
        if e.key is not None and e.key not in seen:
            seen.add(e.key)
            total += e.size
    return total


# --- du -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class FolderUsage:
    """One top-level folder of the store (a framework, or ``.modelhub`` for metadata)."""

    name: str
    files: int
    bytes: int


@dataclass(frozen=True)
class ModelUsage:
    """One model: ``size`` as recorded, ``stored`` in the store (each inode once, symlinks 0),
    ``shared`` of that also listed by another model, so ``stored - shared`` is what ``rm`` frees."""

    ref: str
    framework: str
    files: int
    size: int
    stored: int
    shared: int


@dataclass(frozen=True)
class Usage:
    """The whole store. ``total`` counts each inode once; ``linked_outside`` is the part of it
    whose inodes also have names outside the store (e.g. SDK caches: no extra disk);
    ``unowned`` is what no manifest lists under the framework folders (``gc`` removes it)."""

    root: str
    total: int
    linked_outside: int
    folders: list[FolderUsage]
    models: list[ModelUsage]
    unowned_files: int
    unowned_bytes: int

    def as_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {
            "root": self.root,
            "total": self.total,
            "linked_outside": self.linked_outside,
            "frameworks": [vars(f) for f in self.folders],
            "models": [vars(m) for m in self.models],
            "unowned": {"files": self.unowned_files, "bytes": self.unowned_bytes},
        }


def owned_paths(manifests: Iterable[Manifest]) -> dict[str, list[str]]:
    """Store-relative path → the references whose manifests list it."""
    owners: dict[str, list[str]] = {}
    for manifest in manifests:
        for rel in dict.fromkeys(manifest.all_paths()):
            owners.setdefault(rel, []).append(manifest.ref)
    return owners


def disk_usage(store: Store) -> Usage:
    """Sizes per top-level folder and per model, hard links counted once."""
    root = store.root
    entries: list[Entry] = []
    folders = []
    if root.is_dir():
        for top in sorted(root.iterdir()):
            if top.is_symlink() or not top.is_dir():
                continue
            found = list(walk(root, top))
            entries += found
            folders.append(FolderUsage(top.name, len(found), unique_bytes(found)))
    by_rel = {e.rel: e for e in entries}
    manifests = [m for _, m in store.manifests()]
    owners = owned_paths(manifests)
    key_owners: dict[tuple[int, int], set[str]] = {}
    for rel, refs in owners.items():
        e = by_rel.get(rel)
        if e is not None and e.key is not None:
            key_owners.setdefault(e.key, set()).update(refs)
    models = []
    for m in sorted(manifests, key=lambda m: m.ref):
        sizes = {f.path: f.size for f in m.files} | {s.path: s.size for s in m.staged}
        mine = [by_rel[rel] for rel in sizes if rel in by_rel]
        shared = [e for e in mine if e.key is not None and len(key_owners.get(e.key, ())) > 1]
        models.append(
            ModelUsage(
                m.ref,
                m.framework,
                len(sizes),
                sum(sizes.values()),
                unique_bytes(mine),
                unique_bytes(shared),
            )
        )
    in_store: dict[tuple[int, int], int] = {}
    for e in entries:
        if e.key is not None:
            in_store[e.key] = in_store.get(e.key, 0) + 1
    outside = [e for e in entries if e.key is not None and e.nlink > in_store[e.key]]
    unowned = [
        e for e in entries if e.rel.split("/", 1)[0] in framework_dirs() and e.rel not in owners
    ]
    # What gc would free: a name whose inode a listed path also uses frees nothing.
    owned_keys = {e.key for e in entries if e.rel in owners and e.key is not None}
    freeable = [e for e in unowned if e.key not in owned_keys]
    return Usage(
        root=str(root),
        total=unique_bytes(entries),
        linked_outside=unique_bytes(outside),
        folders=folders,
        models=models,
        unowned_files=len(unowned),
        unowned_bytes=unique_bytes(freeable),
    )


def shared_files(store: Store, manifest: Manifest) -> dict[str, list[str]]:
    """Paths of ``manifest`` that other manifests list too → those references (for ``rm``)."""
    others = owned_paths(m for _, m in store.manifests() if m.ref != manifest.ref)
    return {rel: others[rel] for rel in dict.fromkeys(manifest.all_paths()) if rel in others}


__all__ = [
    "Entry",
    "FolderUsage",
    "ModelUsage",
    "Usage",
    "disk_usage",
    "entry_of",
    "framework_dirs",
    "owned_paths",
    "shared_files",
    "unique_bytes",
    "walk",
]

"""What can go from the store: ``modelhub gc`` (sizes as :mod:`.usage` counts them).

``gc`` decides first and acts second (:func:`plan_gc`, then :func:`run_gc`), and every deletion
is decided again at the moment it happens:

- ``.modelhub/tmp/`` leftovers: a per-model folder (``<ref key>/`` with ``.part`` files,
  ``import-<ref key>-*/``) goes only while gc holds that model's lock (so no pull or import of
  it is running, and none can start meanwhile); a ``.<what>.<pid>.<hex>`` file only when
  process ``pid`` is gone; anything else only when untouched for an hour.
- orphans: files under the framework folders that no manifest lists; only when no model lock
  is held at all (a pull publishes its files before it writes its manifest), and never a path
  that a manifest lists when gc re-reads the manifests just before deleting.
- with a lock file: models not in it, removed through :meth:`Store.remove` under their lock
  (their manifest, then the files no other manifest lists).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import stat
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import registry
from ..refs import parse
from . import layout
from .files import prune_empty
from .locking import LockTimeout, file_lock
from .store import Store
from .usage import Entry, entry_of, framework_dirs, owned_paths, unique_bytes, walk

TMP_GRACE = 3600.0  # seconds an unrecognised file in .modelhub/tmp/ is left alone
_PID_NAME = re.compile(r"^\.(?:.+\.)?(\d+)\.[0-9a-f]{8}(?:\.tmp)?$")
_IMPORT_DIR = re.compile(r"^import-(.+)-[0-9a-f]{8}$")


# --- gc -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class GcItem:
    """One thing gc would remove: ``kind`` is ``tmp``, ``orphan`` or ``model``."""

    kind: str
    path: str  # store-relative (for ``model``: its manifest)
    bytes: int
    ref: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {"kind": self.kind, "path": self.path, "bytes": self.bytes, "ref": self.ref}


@dataclass
class GcPlan:
    """What gc would remove, and what it leaves alone (with the reason)."""

    items: list[GcItem] = field(default_factory=list)
    kept: list[tuple[str, str]] = field(default_factory=list)  # (store-relative path, why)

    @property
    def bytes(self) -> int:
        """Total bytes the items would free."""
        return sum(i.bytes for i in self.items)

    def as_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {
            "items": [i.as_dict() for i in self.items],
            "bytes": self.bytes,
            "kept": [{"path": p, "why": w} for p, w in self.kept],
        }


@dataclass
class GcResult:
    """What gc removed, and what it skipped at deletion time (with the reason)."""

    removed: list[GcItem] = field(default_factory=list)
    skipped: list[tuple[GcItem, str]] = field(default_factory=list)

    @property
    def bytes(self) -> int:
        """Bytes freed."""
        return sum(i.bytes for i in self.removed)

    def note(self, item: GcItem, why: str | None) -> None:
        """Record ``item`` as removed (``why`` None) or skipped for ``why``."""
        if why:
            self.skipped.append((item, why))
        else:
            self.removed.append(item)


def _tree_bytes(path: Path) -> int:
    if path.is_symlink() or not path.is_dir():
        with contextlib.suppress(OSError):
            st = path.lstat()
            return st.st_size if stat.S_ISREG(st.st_mode) else 0
        return 0
    return unique_bytes(walk(path, path))


def _lock_files(store: Store) -> list[Path]:
    folder = store.root / layout.LOCKS
    return sorted(folder.glob("*.lock")) if folder.is_dir() else []


@contextlib.contextmanager
def _try_lock(path: Path) -> Iterator[bool]:
    """Hold the model lock at ``path`` if nobody does; yield whether we got it."""
    with contextlib.ExitStack() as stack:
        try:
            stack.enter_context(file_lock(path, timeout=0))
        except LockTimeout:
            yield False
            return
        yield True


def _live_locks(store: Store) -> list[Path]:
    """Model locks held right now (by a pull or import in any process)."""
    held = []
    for path in _lock_files(store):
        with _try_lock(path) as got:
            if not got:
                held.append(path)
    return held


def _lock_for_key(store: Store, key: str) -> Path | None:
    """The lock file of the model whose ref key is ``key`` (``<hub>-<key>.lock``)."""
    for hub in registry.hub_names():
        candidate = store.root / layout.LOCKS / f"{hub}-{key}.lock"
        if candidate.exists():
            return candidate
    return None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _tmp_owner(name: str) -> tuple[str, str] | None:
    """How to tell whether a tmp entry is in use: ('key', ref key) or ('pid', pid)."""
    match = _PID_NAME.match(name)
    if match:
        return "pid", match.group(1)
    match = _IMPORT_DIR.match(name)
    if match:
        return "key", match.group(1)
    if re.fullmatch(r".+-[0-9a-f]{16}", name):
        return "key", name
    return None


def _tmp_in_use(store: Store, path: Path, now: float) -> str | None:
    """Why ``path`` under .modelhub/tmp/ must stay (None: it may go)."""
    owner = _tmp_owner(path.name)
    if owner is None:
        with contextlib.suppress(OSError):
            if now - path.lstat().st_mtime < TMP_GRACE:
                return "recently modified, owner unknown"
        return None
    kind, value = owner
    if kind == "pid":
        return f"process {value} is running" if _pid_alive(int(value)) else None
    lock = _lock_for_key(store, value)
    if lock is None:
        return None
    with _try_lock(lock) as got:
        return None if got else "a pull of this model is running"


def plan_gc(store: Store, keep: set[str] | None = None) -> GcPlan:
    """Decide what gc would remove; nothing is deleted. ``keep``: the references of a lock
    (models not in it are planned for removal); None keeps every model."""
    plan = GcPlan()
    root = store.root
    now = time.time()
    tmp = root / layout.TMP
    if tmp.is_dir():
        for path in sorted(tmp.iterdir()):
            rel = path.relative_to(root).as_posix()
            why = _tmp_in_use(store, path, now)
            if why:
                plan.kept.append((rel, why))
            else:
                plan.items.append(GcItem("tmp", rel, _tree_bytes(path)))
    manifests = [m for _, m in store.manifests()]
    owners = owned_paths(manifests)
    orphans = _orphans(root, owners)
    if orphans and _live_locks(store):
        plan.kept += [(e.rel, "a pull is running; orphans are left for later") for e in orphans]
    else:
        # A name whose inode a listed path also uses frees nothing when it goes.
        owned_keys = {k for rel in owners if (k := _key(root / rel)) is not None}
        plan.items += [
            GcItem("orphan", e.rel, 0 if e.key in owned_keys else e.size) for e in orphans
        ]
    if keep is not None:
        for m in sorted(manifests, key=lambda m: m.ref):
            if m.ref in keep:
                continue
            mine = [rel for rel in dict.fromkeys(m.all_paths()) if owners.get(rel) == [m.ref]]
            entries = [e for rel in mine if (e := entry_of(root, root / rel)) is not None]
            manifest_rel = layout.manifest_path(parse(m.ref))
            plan.items.append(GcItem("model", manifest_rel, unique_bytes(entries), m.ref))
    return plan


def _orphans(root: Path, owners: dict[str, list[str]]) -> list[Entry]:
    """Files and symlinks under the framework folders that no manifest lists."""
    if not root.is_dir():
        return []
    found = []
    for top in sorted(root.iterdir()):
        if top.name in framework_dirs() and top.is_dir() and not top.is_symlink():
            found += [e for e in walk(root, top) if e.rel not in owners]
    return found


def _key(path: Path) -> tuple[int, int] | None:
    try:
        st = path.lstat()
    except OSError:
        return None
    return (st.st_dev, st.st_ino) if stat.S_ISREG(st.st_mode) else None


def _remove_path(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def run_gc(store: Store, plan: GcPlan) -> GcResult:
    """Carry out ``plan``, deciding each deletion again now; return what was removed."""
    result = GcResult()
    now = time.time()
    for item in plan.items:
        if item.kind == "tmp":
            why = _tmp_removal(store, store.root / item.path, now)
        elif item.kind == "model":
            why = _model_removal(store, item)
        else:
            continue
        result.note(item, why)
    orphans = [i for i in plan.items if i.kind == "orphan"]
    if orphans:
        with contextlib.ExitStack() as stack:
            # Hold every model lock while orphans go: a pull publishes its files before its
            # manifest, so no pull may be between the two while we decide what nobody owns.
            held = all(stack.enter_context(_try_lock(p)) for p in _lock_files(store))
            owners = owned_paths(m for _, m in store.manifests())
            for item in orphans:
                why = "a pull is running" if not held else _orphan_removal(store, item, owners)
                result.note(item, why)
    return result


def _tmp_removal(store: Store, path: Path, now: float) -> str | None:
    """Remove a tmp entry (under its model's lock when it has one); return why not, or None."""
    if not os.path.lexists(path):
        return "already gone"
    owner = _tmp_owner(path.name)
    if owner is not None and owner[0] == "key":
        lock = _lock_for_key(store, owner[1])
        if lock is not None:
            with _try_lock(lock) as got:
                if not got:
                    return "a pull of this model is running"
                _remove_path(path)
                return None
    why = _tmp_in_use(store, path, now)
    if why:
        return why
    _remove_path(path)
    return None


def _orphan_removal(store: Store, item: GcItem, owners: dict[str, list[str]]) -> str | None:
    if item.path in owners:
        return f"listed by {', '.join(owners[item.path])}"
    path = store.root / item.path
    if not os.path.lexists(path):
        return "already gone"
    if path.is_dir() and not path.is_symlink():
        return "a folder"
    path.unlink()
    prune_empty(store.root, path.parent)
    return None


def _model_removal(store: Store, item: GcItem) -> str | None:
    assert item.ref is not None
    ref = parse(item.ref)
    with _try_lock(store.root / layout.lock_path(ref)) as got:
        if not got:
            return "a pull of this model is running"
        if store.manifest(ref) is None:
            return "already gone"
        store.remove(ref)
    return None


__all__ = ["GcItem", "GcPlan", "GcResult", "plan_gc", "run_gc"]

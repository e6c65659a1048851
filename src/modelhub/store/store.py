"""The Store: the only writer under the store root.

Files arrive in ``.modelhub/tmp/`` (same filesystem), are verified, fsynced and renamed to their
final name; a manifest is written last. A per-model lock (``fcntl.flock``, see ``locking``,
released by the kernel if the process dies, so no stale lock can block a later run) serialises
pulls of one reference across processes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

from ..config import settings
from ..errors import IntegrityError, NotInStoreError, StoreConflictError
from ..refs import ModelRef, parse
from . import layout
from .files import (
    atomic_write_bytes,
    fsync_dir,
    fsync_file,
    link_or_copy,
    prune_empty,
    sha256_file,
)
from .locking import file_lock
from .manifest import FileEntry, Manifest


class Store:
    """A model store rooted at ``root`` (default ``$MODELHUB_PATH`` or ``~/.modelhub``)."""

    def __init__(self, root: Path | str | None = None, link_mode: str | None = None) -> None:
        cfg = settings()
        self.root = Path(root).expanduser().absolute() if root else cfg.store_root
        self.link_mode = link_mode or cfg.link_mode
        #: Per reference being pulled: the store paths this process placed for it (``journal``).
        self._journals: dict[str, list[str]] = {}

    def __repr__(self) -> str:
        return f"Store({str(self.root)!r})"

    # --- paths ---------------------------------------------------------------------------------
    def abspath(self, rel: str) -> Path:
        """Absolute path of a store-relative path, guarded against traversal."""
        return layout.resolve_in_store(self.root, rel)

    @property
    def tmp_dir(self) -> Path:
        """Folder for in-flight files (same filesystem as the store, so renames are atomic)."""
        path = self.root / layout.TMP
        path.mkdir(parents=True, exist_ok=True)
        return path

    def tmp_path(self, ref: ModelRef, name: str) -> Path:
        """A deterministic temporary path for ``name`` of ``ref`` (so a later run can resume)."""
        folder = self.tmp_dir / layout.ref_key(ref)
        folder.mkdir(parents=True, exist_ok=True)
        return folder / (layout.safe_filename(name) + ".part")

    def cache_dir(self, *parts: str) -> Path:
        """A folder under ``.modelhub/cache`` for hub metadata (e.g. the ONNX zoo manifest)."""
        path = self.root / layout.CACHE
        for part in parts:
            path = path / layout.safe_filename(part)
        path.mkdir(parents=True, exist_ok=True)
        return path

    def prune_tmp(self, ref: ModelRef) -> None:
        """Remove ``ref``'s folder under ``.modelhub/tmp`` if nothing is left in it (a failed
        pull keeps its resumable ``.part`` files there, and nothing else)."""
        self._prune_tmp(self.root / layout.TMP / layout.ref_key(ref))

    # --- locks ---------------------------------------------------------------------------------
    @contextlib.contextmanager
    def lock(self, ref: ModelRef, timeout: float = -1) -> Iterator[None]:
        """Hold the per-model lock of ``ref`` (blocking; ``timeout`` seconds, -1 = forever).

        Raises LockTimeout (a TimeoutError) when ``timeout`` runs out."""
        path = self.root / layout.lock_path(ref)
        path.parent.mkdir(parents=True, exist_ok=True)
        with file_lock(path, timeout):
            yield

    # --- manifests -----------------------------------------------------------------------------
    def manifest(self, ref: ModelRef) -> Manifest | None:
        """The manifest of ``ref``, or None when it has not been pulled."""
        path = self.root / layout.manifest_path(ref)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        return Manifest.from_json(text)

    def has(self, ref: ModelRef) -> bool:
        """Whether ``ref`` has a manifest here (not read: no parse, no error for a bad one)."""
        return (self.root / layout.manifest_path(ref)).is_file()

    def require(self, ref: ModelRef) -> Manifest:
        """The manifest of ``ref``; raises NotInStoreError (exit 3) when absent."""
        found = self.manifest(ref)
        if found is None:
            raise NotInStoreError(
                f"{ref} is not in the store at {self.root} (run: modelhub pull {ref})"
            )
        return found

    def manifests(self) -> Iterator[tuple[Path, Manifest]]:
        """Every readable manifest in the store (unreadable ones are skipped)."""
        base = self.root / layout.MANIFESTS
        if not base.is_dir():
            return
        for path in sorted(base.glob("*/*.json")):
            try:
                yield path, Manifest.from_json(path.read_text(encoding="utf-8"))
            except (OSError, IntegrityError):
                continue

    def write_manifest(self, manifest: Manifest, ref: ModelRef) -> Path:
        """Write ``manifest`` atomically; it is the last thing a pull writes."""
        target = self.root / layout.manifest_path(ref)
        atomic_write_bytes(target, manifest.to_json().encode(), self.tmp_dir)
        return target

    def owners(self, rel: str, *, excluding: str | None = None) -> list[Manifest]:
        """Manifests (other than the one whose ref is ``excluding``) that own ``rel``."""
        found = []
        for _, man in self.manifests():
            if man.ref != excluding and rel in man.all_paths():
                found.append(man)
        return found

    # --- publication ---------------------------------------------------------------------------
    @contextlib.contextmanager
    def journal(self, ref: ModelRef) -> Iterator[list[str]]:
        """Collect the store paths this process places for ``ref`` (``publish``, ``link_in``,
        ``import_file``) while the block runs: what a failed pull takes back (``discard``).
        The caller holds ``ref``'s lock, so one pull of ``ref`` writes it at a time."""
        written: list[str] = []
        self._journals[ref.canonical] = written
        try:
            yield written
        finally:
            self._journals.pop(ref.canonical, None)

    def _placed(self, ref: ModelRef, rel: str) -> None:
        journal = self._journals.get(ref.canonical)
        if journal is not None:
            journal.append(rel)

    def discard(self, rels: list[str]) -> list[str]:
        """Remove the store paths ``rels`` that no manifest owns (what a failed pull placed);
        return those removed. Files a manifest lists (the user's models) are never touched."""
        removed: list[str] = []
        if not rels:
            return removed
        owned = {path for _, man in self.manifests() for path in man.all_paths()}
        for rel in dict.fromkeys(rels):
            if rel in owned:
                continue
            target = self.abspath(rel)
            if target.is_dir() and not target.is_symlink():
                continue
            with contextlib.suppress(FileNotFoundError):
                target.unlink()
                removed.append(rel)
            prune_empty(self.root, target.parent)
        return removed

    def _check_free(self, rel: str, ref: ModelRef, sha256: str) -> bool:
        """Return True if ``rel`` already holds exactly this content (nothing to write).

        Raises StoreConflictError when another reference owns ``rel`` with other content.
        """
        target = self.abspath(rel)
        if not os.path.lexists(target):
            return False
        for owner in self.owners(rel, excluding=ref.canonical):
            recorded = {path: sha for path, sha, _ in owner.records()}
            if recorded.get(rel) != sha256:
                raise StoreConflictError(
                    f"{rel} already belongs to {owner.ref} with other content; "
                    f"not overwriting it for {ref}"
                )
            return target.is_file()
        return False

    def publish(self, tmp: Path, rel: str, ref: ModelRef, sha256: str, size: int) -> FileEntry:
        """Move a verified temporary file to its final store path ``rel`` atomically.

        The caller has verified ``sha256``/``size`` while writing ``tmp``. Returns the record.
        """
        try:
            if self._check_free(rel, ref, sha256):
                tmp.unlink(missing_ok=True)
                return FileEntry(rel, sha256, size)
            target = self.abspath(rel)
            fsync_file(tmp)
            _move_into(tmp, target)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        finally:
            self._prune_tmp(tmp.parent)
        self._placed(ref, rel)
        fsync_dir(target.parent)
        return FileEntry(rel, sha256, size)

    def _prune_tmp(self, folder: Path) -> None:
        """Remove an emptied per-model folder under ``.modelhub/tmp`` (best effort)."""
        if folder.parent == self.root / layout.TMP:
            with contextlib.suppress(OSError):
                folder.rmdir()

    def link_in(
        self, src: Path, rel: str, ref: ModelRef, sha256: str | None = None, mode: str | None = None
    ) -> tuple[FileEntry, str]:
        """Enter ``src`` (a file outside the store, e.g. in an SDK cache) at ``rel`` by link mode.

        ``src`` is never modified. Returns the record and the link mode used.
        """
        if sha256 is None:
            sha256, size = sha256_file(src)
        else:
            size = src.stat().st_size
        if self._check_free(rel, ref, sha256):
            return FileEntry(rel, sha256, size), "existing"
        target = self.abspath(rel)
        tmp = self.tmp_dir / f".link.{os.getpid()}.{os.urandom(4).hex()}"
        try:
            used = link_or_copy(src, tmp, mode or self.link_mode)
            _move_into(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)
        self._placed(ref, rel)
        fsync_dir(target.parent)
        return FileEntry(rel, sha256, size), used

    def import_file(self, src: Path, rel: str, ref: ModelRef) -> FileEntry:
        """Copy a local file into the store at ``rel``, hashing while copying."""
        import hashlib

        tmp = self.tmp_dir / f".import.{os.getpid()}.{os.urandom(4).hex()}"
        digest = hashlib.sha256()
        size = 0
        try:
            with open(src, "rb") as fin, open(tmp, "wb") as fout:
                while block := fin.read(4 * 2**20):
                    digest.update(block)
                    fout.write(block)
                    size += len(block)
            return self.publish(tmp, rel, ref, digest.hexdigest(), size)
        finally:
            tmp.unlink(missing_ok=True)

    # --- removal and verification --------------------------------------------------------------
    def remove(self, ref: ModelRef) -> list[str]:
        """Remove ``ref``: its manifest first, then the files no other manifest owns.

        Returns the store-relative paths deleted.
        """
        manifest = self.require(ref)
        (self.root / layout.manifest_path(ref)).unlink()
        removed = []
        for rel in manifest.all_paths():
            if self.owners(rel):
                continue
            target = self.abspath(rel)
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            elif os.path.lexists(target):
                target.unlink()
            else:
                continue
            removed.append(rel)
            prune_empty(self.root, target.parent)
        return removed

    def verify(self, manifest: Manifest, *, mark: bool = False) -> list[str]:
        """Re-hash every file of ``manifest``; return one line per problem (empty when intact).

        ``mark``: record the damaged paths in the stored manifest (``details["damaged"]``), so
        that the next pull of the model fetches it again (``modelhub verify``). Takes the
        model's lock then: the caller must not hold it.
        """
        problems: dict[str, str] = {}
        for rel, sha, size in manifest.records():
            if rel in problems:
                continue
            path = self.abspath(rel)
            if not path.is_file():
                problems[rel] = f"{rel}: missing"
                continue
            actual, actual_size = sha256_file(path)
            if actual_size != size:
                problems[rel] = f"{rel}: size {actual_size} != {size}"
            elif actual != sha:
                problems[rel] = f"{rel}: sha256 {actual[:12]}… != {sha[:12]}…"
            else:
                problems.setdefault(rel, "")
        found = {rel: text for rel, text in problems.items() if text}
        if mark and found:
            self.mark_damaged(manifest, sorted(found))
        return list(found.values())

    def mark_damaged(self, manifest: Manifest, rels: list[str]) -> None:
        """Record ``rels`` of ``manifest`` as damaged in the stored manifest (unless a pull has
        replaced that manifest meanwhile): the next pull of the model fetches it again."""
        ref = parse(manifest.ref)
        with self.lock(ref):
            current = self.manifest(ref)
            if current is None or current.records() != manifest.records():
                return
            details = {**current.details, "damaged": sorted(rels)}
            self.write_manifest(dataclasses.replace(current, details=details), ref)


def _move_into(tmp: Path, target: Path, attempts: int = 5) -> None:
    """Rename ``tmp`` to ``target``, creating its folder. Another process's ``rm`` prunes a
    folder it emptied (e.g. ``onnx/``) whenever it empties it, also between our ``mkdir`` and our
    rename: the folder is made again and the rename retried."""
    for attempt in range(attempts):
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.replace(tmp, target)
            return
        except FileNotFoundError:
            if attempt == attempts - 1 or not tmp.exists() or target.parent.exists():
                raise

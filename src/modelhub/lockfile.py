"""The lock file (``NAME.lock`` beside ``NAME.toml``): what every model of a set resolved
to — its immutable revision and the sha256 of every file and staged artifact.

Why JSON and not TOML: ``tomllib`` reads TOML but cannot write it, and a lock is written by a
machine on every sync; ``json.dumps(sort_keys=True, indent=2)`` gives a deterministic,
line-per-field document with the standard library alone (no ``tomli-w`` dependency, no
hand-written TOML emitter), the same way the manifests are written. It is sorted by reference,
keyed and indented so that it diffs well in git, and carries no timestamp, host or mirror URL,
so two syncs of an unchanged set produce byte-identical files.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import IntegrityError
from .store import Manifest
from .store.files import atomic_write_bytes

LOCK_NAME = "modelhub.lock"
LOCK_VERSION = 1


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
    def from_manifest(cls, request: dict[str, Any], manifest: Manifest) -> LockEntry:
        """The entry of a model pulled into ``manifest`` with the set's ``request`` (its
        settings in the model set, :meth:`modelhub.modelset.ModelSpec.request`)."""
        validators = manifest.details.get("validators")
        return cls(
            ref=manifest.ref,
            hub=manifest.hub,
            revision=manifest.revision,
            request=request,
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


def lock_path_for(toml_path: Path | str, lock: Path | str | None = None) -> Path:
    """The lock of the model set at ``toml_path``: ``lock`` when given (``--lock FILE``), else
    the set's own, beside it and named after it (``dev.toml`` → ``dev.lock``,
    ``modelhub.toml`` → ``modelhub.lock``), so that two sets never share a lock."""
    if lock is not None:
        return Path(lock).expanduser().absolute()
    path = Path(toml_path).absolute()
    return (
        path.with_suffix(".lock") if path.suffix != ".lock" else path.with_name(path.name + ".lock")
    )


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

"""The manifest: one JSON record per pulled reference, written last (README, "The store").

Reading is defensive: a manifest is data from disk (or, through a mirror, from another machine),
so every path in it is validated as store-relative and every size as a non-negative integer.
"""

from __future__ import annotations

import datetime as _dt
import json
from dataclasses import asdict, dataclass, field
from typing import Any

from ..errors import IntegrityError, InvalidReferenceError
from .layout import check_relative
from .lookup import primary_rel

MANIFEST_VERSION = 1
_HEX64 = frozenset("0123456789abcdef")


def utc_now() -> str:
    """Current time as ISO-8601 UTC with a 'Z' suffix, second precision."""
    return _dt.datetime.now(_dt.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def _sha(value: Any, where: str) -> str:
    if not isinstance(value, str) or len(value) != 64 or not set(value) <= _HEX64:
        raise IntegrityError(f"manifest {where}: sha256 is not 64 lower-case hex digits")
    return value


def _size(value: Any, where: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0 or value >= 2**50:
        raise IntegrityError(f"manifest {where}: size is not a sane non-negative integer")
    return value


def _path(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise IntegrityError(f"manifest {where}: path is not a string")
    try:
        check_relative(value)
    except InvalidReferenceError as exc:
        raise IntegrityError(f"manifest {where}: {exc}") from None
    return value


def _fixture(value: Any) -> dict[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise IntegrityError("manifest staged: fixture is not an object")
    return {
        "path": _path(value.get("path"), "staged fixture"),
        "sha256": _sha(value.get("sha256"), "staged fixture"),
        "size": _size(value.get("size"), "staged fixture"),
    }


@dataclass(frozen=True)
class FileEntry:
    """One original file: store-relative path, sha256, size in bytes."""

    path: str
    sha256: str
    size: int


@dataclass(frozen=True)
class StagedEntry:
    """One staged artifact and the evidence that it matches its source."""

    path: str
    format: str
    sha256: str
    size: int
    converter: str
    versions: dict[str, str] = field(default_factory=dict)
    inputs: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    parity: dict[str, Any] | None = None
    details: dict[str, Any] = field(default_factory=dict)
    #: The parity fixture beside the staged file: ``{path, sha256, size}`` of an ``.npz`` with
    #: the seeded inputs (``input_0``...) and the *source's* outputs (``output_0``...), in the
    #: order of ``inputs``/``outputs``, so any importer checks against the same numbers.
    fixture: dict[str, Any] | None = None
    #: What model importers made of the staged file: ``{importer: {version, ok, max_abs_diff,
    #: error, checked_on}}`` (``modelhub check --importer dl4j``).
    imports: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Manifest:
    """The record of one pulled reference (every key of the contract, plus ``details``)."""

    ref: str
    hub: str
    framework: str
    revision: str
    source: list[str]
    storage: str
    sdk_cache: str | None
    files: list[FileEntry]
    staged: list[StagedEntry]
    created: str
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def primary_path(self) -> str:
        """The artifact ``modelhub path`` prints: the first staged file, else the first file."""
        folder = self.details.get("folder")
        try:
            return primary_rel(
                [s.path for s in self.staged],
                str(folder) if folder else None,
                [f.path for f in self.files],
            )
        except InvalidReferenceError:
            raise IntegrityError(f"manifest of {self.ref} lists no files") from None

    def all_paths(self) -> list[str]:
        """Every store-relative path this manifest owns (files, staged artifacts, fixtures)."""
        return [rel for rel, _, _ in self.records()]

    def records(self) -> list[tuple[str, str, int]]:
        """(path, sha256, size) of every file this manifest owns: its files, its staged
        artifacts and their parity fixtures."""
        found = [(f.path, f.sha256, f.size) for f in self.files]
        found += [(s.path, s.sha256, s.size) for s in self.staged]
        found += [
            (str(s.fixture["path"]), str(s.fixture["sha256"]), int(s.fixture["size"]))
            for s in self.staged
            if s.fixture
        ]
        return found

    def to_json(self) -> str:
        """Serialise deterministically (sorted keys, two-space indent, trailing newline)."""
        doc = asdict(self)
        doc["manifest_version"] = MANIFEST_VERSION
        return json.dumps(doc, indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str | bytes) -> Manifest:
        """Parse and validate a manifest document. Raises IntegrityError when malformed."""
        try:
            doc = json.loads(text)
        except (ValueError, UnicodeDecodeError, RecursionError) as exc:
            raise IntegrityError(f"manifest is not valid JSON: {exc}") from None
        if not isinstance(doc, dict):
            raise IntegrityError("manifest is not a JSON object")
        try:
            files = [
                FileEntry(
                    _path(f["path"], "files"), _sha(f["sha256"], "files"), _size(f["size"], "files")
                )
                for f in doc["files"]
            ]
            staged = [
                StagedEntry(
                    path=_path(s["path"], "staged"),
                    format=str(s["format"]),
                    sha256=_sha(s["sha256"], "staged"),
                    size=_size(s["size"], "staged"),
                    converter=str(s.get("converter", "")),
                    versions=dict(s.get("versions") or {}),
                    inputs=list(s.get("inputs") or []),
                    outputs=list(s.get("outputs") or []),
                    parity=s.get("parity"),
                    details=dict(s.get("details") or {}),
                    fixture=_fixture(s.get("fixture")),
                    imports=dict(s.get("imports") or {}),
                )
                for s in doc.get("staged") or []
            ]
            paths = [f.path for f in files]
            if len(set(paths)) != len(paths):
                raise IntegrityError("manifest lists a file twice")
            return cls(
                ref=str(doc["ref"]),
                hub=str(doc["hub"]),
                framework=str(doc["framework"]),
                revision=str(doc["revision"]),
                source=[str(s) for s in doc.get("source") or []],
                storage=str(doc.get("storage", "uncompressed")),
                sdk_cache=doc.get("sdk_cache"),
                files=files,
                staged=staged,
                created=str(doc["created"]),
                details=dict(doc.get("details") or {}),
            )
        except (KeyError, TypeError, AttributeError, ValueError) as exc:
            raise IntegrityError(f"manifest is missing or mistypes a field: {exc}") from None

"""Store look-ups with the standard library only: the cache-hit path of the command line.

``modelhub path REF`` (and ``pull REF`` of a model already present) must answer in tens of
milliseconds, so this module reads the manifest as plain JSON with no dataclass, pathlib or
framework import. The full :class:`~modelhub.store.Manifest` uses the same rules.
"""

from __future__ import annotations

import json
import os

from ..errors import InvalidReferenceError
from ..refs import ModelRef
from .layout import check_relative, manifest_path

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: importing typing costs start-up time
if TYPE_CHECKING:
    from typing import Any


def primary_rel(staged: list[str], folder: str | None, files: list[str]) -> str:
    """The primary artifact: the first staged file, else the model folder, else the first file."""
    if staged:
        return staged[0]
    if folder:
        return folder
    if not files:
        raise InvalidReferenceError("the manifest lists no files")
    return files[0]


def read_doc(root: str, ref: ModelRef) -> dict[str, Any] | None:
    """The manifest of ``ref`` as a JSON document, or None when absent or unreadable."""
    try:
        with open(os.path.join(root, manifest_path(ref)), encoding="utf-8") as fh:
            doc = json.load(fh)
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def doc_primary(root: str, doc: dict[str, Any]) -> str | None:
    """Absolute primary path of a manifest document, checked to stay inside ``root``."""
    try:
        rel = primary_rel(
            [s["path"] for s in doc.get("staged") or []],
            (doc.get("details") or {}).get("folder"),
            [f["path"] for f in doc.get("files") or []],
        )
        parts = check_relative(rel)
    except (InvalidReferenceError, KeyError, TypeError):
        return None
    target = os.path.join(root, *parts)
    real_root = os.path.realpath(root)
    real_parent = os.path.realpath(os.path.dirname(target))
    if real_parent != real_root and not real_parent.startswith(real_root + os.sep):
        return None
    return target


def auto_satisfied(doc: dict[str, Any]) -> bool:
    """True when a default ``pull`` (stage auto, uncompressed) has nothing left to do."""
    if doc.get("storage") != "uncompressed":
        return False
    details = doc.get("details") or {}
    wanted = details.get("auto_stage")
    if wanted is None or details.get("include") or details.get("exclude"):
        return False  # a subset of an hf: repo is not what a plain pull asks for
    if details.get("damaged"):
        return False  # `modelhub verify` found it damaged: the pull fetches it again
    return wanted == "none" or any(s.get("format") == wanted for s in doc.get("staged") or [])

"""The ``--json`` family: one model object for ``pull``, ``info``, ``list``, ``sync`` and
``verify``, and one result object (a model object and how the command went with it).

The keys are documented in the README ("JSON output"); ``tests/test_json_shapes.py`` holds
every command's output to that table.

A model object is the manifest (every key, ``manifest_version`` included) plus ``store``,
``path``, ``original`` (absolute) and ``size``; each entry of ``files`` and ``staged`` (and a
staged file's ``fixture``) keeps its store-relative ``path``, as the manifest records it, and
gets its ``abspath`` beside it. A result object adds ``status``, ``error``, ``exit_code`` and
``seconds``; a model that failed has ``null`` (``[]`` for ``files``/``staged``) for every
key it could not know.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any

from ..errors import EXIT_OK
from ..store import Manifest, Store
from ..store.manifest import MANIFEST_VERSION

#: The keys of every model object, in the README's order.
MODEL_KEYS = (
    "ref",
    "hub",
    "framework",
    "revision",
    "source",
    "storage",
    "sdk_cache",
    "created",
    "manifest_version",
    "store",
    "path",
    "original",
    "size",
    "files",
    "staged",
    "details",
)
#: What a result object adds to a model object.
RESULT_KEYS = ("status", "error", "exit_code", "seconds")


def _with_abspath(store: Store, entry: dict[str, Any]) -> dict[str, Any]:
    entry = dict(entry)
    entry["abspath"] = str(store.abspath(str(entry["path"])))
    fixture = entry.get("fixture")
    if isinstance(fixture, dict) and fixture.get("path"):
        entry["fixture"] = {**fixture, "abspath": str(store.abspath(str(fixture["path"])))}
    return entry


def model_size(manifest: Manifest) -> int:
    """Bytes of a model's original files and staged artifacts (each path counted once)."""
    sizes = {f.path: f.size for f in manifest.files} | {s.path: s.size for s in manifest.staged}
    return sum(sizes.values())


def model_doc(store: Store, manifest: Manifest) -> dict[str, Any]:
    """The model object of ``manifest`` in ``store``."""
    doc = asdict(manifest)
    folder = manifest.details.get("folder")
    original = str(folder) if folder else (manifest.files[0].path if manifest.files else None)
    doc.update(
        manifest_version=MANIFEST_VERSION,
        store=str(store.root),
        path=str(store.abspath(manifest.primary_path)),
        original=str(store.abspath(original)) if original else None,
        size=model_size(manifest),
        files=[_with_abspath(store, f) for f in doc["files"]],
        staged=[_with_abspath(store, s) for s in doc["staged"]],
    )
    return {key: doc[key] for key in MODEL_KEYS}


def unknown_model(ref: str) -> dict[str, Any]:
    """The model object of a model that could not be had: its reference, nothing else."""
    doc: dict[str, Any] = dict.fromkeys(MODEL_KEYS)
    doc.update(ref=ref, files=[], staged=[])
    return doc


def error_text(exc: BaseException | None, ref: object = None) -> str | None:
    """``exc`` as the one line the CLI prints for it about ``ref`` (``REF: MESSAGE``, the
    reference named once), without the ``modelhub: error:`` prefix."""
    if exc is None:
        return None
    from .output import PROG, error_line

    return error_line(exc, ref)[0].removeprefix(f"{PROG}: error: ")


def result_doc(
    ref: str,
    store: Store,
    manifest: Manifest | None,
    *,
    status: str,
    error: BaseException | str | None = None,
    exit_code: int = EXIT_OK,
    seconds: float = 0.0,
) -> dict[str, Any]:
    """A result object: the model object (or an unknown one) and how the command went."""
    doc = model_doc(store, manifest) if manifest is not None else unknown_model(ref)
    message = error if isinstance(error, str) or error is None else error_text(error, ref)
    doc.update(status=status, error=message, exit_code=exit_code, seconds=round(seconds, 3))
    return doc


def dumps(doc: Any) -> str:
    """JSON as every ``--json`` prints it: two-space indent, sorted keys."""
    return json.dumps(doc, indent=2, sort_keys=True)


__all__ = [
    "MODEL_KEYS",
    "RESULT_KEYS",
    "dumps",
    "error_text",
    "model_doc",
    "model_size",
    "result_doc",
    "unknown_model",
]

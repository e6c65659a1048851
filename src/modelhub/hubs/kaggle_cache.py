"""kagglehub's model cache, laid out exactly as kagglehub 1.0.3 writes it (``cache.py``:
``_get_model_path``, ``_get_models_completion_marker_filepath``; ``config.py``:
``get_cache_folder``).

    $KAGGLEHUB_CACHE (default ~/.cache/kagglehub)/models/OWNER/MODEL/FRAMEWORK/VARIATION/
        VERSION/...                       the version's files
        VERSION.complete                  the whole version is there (``model_download(handle)``)
        .complete/VERSION/PATH.complete   one file is there (``model_download(handle, path)``)

The path components are the handle's segments as they are (kagglehub 1.0.3 lowercases nothing):
modelhub's references carry the framework as kagglesdk's slug (``pyTorch``, what kaggle.com's
snippets hand to kagglehub), so that is the folder modelhub writes; a version kagglehub cached
under another spelling of the same handle (``PyTorch``) is found too. modelhub writes a version's
files there only after all its checks passed, and marks the version complete only when every
file is in place, as kagglehub does; a version kagglehub downloaded is taken from there.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from .kaggle_api import Handle

MARKERS = ".complete"


def cache_root() -> Path:
    """kagglehub's cache folder, from the environment now."""
    env = os.environ.get("KAGGLEHUB_CACHE", "").strip()
    return Path(env).expanduser() if env else Path("~/.cache/kagglehub").expanduser()


def variation_dir(handle: Handle, *, existing: bool = True) -> Path:
    """The variation's folder; with ``existing``, another spelling already on disk wins."""
    base = cache_root() / "models"
    parts = [handle.owner, handle.model, handle.framework, handle.variation]
    path = base.joinpath(*parts)
    if not existing or path.is_dir():
        return path
    found = base
    for part in parts:
        if not found.is_dir():
            return path
        exact = found / part
        if exact.is_dir():
            found = exact
            continue
        match = [c for c in found.iterdir() if c.is_dir() and c.name.lower() == part.lower()]
        if not match:
            return path
        found = sorted(match)[0]
    return found


def version_dir(handle: Handle) -> Path:
    """Where the version's files are (or go)."""
    return variation_dir(handle) / str(handle.version)


def bundle_marker(handle: Handle) -> Path:
    """``VERSION.complete`` beside the version's folder."""
    return variation_dir(handle) / f"{handle.version}.complete"


def file_marker(handle: Handle, path: str) -> Path:
    """``.complete/VERSION/PATH.complete`` for one file."""
    return variation_dir(handle) / MARKERS / str(handle.version) / f"{path}.complete"


def complete(handle: Handle) -> bool:
    """True when kagglehub would answer ``model_download(handle)`` from its cache."""
    return bundle_marker(handle).is_file() and version_dir(handle).is_dir()


def cached_files(handle: Handle) -> list[tuple[str, Path]]:
    """``(relative path, file)`` for every file of a complete version, sorted."""
    root = version_dir(handle)
    return sorted((p.relative_to(root).as_posix(), p) for p in root.rglob("*") if p.is_file())


def newest_complete(handle: Handle) -> int | None:
    """The highest version of the variation that is complete in the cache, if any."""
    folder = variation_dir(handle)
    if not folder.is_dir():
        return None
    versions = [
        int(p.name[: -len(".complete")])
        for p in folder.glob("*.complete")
        if p.name[: -len(".complete")].isdigit() and (folder / p.name[: -len(".complete")]).is_dir()
    ]
    return max(versions, default=None)


def place(src: Path, handle: Handle, rel: str) -> list[Path]:
    """Put the store's verified ``src`` at the version's ``rel`` in the cache: a hard link (the
    same bytes on disk once), else a copy written aside and renamed. Marks the file complete.
    Returns what it wrote (the file, then its marker)."""
    target = version_dir(handle) / rel
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.modelhub-tmp")
    tmp.unlink(missing_ok=True)
    try:
        os.link(src, tmp)
    except OSError:
        shutil.copyfile(src, tmp)
    os.replace(tmp, target)
    marker = file_marker(handle, rel)
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.touch()
    return [target, marker]


def place_all(files: list[tuple[Path, str]], handle: Handle) -> None:
    """:func:`place` every ``(store file, rel)`` of a checked version; when one fails, the files
    and markers already placed are taken back (kagglehub would serve them with no request)."""
    written: list[Path] = []
    try:
        for src, rel in files:
            written += place(src, handle, rel)
    except BaseException:
        for path in written:
            path.unlink(missing_ok=True)
        raise


def mark_complete(handle: Handle) -> None:
    """Mark the whole version complete (kagglehub's ``mark_as_complete(handle)``)."""
    marker = bundle_marker(handle)
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.touch()


def forget(handle: Handle) -> None:
    """Drop the version's completion marker (``--force``: the cache copy may be stale)."""
    bundle_marker(handle).unlink(missing_ok=True)

"""What a store must look like after a pull: on success, verified; on failure, nothing
half-written under a final name."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

FRAMEWORK_DIRS = ("onnx", "pytorch", "keras", "tensorflow", "huggingface", "other")


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def final_files(store: Path) -> dict[str, Path]:
    """Every regular file (or symlink) under the store's framework folders, by store path."""
    found = {}
    for top in FRAMEWORK_DIRS:
        base = store / top
        if not base.is_dir():
            continue
        for path in base.rglob("*"):
            if path.is_file() or path.is_symlink():
                found[path.relative_to(store).as_posix()] = path
    return found


def tmp_files(store: Path) -> list[Path]:
    """Files left under ``.modelhub/tmp`` (in-flight downloads, scratch files)."""
    tmp = store / ".modelhub" / "tmp"
    return sorted(p for p in tmp.rglob("*") if p.is_file()) if tmp.is_dir() else []


def live_bytes(root: Path, suffix: str = "") -> int:
    """Bytes in the files under ``root`` (ending in ``suffix``) while another process writes
    there: folders and files that vanish mid-walk (an SDK's temporary dirs) are skipped."""
    total = 0
    for folder, _, names in os.walk(root):  # os.walk ignores folders removed under it
        for name in names:
            if name.endswith(suffix):
                try:
                    total += os.stat(os.path.join(folder, name)).st_size
                except FileNotFoundError:
                    continue
    return total


def manifests(store: Path) -> list[Path]:
    """Manifest files in the store."""
    base = store / ".modelhub" / "manifests"
    return sorted(base.rglob("*.json")) if base.is_dir() else []


def half_written(
    store: Path,
    expected: dict[str, tuple[str, int]],
    known: dict[str, str] | None = None,
    staged: tuple[str, ...] = (),
) -> tuple[list[str], int]:
    """Problems of a store after a failed pull, and the bytes they hold (bytes lost).

    Under a final name there may only be: an expected original with its exact bytes, another
    file whose valid sha256 is ``known`` with exactly those bytes, or a staged artifact of
    ``staged`` (those are renamed into place complete, after their own checks). Anything else,
    or any of those with other bytes, is a partial or unverified file published too early.
    """
    known = known or {}
    problems, lost = [], 0
    for rel, path in sorted(final_files(store).items()):
        if rel in staged:
            continue
        want = expected[rel][0] if rel in expected else known.get(rel)
        size = path.stat().st_size if path.exists() else 0
        if want is None:
            problems.append(f"{rel}: unexpected file under a final name ({size} bytes)")
            lost += size
        elif file_sha256(path) != want:
            problems.append(f"{rel}: under its final name with unverified bytes ({size} bytes)")
            lost += size
    return problems, lost


def verified(store: Path, expected: dict[str, tuple[str, int]]) -> tuple[list[str], int]:
    """Problems of a store after a successful pull (each expected file present, exact bytes),
    and the bytes of the files that are not what they must be."""
    problems, lost = [], 0
    for rel, (sha, size) in sorted(expected.items()):
        path = store / rel
        if not path.is_file():
            problems.append(f"{rel}: missing")
            lost += size
        elif path.stat().st_size != size or file_sha256(path) != sha:
            problems.append(f"{rel}: bytes differ from the served model's")
            lost += size
    return problems, lost

"""``--dry-run`` of an ``hf:`` pull: the files the pull would fetch, from the Hub's file list.

One ``GET /api/models/{repo}/revision/{rev}?blobs=true`` (``HfApi.model_info(...,
files_metadata=True)``: every file with its size and LFS sha256), the same selection a pull
makes (:class:`.hf_select.Pick`: ``--include``/``--exclude``, what ``from_pretrained`` reads);
offline, the SDK's cached tree listing of the cached commit. Files whose blob the SDK's cache
already holds are marked cached (a pull links them, downloading nothing).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..config import settings
from ..errors import OfflineError
from ..refs import ModelRef
from .base import PREVIEW_CACHED, Plan, RemoteFile
from .hf_sdk import cached_commit, cached_listing, hf_cache_dir, map_error, repo_cache_dir


def _listing(hub_url: str, ref: ModelRef, branch: str, offline: bool) -> tuple[str, dict[str, Any]]:
    """(commit, {path: {size, lfs_sha256?}}) of ``ref`` at ``branch``."""
    cache = hf_cache_dir()
    if offline:
        commit = cached_commit(ref.name, branch, cache)
        listing = cached_listing(ref.name, commit, cache) if commit else None
        if commit is None or listing is None:
            raise OfflineError(f"offline: {ref}: no cached file list of {branch} to plan from")
        return commit, listing
    import huggingface_hub

    try:
        api = huggingface_hub.HfApi(endpoint=hub_url, token=settings().hf_token or None)
        info = api.model_info(ref.name, revision=branch, files_metadata=True)
    except Exception as exc:
        raise map_error(exc, ref, hub_url, offline=False) from None
    found: dict[str, dict[str, Any]] = {}
    for sibling in info.siblings or []:
        entry: dict[str, Any] = {"size": sibling.size}
        if sibling.lfs is not None:
            entry["lfs_sha256"] = sibling.lfs.sha256
            entry["size"] = sibling.lfs.size
        found[sibling.rfilename] = entry
    return str(info.sha or branch), found


def preview(
    plan: Plan, hub_url: str, pick: Callable[[list[str]], list[str]], offline: bool
) -> Plan:
    """``plan`` (a pull's, from ``resolve``) with every file ``pick`` selects from the repo's
    list and its size (no download)."""
    ref = plan.ref
    branch = plan.details["branch"]
    commit, listing = _listing(hub_url, ref, branch, offline)
    if ref.entry is not None and not ref.entry.endswith("/"):
        names = [ref.entry] if ref.entry in listing else []
    else:
        names = pick(sorted(listing))
    folder = plan.details.get("folder")
    blobs = repo_cache_dir(ref.name) / "blobs"
    cached = []
    for name in names:
        sha = listing[name].get("lfs_sha256")
        if isinstance(sha, str) and (blobs / sha).is_file():
            cached.append(name)
    base = ref.entry if ref.entry and ref.entry.endswith("/") else ""
    files = []
    for name in names:
        info = listing[name]
        rel = f"{folder}/{name[len(base) :]}" if folder else name
        size = info.get("lfs_size", info.get("size"))
        sha = info.get("lfs_sha256")
        files.append(
            RemoteFile(
                f"{hub_url}/{ref.name}/resolve/{commit}/{name}",
                rel,
                sha if isinstance(sha, str) else None,
                size if isinstance(size, int) else None,
            )
        )
    plan.revision = commit
    plan.files = files
    plan.details[PREVIEW_CACHED] = [f.rel for f, n in zip(files, names, strict=True) if n in cached]
    return plan

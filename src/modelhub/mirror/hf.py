"""``/hf/``: the subset of the Hugging Face Hub API that ``huggingface_hub`` downloads use.

Read from huggingface_hub 2.x (``hf_api.py``, ``file_download.py``, ``_snapshot_download.py``,
``utils/_http.py``, ``utils/_pagination.py``):

- ``GET /api/models/{repo}[/revision/{rev}]``: JSON with ``id`` and ``sha`` (required),
  ``siblings[].rfilename``; with ``?blobs=true`` siblings carry ``size``/``blobId``/``lfs``.
- ``GET /api/models/{repo}/tree/{rev}[/{path}]?recursive=&expand=``: a JSON list of
  ``{type, path, size, oid, lfs: {oid, size, pointerSize}}``, paginated by ``Link: rel="next"``
  (an absolute URL that already carries the query). The client quotes ``rev`` and ``path`` with
  ``safe=""``, so a ``%2F`` in them is a real slash.
- ``HEAD|GET /{repo}/resolve/{rev}/{path}``: ``X-Repo-Commit`` (else the client refuses the
  endpoint), ``X-Linked-Etag`` or ``ETag`` (the cache blob is named after it: we send the
  sha256, as the Hub does for LFS files), ``X-Linked-Size`` or an exact ``Content-Length``
  (the client asks ``Accept-Encoding: identity``). No redirect, no ``X-Xet-*`` header: the
  client then downloads over plain HTTP from the same URL, with ``Range`` to resume.
- 404s carry ``X-Error-Code: RepoNotFound | RevisionNotFound | EntryNotFound``, which
  ``hf_raise_for_status`` maps to its typed errors; an EntryNotFound also carries
  ``X-Repo-Commit`` so the client can cache the absence.

Every file is described as an LFS file: ``oid`` is the git blob id of its LFS pointer (as on
the Hub), so the listing needs no hashing beyond the manifest's sha256.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from aiohttp import web

from .http_files import not_found, quote_etag, send_file
from .index import HfRepo, HfRevision, ServedFile, Snapshot, StoreIndex
from .urlpath import decode_segment, join_safe, raw_segments

_TRUE = {"1", "true", "yes", "on"}
EXPAND_PAGE_CAP = 50


def _pointer(served: ServedFile) -> bytes:
    return (
        "version https://git-lfs.github.com/spec/v1\n"
        f"oid sha256:{served.sha256}\nsize {served.size}\n"
    ).encode()


def _git_blob_id(data: bytes) -> str:
    header = f"blob {len(data)}\0".encode()
    return hashlib.sha1(header + data, usedforsecurity=False).hexdigest()


def _tree_id(path: str, rev: HfRevision) -> str:
    h = hashlib.sha1(f"tree\0{rev.commit}\0{path}".encode(), usedforsecurity=False)
    return h.hexdigest()


def _error(code: str, message: str, commit: str | None = None) -> web.Response:
    headers = {"X-Error-Code": code, "X-Error-Message": message}
    if commit:
        headers["X-Repo-Commit"] = commit
    body = json.dumps({"error": message})
    return web.Response(status=404, text=body, content_type="application/json", headers=headers)


def repo_not_found(repo_id: str) -> web.Response:
    """404 RepoNotFound, as the Hub sends it."""
    return _error("RepoNotFound", f"Repository {repo_id} not found")


def revision_not_found(rev: str) -> web.Response:
    """404 RevisionNotFound."""
    return _error("RevisionNotFound", f"Invalid rev id: {rev}")


def entry_not_found(commit: str) -> web.Response:
    """404 EntryNotFound, with the commit so clients can cache the absence."""
    return _error("EntryNotFound", "Entry not found", commit)


def _lookup(
    snap: Snapshot, repo_id: str, rev: str | None
) -> tuple[HfRepo | None, HfRevision | None, web.Response | None]:
    repo = snap.hf.get(repo_id)
    if repo is None:
        return None, None, repo_not_found(repo_id)
    revision = repo.default() if rev is None else repo.revision(rev)
    if revision is None:
        return repo, None, revision_not_found(rev or "main")
    return repo, revision, None


def _file_entry(path: str, served: ServedFile, rev: HfRevision, expand: bool) -> dict[str, Any]:
    pointer = _pointer(served)
    entry: dict[str, Any] = {
        "type": "file",
        "path": path,
        "size": served.size,
        "oid": _git_blob_id(pointer),
        "lfs": {"oid": served.sha256, "size": served.size, "pointerSize": len(pointer)},
    }
    if expand:
        entry["lastCommit"] = _last_commit(rev)
    return entry


def _last_commit(rev: HfRevision) -> dict[str, str]:
    return {"id": rev.commit, "title": "Mirrored by modelhub", "date": rev.last_modified}


def model_info(rev: HfRevision, *, blobs: bool) -> dict[str, Any]:
    """The ``/api/models/{repo}`` document of one revision."""
    siblings = []
    for path, served in sorted(rev.files.items()):
        sibling: dict[str, Any] = {"rfilename": path}
        if blobs:
            pointer = _pointer(served)
            sibling.update(
                size=served.size,
                blobId=_git_blob_id(pointer),
                lfs={"sha256": served.sha256, "size": served.size, "pointerSize": len(pointer)},
            )
        siblings.append(sibling)
    org = rev.repo_id.split("/", 1)[0]
    tags = [t for t in rev.details.get("tags") or [] if isinstance(t, str)]
    info: dict[str, Any] = {
        "id": rev.repo_id,
        "modelId": rev.repo_id,
        "author": org,
        "sha": rev.commit,
        "lastModified": rev.last_modified,
        "createdAt": rev.last_modified,
        "private": False,
        "gated": False,
        "disabled": False,
        "downloads": 0,
        "likes": 0,
        "tags": tags,
        "siblings": siblings,
    }
    for key in ("library_name", "pipeline_tag"):
        if isinstance(rev.details.get(key), str):
            info[key] = rev.details[key]
    return info


def tree_entries(rev: HfRevision, base: str, recursive: bool, expand: bool) -> list[dict[str, Any]]:
    """Entries under ``base`` ('' = the repo root): direct children, or all when recursive.

    Raises KeyError when ``base`` is neither the root nor a folder of the revision.
    """
    prefix = base + "/" if base else ""
    folders: set[str] = set()
    files: list[tuple[str, ServedFile]] = []
    for path, served in rev.files.items():
        if not path.startswith(prefix):
            continue
        rest = path[len(prefix) :]
        parts = rest.split("/")
        for depth in range(1, len(parts)):
            if depth > 1 and not recursive:
                break
            folders.add(prefix + "/".join(parts[:depth]))
        if recursive or len(parts) == 1:
            files.append((path, served))
    if base and not files and not folders:
        raise KeyError(base)
    entries: list[tuple[str, dict[str, Any]]] = []
    for folder in folders:
        entry: dict[str, Any] = {
            "type": "directory",
            "path": folder,
            "size": 0,
            "oid": _tree_id(folder, rev),
        }
        if expand:
            entry["lastCommit"] = _last_commit(rev)
        entries.append((folder, entry))
    entries += [(path, _file_entry(path, served, rev, expand)) for path, served in files]
    entries.sort(key=lambda item: item[0])
    return [entry for _, entry in entries]


class HfRoutes:
    """Handlers for ``/hf/...``; ``page_size`` caps tree pages (the Hub uses 1000)."""

    def __init__(self, index: StoreIndex, page_size: int = 1000) -> None:
        self.index = index
        self.page_size = max(1, page_size)

    def add_to(self, app: web.Application) -> None:
        """Register the routes (GET answers HEAD too)."""
        app.router.add_get("/hf/{tail:.*}", self.handle)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """Dispatch on the raw path: API calls or a file resolve."""
        raw = raw_segments(request.raw_path)
        if raw is None or len(raw) < 2:
            return not_found()
        raw = raw[1:]  # drop "hf"
        snap = await self.index.snapshot()
        if raw[0] == "api":
            return self._api(request, snap, raw[1:])
        if len(raw) >= 5 and raw[2] == "resolve":
            return await self._resolve(request, snap, raw)
        return not_found()

    # --- /api/models/... ---------------------------------------------------------------------
    def _api(self, request: web.Request, snap: Snapshot, raw: list[str]) -> web.StreamResponse:
        if len(raw) < 3 or raw[0] != "models":
            return not_found()
        org, name = decode_segment(raw[1]), decode_segment(raw[2])
        if org is None or name is None:
            return not_found()
        repo_id = f"{org}/{name}"
        rest = raw[3:]
        if not rest:
            rev_name = None
        elif rest[0] in ("revision", "tree") and len(rest) >= 2:
            rev_name = decode_segment(rest[1], allow_slash=True)
            if rev_name is None:
                return revision_not_found(rest[1])
        else:
            return not_found()
        _, rev, error = _lookup(snap, repo_id, rev_name)
        if error is not None:
            return error
        assert rev is not None
        if rest and rest[0] == "tree":
            return self._tree(request, rev, rest[2:])
        if len(rest) > 2:
            return not_found()
        blobs = request.query.get("blobs", "").lower() in _TRUE
        return web.json_response(model_info(rev, blobs=blobs))

    def _tree(self, request: web.Request, rev: HfRevision, raw_path: list[str]) -> web.Response:
        decoded = [decode_segment(p, allow_slash=True) for p in raw_path]
        if any(p is None for p in decoded):
            return entry_not_found(rev.commit)
        base = join_safe([p for p in decoded if p is not None]) if decoded else ""
        if base is None:
            return entry_not_found(rev.commit)
        recursive = request.query.get("recursive", "").lower() in _TRUE
        expand = request.query.get("expand", "").lower() in _TRUE
        try:
            entries = tree_entries(rev, base, recursive, expand)
        except KeyError:
            return entry_not_found(rev.commit)
        size = min(self.page_size, EXPAND_PAGE_CAP) if expand else self.page_size
        cursor_raw = request.query.get("cursor", "0")
        cursor = int(cursor_raw) if cursor_raw.isdigit() else 0
        page = entries[cursor : cursor + size]
        headers = {"X-Repo-Commit": rev.commit}
        if cursor + size < len(entries):
            query = dict(request.query)
            query["cursor"] = str(cursor + size)
            next_url = request.url.with_query(query)
            headers["Link"] = f'<{next_url}>; rel="next"'
        return web.json_response(page, headers=headers)

    # --- /{repo}/resolve/{rev}/{path} --------------------------------------------------------
    async def _resolve(
        self, request: web.Request, snap: Snapshot, raw: list[str]
    ) -> web.StreamResponse:
        org, name = decode_segment(raw[0]), decode_segment(raw[1])
        if org is None or name is None:
            return not_found()
        rev_name = decode_segment(raw[3], allow_slash=True)
        if rev_name is None:
            return revision_not_found(raw[3])
        _, rev, error = _lookup(snap, f"{org}/{name}", rev_name)
        if error is not None:
            return error
        assert rev is not None
        parts = [decode_segment(p) for p in raw[4:]]
        path = "/".join(p for p in parts if p is not None)
        served = rev.files.get(path) if None not in parts else None
        if served is None:
            return entry_not_found(rev.commit)
        headers = {
            "X-Repo-Commit": rev.commit,
            "X-Linked-Etag": quote_etag(served.sha256),
            "X-Linked-Size": str(served.size),
        }
        response = await send_file(request, served, headers=headers)
        if response.status == 404:
            return entry_not_found(rev.commit)
        return response

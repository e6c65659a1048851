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

A legacy one-part repo id (``gpt2``) is served at ``/api/models/gpt2[/...]`` and
``/gpt2/resolve/...``, and also under the id the Hub answered with when it was pulled
(``openai-community/gpt2``, the manifest's ``repo_id``), which the model info names as its ``id``,
as the Hub does. The files of a file or folder reference (``hf:ORG/NAME:PATH``) join the
revision of their commit.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from aiohttp import web

from ..refgrammar import is_name
from ..refs import ModelRef
from ..store import Manifest, layout
from .http_files import not_found, quote_etag, send_file
from .index import (
    HEX40,
    HfRepo,
    HfRevision,
    ServedFile,
    Snapshot,
    derived_commit,
    folder_of,
    join_access,
    under,
)
from .routes import HubRoutes
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


def _error(code: str, message: str, commit: str | None = None, status: int = 404) -> web.Response:
    headers = {"X-Error-Code": code, "X-Error-Message": message}
    if commit:
        headers["X-Repo-Commit"] = commit
    body = json.dumps({"error": message})
    return web.Response(status=status, text=body, content_type="application/json", headers=headers)


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
        "private": rev.details.get("access") == "private",
        # unknown (a pull from a cache): gated for a client, which then records it so
        "gated": "manual" if rev.details.get("access") in ("gated", "unknown") else False,
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


def _repo_id_ok(repo_id: str) -> bool:
    """A repo id of one or two safe name segments."""
    parts = repo_id.split("/")
    return len(parts) <= 2 and all(is_name(p) for p in parts)


def _split_repo(snap: Snapshot, raw: list[str], *views: str) -> tuple[str, list[str]] | None:
    """``raw`` (still encoded) split into a repo id and what follows it: ``ORG/NAME`` when the
    store holds that repo, else a legacy one-part id (``gpt2``) when one of ``views`` follows it
    (``/api/models/gpt2/revision/main``, ``/gpt2/resolve/main/config.json``) or nothing does,
    else ``ORG/NAME``. None when a segment is unsafe."""
    decoded = [decode_segment(p) for p in raw[:2]]
    if decoded[0] is None:
        return None
    two = f"{decoded[0]}/{decoded[1]}" if len(decoded) == 2 and decoded[1] is not None else None
    if two is not None and two in snap.hf:
        return two, raw[2:]
    if len(raw) == 1 or raw[1] in views:
        return decoded[0], raw[1:]
    return (two, raw[2:]) if two is not None else None


class HfRoutes(HubRoutes):
    """Handlers for ``/<mirror path>/...`` (``/hf``); ``page_size`` caps tree pages (the Hub
    uses 1000)."""

    def collect(
        self, snap: Snapshot, manifest: Manifest, ref: ModelRef, own: dict[str, ServedFile]
    ) -> None:
        """Index the model's snapshot under its repo id (and the id the Hub answered with, for
        a legacy one: ``gpt2`` is also ``openai-community/gpt2``), by commit and by branch
        names. A file or folder reference adds its files to its commit's revision."""
        if not self.mine(ref):
            return
        if ref.entry is None:
            folder = folder_of(manifest, ref)
        else:
            folder = layout.model_dir(ModelRef(ref.hub, ref.name, ref.revision))
        files = under(own, folder)
        if not files:
            return
        commit = manifest.revision if HEX40.fullmatch(manifest.revision) else derived_commit(files)
        branch = manifest.details.get("branch")
        names = {str(branch)} if isinstance(branch, str) and branch else set()
        names.add(ref.revision or "main")
        answered = manifest.details.get("repo_id")
        canonical = answered if isinstance(answered, str) and _repo_id_ok(answered) else ref.name
        for repo_id in dict.fromkeys((ref.name, canonical)):
            repo = snap.hf.setdefault(repo_id, HfRepo(repo_id))
            rev = repo.by_commit.get(commit)
            if rev is None:
                rev = HfRevision(canonical, commit, set(), {}, manifest.created, manifest.details)
                repo.by_commit[commit] = rev
            else:  # one commit, two manifests: as restricted as the stricter one
                rev.details = join_access(rev.details, manifest)
            for path, served in files.items():
                rev.files.setdefault(path, served)
            for name in names - {commit}:
                previous = repo.by_name.get(name)
                # Two manifests naming one branch: the newer one is what the branch points to.
                if previous is None or previous.last_modified <= manifest.created:
                    repo.by_name[name] = rev
                rev.names.add(name)

    def add_to(self, app: web.Application) -> None:
        """Register the routes (GET answers HEAD too)."""
        app.router.add_get(f"{self.prefix}/{{tail:.*}}", self.handle)

    async def denied(
        self, request: web.Request, status: int, message: str, *, model: bool = False
    ) -> web.Response:
        """The Hub's refusal: ``X-Error-Code: GatedRepo`` for a gated model (the client raises
        ``GatedRepoError``), ``RepoNotFound`` for a private one or a mirror that wants a token
        for everything (``RepositoryNotFoundError``, "make sure you are authenticated").
        ``model``: the request names a withheld model (else nothing is looked up)."""
        code = "RepoNotFound"
        raw = raw_segments(request.raw_path)
        if model and raw is not None and len(raw) > self.depth:
            raw = raw[self.depth :]
            snap = await self.index.snapshot()
            found = (
                _split_repo(snap, raw[2:], "revision", "tree")
                if raw[:2]
                == [
                    "api",
                    "models",
                ]
                else _split_repo(snap, raw, "resolve")
            )
            repo = snap.hf.get(found[0]) if found is not None else None
            rev = repo.default() if repo is not None else None
            if rev is not None and rev.details.get("access") in ("gated", "unknown"):
                code = "GatedRepo"
        return _error(code, message, status=status)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """Dispatch on the raw path: API calls or a file resolve."""
        raw = raw_segments(request.raw_path)
        if raw is None or len(raw) < self.depth + 1:
            return not_found()
        raw = raw[self.depth :]  # drop the mirror path
        snap = await self.index.snapshot()
        if raw[0] == "api":
            return self._api(request, snap, raw[1:])
        found = _split_repo(snap, raw, "resolve")
        if found is not None and len(found[1]) >= 3 and found[1][0] == "resolve":
            return await self._resolve(request, snap, *found)
        return not_found()

    # --- /api/models/... ---------------------------------------------------------------------
    def _api(self, request: web.Request, snap: Snapshot, raw: list[str]) -> web.StreamResponse:
        if len(raw) < 2 or raw[0] != "models":
            return not_found()
        found = _split_repo(snap, raw[1:], "revision", "tree")
        if found is None:
            return not_found()
        repo_id, rest = found
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

    # --- /{repo}/resolve/{rev}/{path} (repo: ORG/NAME, or a legacy NAME) ------------------
    async def _resolve(
        self, request: web.Request, snap: Snapshot, repo_id: str, raw: list[str]
    ) -> web.StreamResponse:
        rev_name = decode_segment(raw[1], allow_slash=True)  # raw: resolve, REV, PATH...
        if rev_name is None:
            return revision_not_found(raw[1])
        _, rev, error = _lookup(snap, repo_id, rev_name)
        if error is not None:
            return error
        assert rev is not None
        parts = [decode_segment(p) for p in raw[2:]]
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

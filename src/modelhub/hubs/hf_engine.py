"""Large ``hf:`` files through modelhub's transfer engine, written into the Hugging Face cache
exactly where and as huggingface_hub writes them.

huggingface_hub (2.2 – 2.4, ``file_download.py``) neither resumes an interrupted download (a new
process-unique ``blobs/<etag>.<id>.incomplete`` each time) nor retries a 5xx on a file, and uses
one connection per file. modelhub's engine (:func:`modelhub.transfer.download_file`) does all
three and checks the sha256 inline. So, for a pull of a snapshot, the LFS files from
:data:`ENGINE_MIN_BYTES` up are fetched by the engine before ``snapshot_download`` runs; the SDK
then finds each of them in place (``hf_hub_download`` of a commit whose snapshot entry exists
returns it without a request) and downloads the rest itself. Metadata stays the SDK's: the
commit (``repo_info``), the tree listing (``HfApi.list_repo_tree``), auth, gated errors.

A file reference (:func:`fetch_one`) is ``hf_hub_download``'s, which asks the file's metadata
first (``HEAD /resolve/<rev>/<path>``: ``X-Repo-Commit``, ``X-Linked-Etag``, ``X-Linked-Size``).
While it runs, a response hook on the SDK's shared client (httpx's ``event_hooks``, as in
:mod:`.hf_stream`) reads that answer in the calling thread; when it names an LFS file (a sha256
etag) of at least :data:`ENGINE_MIN_BYTES` and a commit, the hook stops the call before the
SDK's ``GET``, the engine fetches the file into the cache, ``refs/<rev>`` is written, and
``hf_hub_download(revision=<commit>, local_files_only=True)`` returns its path with no request.
A large file costs the SDK's one ``HEAD``, then the engine's requests; any other file, and every
failure of the ``HEAD`` (its retries, its fall-back to the cache, its errors), stays the SDK's
alone, request for request. A large file the engine declines goes back to the SDK.

What is written, as the SDK writes it for a download of ``cache_dir``:

- ``trees/<commit>.json``: the tree listing in the SDK's documented format (format 1: size,
  blob_id, lfs_sha256/lfs_size, xet_hash), which ``snapshot_download`` then reads instead of
  listing again;
- ``blobs/<etag>``: the file, where the etag of an LFS file is its sha256 (the Hub's
  ``X-Linked-Etag``, and what the SDK itself takes from a cached listing), its mode that of a
  new file in that folder, renamed into place complete;
- ``snapshots/<commit>/<path>``: a relative symlink to the blob;
- ``.locks/models--ORG--NAME/<etag>.lock``: held (the SDK's ``WeakFileLock``) while the blob is
  fetched and linked, so an SDK process downloading the same blob waits, and then finds it;
- ``CACHEDIR.TAG`` in the cache folder, when it is missing;
- the branch's ``refs/<branch>`` is written by the caller once the snapshot is complete.

The part file is ``blobs/<etag>.incomplete`` (the name the SDK derives its temporary names from;
it never opens that one) plus the engine's resume sidecar, so that a download killed in one
process resumes in the next. The URL is ``/resolve/<commit>/<path>``, as the SDK's; for a
Xet-backed file the Hub answers it with a redirect to its storage bridge, which the engine
follows (the token only to the Hub's origin); no ``X-Xet-*`` header is ever sent.

A file the engine cannot fetch (refused, not found, an HTTP status it does not retry) is left
to the SDK, whose errors say why (a gated repo's, for one). A body whose sha256 is not the LFS
oid is refused (HashMismatchError, exit 5) with nothing left in the cache; a network failure
after the engine's retries keeps the part for the next run.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import threading
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from ..config import settings
from ..errors import IntegrityError, ModelhubError, NetworkError
from .hf_sdk import cached_listing, is_commit, is_sha256, repo_cache_dir, write_ref
from .hf_stream import Watch

# LFS files from this size up go through the engine; smaller ones are not worth a second
# client (their HEAD + GET by the SDK is as fast) and gain nothing from resuming.
ENGINE_MIN_BYTES = 4 << 20
# Files fetched at once (each over as many connections as the engine decides).
FILES_AT_ONCE = 4
# The SDK's tree listing cache (huggingface_hub._tree_cache, format 1).
_TREE_FORMAT = 1
# The Cache Directory Tagging Standard's signature, and the SDK's text around it.
_CACHEDIR_TAG = (
    "Signature: 8a477f597d28d172789f06886806bc55\n"
    "# This file is a cache directory tag created by huggingface_hub.\n"
    "# For information about cache directory tags, see:\n"
    "#\thttps://bford.info/cachedir/\n"
)


@dataclass(frozen=True)
class LargeFile:
    """One LFS file of a commit for the engine: its repo path, sha256 (= etag) and size."""

    path: str
    sha256: str
    size: int


def listing(api: Any, repo_id: str, commit: str, cache: Path) -> dict[str, Any]:
    """The tree listing of ``commit``: the SDK's cached one, else ``list_repo_tree`` (the
    request ``snapshot_download`` would make), written to ``trees/<commit>.json`` as the SDK
    writes it, so that ``snapshot_download`` does not list again."""
    known = cached_listing(repo_id, commit, cache)
    if known is not None:
        return known
    from huggingface_hub.hf_api import RepoFile

    files: dict[str, Any] = {}
    for item in api.list_repo_tree(repo_id, revision=commit, recursive=True):
        if not isinstance(item, RepoFile):
            continue
        info: dict[str, Any] = {"size": item.size, "blob_id": item.blob_id}
        if item.lfs is not None:
            info["lfs_sha256"], info["lfs_size"] = item.lfs.sha256, item.lfs.size
        if getattr(item, "xet_hash", None) is not None:
            info["xet_hash"] = item.xet_hash
        files[item.path] = info
    _write_tree(repo_cache_dir(repo_id, cache) / "trees" / f"{commit}.json", files)
    return files


def _write_tree(path: Path, files: Mapping[str, Any]) -> None:
    data = {"format_version": _TREE_FORMAT, "files": {k: files[k] for k in sorted(files)}}
    with contextlib.suppress(OSError):  # the SDK lists again then, as it does itself
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(data, fh, indent=1)
            os.replace(tmp, path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)


def prefetch(
    api: Any,
    sdk_args: Mapping[str, Any],
    commit: str,
    patterns: tuple[list[str] | None, list[str] | None],
    force: bool,
    progress: bool | None,
    watch: Watch | None,
) -> list[str]:
    """Fetch the large LFS files of ``commit`` that ``snapshot_download(**sdk_args,
    allow_patterns, ignore_patterns)`` would fetch (``patterns``) into its cache, before it
    runs; the repo paths now in the snapshot (for the SDK to leave alone, also with
    ``force_download``). With no listing (an error), nothing: the SDK lists, and explains.
    """
    from huggingface_hub import get_token
    from huggingface_hub.utils import filter_repo_objects  # type: ignore[attr-defined]

    repo_id, cache = sdk_args["repo_id"], Path(sdk_args["cache_dir"])
    try:
        files = listing(api, repo_id, commit, cache)
    except Exception:
        return []
    allow, ignore = patterns
    names = list(filter_repo_objects(sorted(files), allow_patterns=allow, ignore_patterns=ignore))
    token = sdk_args.get("token") or get_token() or None
    show = settings().progress(progress)
    writer = CacheWriter(
        repo_id, commit, sdk_args["endpoint"], cache, token, force=force, progress=show, watch=watch
    )
    return writer.fetch_all(large_files(files, names))


def fetch_one(
    args: Mapping[str, Any], force: bool, progress: bool | None, watch: Watch | None
) -> str:
    """``hf_hub_download(**args, force_download=force)`` (``args``: repo_id, filename,
    revision, cache_dir, endpoint, token), but a large LFS file that its ``HEAD`` names is
    fetched by the engine; the file's path in the snapshot. Raises what the SDK raises, and
    IntegrityError / NetworkError of the engine."""
    import huggingface_hub
    from huggingface_hub import get_token

    _hook_session()
    _asking.filename = args["filename"]
    try:
        return str(huggingface_hub.hf_hub_download(**args, force_download=force))
    except _Large as large:
        item, commit = large.item, large.commit
    finally:
        _asking.filename = None
    repo_id, cache = args["repo_id"], Path(args["cache_dir"])
    token = args.get("token") or get_token() or None
    show = settings().progress(progress)
    writer = CacheWriter(
        repo_id, commit, args["endpoint"], cache, token, force=force, progress=show, watch=watch
    )
    if not writer.fetch_all([item]):  # declined: the SDK's to fetch and to explain
        return str(huggingface_hub.hf_hub_download(**args, force_download=force))
    write_ref(repo_id, args.get("revision") or "main", commit, cache)
    local = {**args, "revision": commit}
    return str(huggingface_hub.hf_hub_download(**local, local_files_only=True))


def repo_access(args: Mapping[str, Any]) -> str | None:
    """Who may read the repo of ``args`` (:func:`fetch_one`'s), after one of its files came
    from the Hub: ``public`` when no token was sent (a gated or private repo refuses that);
    else what the repo's model info says (one ``repo_info`` request, as a snapshot pull makes),
    ``private``, ``gated`` or ``public``. None when the Hub does not answer it."""
    import huggingface_hub
    from huggingface_hub import get_token

    token = args.get("token") or get_token() or None
    if token is None:
        return "public"
    try:
        api = huggingface_hub.HfApi(endpoint=args["endpoint"], token=token)
        info = api.repo_info(args["repo_id"])
    except Exception:  # no answer: the caller records what an earlier pull learned, or unknown
        return None
    if getattr(info, "private", False):
        return "private"
    return "gated" if getattr(info, "gated", False) else "public"


# The file reference each thread's ``hf_hub_download`` (in :func:`fetch_one`) is asking for.
_asking = threading.local()


class _Large(Exception):
    """Raised out of ``hf_hub_download`` by :func:`_on_head`: its ``HEAD`` named a large LFS
    file, for the engine (not a subclass of anything the SDK catches)."""

    def __init__(self, item: LargeFile, commit: str) -> None:
        super().__init__(item.path)
        self.item, self.commit = item, commit


def _on_head(response: Any) -> None:
    """httpx response hook: in a thread inside :func:`fetch_one`'s ``hf_hub_download``, a
    ``HEAD`` answered with a commit, a sha256 etag and a size from :data:`ENGINE_MIN_BYTES`
    up (read as ``get_hf_file_metadata`` reads them) raises :class:`_Large`."""
    filename = getattr(_asking, "filename", None)
    if filename is None or response.request.method != "HEAD" or response.status_code >= 400:
        return
    headers = response.headers
    commit = headers.get("x-repo-commit", "")
    etag = headers.get("x-linked-etag") or headers.get("etag") or ""
    etag = etag.removeprefix("W/").strip('"')
    size = headers.get("x-linked-size") or (
        "" if response.is_redirect else headers.get("content-length", "")
    )
    big = size.isdigit() and int(size) >= ENGINE_MIN_BYTES
    if big and is_commit(commit) and is_sha256(etag):
        _asking.filename = None  # once
        raise _Large(LargeFile(filename, etag, int(size)), commit)


def _hook_session() -> None:
    """Add :func:`_on_head` to the SDK's current shared client, unless it is there already."""
    from huggingface_hub import get_session

    session = get_session()
    if _on_head not in session.event_hooks["response"]:
        hooks = session.event_hooks
        session.event_hooks = {**hooks, "response": [*hooks["response"], _on_head]}


def large_files(files: Mapping[str, Any], names: list[str]) -> list[LargeFile]:
    """The files of ``names`` the engine fetches: LFS files with a sha256, of at least
    :data:`ENGINE_MIN_BYTES`."""
    found = []
    for name in names:
        info = files.get(name)
        if not isinstance(info, dict):
            continue
        sha, size = info.get("lfs_sha256"), info.get("lfs_size")
        if not (isinstance(size, int) and size >= ENGINE_MIN_BYTES):
            continue
        if isinstance(sha, str) and is_sha256(sha):
            found.append(LargeFile(name, sha, size))
    return found


class CacheWriter:
    """Fetches files of one commit of one repo into the HF cache with the engine."""

    def __init__(
        self,
        repo_id: str,
        commit: str,
        endpoint: str,
        cache: Path,
        token: str | None,
        *,
        force: bool = False,
        progress: bool = False,
        watch: Watch | None = None,
    ) -> None:
        self.repo_id, self.commit, self.endpoint = repo_id, commit, endpoint.rstrip("/")
        self.cache, self.token, self.force = cache, token, force
        self.progress, self.watch = progress, watch
        self.storage = repo_cache_dir(repo_id, cache)

    def url(self, path: str) -> str:
        """``{endpoint}/{repo}/resolve/{commit}/{path}``, quoted as the SDK's ``hf_hub_url``."""
        return f"{self.endpoint}/{self.repo_id}/resolve/{self.commit}/{quote(path)}"

    def pointer(self, path: str) -> Path:
        """``snapshots/<commit>/<path>`` (refused when ``path`` would leave the snapshot)."""
        base = self.storage / "snapshots" / self.commit
        target = base.joinpath(*path.split("/"))
        if ".." in path.split("/") or base not in target.parents:
            raise IntegrityError(f"{self.repo_id}: a listed path leaves the snapshot: {path!r}")
        return target

    def fetch_all(self, files: list[LargeFile]) -> list[str]:
        """Fetch ``files`` (several at once); the paths now in the snapshot. Files the engine
        cannot fetch are left out (the SDK downloads them); an integrity or network error of
        any file is raised once the others are done."""
        if not files:
            return []
        workers = min(FILES_AT_ONCE, len(files))
        if workers == 1:
            results = [self._try(files[0])]
        else:
            with ThreadPoolExecutor(workers, thread_name_prefix="modelhub-hf") as pool:
                results = list(pool.map(self._try, files))
        for result in results:
            if isinstance(result, BaseException):
                raise result
        return [f.path for f, ok in zip(files, results, strict=True) if ok is True]

    def _try(self, item: LargeFile) -> bool | BaseException:
        try:
            self.fetch(item)
        except (IntegrityError, NetworkError) as exc:
            return exc
        except ModelhubError:
            return False  # refused, missing, another status: the SDK's to fetch and to explain
        return True

    def fetch(self, item: LargeFile) -> None:
        """Put ``item`` in the cache: the blob (downloaded unless present) and its pointer."""
        from huggingface_hub.utils import WeakFileLock  # type: ignore[attr-defined]

        from .. import transfer

        pointer = self.pointer(item.path)
        blob = self.storage / "blobs" / item.sha256
        if not self.force and pointer.is_file():
            return  # as the SDK: a snapshot entry that exists is taken as it is
        lock = self.cache / ".locks" / self.storage.name / f"{item.sha256}.lock"
        lock.parent.mkdir(parents=True, exist_ok=True)
        blob.parent.mkdir(parents=True, exist_ok=True)
        pointer.parent.mkdir(parents=True, exist_ok=True)
        _tag(self.cache)
        with WeakFileLock(lock):
            if self.force or not blob.is_file():
                part = blob.with_name(f"{item.sha256}.incomplete")
                done = transfer.download_file(
                    self.url(item.path),
                    part,
                    expected_sha256=item.sha256,
                    expected_size=item.size,
                    token=self.token,
                    progress=self.progress,
                    desc=item.path,
                )
                _chmod_as_new(part)
                os.replace(part, blob)  # over an old blob: links made earlier keep their bytes
                if self.watch is not None:
                    self.watch.vouch(done.sha256, done.size)
            _link(blob, pointer)


def _tag(cache: Path) -> None:
    tag = cache / "CACHEDIR.TAG"
    if not tag.exists():
        with contextlib.suppress(OSError):
            tag.write_text(_CACHEDIR_TAG)


def _chmod_as_new(path: Path) -> None:
    """Give ``path`` the mode a new file in its folder gets (the umask's), as the SDK does."""
    probe = path.with_name(f"tmp_{os.urandom(8).hex()}")
    try:
        probe.touch()
        os.chmod(path, probe.stat().st_mode & 0o7777)
    except OSError:
        pass
    finally:
        probe.unlink(missing_ok=True)


def _link(blob: Path, pointer: Path) -> None:
    """``pointer`` -> ``blob`` as a relative symlink, replacing what was there."""
    with contextlib.suppress(FileNotFoundError):
        os.remove(pointer)
    target = os.path.relpath(os.path.abspath(blob), os.path.dirname(os.path.abspath(pointer)))
    try:
        os.symlink(target, pointer)
    except FileExistsError:  # linked meanwhile by another process (to the same blob, by name)
        if os.path.realpath(pointer) != os.path.realpath(blob):
            raise
    except OSError:
        pass  # no symlinks here: the SDK finds the blob and copies it to the pointer itself

"""``hf:ORG/NAME[@REVISION]`` — Hugging Face Hub repositories through ``huggingface_hub``.

The SDK's own cache (``HF_HUB_CACHE``, else ``$HF_HOME/hub``, else ``~/.cache/huggingface/hub``)
is the download target, so its blobs are shared with every other tool of the ecosystem; the store
entry ``huggingface/ORG/NAME/`` is made of links to those blobs (link mode), never copies unless
asked or across filesystems. Blobs are never modified.

A snapshot already complete in the cache is used with no network at all (``local_files_only``
first). "Complete" is what the SDK's cached tree listing of the commit (``trees/<commit>.json``,
written by every online ``snapshot_download``) says; a snapshot folder without one (left by
single-file downloads) may be partial, so the Hub is asked then, unless offline. ``--force``
resolves the revision and downloads every file again (the SDK writes new blobs and renames them
over the old ones, so links made earlier keep their bytes). Errors of the SDK are mapped to
modelhub's types.

sha256: the listing's LFS sha256 (the Hub's, and the mirror's, ETag of LFS files, so the blob is
named by it); other files (small git files on the Hub) are hashed. The SDK checks sizes only, so
the bytes of every LFS file it downloads are checked against that sha256: hashed as they stream
through the SDK's client (:mod:`.hf_stream`), else by reading the blob once it is written.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from ..config import settings
from ..errors import (
    AuthError,
    HashMismatchError,
    IntegrityError,
    ModelhubError,
    ModelNotFoundError,
    NetworkError,
    OfflineError,
    SizeMismatchError,
    UsageError,
)
from ..refs import ModelRef
from ..store import FileEntry, Manifest, StagedEntry, layout
from ..store.files import sha256_file
from .base import ModelHub, Plan, StageRequest
from .hf_stream import Watch, hook_session

_HEX = frozenset("0123456789abcdef")
TOKEN_HINT = "set HF_TOKEN (or run `hf auth login`) with a token that has access"
# The SDK's cached tree listing (huggingface_hub._tree_cache), a documented on-disk format.
_TREE_FORMAT = 1
PARALLEL_VERIFY_MIN = 64 * 2**20  # bytes of blobs from which they are verified in threads


def hf_cache_dir() -> Path:
    """The Hugging Face hub cache, resolved from the environment now (not at import)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "huggingface" / "hub"


def repo_cache_dir(repo_id: str, cache: Path | None = None) -> Path:
    """``models--ORG--NAME`` in the HF cache: blobs/, snapshots/, refs/, trees/."""
    return (cache or hf_cache_dir()) / ("models--" + repo_id.replace("/", "--"))


def cached_listing(repo_id: str, commit: str, cache: Path | None = None) -> dict[str, Any] | None:
    """The SDK's cached tree listing of ``commit``: {path: {size, blob_id, lfs_sha256?, ...}}.

    None when the commit was never listed online into this cache (or the file is unreadable or of
    another format version). No network.
    """
    path = repo_cache_dir(repo_id, cache) / "trees" / f"{commit}.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("format_version") != _TREE_FORMAT:
        return None
    files = data.get("files")
    return files if isinstance(files, dict) else None


def _blob_bytes(snapshot: Path, names: list[str]) -> int:
    """Total size of the files ``names`` of a snapshot folder (missing ones count 0)."""
    total = 0
    for name in names:
        with contextlib.suppress(OSError):
            total += (snapshot / name).stat().st_size
    return total


def _is_sha256(text: str) -> bool:
    return len(text) == 64 and set(text) <= _HEX


def _patterns(value: Any) -> list[str]:
    """``--include``/``--exclude`` as a list of globs (one string is one pattern)."""
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, list | tuple) and all(isinstance(p, str) for p in value):
        return list(value)
    raise UsageError(f"--include/--exclude take glob patterns, not {value!r}")


def _has_token() -> bool:
    if settings().hf_token:
        return True
    try:
        from huggingface_hub import get_token

        return bool(get_token())
    except Exception:
        return False


def _status(exc: Exception) -> int | None:
    return getattr(getattr(exc, "response", None), "status_code", None)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _map_error(exc: Exception, ref: ModelRef, endpoint: str, *, offline: bool) -> ModelhubError:
    """Turn a huggingface_hub exception into modelhub's typed error (one line, no token)."""
    from huggingface_hub import errors as hf_errors

    if type(exc) is ValueError and isinstance(exc.__cause__, Exception):
        # hf_hub_download(force_download=True) wraps the real failure in
        # "Force download failed due to the above error."
        return _map_error(exc.__cause__, ref, endpoint, offline=offline)
    status = _status(exc)
    if isinstance(exc, hf_errors.GatedRepoError):
        if status == 403 or _has_token():
            return AuthError(
                f"{ref} is gated on {endpoint} and the token (HF_TOKEN) has no access: "
                "accept its terms on the Hub with that account"
            )
        return AuthError(
            f"{ref} is gated on {endpoint}: accept its terms on the Hub and {TOKEN_HINT}"
        )
    if isinstance(exc, hf_errors.RevisionNotFoundError):
        return ModelNotFoundError(
            f"{ref}: revision {ref.revision or 'main'!r} not found on {endpoint}"
        )
    if isinstance(exc, hf_errors.RepositoryNotFoundError):
        if status in (401, 403):
            # The Hub answers 401 for private, gated and missing repos alike without a token.
            if _has_token():
                return AuthError(f"{ref}: {endpoint} rejected the token (HF_TOKEN)")
            return AuthError(
                f"{ref} is private, gated or missing on {endpoint}: if it exists, {TOKEN_HINT}"
            )
        access = " (or the token in HF_TOKEN has no access to it)" if _has_token() else ""
        return ModelNotFoundError(f"no repository {ref.name!r} on {endpoint}{access}")
    if isinstance(exc, hf_errors.RemoteEntryNotFoundError):
        return ModelNotFoundError(f"{ref}: a file listed by {endpoint} is missing there")
    if isinstance(exc, hf_errors.OfflineModeIsEnabled | hf_errors.LocalEntryNotFoundError):
        cache = hf_cache_dir()
        if offline or isinstance(exc, hf_errors.OfflineModeIsEnabled):
            return OfflineError(f"offline: {ref} is not complete in the Hugging Face cache {cache}")
        cause = exc.__cause__
        if isinstance(cause, hf_errors.HfHubHTTPError):
            failed = f"{endpoint} answered HTTP {_status(cause)} for {ref}"
        else:
            why = f" ({type(cause).__name__})" if cause is not None else ""
            failed = f"cannot reach {endpoint} for {ref}{why}"
        return NetworkError(f"{failed}, and it is not complete in the Hugging Face cache {cache}")
    if isinstance(exc, hf_errors.HfHubHTTPError):
        if status in (401, 403):
            return AuthError(f"{ref}: access denied by {endpoint} (HTTP {status}); {TOKEN_HINT}")
        return NetworkError(f"{ref}: {endpoint} answered HTTP {status}: {_first_line(exc)}")
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return ModelhubError(f"{ref}: no space left on device for the HF cache {hf_cache_dir()}")
    if isinstance(exc, OSError | ConnectionError | TimeoutError) or _is_transport_error(exc):
        return NetworkError(f"cannot reach {endpoint} for {ref}: {type(exc).__name__}")
    return ModelhubError(f"{ref}: {type(exc).__name__}: {_first_line(exc)}")


def _is_transport_error(exc: Exception) -> bool:
    """A connection-level failure of the SDK's HTTP client (``httpx2``, or ``httpx``)."""
    for module in ("httpx2", "httpx"):
        with contextlib.suppress(ImportError):
            transport = __import__(module).TransportError
            if isinstance(exc, transport):
                return True
    return False


_QUIET_LOCK = threading.Lock()
_quiet_calls = 0  # calls that silenced the SDK's bars and have not finished yet


@contextlib.contextmanager
def _progress_bars(show: bool) -> Iterator[None]:
    """Silence the SDK's progress bars for one call when not ``show``; restore them after.

    The SDK's switch is global, and ``modelhub sync`` runs several calls at once: the first
    quiet call turns the bars off, the last one to finish turns them back on (unless they were
    off before, e.g. HF_HUB_DISABLE_PROGRESS_BARS).
    """
    global _quiet_calls
    from huggingface_hub.utils.tqdm import (
        are_progress_bars_disabled,
        disable_progress_bars,
        enable_progress_bars,
    )

    if show:
        yield
        return
    with _QUIET_LOCK:
        if _quiet_calls == 0 and are_progress_bars_disabled():
            owned = False  # off already, and not by us: leave the switch alone
        else:
            owned = True
            _quiet_calls += 1
            if _quiet_calls == 1:
                disable_progress_bars()
    try:
        yield
    finally:
        if owned:
            with _QUIET_LOCK:
                _quiet_calls -= 1
                if _quiet_calls == 0:
                    enable_progress_bars()


def warm_sdk() -> None:
    """Import what a snapshot download uses (~0.2 s) and create the SDK's HTTP client with
    modelhub's hook (its TLS context: ~20 ms): ``warm_up``, in process or in the helper."""
    import huggingface_hub
    import huggingface_hub.utils.tqdm

    huggingface_hub.snapshot_download  # noqa: B018  (a lazy attribute: imports the module)
    hook_session()


def _download_in_helper(
    root: str, plan: Plan, offline: bool
) -> tuple[Plan, list[tuple[str, Path, str]]]:
    """:meth:`HuggingFaceHub.download` in the helper process; the plan comes back updated."""
    from ..store import Store

    hub = HuggingFaceHub(Store(root))  # downloading into the HF cache: the store is not written
    return plan, hub.download(plan, progress=False, offline=offline)


class HuggingFaceHub(ModelHub):
    """Hugging Face Hub model repositories (``hf:ORG/NAME[@REVISION]``)."""

    name = "hf"
    framework_name = "huggingface"
    default_stage = "none"
    stages = ("none", "onnx")
    offload_warm = staticmethod(warm_sdk)

    def resolve(
        self, ref: ModelRef, *, offline: bool = False, options: Mapping[str, Any] | None = None
    ) -> Plan:
        """A plan whose files the SDK fetches (``fetch``); the commit is known after it.

        Raises UsageError for a bad ``include``/``exclude`` or an unknown ``task``, before any
        network access.
        """
        opts = dict(options or {})
        if opts.get("task") is not None:
            from ..staging.hf_onnx import check_task

            check_task(opts["task"])
        return Plan(
            ref=ref,
            revision=None,
            files=[],
            source=[f"{self.hub_url}/{ref.name}"],
            details={
                "branch": ref.revision or "main",
                "folder": layout.model_dir(ref),
                "include": _patterns(opts.get("include")),
                "exclude": _patterns(opts.get("exclude")),
                "_force": bool(opts.get("force")),
            },
        )

    def satisfies(self, manifest: Manifest, fmt: str, options: Mapping[str, Any]) -> bool:
        """Whether ``manifest`` already is what a pull with ``options`` and stage ``fmt`` asks.

        The same ``include``/``exclude`` patterns, and for ``onnx`` with an explicit ``task``,
        an ONNX file staged for that task.
        """
        details = manifest.details
        for key in ("include", "exclude"):
            if sorted(_patterns(options.get(key))) != sorted(_patterns(details.get(key))):
                return False
        task = options.get("task")
        if fmt == "onnx" and task is not None:
            from ..staging.hf_onnx import canonical_task

            wanted = canonical_task(task)
            return any(
                s.format == "onnx" and s.details.get("task") == wanted for s in manifest.staged
            )
        return True

    def _snapshot(
        self, plan: Plan, offline: bool, progress: bool | None
    ) -> tuple[Path, Watch | None]:
        """The snapshot folder of ``plan`` in the HF cache, downloading what is missing, and
        the watch over the download (None when nothing was downloaded)."""
        import huggingface_hub

        ref = plan.ref
        cache = hf_cache_dir()
        show = progress is True or (progress is None and not settings().quiet and os.isatty(2))
        kwargs: dict[str, Any] = {
            "repo_id": ref.name,
            "revision": ref.revision or "main",
            "cache_dir": str(cache),
            "endpoint": self.hub_url,
            "allow_patterns": plan.details["include"] or None,
            "ignore_patterns": plan.details["exclude"] or None,
            "token": settings().hf_token or None,
        }
        force = plan.details.get("_force")
        if force and offline:
            raise OfflineError(f"offline: --force needs the network for {ref}")
        if force:
            kwargs["force_download"] = True
        unverified: Path | None = None
        with _progress_bars(show):
            if not force:
                try:
                    local = Path(huggingface_hub.snapshot_download(**kwargs, local_files_only=True))
                except Exception as exc:  # not (completely) cached: ask the Hub unless offline
                    if offline:
                        raise _map_error(exc, ref, self.hub_url, offline=True) from None
                else:
                    if offline or cached_listing(ref.name, local.name, cache) is not None:
                        plan.details["cache_hit"] = True
                        return local, None
                    unverified = local
            try:
                with Watch() as watch:
                    snapshot = Path(huggingface_hub.snapshot_download(**kwargs))
            except Exception as exc:
                raise _map_error(exc, ref, self.hub_url, offline=False) from None
        if unverified is not None and cached_listing(ref.name, snapshot.name, cache) is None:
            # The SDK fell back to the same unlisted folder: the Hub was not reached.
            raise NetworkError(
                f"cannot reach {self.hub_url} to check that the cached snapshot of {ref} is "
                "complete; use --offline to take it as it is"
            )
        plan.details["cache_hit"] = False
        return snapshot, watch

    def _wanted(self, plan: Plan, snapshot: Path, listing: Mapping[str, Any] | None) -> list[str]:
        """Repo paths to enter: the commit's listing (else the folder) filtered by patterns."""
        from huggingface_hub.utils import filter_repo_objects  # type: ignore[attr-defined]

        if listing is not None:
            candidates = sorted(listing)
        else:
            candidates = sorted(
                p.relative_to(snapshot).as_posix() for p in snapshot.rglob("*") if p.is_file()
            )
        return list(
            filter_repo_objects(
                candidates,
                allow_patterns=plan.details["include"] or None,
                ignore_patterns=plan.details["exclude"] or None,
            )
        )

    def fetch(
        self, plan: Plan, *, progress: bool | None = None, offline: bool = False
    ) -> list[FileEntry]:
        """Download into the HF cache (or find it there) and link every file into the store.

        Raises ModelNotFoundError when no file matches ``include``/``exclude``, IntegrityError
        when a cached file is missing or of another size than the Hub listed.
        """
        if self.offload is not None and not progress:
            done, checked = self.offload.call(
                _download_in_helper, str(self.store.root), plan, offline
            )
            plan.revision, plan.sdk_cache, plan.details = (
                done.revision,
                done.sdk_cache,
                done.details,
            )
        else:
            checked = self.download(plan, progress=progress, offline=offline)
        folder = plan.details["folder"]
        entries = []
        used: set[str] = set()
        for name, blob, sha in checked:
            entry, how = self.store.link_in(blob, f"{folder}/{name}", plan.ref, sha)
            used.add(how)
            entries.append(entry)
        plan.details["link_modes"] = sorted(used)
        self._drop_stale(plan.ref, {e.path for e in entries})
        return entries

    def download(
        self, plan: Plan, *, progress: bool | None = None, offline: bool = False
    ) -> list[tuple[str, Path, str]]:
        """The SDK's part of :meth:`fetch`: the snapshot in the HF cache, each wanted file
        checked; (repo path, blob, sha256) per file. Sets the plan's revision and SDK cache.

        In a parallel sync this runs in the helper process (``offload``), so the SDK's import
        and per-file work use another core than the other pulls.
        """
        snapshot, watch = self._snapshot(plan, offline, progress)
        commit = snapshot.name
        plan.revision = commit
        plan.sdk_cache = str(snapshot)
        plan.details.pop("_force", None)
        plan.details["commit"] = commit
        listing = cached_listing(plan.ref.name, commit)
        names = self._wanted(plan, snapshot, listing)
        if not names:
            raise ModelNotFoundError(
                f"{plan.ref}: no file at commit {commit[:12]} matches "
                f"--include {plan.details['include']} --exclude {plan.details['exclude']}"
            )

        def check(name: str) -> tuple[Path, str]:
            return self._checked_blob(plan.ref, snapshot, name, listing, watch)

        # Hashing releases the GIL: a sharded checkpoint is verified on every core at once. A
        # few small files are checked here (threads would cost more than they save).
        workers = min(len(names), os.cpu_count() or 1)
        if workers > 1 and _blob_bytes(snapshot, names) >= PARALLEL_VERIFY_MIN:
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(workers, thread_name_prefix="modelhub-verify") as pool:
                checked = list(pool.map(check, names))
        else:
            checked = [check(name) for name in names]
        return [(name, blob, sha) for name, (blob, sha) in zip(names, checked, strict=True)]

    def _checked_blob(
        self,
        ref: ModelRef,
        snapshot: Path,
        name: str,
        listing: Mapping[str, Any] | None,
        watch: Watch | None,
    ) -> tuple[Path, str]:
        """The cache blob behind ``name`` and its sha256, its size checked against the Hub's
        listing, and its content too after a download (``watch``): from what the watch saw
        stream in whole (:mod:`.hf_stream`), else by reading the blob."""
        path = snapshot / name
        if not path.is_file():
            raise IntegrityError(f"{ref}: {name} is missing from the cached snapshot {snapshot}")
        blob = path.resolve()
        stat = blob.stat()
        size = stat.st_size
        info = listing.get(name) if listing is not None else None
        info = info if isinstance(info, dict) else {}
        expected = info.get("lfs_size", info.get("size"))
        if isinstance(expected, int) and size != expected:
            raise SizeMismatchError(
                f"{ref}: {name} in the HF cache has {size} bytes, the Hub listed {expected}"
            )
        sha = info.get("lfs_sha256")
        if not (isinstance(sha, str) and _is_sha256(sha)):
            # No LFS sha256 listed: a blob is named by its ETag, the sha256 for LFS files.
            sha = blob.name if _is_sha256(blob.name) else sha256_file(blob)[0]
        elif watch is not None and not (
            blob.name == sha and watch.received(sha, size, stat.st_mtime_ns)
        ):
            # huggingface_hub checks sizes only: a body corrupted in transit would otherwise be
            # recorded under the sha256 the Hub listed.
            actual = sha256_file(blob)[0]
            if actual != sha:
                blob.unlink(missing_ok=True)
                path.unlink(missing_ok=True)
                raise HashMismatchError(
                    f"{ref}: {name} arrived with sha256 {actual[:16]}…, the Hub lists "
                    f"{sha[:16]}…; the corrupt copy was removed from the HF cache, pull again"
                )
        return blob, sha

    def _drop_stale(self, ref: ModelRef, keep: set[str]) -> None:
        """Remove files an earlier pull of ``ref`` linked that the new snapshot no longer has."""
        old = self.store.manifest(ref)
        for entry in old.files if old else []:
            if entry.path not in keep and not self.store.owners(
                entry.path, excluding=ref.canonical
            ):
                self.store.abspath(entry.path).unlink(missing_ok=True)

    def stage(self, ref: ModelRef, manifest: Manifest, request: StageRequest) -> list[StagedEntry]:
        """``onnx``: export with transformers + torch.onnx, parity-checked (torch extra)."""
        if request.fmt == "onnx":
            from ..staging.hf_onnx import export_hf_onnx

            return [export_hf_onnx(self.store, ref, manifest, request.options)]
        return super().stage(ref, manifest, request)

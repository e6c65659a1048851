"""``hf:ORG/NAME[@REVISION][:PATH]`` — Hugging Face Hub repositories through ``huggingface_hub``.

Follows huggingface_hub 2.2 – 2.4 (``_snapshot_download.py``, ``file_download.py``,
``hf_api.py``, ``constants.py``, ``_tree_cache.py``; the floor, 2.2, is what pyproject allows
and ``make test-hf-floor`` runs the hf tests on). ``tests/protocol/test_hf_client.py`` proves it:
the SDK's ``snapshot_download`` / ``hf_hub_download`` and modelhub, against one recording
server, ask for the same resources, and each finds the other's cache complete with no request.

What a pull asks, in the SDK's order and form: ``GET /api/models/{repo}/revision/{rev}`` (the
request ``snapshot_download`` itself makes; modelhub makes it through ``HfApi.repo_info`` to
learn the repo's file list, for the default file selection, and its id: a legacy id such as
``gpt2`` is answered as ``openai-community/gpt2``, recorded as ``repo_id``), then
``snapshot_download`` of that commit (the tree listing, then ``HEAD``/``GET`` of every selected
file), and ``refs/<rev>`` written as the SDK writes it. Before ``snapshot_download`` runs, the
selected LFS files from 4 MiB up are fetched by modelhub's transfer engine (resumed across
processes, retried, ranged, sha256 checked inline) into the SDK's cache as the SDK lays it out
(:mod:`.hf_engine`); the SDK then finds them in place and fetches the rest. A file
(``hf:ORG/NAME:PATH``, a pasted ``/blob/`` or ``/resolve/`` URL) is ``hf_hub_download``'s, but
for an LFS file from 4 MiB up, which the engine fetches once the SDK's ``HEAD`` has named it
(:func:`.hf_engine.fetch_one`); a folder (``hf:ORG/NAME:PATH/``, a pasted ``/tree/REV/PATH``) is
``snapshot_download(allow_patterns=PATH/)``'s.

The SDK's own cache (``HF_HUB_CACHE``, else ``HUGGINGFACE_HUB_CACHE``, else ``$HF_HOME/hub``,
else ``~/.cache/huggingface/hub``), under the repo id as written (``models--gpt2`` for ``hf:gpt2``,
as the SDK names it), is the download target, so its blobs are shared with every other tool of the
ecosystem; the store entry ``huggingface/ORG/NAME/`` is made of links to those blobs (link
mode), never copies unless asked or across filesystems. Blobs are never modified.

Which files: what ``from_pretrained`` reads (:mod:`.hf_select`): where a folder has
safetensors weights, its copies in other formats are skipped (``selection`` in the manifest
says which, and how many bytes that saved); ``--all-files`` / ``all_files = true`` fetch
everything, ``--include`` / ``--exclude`` select by pattern as the SDK does. They select what
to fetch, never what to remove: files an earlier pull of the same commit fetched stay in the
model (a pull of another commit replaces the model's files; ``rm`` and ``gc`` remove).

A snapshot already complete in the cache is used with no network at all. "Complete" is what
the SDK's cached tree listing of the commit (``trees/<commit>.json``, written by every online
``snapshot_download``) says; a snapshot folder without one (left by single-file downloads) may be
partial, so the Hub is asked then, unless offline. ``--force`` resolves the revision and
downloads every file again (the SDK writes new blobs and renames them over the old ones, so
links made earlier keep their bytes). Errors of the SDK are mapped to modelhub's types.

sha256: the listing's LFS sha256 (the Hub's, and the mirror's, ETag of LFS files, so the blob is
named by it); other files (small git files on the Hub) are hashed. The SDK checks sizes only, so
the bytes of every file it downloads under a sha256 name are checked against it: hashed as they
stream through the SDK's client (:mod:`.hf_stream`), else by reading the blob once it is written.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..config import settings
from ..errors import (
    HashMismatchError,
    IntegrityError,
    ModelhubError,
    ModelNotFoundError,
    NetworkError,
    OfflineError,
    SizeMismatchError,
    UnsupportedError,
    UsageError,
)
from ..refs import ModelRef
from ..store import FileEntry, Manifest, StagedEntry, layout
from ..store.files import sha256_file
from ..upstream import Memo, Recorded, UpstreamStatus, compare, status
from .access import settle
from .base import ModelHub, Plan, StageRequest
from .hf_engine import fetch_one, prefetch, repo_access
from .hf_sdk import (
    blob_bytes,
    cached_commit,
    cached_listing,
    hf_cache_dir,
    is_sha256,
    map_error,
    patterns,
    progress_bars,
    warm_sdk,
    write_ref,
)
from .hf_select import (
    RULE_ALL,
    RULE_FROM_PRETRAINED,
    RULE_INCLUDE,
    Pick,
    base_folder,
    escape,
    selection_rule,
    summary,
)
from .hf_stream import Watch

PARALLEL_VERIFY_MIN = 64 * 2**20  # bytes of blobs from which they are verified in threads


def _download_in_helper(
    root: str, plan: Plan, offline: bool, force: bool
) -> tuple[Plan, list[tuple[str, Path, str]]]:
    """:meth:`HuggingFaceHub.download` in the helper process; the plan comes back updated."""
    from ..store import Store

    hub = HuggingFaceHub(Store(root))  # downloading into the HF cache: the store is not written
    return plan, hub.download(plan, progress=False, offline=offline, force=force)


def _is_file(ref: ModelRef) -> bool:
    """Whether ``ref`` names one file of its repo (``hf:ORG/NAME:PATH``)."""
    return ref.entry is not None and not ref.entry.endswith("/")


class HuggingFaceHub(ModelHub):
    """Hugging Face Hub model repositories (``hf:ORG/NAME[@REVISION][:PATH]``)."""

    name = "hf"
    default_stage = "none"
    stages = ("none", "onnx")
    offload_warm = staticmethod(warm_sdk)

    @classmethod
    def sdk_caches(cls) -> dict[str, str]:
        """huggingface_hub's cache (``HF_HUB_CACHE``, ...), for ``modelhub doctor``."""
        return {"huggingface_hub cache": str(hf_cache_dir().absolute())}

    def preview(
        self, ref: ModelRef, *, offline: bool = False, options: Mapping[str, Any] | None = None
    ) -> Plan:
        """The files a pull would fetch (``--dry-run``), from the Hub's file list: see
        :mod:`.hf_preview`."""
        from .hf_preview import preview

        plan = self.resolve(ref, offline=offline, options=options)
        return preview(plan, self.hub_url, lambda names: Pick(plan, names).kept, offline)

    def resolve(
        self,
        ref: ModelRef,
        *,
        offline: bool = False,
        options: Mapping[str, Any] | None = None,
        force: bool = False,
    ) -> Plan:
        """A plan whose files the SDK fetches (``fetch``); the commit is known after it.

        Raises UsageError for a bad ``include``/``exclude`` (or any with a file reference) or
        an unknown ``task``, before any network access.
        """
        opts = dict(options or {})
        if opts.get("task") is not None:
            from ..staging.hf_onnx import check_task

            check_task(opts["task"])
        include, exclude = patterns(opts.get("include")), patterns(opts.get("exclude"))
        if _is_file(ref) and (include or exclude):
            raise UsageError(f"{ref} names one file: --include/--exclude select files of a repo")
        # --include is the caller's own choice of files: no other selection then.
        rule = RULE_ALL if opts.get("all_files") else RULE_INCLUDE if include else None
        details: dict[str, Any] = {
            "branch": ref.revision or "main",
            "include": include,
            "exclude": exclude,
            "rule": rule or RULE_FROM_PRETRAINED,  # dropped once ``selection`` records it
        }
        if not _is_file(ref):
            details["folder"] = layout.model_dir(ref)
        if ref.entry is not None:
            details["entry"] = ref.entry
        return Plan(
            ref=ref,
            revision=None,
            files=[],
            source=[f"{self.hub_url}/{ref.name}"],
            details=details,
        )

    def satisfies(self, manifest: Manifest, fmt: str, options: Mapping[str, Any]) -> bool:
        """Whether ``manifest`` already is what a pull with ``options`` and stage ``fmt`` asks.

        The same ``include``/``exclude`` patterns; for ``all_files``, a manifest that skipped
        nothing; for ``onnx`` with an explicit ``task``, an ONNX file staged for that task.
        """
        details = manifest.details
        for key in ("include", "exclude"):
            if sorted(patterns(options.get(key))) != sorted(patterns(details.get(key))):
                return False
        selection = details.get("selection")
        if (
            options.get("all_files")
            and selection_rule(details) != RULE_ALL
            and isinstance(selection, dict)
            and selection.get("skipped")
        ):
            return False
        task = options.get("task")
        if fmt == "onnx" and task is not None:
            from ..staging.hf_onnx import canonical_task

            wanted = canonical_task(task)
            return any(
                s.format == "onnx" and s.details.get("task") == wanted for s in manifest.staged
            )
        return True

    def _sdk_args(self, ref: ModelRef, cache: Path) -> dict[str, Any]:
        return {
            "repo_id": ref.name,
            "cache_dir": str(cache),
            "endpoint": self.hub_url,
            "token": settings().hf_token or None,
        }

    def _snapshot(
        self, plan: Plan, offline: bool, progress: bool | None, force: bool
    ) -> tuple[Path, Watch | None]:
        """The snapshot folder of ``plan`` in the HF cache, downloading what is missing, and
        the watch over the download (None when nothing was downloaded)."""
        ref = plan.ref
        if force and offline:
            raise OfflineError(f"offline: --force needs the network for {ref}")
        cache = hf_cache_dir()
        with progress_bars(settings().progress(progress)):
            if _is_file(ref):
                return self._one_file(plan, cache, offline, force, progress)
            unverified = None if force else self._cached(plan, cache, offline)
            if unverified is not None and (offline or plan.details.get("cache_hit")):
                return unverified, None
            return self._online(plan, cache, force, unverified is not None, progress)

    def _cached(self, plan: Plan, cache: Path, offline: bool) -> Path | None:
        """The cached snapshot of ``plan``, or None. ``cache_hit`` is set when its tree listing
        says it holds every selected file; a folder without a listing is returned unverified."""
        import huggingface_hub

        ref, branch = plan.ref, plan.details["branch"]
        commit = cached_commit(ref.name, branch, cache)
        listing = cached_listing(ref.name, commit, cache) if commit else None
        allow = [base_folder(ref)] if base_folder(ref) else plan.details["include"] or None
        ignore = plan.details["exclude"] or None
        if listing is not None:
            pick = Pick(plan, sorted(listing))
            allow, ignore = pick.allow, pick.ignore
        try:
            local = huggingface_hub.snapshot_download(
                **self._sdk_args(ref, cache),
                revision=branch,
                allow_patterns=allow,
                ignore_patterns=ignore,
                local_files_only=True,
            )
        except Exception as exc:  # not (completely) cached: ask the Hub unless offline
            if offline:
                raise map_error(exc, ref, self.hub_url, offline=True) from None
            return None
        plan.details["cache_hit"] = cached_listing(ref.name, Path(local).name, cache) is not None
        return Path(local)

    def _online(
        self, plan: Plan, cache: Path, force: bool, unverified: bool, progress: bool | None
    ) -> tuple[Path, Watch]:
        """Resolve the revision as ``snapshot_download`` does (one ``repo_info`` call: the
        commit, the repo's id and file list), have modelhub's engine fetch the large files
        (:mod:`.hf_engine`), then the SDK the rest of that commit's files."""
        import huggingface_hub

        ref, branch = plan.ref, plan.details["branch"]
        try:
            api = huggingface_hub.HfApi(endpoint=self.hub_url, token=settings().hf_token or None)
            info = api.repo_info(ref.name, revision=branch)
        except Exception as exc:
            error = map_error(exc, ref, self.hub_url, offline=False)
            if unverified and type(error) is NetworkError:
                raise self._unchecked(ref) from None
            raise error from None
        commit = str(info.sha or "")
        if info.id:
            plan.details["repo_id"] = info.id  # a legacy id's canonical one (gpt2: org/gpt2)
        # Who may read it upstream: a mirror serves gated/private models only with a token.
        gated, private = getattr(info, "gated", False), getattr(info, "private", False)
        plan.details["access"] = "private" if private else "gated" if gated else "public"
        siblings = getattr(info, "siblings", None)
        if siblings is None:  # no file list: the caller's patterns only, select after
            allow = [base_folder(ref)] if base_folder(ref) else plan.details["include"] or None
            ignore = plan.details["exclude"] or None
        else:
            pick = Pick(plan, sorted(s.rfilename for s in siblings))
            if pick.empty_folder:
                raise ModelNotFoundError(
                    f"{ref}: {ref.name} has no folder {ref.entry!r} at {branch} on {self.hub_url}"
                )
            allow, ignore = pick.allow, pick.ignore
        try:
            with Watch() as watch:
                args = self._sdk_args(ref, cache)
                done = prefetch(api, args, commit, (allow, ignore), force, progress, watch)
                ignore = [*(ignore or []), *map(escape, done)] or None  # the SDK's: the rest
                snapshot = Path(
                    huggingface_hub.snapshot_download(
                        **self._sdk_args(ref, cache),
                        revision=commit,
                        allow_patterns=allow,
                        ignore_patterns=ignore,
                        force_download=force,
                    )
                )
        except ModelhubError:
            raise  # modelhub's engine's (hf_engine): typed already
        except Exception as exc:
            raise map_error(exc, ref, self.hub_url, offline=False) from None
        write_ref(ref.name, branch, snapshot.name, cache)
        if cached_listing(ref.name, snapshot.name, cache) is None:
            # The SDK fell back to a cached folder of that commit: the Hub did not list it.
            raise self._unchecked(ref)
        plan.details["cache_hit"] = False
        return snapshot, watch

    def _unchecked(self, ref: ModelRef) -> NetworkError:
        return NetworkError(
            f"cannot reach {self.hub_url} to check that the cached snapshot of {ref} is "
            "complete; use --offline to take it as it is"
        )

    def _one_file(
        self, plan: Plan, cache: Path, offline: bool, force: bool, progress: bool | None
    ) -> tuple[Path, Watch | None]:
        """``hf_hub_download`` of a file reference (from the cache when it is there), a large
        LFS file by modelhub's engine (:func:`.hf_engine.fetch_one`)."""
        import huggingface_hub
        from huggingface_hub import errors as hf_errors

        ref = plan.ref
        assert ref.entry is not None
        args = {**self._sdk_args(ref, cache), "filename": ref.entry, "revision": ref.revision}
        watch: Watch | None = None
        path: str | None = None
        plan.details["cache_hit"] = False
        try:
            if not force:
                try:
                    path = huggingface_hub.hf_hub_download(**args, local_files_only=True)
                    plan.details["cache_hit"] = True
                except Exception:
                    if offline:
                        raise
            if path is None:
                with Watch() as watch:
                    path = fetch_one(args, force, progress, watch)
                learned = repo_access(args)  # who may read it: a mirror serves by that
                if learned is not None:
                    plan.details["access"] = learned
        except ModelhubError:
            raise  # modelhub's engine's (hf_engine): typed already
        except hf_errors.RemoteEntryNotFoundError:
            raise ModelNotFoundError(
                f"{ref}: no file {ref.entry!r} in {ref.name} at {plan.details['branch']} on "
                f"{self.hub_url} (a folder is written {ref.entry}/)"
            ) from None
        except Exception as exc:
            raise map_error(exc, ref, self.hub_url, offline=offline) from None
        snapshot = Path(path)
        for _ in ref.entry.split("/"):
            snapshot = snapshot.parent
        plan.sdk_cache = path
        return snapshot, watch

    def _pick(self, plan: Plan, snapshot: Path, listing: Mapping[str, Any] | None) -> list[str]:
        """Repo paths to enter, and the plan's ``selection``: the commit's listing (else the
        folder's files) filtered by patterns and by the selection rule."""
        ref = plan.ref
        if _is_file(ref):
            assert ref.entry is not None
            return [ref.entry]
        if listing is not None:
            names = sorted(listing)
        else:
            names = sorted(
                p.relative_to(snapshot).as_posix() for p in snapshot.rglob("*") if p.is_file()
            )
        pick = Pick(plan, names)
        if pick.empty_folder:
            raise ModelNotFoundError(f"{ref}: the snapshot {snapshot} has no folder {ref.entry!r}")
        plan.details["selection"] = summary(pick.rule, pick.kept, pick.skipped, listing)
        return pick.kept

    def fetch(
        self,
        plan: Plan,
        *,
        progress: bool | None = None,
        offline: bool = False,
        force: bool = False,
    ) -> list[FileEntry]:
        """Download into the HF cache (or find it there) and link every file into the store.

        Raises ModelNotFoundError when no file matches ``include``/``exclude``, IntegrityError
        when a cached file is missing or of another size than the Hub listed.
        """
        if self.offload is not None and not progress:
            done, checked = self.offload.call(
                _download_in_helper, str(self.store.root), plan, offline, force
            )
            plan.revision, plan.sdk_cache, plan.details = (
                done.revision,
                done.sdk_cache,
                done.details,
            )
        else:
            checked = self.download(plan, progress=progress, offline=offline, force=force)
        repo_folder = layout.model_dir(ModelRef(self.name, plan.ref.name, plan.ref.revision))
        entries = []
        used: set[str] = set()
        for name, blob, sha in checked:
            entry, how = self.store.link_in(blob, f"{repo_folder}/{name}", plan.ref, sha)
            used.add(how)
            entries.append(entry)
        plan.details["link_modes"] = sorted(used)
        plan.details.pop("rule", None)
        old = self.store.manifest(plan.ref)
        if "repo_id" not in plan.details and old is not None and old.revision == plan.revision:
            known = old.details.get("repo_id")  # a cache hit: as the Hub answered last time
            if isinstance(known, str):
                plan.details["repo_id"] = known
        # Nothing asked of the Hub (its cache, --offline): as an earlier pull learned, else
        # "unknown", which a mirror serves only with a token.
        settle(plan.details, self.store, plan.ref)
        if old is not None and old.revision == plan.revision:
            # --include/--exclude select what to fetch; what an earlier pull of this commit
            # fetched stays the user's (as with `hf download --include`): rm and gc remove.
            fetched = {e.path for e in entries}
            entries += [
                e
                for e in old.files
                if e.path not in fetched and self.store.abspath(e.path).is_file()
            ]
        else:
            self._drop_stale(plan.ref, {e.path for e in entries})
        return entries

    def download(
        self,
        plan: Plan,
        *,
        progress: bool | None = None,
        offline: bool = False,
        force: bool = False,
    ) -> list[tuple[str, Path, str]]:
        """The SDK's part of :meth:`fetch`: the snapshot in the HF cache, each wanted file
        checked; (repo path, blob, sha256) per file. Sets the plan's revision and SDK cache.

        In a parallel sync this runs in the helper process (``offload``), so the SDK's import
        and per-file work use another core than the other pulls.
        """
        snapshot, watch = self._snapshot(plan, offline, progress, force)
        commit = snapshot.name
        plan.revision = commit
        if plan.sdk_cache is None:
            plan.sdk_cache = str(snapshot)
        plan.details["commit"] = commit
        listing = cached_listing(plan.ref.name, commit)
        names = self._pick(plan, snapshot, listing)
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
        if workers > 1 and blob_bytes(snapshot, names) >= PARALLEL_VERIFY_MIN:
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
        # The blob's name in blobs/ is the ETag (the sha256 of an LFS file); with the 2.x shared
        # Xet store that entry links on to a file named by its Xet hash, which is not a sha256.
        etag = blob.name
        if path.is_symlink():
            first = (path.parent / os.readlink(path)).absolute()
            etag = first.name
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
        if not (isinstance(sha, str) and is_sha256(sha)):
            # No LFS sha256 listed: a blob is named by its ETag, the sha256 for LFS files.
            sha = etag if is_sha256(etag) else None
        if sha is None:
            return blob, sha256_file(blob)[0]
        if watch is not None and not (etag == sha and watch.received(sha, size, stat.st_mtime_ns)):
            # huggingface_hub checks sizes only: a body corrupted in transit would otherwise be
            # recorded under the sha256 the Hub listed.
            actual = sha256_file(blob)[0]
            if actual != sha:
                for gone in (blob, path.parent / os.readlink(path) if path.is_symlink() else blob):
                    gone.unlink(missing_ok=True)
                path.unlink(missing_ok=True)
                raise HashMismatchError(
                    f"{ref}: {name} arrived with sha256 {actual[:16]}…, the Hub lists "
                    f"{sha[:16]}…; the corrupt copy was removed from the HF cache, pull again"
                )
        return blob, sha

    def _drop_stale(self, ref: ModelRef, keep: set[str]) -> None:
        """Remove files an earlier pull of ``ref`` linked from an *older commit* that the new
        one did not bring again (a pull of a new revision replaces the model)."""
        old = self.store.manifest(ref)
        for entry in old.files if old else []:
            if entry.path not in keep and not self.store.owners(
                entry.path, excluding=ref.canonical
            ):
                self.store.abspath(entry.path).unlink(missing_ok=True)

    def check_upstream(self, recorded: Recorded, memo: Memo) -> UpstreamStatus:
        """``HfApi(endpoint).model_info(repo, revision=branch).sha`` (the commit) against the
        recorded commit."""
        from huggingface_hub import HfApi

        ref = recorded.ref
        branch = ref.revision or "main"
        try:
            api = HfApi(endpoint=self.hub_url, token=settings().hf_token or False)
            sha = api.model_info(ref.name, revision=branch).sha
        except Exception as exc:
            raise map_error(exc, ref, self.hub_url, offline=False) from None
        if not sha:
            return status(recorded, "unknown", None, f"commit of {branch}", "the Hub sent no sha")
        return compare(recorded, str(sha), f"commit of {branch}")

    def import_kind(self, src: Path, ref: ModelRef) -> str:
        """A snapshot folder (e.g. one of the Hugging Face cache's)."""
        if src.is_dir() and not _is_file(ref):
            return "snapshot"
        return super().import_kind(src, ref)

    def stage(self, ref: ModelRef, manifest: Manifest, request: StageRequest) -> list[StagedEntry]:
        """``onnx``: export with transformers + torch.onnx, parity-checked (torch extra)."""
        if request.fmt == "onnx":
            if _is_file(ref):
                raise UnsupportedError(f"{ref} is one file: stage its repo or folder instead")
            from ..staging.hf_onnx import export_hf_onnx

            return [export_hf_onnx(self.store, ref, manifest, request.options)]
        return super().stage(ref, manifest, request)

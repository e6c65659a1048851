r"""``torch:`` — torchvision weights (``torch:NAME[@WEIGHTS]``) and torch.hub entrypoints.

The clients followed: torch 2.14.1 ``torch/hub.py`` (``load``, ``_parse_repo_info``,
``_validate_not_a_forked_repo``, ``_get_cache_or_reload``, ``_check_repo_is_trusted``,
``load_state_dict_from_url``, ``HASH_REGEX``) and torchvision 0.29.1 ``torchvision/models/_api.py``
(``Weights``, ``WeightsEnum.get_state_dict``, ``get_model_builder``, ``get_model_weights``).

torchvision: builder and weights come from torchvision's own registry, never a hand-written
table. The weights file is fetched from ``MODELHUB_TORCH_URL`` (or the mirror) at its upstream
path (``/models/<file>``, ``/models/quantized/<file>``), its **full** sha256 checked against the
prefix torch's rule finds in its name (``-([a-f0-9]*)\.``; a name without one publishes no hash
and is accepted with its sha256 recorded), placed in torch's own cache
(``$TORCH_HOME/hub/checkpoints``) so torchvision then builds the model with no network, and
linked into ``pytorch/<file>``.

torch.hub (``torch:OWNER/REPO[:REF]/ENTRY``): running ``hubconf.py`` runs the repository's code,
so it happens only for a trusted repository: ``--trust``, ``MODELHUB_TRUSTED_REPOS``, a line
``OWNER_REPO`` in torch.hub's ``$TORCH_HOME/hub/trusted_list``, or an owner torch.hub trusts by
default (facebookresearch, facebookincubator, pytorch, fairinternal). Trust is decided before
any request. A pull with ``--trust`` appends ``OWNER_REPO`` to ``trusted_list`` once it
succeeded, as ``torch.hub.load(..., trust_repo=True)`` does, so torch.hub then runs that
repository without asking; torch's other rule (any ``OWNER_REPO_REF`` folder in its cache counts
as trusted) is not followed, because modelhub writes those folders itself. No ref means
``main``, else ``master`` (torch's probe); the ref is checked against the repository's
branches and tags through the GitHub API before the zipball is downloaded; the zipball is kept
in the store and extracted into torch.hub's folder ``$TORCH_HOME/hub/OWNER_REPO_REF``, and a
folder torch.hub already has is used (packed into the store) with no request
(:mod:`modelhub.hubs.torch_hub_github`). ``--hub-arg K=V`` (``args`` in a model set) are the
entrypoint's keyword arguments, recorded as ``args`` in the manifest; staging runs the
entrypoint (never forcing ``weights_only`` on a trusted repository's own loads) and records
whether it loaded any weights (``weights: "none"`` with a note when it built an untrained
network).
"""

from __future__ import annotations

import os
import urllib.parse
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Any

from .._frameworks import torch_import_guard
from ..config import settings
from ..errors import (
    ArchiveError,
    HashMismatchError,
    HTTPStatusError,
    OfflineError,
    UnsupportedError,
    UntrustedCodeError,
    UsageError,
)
from ..frameworks.torch_env import (
    TRUSTED_OWNERS,
    add_to_trusted_list,
    checkpoints_dir,
    hash_prefix,
    hub_repo_dir,
    input_shape,
    listed_as_trusted,
    pack_repo_dir,
    trusted_list,
    weights_for,
    zip_commit,
)
from ..refs import ModelRef
from ..refs import parse as parse_ref
from ..store import FileEntry, Manifest, StagedEntry, layout
from ..store.files import place_file, sha256_file
from ..upstream import Memo, Recorded, UpstreamStatus, check_http, compare
from . import torch_hub_github as github
from .access import settle
from .base import ModelHub, Plan, RemoteFile, StageRequest

torch_import_guard()  # before any torch import in this module (see _frameworks)


def install_zipball(zipball: Path, repo_dir: Path, tmp_dir: Path) -> None:
    """Extract a GitHub zipball safely and move its single top folder to ``repo_dir``."""
    import shutil

    from ..store.archives import extract_zip

    scratch = tmp_dir / f".zipball.{os.getpid()}.{os.urandom(4).hex()}"
    extract_zip(zipball, scratch)
    try:
        tops = [p for p in scratch.iterdir()]
        top = tops[0] if len(tops) == 1 and tops[0].is_dir() else scratch
        if not (top / "hubconf.py").is_file():
            raise ArchiveError(f"{zipball.name} has no hubconf.py at its top: not a torch.hub repo")
        repo_dir.parent.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(repo_dir, ignore_errors=True)
        shutil.move(str(top), str(repo_dir))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _hub_args(raw: Any) -> dict[str, Any]:
    """The entrypoint's keyword arguments (``--hub-arg``): names to JSON values (recorded in
    the manifest). Raises UsageError otherwise."""
    import json

    if raw is None:
        return {}
    if not isinstance(raw, Mapping) or not all(
        isinstance(k, str) and k.isidentifier() for k in raw
    ):
        raise UsageError("hub args must map keyword names to values (--hub-arg KEY=VALUE)")
    try:
        return dict(json.loads(json.dumps(dict(raw))))
    except (TypeError, ValueError):
        raise UsageError('hub args must be JSON values (true, 3, "text", [1, 2], ...)') from None


class TorchHub(ModelHub):
    """PyTorch: torchvision weights and (trusted) torch.hub GitHub entrypoints."""

    name = "torch"
    default_stage = "onnx"
    stages = ("none", "onnx")

    @classmethod
    def sdk_caches(cls) -> dict[str, str]:
        """torch.hub's weights folder (``TORCH_HOME``), for ``modelhub doctor``."""
        return {"torch.hub checkpoints": str(checkpoints_dir().absolute())}

    # --- torchvision ---------------------------------------------------------------------------
    def weights_url(self, upstream: str) -> str:
        """``upstream`` (a download.pytorch.org URL) moved onto this hub's base URL."""
        path = urllib.parse.urlsplit(upstream).path
        return f"{self.hub_url}{path}"

    def resolve(
        self,
        ref: ModelRef,
        *,
        offline: bool = False,
        options: Mapping[str, Any] | None = None,
        force: bool = False,
    ) -> Plan:
        """torchvision: the weights file named by torchvision; torch.hub: the repo zipball
        (the default branch probed and trust decided here, before any other request)."""
        opts = dict(options or {})
        if ref.entry is not None:
            return self._resolve_hub(ref, opts, offline)
        weights = weights_for(ref)
        filename = layout.safe_filename(Path(urllib.parse.urlsplit(weights.url).path).name)
        url = self.weights_url(weights.url)
        pinned = opts.get("sha256")
        return Plan(
            ref=ref,
            revision=f"{weights.__class__.__name__}.{weights.name}",
            files=[RemoteFile(url, layout.file_path(ref, filename), sha256=pinned or None)],
            source=[url],
            sdk_cache=str(checkpoints_dir() / filename),
            details={
                "weights": f"{weights.__class__.__name__}.{weights.name}",
                "upstream_url": weights.url,
                "sha256_prefix": hash_prefix(filename),
                "input_shape": list(input_shape(opts, weights)),
            },
        )

    def fetch(
        self,
        plan: Plan,
        *,
        progress: bool | None = None,
        offline: bool = False,
        force: bool = False,
    ) -> list[FileEntry]:
        """Reuse or fill torch's cache; verify the full sha256 against the prefix the file's
        name publishes (torch.hub's rule). A name that publishes none (torchvision's quantized
        weights) is accepted as torch accepts it, its sha256 recorded in the manifest (and
        pinned by ``modelhub.lock``)."""
        if plan.ref.entry is not None:
            return self._fetch_hub(plan, progress, offline, force)
        rf = plan.files[0]
        filename = Path(rf.rel).name
        prefix: str | None = plan.details["sha256_prefix"]
        cached = checkpoints_dir() / filename
        if cached.is_file() and not force:
            sha, _ = sha256_file(cached)
            if sha.startswith(prefix or "") and rf.sha256 in (None, sha):
                entry, how = self.store.link_in(cached, rf.rel, plan.ref, sha)
                plan.details["link_mode"] = how
                plan.details["cache_hit"] = True
                return [entry]
        entry = self._fetch_one(plan.ref, rf, progress, offline)
        if prefix is not None and not entry.sha256.startswith(prefix):
            self.store.abspath(entry.path).unlink(missing_ok=True)
            raise HashMismatchError(
                f"{rf.url}: sha256 {entry.sha256[:16]}… does not start with the prefix {prefix} "
                f"in its name {filename}; the file was not kept"
            )
        place_file(self.store.abspath(entry.path), cached, settings().link_mode)
        plan.details["cache_hit"] = False
        return [entry]

    # --- torch.hub ---------------------------------------------------------------------------
    def _trusted_by(self, owner: str, repo: str, options: Mapping[str, Any]) -> str | None:
        """Why ``owner/repo``'s code may run (None: it may not). Decided before any request;
        ``--trust`` is named only when nothing else trusts the repository (only then does a
        pull append it to torch.hub's ``trusted_list``, as torch.hub does)."""
        if listed_as_trusted(owner, repo):
            return "trusted_list"
        if owner in TRUSTED_OWNERS:
            return "owner"
        if f"{owner}/{repo}" in settings().trusted_repos:
            return "MODELHUB_TRUSTED_REPOS"
        if options.get("trust"):
            return "--trust"
        return None

    def _resolve_hub(self, ref: ModelRef, options: dict[str, Any], offline: bool) -> Plan:
        repo = ref.name
        owner, name = repo.split("/")
        trusted_by = self._trusted_by(owner, name, options)
        if trusted_by is None:
            raise UntrustedCodeError(
                f"{ref} runs code from github.com/{repo} (its hubconf.py); refusing: pass --trust "
                f"or add {repo} to MODELHUB_TRUSTED_REPOS (or to torch.hub's "
                f"{trusted_list()}) if you trust it"
            )
        args = _hub_args(options.get("hub_args"))
        git_ref = ref.revision or github.default_branch(owner, name, offline=offline)
        url = github.zipball_url(repo, git_ref)
        zip_name = layout.safe_filename(f"{name}-{git_ref.replace('/', '_')}.zip")
        zip_rel = layout.file_path(ref, zip_name)
        return Plan(
            ref=ref,
            revision=None,
            files=[RemoteFile(url, zip_rel)],
            source=[url],
            sdk_cache=str(hub_repo_dir(owner, name, git_ref)),
            details={
                "repo": repo,
                "git_ref": git_ref,
                "entry": ref.entry,
                "zipball": zip_rel,
                "input_shape": list(input_shape(options)),
                "args": args,
                "trusted_by": trusted_by,
            },
        )

    def _fetch_hub(
        self, plan: Plan, progress: bool | None, offline: bool, force: bool
    ) -> list[FileEntry]:
        """The repository into the store (one zipball) and into torch.hub's cache folder.

        Without ``force``, what is already there is used with no request, as torch.hub does:
        the store's zipball (extracted again if torch's folder is gone), else torch's folder
        (packed into the store's zipball). Else the ref is checked and the zipball downloaded.
        """
        rf, details = plan.files[0], plan.details
        repo_dir = Path(str(plan.sdk_cache))
        stored = self.store.abspath(rf.rel)
        if not force and stored.is_file() and not stored.is_symlink():
            sha, size = sha256_file(stored)
            entry = FileEntry(rf.rel, sha, size)
            if not (repo_dir / "hubconf.py").is_file():
                install_zipball(stored, repo_dir, self.store.tmp_dir)
            details["cache_hit"] = True
            before = self.store.manifest(plan.ref)  # what the ref check found then
            for key in ("ref_kind", "commit", "ref_check", "zipball_from"):
                if before is not None and key in before.details:
                    details[key] = before.details[key]
        elif not force and (repo_dir / "hubconf.py").is_file():
            entry = self._pack_torch_folder(plan, repo_dir)
            details["zipball_from"] = "torch.hub cache"
            details["cache_hit"] = True
        else:
            if offline:
                raise OfflineError(
                    f"offline: {plan.ref} needs github.com/{details['repo']} at "
                    f"{details['git_ref']}, which is neither in the store nor in torch.hub's cache"
                )
            entry = self._download_zipball(plan, progress)
            details["access"] = "public"  # the zipball came with no credentials
            try:
                install_zipball(stored, repo_dir, self.store.tmp_dir)
            except BaseException:
                stored.unlink(missing_ok=True)
                raise
        # From a cache with no request (a private repo's folder, say): as an earlier pull of the
        # repository learned, else "unknown", which a mirror serves only with a token.
        settle(details, self.store, plan.ref)
        commit = zip_commit(stored)
        if commit:
            details["commit"] = commit
        plan.revision = entry.sha256
        if details.get("trusted_by") == "--trust":
            owner, _, name = str(details["repo"]).partition("/")
            add_to_trusted_list(owner, name)
        return [entry]

    def _download_zipball(self, plan: Plan, progress: bool | None) -> FileEntry:
        """Check the ref with the GitHub API, then download the zipball (300 → the branch)."""
        details, rf = plan.details, plan.files[0]
        owner, _, name = str(details["repo"]).partition("/")
        git_ref = str(details["git_ref"])
        if github.api_base() is None:
            details["ref_check"] = "skipped"
        else:
            found = github.check_ref(owner, name, git_ref)
            details["ref_kind"], details["commit"] = found.kind, found.commit
        try:
            return self._fetch_one(plan.ref, rf, progress, False, record=details)
        except HTTPStatusError as exc:
            if exc.status != 300:
                raise
        # Both a tag and a branch: torch.hub warns and takes the branch.
        branch = RemoteFile(
            github.zipball_url(str(details["repo"]), f"refs/heads/{git_ref}"), rf.rel
        )
        plan.source = [branch.url]
        details["ambiguous_ref"] = "branch taken (HTTP 300: a tag and a branch)"
        return self._fetch_one(plan.ref, branch, progress, False, record=details)

    def _pack_torch_folder(self, plan: Plan, repo_dir: Path) -> FileEntry:
        """torch.hub's folder of the repository, packed into the store as its zipball."""
        owner, _, name = str(plan.details["repo"]).partition("/")
        top = f"{owner}-{name}-{str(plan.details['git_ref']).replace('/', '_')}"
        rf = plan.files[0]
        part = self.store.tmp_path(plan.ref, Path(rf.rel).name)
        try:
            pack_repo_dir(repo_dir, top, part)
            sha, size = sha256_file(part)
        except BaseException:
            part.unlink(missing_ok=True)
            raise
        return self.store.publish(part, rf.rel, plan.ref, sha, size)

    def satisfies(self, manifest: Manifest, fmt: str, options: Mapping[str, Any]) -> bool:
        """torch.hub entrypoints: False when ``options`` name other ``--hub-arg``s than the
        stored model was made with (a pull naming none takes the stored one)."""
        asked = options.get("hub_args")
        if parse_ref(manifest.ref).entry is None or asked is None:
            return True
        return dict(asked) == dict(manifest.details.get("args") or {})

    def lock_pin(self, files: list[dict[str, Any]]) -> str | None:
        """torchvision weights whose file name publishes no hash: the locked sha256."""
        if len(files) != 1:
            return None
        name = PurePosixPath(str(files[0]["path"])).name
        if name.endswith(".zip") or hash_prefix(name) is not None:
            return None
        return str(files[0]["sha256"])

    # --- outdated, import ----------------------------------------------------------------------
    def check_upstream(self, recorded: Recorded, memo: Memo) -> UpstreamStatus:
        """torchvision: the weights enum member's file name now (the installed torchvision's
        registry; no request at all) against the recorded one; torch.hub repos: HEAD the
        zipball, as for a plain URL."""
        ref = recorded.ref
        if ref.entry is not None:
            git_ref = ref.revision
            if git_ref is None and recorded.files:  # the branch the probe found: in the name
                stem = PurePosixPath(recorded.files[0][0]).name.removesuffix(".zip")
                git_ref = stem.removeprefix(f"{ref.name.split('/')[1]}-")
            url = github.zipball_url(ref.name, git_ref or "main")
            return check_http(recorded, url, "HEAD", recorded.files[0][1])
        try:
            weights = weights_for(ref)
        except UsageError as exc:  # torchvision is not installed: its registry is the source
            raise UnsupportedError(str(exc)) from None
        current = PurePosixPath(urllib.parse.urlsplit(weights.url).path).name
        recorded_name = PurePosixPath(recorded.files[0][0]).name if recorded.files else ""
        how = f"torchvision {type(weights).__name__}.{weights.name} file"
        return compare(recorded, current, how, shown=recorded_name)

    def import_kind(self, src: Path, ref: ModelRef) -> str:
        """torchvision weights (``.pth``/``.pt``, the sha256 prefix in the name checked)."""
        if ref.entry is None and src.is_file() and src.name.lower().endswith((".pth", ".pt")):
            return "weights-file"
        return super().import_kind(src, ref)

    # --- staging -------------------------------------------------------------------------------
    def stage(self, ref: ModelRef, manifest: Manifest, request: StageRequest) -> list[StagedEntry]:
        """``onnx``: build the torchvision model with its weights (or run the entrypoint with
        the recorded ``args``), export, check parity."""
        if request.fmt != "onnx":
            return super().stage(ref, manifest, request)
        from ..staging.torchvision_onnx import export_torch_hub, export_torchvision

        if ref.entry is not None:
            # The entrypoint's own torch.hub downloads of upstream weights go where this hub's
            # are going (MODELHUB_TORCH_URL or the mirror), not around it.
            weights_host = self.row.endpoints[0].upstream
            moved = {weights_host: self.hub_url} if self.hub_url != weights_host else {}
            return [export_torch_hub(self.store, ref, manifest, request.options, moved)]
        return [export_torchvision(self.store, ref, manifest, request.options)]

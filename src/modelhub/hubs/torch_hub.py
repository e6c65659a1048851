"""``torch:`` — torchvision weights (``torch:NAME[@WEIGHTS]``) and torch.hub entrypoints.

torchvision: builder and weights come from torchvision's own registry
(``get_model_builder``/``get_model_weights``), never a hand-written table. The weights file is
fetched from ``MODELHUB_TORCH_URL`` (or the mirror) with its **full** sha256 checked against the
hash prefix in its file name, placed in torch's own cache (``$TORCH_HOME/hub/checkpoints``) so
torchvision then builds the model with no network, and linked into ``pytorch/<file>``.

torch.hub: running ``hubconf.py`` runs the repository's code, so it happens only with
``--trust`` or a repository listed in ``MODELHUB_TRUSTED_REPOS``.
"""

from __future__ import annotations

import os
import re
import urllib.parse
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .._frameworks import torch_import_guard
from ..config import settings
from ..errors import (
    ArchiveError,
    HashMismatchError,
    ModelNotFoundError,
    UntrustedCodeError,
    UsageError,
)
from ..refs import ModelRef
from ..store import FileEntry, Manifest, StagedEntry, layout
from ..store.files import place_file, sha256_file
from .base import ModelHub, Plan, RemoteFile, StageRequest

torch_import_guard()  # before any torch import in this module (see _frameworks)

# torch.hub's convention: "<name>-<sha256 prefix>.<ext>"; we demand at least 8 hex digits.
HASH_PREFIX = re.compile(r"-([a-f0-9]+)\.[A-Za-z0-9]+$")
MIN_PREFIX = 8


def torch_home() -> Path:
    """torch's cache root, from the environment now: ``$TORCH_HOME`` or ``~/.cache/torch``."""
    if os.environ.get("TORCH_HOME"):
        return Path(os.environ["TORCH_HOME"]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "torch"


def checkpoints_dir() -> Path:
    """Where torch.hub (and torchvision) look for downloaded weights."""
    return torch_home() / "hub" / "checkpoints"


def hash_prefix(filename: str) -> str:
    """The sha256 prefix in a torch.hub file name; UsageError-free: IntegrityError if absent."""
    match = HASH_PREFIX.search(filename)
    if not match or len(match.group(1)) < MIN_PREFIX:
        raise HashMismatchError(
            f"{filename} carries no sha256 prefix of at least {MIN_PREFIX} hex digits in its "
            "name, so its content cannot be verified"
        )
    return match.group(1)


def hub_repo_dir(owner: str, repo: str, git_ref: str) -> Path:
    """torch.hub's folder for a repository at a ref: ``$TORCH_HOME/hub/OWNER_REPO_REF``."""
    return torch_home() / "hub" / "_".join([owner, repo, git_ref.replace("/", "_")])


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


def input_shape(options: Mapping[str, Any], weights: Any = None) -> tuple[int, ...]:
    """The example input shape: ``--input-shape`` or the weights' own transforms/metadata."""
    raw = options.get("input_shape")
    if raw:
        try:
            shape = tuple(int(x) for x in str(raw).replace("x", ",").split(","))
        except ValueError:
            raise UsageError(f"--input-shape {raw!r} is not like 1,3,224,224") from None
        if not shape or any(d <= 0 for d in shape):
            raise UsageError(f"--input-shape {raw!r} needs positive sizes")
        return shape
    if weights is not None:
        meta = getattr(weights, "meta", {}) or {}
        if meta.get("input_shape"):
            return tuple(int(d) for d in meta["input_shape"])
        try:
            crop = weights.transforms().crop_size
            size = int(crop[0] if isinstance(crop, list | tuple) else crop)
            return (1, 3, size, size)
        except Exception:
            pass
    return (1, 3, 224, 224)


class TorchHub(ModelHub):
    """PyTorch: torchvision weights and (trusted) torch.hub GitHub entrypoints."""

    name = "torch"
    framework_name = "pytorch"
    default_stage = "onnx"
    stages = ("none", "onnx")

    # --- torchvision ---------------------------------------------------------------------------
    @staticmethod
    def weights_for(ref: ModelRef) -> Any:
        """torchvision's weights enum member for ``ref`` (DEFAULT unless named)."""
        try:
            import torchvision.models as tvm
        except ImportError:
            raise UsageError(
                "torch: models need torchvision: pip install 'modelhub[torch]'"
            ) from None
        try:
            enum = tvm.get_model_weights(ref.name)
        except (ValueError, KeyError):
            known = ", ".join(sorted(tvm.list_models())[:8])
            raise ModelNotFoundError(
                f"torchvision has no model {ref.name!r} (e.g. {known}, ...)"
            ) from None
        member = ref.revision or "DEFAULT"
        try:
            return enum[member]
        except KeyError:
            names = ", ".join(w.name for w in enum)
            raise ModelNotFoundError(
                f"{ref.name} has no weights {member!r}; choose one of {names}"
            ) from None

    def weights_url(self, upstream: str) -> str:
        """``upstream`` (a download.pytorch.org URL) moved onto this hub's base URL."""
        path = urllib.parse.urlsplit(upstream).path
        return f"{self.hub_url}{path}"

    def resolve(
        self, ref: ModelRef, *, offline: bool = False, options: Mapping[str, Any] | None = None
    ) -> Plan:
        """torchvision: the weights file named by torchvision; torch.hub: the repo zipball."""
        if ref.is_torch_hub:
            return self._resolve_hub(ref, dict(options or {}))
        weights = self.weights_for(ref)
        filename = layout.safe_filename(Path(urllib.parse.urlsplit(weights.url).path).name)
        prefix = hash_prefix(filename)
        url = self.weights_url(weights.url)
        return Plan(
            ref=ref,
            revision=f"{weights.__class__.__name__}.{weights.name}",
            files=[RemoteFile(url, layout.file_path(ref, filename))],
            source=[url],
            sdk_cache=str(checkpoints_dir() / filename),
            details={
                "weights": f"{weights.__class__.__name__}.{weights.name}",
                "upstream_url": weights.url,
                "sha256_prefix": prefix,
                "input_shape": list(input_shape(options or {}, weights)),
            },
        )

    def fetch(
        self, plan: Plan, *, progress: bool | None = None, offline: bool = False
    ) -> list[FileEntry]:
        """Reuse or fill torch's cache, verify the full sha256 against the name's prefix."""
        if plan.ref.is_torch_hub:
            return self._fetch_hub(plan, progress, offline)
        rf = plan.files[0]
        filename = Path(rf.rel).name
        prefix = plan.details["sha256_prefix"]
        cached = checkpoints_dir() / filename
        if cached.is_file():
            sha, _ = sha256_file(cached)
            if sha.startswith(prefix):
                entry, how = self.store.link_in(cached, rf.rel, plan.ref, sha)
                plan.details["link_mode"] = how
                plan.details["cache_hit"] = True
                return [entry]
        entry = self._fetch_one(plan.ref, rf, progress, offline)
        if not entry.sha256.startswith(prefix):
            self.store.abspath(entry.path).unlink(missing_ok=True)
            raise HashMismatchError(
                f"{rf.url}: sha256 {entry.sha256[:16]}… does not start with the prefix {prefix} "
                f"in its name {filename}; the file was not kept"
            )
        place_file(self.store.abspath(entry.path), cached, settings().link_mode)
        plan.details["cache_hit"] = False
        return [entry]

    # --- torch.hub ---------------------------------------------------------------------------
    def _resolve_hub(self, ref: ModelRef, options: dict[str, Any]) -> Plan:
        repo = ref.name
        if not (options.get("trust") or repo in settings().trusted_repos):
            raise UntrustedCodeError(
                f"{ref} runs code from github.com/{repo} (its hubconf.py); refusing: pass --trust "
                f"or add {repo} to MODELHUB_TRUSTED_REPOS if you trust it"
            )
        git_ref = ref.revision or "main"
        url = f"{settings().hub_url('github')}/{repo}/zipball/{urllib.parse.quote(git_ref)}"
        owner, name = repo.split("/")
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
            },
        )

    def _fetch_hub(self, plan: Plan, progress: bool | None, offline: bool) -> list[FileEntry]:
        """The zipball into the store, extracted safely into torch.hub's own cache layout."""
        entry = self._fetch_one(plan.ref, plan.files[0], progress, offline, record=plan.details)
        plan.revision = entry.sha256
        try:
            install_zipball(
                self.store.abspath(entry.path), Path(str(plan.sdk_cache)), self.store.tmp_dir
            )
        except BaseException:
            self.store.abspath(entry.path).unlink(missing_ok=True)
            raise
        return [entry]

    # --- staging -------------------------------------------------------------------------------
    def stage(self, ref: ModelRef, manifest: Manifest, request: StageRequest) -> list[StagedEntry]:
        """``onnx``: build the torchvision model with its weights, export, check parity."""
        if request.fmt != "onnx":
            return super().stage(ref, manifest, request)
        from ..staging.torchvision_onnx import export_torch_hub, export_torchvision

        if ref.is_torch_hub:
            return [export_torch_hub(self.store, ref, manifest, request.options)]
        return [export_torchvision(self.store, ref, manifest, request.options)]

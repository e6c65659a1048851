"""``hf:ORG/NAME[@REVISION]`` — Hugging Face Hub repositories through ``huggingface_hub``.

The SDK's own cache (``HF_HUB_CACHE``, else ``$HF_HOME/hub``, else ``~/.cache/huggingface/hub``)
is the download target, so its blobs are shared with every other tool of the ecosystem; the store
entry ``huggingface/ORG/NAME/`` is made of links to those blobs (link mode), never copies unless
asked or across filesystems. Blobs are never modified.

A snapshot already complete in the cache is used with no network at all (``local_files_only``
first); ``--force`` asks the Hub again. Errors of the SDK are mapped to modelhub's types.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..config import settings
from ..errors import (
    AuthError,
    ModelhubError,
    ModelNotFoundError,
    NetworkError,
    OfflineError,
)
from ..refs import ModelRef
from ..store import FileEntry, Manifest, StagedEntry, layout
from ..store.files import sha256_file
from .base import ModelHub, Plan, StageRequest

_HEX = frozenset("0123456789abcdef")
TOKEN_HINT = "set HF_TOKEN (or run `hf auth login`) with a token that has access"


def hf_cache_dir() -> Path:
    """The Hugging Face hub cache, resolved from the environment now (not at import)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "huggingface" / "hub"


def _is_sha256(text: str) -> bool:
    return len(text) == 64 and set(text) <= _HEX


def _map_error(exc: Exception, ref: ModelRef, endpoint: str) -> ModelhubError:
    """Turn a huggingface_hub exception into modelhub's typed error (one line, no token)."""
    from huggingface_hub import errors as hf_errors

    has_token = bool(settings().hf_token)
    if isinstance(exc, hf_errors.GatedRepoError):
        return AuthError(
            f"{ref} is gated on {endpoint}: accept its terms on the Hub and {TOKEN_HINT}"
        )
    if isinstance(exc, hf_errors.RevisionNotFoundError):
        return ModelNotFoundError(
            f"{ref}: revision {ref.revision or 'main'!r} not found on {endpoint}"
        )
    if isinstance(exc, hf_errors.RepositoryNotFoundError):
        status = getattr(getattr(exc, "response", None), "status_code", None)
        if status in (401, 403):
            hint = "the token was rejected" if has_token else TOKEN_HINT
            return AuthError(f"{ref} is private or gated on {endpoint}: {hint}")
        return ModelNotFoundError(f"no repository {ref.name!r} on {endpoint}")
    if isinstance(exc, hf_errors.RemoteEntryNotFoundError):
        return ModelNotFoundError(f"{ref}: a file listed by {endpoint} is missing there")
    if isinstance(exc, hf_errors.OfflineModeIsEnabled | hf_errors.LocalEntryNotFoundError):
        return OfflineError(
            f"offline: {ref} is not complete in the Hugging Face cache {hf_cache_dir()}"
        )
    if isinstance(exc, hf_errors.HfHubHTTPError):
        status = getattr(getattr(exc, "response", None), "status_code", None)
        if status in (401, 403):
            return AuthError(f"{ref}: access denied by {endpoint} (HTTP {status}); {TOKEN_HINT}")
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return NetworkError(f"{ref}: {endpoint} answered HTTP {status}: {first}")
    if isinstance(exc, OSError | ConnectionError | TimeoutError):
        return NetworkError(f"cannot reach {endpoint} for {ref}: {type(exc).__name__}")
    return ModelhubError(
        f"{ref}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    )


class HuggingFaceHub(ModelHub):
    """Hugging Face Hub model repositories (``hf:ORG/NAME[@REVISION]``)."""

    name = "hf"
    framework_name = "huggingface"
    default_stage = "none"
    stages = ("none", "onnx")

    def resolve(
        self, ref: ModelRef, *, offline: bool = False, options: Mapping[str, Any] | None = None
    ) -> Plan:
        """A plan whose files the SDK fetches (``fetch``); the commit is known after it."""
        opts = dict(options or {})
        return Plan(
            ref=ref,
            revision=None,
            files=[],
            source=[f"{self.hub_url}/{ref.name}"],
            details={
                "branch": ref.revision or "main",
                "folder": layout.model_dir(ref),
                "include": list(opts.get("include") or []),
                "exclude": list(opts.get("exclude") or []),
                "_force": bool(opts.get("force")),
            },
        )

    def _snapshot(self, plan: Plan, offline: bool, progress: bool | None) -> Path:
        import huggingface_hub
        from huggingface_hub.utils import disable_progress_bars, enable_progress_bars

        ref = plan.ref
        quiet = progress is False or (progress is None and (settings().quiet or not os.isatty(2)))
        (disable_progress_bars if quiet else enable_progress_bars)()
        kwargs: dict[str, Any] = {
            "repo_id": ref.name,
            "revision": ref.revision or "main",
            "cache_dir": str(hf_cache_dir()),
            "endpoint": self.hub_url,
            "allow_patterns": plan.details["include"] or None,
            "ignore_patterns": plan.details["exclude"] or None,
            "token": settings().hf_token or None,
        }
        if not plan.details.get("_force"):
            try:
                return Path(huggingface_hub.snapshot_download(**kwargs, local_files_only=True))
            except Exception as exc:  # not (completely) cached: ask the Hub unless offline
                if offline:
                    raise _map_error(exc, ref, self.hub_url) from None
        elif offline:
            raise OfflineError(f"offline: --force needs the network for {ref}")
        try:
            return Path(huggingface_hub.snapshot_download(**kwargs))
        except Exception as exc:
            raise _map_error(exc, ref, self.hub_url) from None

    def fetch(
        self, plan: Plan, *, progress: bool | None = None, offline: bool = False
    ) -> list[FileEntry]:
        """Download into the HF cache (or find it there) and link every file into the store."""
        snapshot = self._snapshot(plan, offline, progress)
        plan.revision = snapshot.name
        plan.sdk_cache = str(snapshot)
        plan.details.pop("_force", None)
        plan.details["commit"] = snapshot.name
        folder = plan.details["folder"]
        entries = []
        used: set[str] = set()
        for path in sorted(p for p in snapshot.rglob("*") if p.is_file()):
            rel_in_repo = path.relative_to(snapshot).as_posix()
            blob = path.resolve()
            sha = blob.name if _is_sha256(blob.name) else sha256_file(blob)[0]
            entry, how = self.store.link_in(blob, f"{folder}/{rel_in_repo}", plan.ref, sha)
            used.add(how)
            entries.append(entry)
        plan.details["link_modes"] = sorted(used)
        self._drop_stale(plan.ref, {e.path for e in entries})
        return entries

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

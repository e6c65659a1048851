"""Every environment variable modelhub reads, read in one place.

``settings()`` reads the environment at call time (not at import), so a test or a caller that
changes ``os.environ`` sees the change on the next call.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

UPSTREAM_URLS: dict[str, str] = {
    "hf": "https://huggingface.co",
    "tfhub": "https://tfhub.dev",
    "kaggle": "https://www.kaggle.com",
    "onnx": "https://raw.githubusercontent.com/onnx/models/main",
    "torch": "https://download.pytorch.org",
    "keras": "https://storage.googleapis.com",
    "github": "https://github.com",
}

# The path under MODELHUB_MIRROR that stands in for each hub (see the mirror URL space).
MIRROR_PATHS: dict[str, str] = {
    "hf": "hf",
    "tfhub": "tfhub",
    "kaggle": "kaggle",
    "onnx": "onnx",
    "torch": "torch",
    "keras": "keras",
    "github": "torch/github",
}

LINK_MODES = ("auto", "reflink", "hardlink", "symlink", "copy")

_TRUE = {"1", "true", "yes", "on"}


def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in _TRUE


def _int(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    try:
        return int(raw) if raw else default
    except ValueError:
        return default


def _float(name: str, default: float) -> float:
    raw = os.environ.get(name, "").strip()
    try:
        return float(raw) if raw else default
    except ValueError:
        return default


@dataclass(frozen=True)
class Settings:
    """A snapshot of modelhub's configuration."""

    store_root: Path
    link_mode: str
    mirror: str | None
    hub_urls: dict[str, str]
    trusted_repos: frozenset[str]
    offline: bool
    debug: bool
    quiet: bool
    timeout: float
    retries: int
    connections: int
    hf_token: str | None
    remote: str | None = None

    def hub_url(self, hub: str) -> str:
        """Return the base URL for ``hub`` (no trailing slash)."""
        return self.hub_urls[hub]


def _hub_url(hub: str, mirror: str | None) -> str:
    explicit = os.environ.get(f"MODELHUB_{hub.upper()}_URL", "").strip()
    if explicit:
        return explicit.rstrip("/")
    if hub == "hf" and os.environ.get("HF_ENDPOINT", "").strip():
        return os.environ["HF_ENDPOINT"].strip().rstrip("/")
    if mirror:
        return f"{mirror}/{MIRROR_PATHS[hub]}"
    return UPSTREAM_URLS[hub]


def settings() -> Settings:
    """Read the environment and return the current settings."""
    from .store.lookup import store_root

    mirror = os.environ.get("MODELHUB_MIRROR", "").strip().rstrip("/") or None
    link_mode = os.environ.get("MODELHUB_LINK_MODE", "auto").strip().lower() or "auto"
    trusted = frozenset(
        r.strip() for r in os.environ.get("MODELHUB_TRUSTED_REPOS", "").split(",") if r.strip()
    )
    token = os.environ.get("HF_TOKEN") or os.environ.get("HUGGING_FACE_HUB_TOKEN") or None
    return Settings(
        store_root=Path(store_root()),
        link_mode=link_mode,
        mirror=mirror,
        hub_urls={hub: _hub_url(hub, mirror) for hub in UPSTREAM_URLS},
        trusted_repos=trusted,
        offline=_flag("MODELHUB_OFFLINE") or _flag("HF_HUB_OFFLINE"),
        debug=_flag("MODELHUB_DEBUG"),
        quiet=_flag("MODELHUB_QUIET"),
        timeout=_float("MODELHUB_TIMEOUT", 30.0),
        retries=_int("MODELHUB_RETRIES", 5),
        connections=max(1, _int("MODELHUB_CONNECTIONS", 4)),
        hf_token=token,
        remote=os.environ.get("MODELHUB_REMOTE", "").strip() or None,
    )

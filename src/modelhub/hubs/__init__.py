"""Hub adapters, one module per hub, all behind :class:`ModelHub`."""

from __future__ import annotations

import importlib

from ..errors import UnsupportedError
from ..refs import HUBS
from ..store import Store
from .base import ModelHub, Plan, RemoteFile, StageRequest, StorageType

# hub name → "module:Class"; imported on first use so the CLI starts fast.
_REGISTRY: dict[str, str] = {
    "onnx": "modelhub.hubs.onnx_zoo:OnnxZooHub",
    "url": "modelhub.hubs.url:UrlHub",
    "hf": "modelhub.hubs.hf:HuggingFaceHub",
    "torch": "modelhub.hubs.torch_hub:TorchHub",
    "tfhub": "modelhub.hubs.tfhub:TFHubHub",
    "kaggle": "modelhub.hubs.tfhub:KaggleHub",
    "keras": "modelhub.hubs.keras_apps:KerasHub",
}

_PLANNED: dict[str, str] = {}


def get_hub(name: str, store: Store | None = None) -> ModelHub:
    """Return the adapter for hub ``name`` (e.g. ``"onnx"``) bound to ``store``.

    Raises UnsupportedError (exit 2) for a hub of the grammar that is not implemented yet.
    """
    key = name.lower().rstrip(":")
    if key not in _REGISTRY:
        if key in _PLANNED:
            raise UnsupportedError(f"{key}: references ({_PLANNED[key]}) are not supported yet")
        raise UnsupportedError(f"unknown hub {name!r}; expected one of {', '.join(HUBS)}")
    module, _, cls = _REGISTRY[key].partition(":")
    hub_cls: type[ModelHub] = getattr(importlib.import_module(module), cls)
    return hub_cls(store)


def supported_hubs() -> list[str]:
    """Names of the hubs this version can pull from."""
    return sorted(_REGISTRY)


__all__ = [
    "ModelHub",
    "Plan",
    "RemoteFile",
    "StageRequest",
    "StorageType",
    "get_hub",
    "supported_hubs",
]

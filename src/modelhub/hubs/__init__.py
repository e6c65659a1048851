"""Hub adapters, one module per hub, all behind :class:`ModelHub`; which module is which hub's
adapter is its row in :mod:`modelhub.registry`."""

from __future__ import annotations

import importlib

from .. import registry
from ..store import Store
from .base import ModelHub, Plan, RemoteFile, StageRequest


def adapter_class(name: str) -> type[ModelHub]:
    """The adapter class of hub ``name``, imported now. Raises UnsupportedError (exit 2)."""
    module, _, cls = registry.row(name).adapter.partition(":")
    found: type[ModelHub] = getattr(importlib.import_module(module), cls)
    return found


def get_hub(name: str, store: Store | None = None) -> ModelHub:
    """Return the adapter for hub ``name`` (e.g. ``"onnx"``) bound to ``store``.

    Raises UnsupportedError (exit 2) for a name no registry row has.
    """
    return adapter_class(name)(store)


def supported_hubs() -> list[str]:
    """Names of the hubs this version can pull from (the registry's rows), sorted."""
    return sorted(registry.hub_names())


__all__ = [
    "ModelHub",
    "Plan",
    "RemoteFile",
    "StageRequest",
    "adapter_class",
    "get_hub",
    "supported_hubs",
]

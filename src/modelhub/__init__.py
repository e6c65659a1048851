"""modelhub: pull pretrained models from every model hub through one interface.

Public API::

    import modelhub
    hub = modelhub.get_hub("onnx")
    original = hub.download_model("mnist", storage=modelhub.StorageType.UNCOMPRESSED)
    staged = hub.stage_model(original)
    model = modelhub.pull("onnx:mnist")          # Model record (paths + manifest)
    session = modelhub.load("onnx:mnist")        # onnxruntime.InferenceSession
"""

from __future__ import annotations

# Not `from typing import ...`: typing costs ~3 ms at start-up, the fast path's budget.
TYPE_CHECKING = False

if TYPE_CHECKING:
    from typing import Any

    from .errors import ModelhubError
    from .hubs import ModelHub, supported_hubs
    from .pipeline import Model, load, path, pull, stage_existing
    from .refs import ModelRef, parse
    from .seed import StorageType, get_hub
    from .store import Manifest, Store

# Loaded on first use (PEP 562): `modelhub path` imports this package and must start fast.
_LAZY = {
    "ModelhubError": "errors",
    "ModelHub": "hubs",
    "StorageType": "seed",
    "get_hub": "seed",
    "supported_hubs": "hubs",
    "Model": "pipeline",
    "load": "pipeline",
    "path": "pipeline",
    "pull": "pipeline",
    "stage_existing": "pipeline",
    "ModelRef": "refs",
    "parse": "refs",
    "Manifest": "store",
    "Store": "store",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'modelhub' has no attribute {name!r}")


def __dir__() -> list[str]:
    """The public names only (``__all__``): not the submodules an import left as attributes
    (``cli``, ``config``, ``store``, ...) nor this module's own helpers."""
    return sorted(__all__)


__version__ = "0.1.0"

__all__ = [
    "Manifest",
    "Model",
    "ModelHub",
    "ModelRef",
    "ModelhubError",
    "StorageType",
    "Store",
    "__version__",
    "get_hub",
    "load",
    "parse",
    "path",
    "pull",
    "stage_existing",
    "supported_hubs",
]

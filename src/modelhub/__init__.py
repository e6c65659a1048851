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

from .errors import ModelhubError
from .hubs import ModelHub, StorageType, get_hub, supported_hubs
from .pipeline import Model, load, path, pull, stage_existing
from .refs import ModelRef, parse
from .store import Manifest, Store

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

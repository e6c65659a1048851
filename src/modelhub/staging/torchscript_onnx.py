"""Stage ``onnx`` for a TorchScript file: ``torch.jit.load`` then the shared export + parity."""

from __future__ import annotations

import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .._frameworks import torch_import_guard
from ..errors import StagingError, UsageError
from ..refs import ModelRef
from ..store import Manifest, StagedEntry, Store

torch_import_guard()  # before any torch import in this module (see _frameworks)


def is_torchscript(path: Path) -> bool:
    """True for a TorchScript archive (a zip holding compiled ``code/``), without torch."""
    try:
        with zipfile.ZipFile(path) as zf:
            return any("/code/" in n or n.startswith("code/") for n in zf.namelist())
    except (zipfile.BadZipFile, OSError):
        return False


def export_torchscript(
    store: Store, ref: ModelRef, manifest: Manifest, options: Mapping[str, Any]
) -> StagedEntry:
    """Export the TorchScript file of ``manifest`` to ONNX beside it (needs --input-shape)."""
    if not options.get("input_shape"):
        raise UsageError(
            f"{ref}: a TorchScript file does not say its input shape; "
            "pass --input-shape, e.g. 1,3,224,224"
        )
    import torch

    from .torchvision_onnx import export_loaded

    path = store.abspath(manifest.files[0].path)
    try:
        model = torch.jit.load(str(path), map_location="cpu")  # type: ignore[no-untyped-call]
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise StagingError(f"{ref}: torch.jit.load failed: {first}") from None
    return export_loaded(
        store,
        ref,
        manifest,
        options,
        model,
        path.stem,
        "torch.jit+torch.onnx.export",
        {"source_format": "torchscript"},
    )

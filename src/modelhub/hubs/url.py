"""``url:`` — any http(s) file, stored under the framework its extension implies."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..errors import UnsupportedError
from ..refs import ModelRef, url_basename
from ..store import Manifest, StagedEntry, layout
from .base import ModelHub, Plan, RemoteFile, StageRequest


class UrlHub(ModelHub):
    """A plain file at an http(s) URL; ``--sha256`` pins its content."""

    name = "url"
    framework_name = "other"
    default_stage = "auto"
    stages = ("none", "onnx")

    @property
    def hub_url(self) -> str:
        """Plain URLs have no base: each reference is its own address."""
        return ""

    def resolve(
        self, ref: ModelRef, *, offline: bool = False, options: Mapping[str, Any] | None = None
    ) -> Plan:
        """The file itself; its revision is its sha256, known once fetched (or ``sha256``)."""
        sha256 = (options or {}).get("sha256")
        rel = layout.file_path(ref, url_basename(ref.name))
        details = {}
        if layout.framework_for(ref) == "pytorch":
            details["note"] = (
                "PyTorch weights are stored as they are; --stage onnx works for "
                "TorchScript files (with --input-shape), torch:NAME for torchvision"
            )
        return Plan(
            ref=ref,
            revision=sha256,
            files=[RemoteFile(ref.name, rel, sha256)],
            source=[ref.name],
            details=details,
        )

    @staticmethod
    def auto_stage(ref: ModelRef) -> str:
        """The stage ``auto`` means for this file: validate ONNX files, keep the rest."""
        return "onnx" if url_basename(ref.name).lower().endswith(".onnx") else "none"

    def stage(self, ref: ModelRef, manifest: Manifest, request: StageRequest) -> list[StagedEntry]:
        """``onnx`` validates an ONNX file; other formats arrive with their frameworks' hubs."""
        f = manifest.files[0]
        if request.fmt == "onnx" and self.auto_stage(ref) == "onnx":
            from .onnx_zoo import validate_entry

            return [validate_entry(self.store.abspath(f.path), f.path, f.sha256, f.size)]
        if request.fmt == "onnx" and manifest.framework == "pytorch":
            from ..staging.torchscript_onnx import export_torchscript, is_torchscript

            if not is_torchscript(self.store.abspath(f.path)):
                raise UnsupportedError(
                    f"{Path(f.path).name} is a bare weights file with no architecture: it is "
                    "stored as it is; staging needs torch:NAME or a TorchScript file"
                )
            return [export_torchscript(self.store, ref, manifest, request.options)]
        return super().stage(ref, manifest, request)

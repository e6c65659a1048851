"""``url:`` — any http(s) file, stored under the framework its extension implies."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

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
        return Plan(
            ref=ref, revision=sha256, files=[RemoteFile(ref.name, rel, sha256)], source=[ref.name]
        )

    @staticmethod
    def auto_stage(ref: ModelRef) -> str:
        """The stage ``auto`` means for this file: validate ONNX files, keep the rest."""
        return "onnx" if url_basename(ref.name).lower().endswith(".onnx") else "none"

    def stage(self, ref: ModelRef, manifest: Manifest, request: StageRequest) -> list[StagedEntry]:
        """``onnx`` validates an ONNX file; other formats arrive with their frameworks' hubs."""
        if request.fmt == "onnx" and self.auto_stage(ref) == "onnx":
            from .onnx_zoo import validate_entry

            f = manifest.files[0]
            return [validate_entry(self.store.abspath(f.path), f.path, f.sha256, f.size)]
        return super().stage(ref, manifest, request)

"""``url:`` — any http(s) file, stored under the framework its extension implies, in folders
named after its source (``onnx/HOST/PATH/NAME``): two URLs never share a path."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..errors import UnsupportedError
from ..refs import ModelRef, url_basename
from ..store import FileEntry, Manifest, StagedEntry, layout
from ..upstream import Memo, Recorded, UpstreamStatus, check_http
from .base import ModelHub, Plan, RemoteFile, StageRequest

#: The plan's ``details`` key of a note said once, by the pull that fetched the file (the
#: pipeline's ``NOTE_ONCE``; the pipeline sits above the hubs, so it is spelled out here).
NOTE_ONCE = "note_once"


def _torch_note(path: Path) -> str:
    """What a PyTorch file pulled by URL is, and what staging it to ONNX takes."""
    from ..staging.torchscript_onnx import is_torchscript

    if is_torchscript(path):
        return (
            f"{path.name} is a TorchScript file: --stage onnx --input-shape N,C,H,W "
            "exports it to ONNX"
        )
    return (
        f"{path.name} holds bare weights (no architecture): stored as it is; staging needs "
        "a TorchScript file, or torch:NAME for torchvision models"
    )


class UrlHub(ModelHub):
    """A plain file at an http(s) URL; ``--sha256`` pins its content."""

    name = "url"
    default_stage = "none"  # auto_stage decides per file type
    stages = ("none", "onnx", "h5", "keras", "pb")

    def resolve(
        self,
        ref: ModelRef,
        *,
        offline: bool = False,
        options: Mapping[str, Any] | None = None,
        force: bool = False,
    ) -> Plan:
        """The file itself; its revision is its sha256, known once fetched (or ``sha256``)."""
        sha256 = (options or {}).get("sha256")
        rel = layout.file_path(ref, url_basename(ref.name))
        return Plan(
            ref=ref,
            revision=sha256,
            files=[RemoteFile(ref.name, rel, sha256)],
            source=[ref.name],
            details={},
        )

    def fetch(
        self,
        plan: Plan,
        *,
        progress: bool | None = None,
        offline: bool = False,
        force: bool = False,
    ) -> list[FileEntry]:
        """The file; a Keras file holding weights only gets a note (it cannot be staged), a
        PyTorch file a note for this pull (what it is, and what staging it takes)."""
        files = super().fetch(plan, progress=progress, offline=offline, force=force)
        if layout.framework_for(plan.ref) == "pytorch":
            plan.details[NOTE_ONCE] = _torch_note(self.store.abspath(files[0].path))
        if layout.framework_for(plan.ref) == "keras":
            from ..frameworks.keras_files import weights_only_note

            note = weights_only_note(self.store.abspath(files[0].path))
            if note:
                plan.details["note"] = note
                plan.details["weights_only"] = True
        return files

    def auto_stage(self, ref: ModelRef) -> str:
        """The stage ``auto`` means for this file: validate ONNX files, Keras files to full
        ``.h5`` models, keep the rest."""
        name = url_basename(ref.name).lower()
        if name.endswith(".onnx"):
            return "onnx"
        return "h5" if name.endswith((".h5", ".hdf5", ".keras")) else "none"

    def check_upstream(self, recorded: Recorded, memo: Memo) -> UpstreamStatus:
        """HEAD the URL: its validators against those recorded at pull (or the sha256)."""
        return check_http(recorded, recorded.ref.name, "HEAD", recorded.files[0][1])

    def import_kind(self, src: Path, ref: ModelRef) -> str:
        """Any file: an ONNX model is validated, anything else kept as it is."""
        if not src.is_file():
            return super().import_kind(src, ref)
        return "onnx-file" if url_basename(ref.name).lower().endswith(".onnx") else "file"

    def lock_pin(self, files: list[dict[str, Any]]) -> str | None:
        """The locked file's sha256: a download is checked against it before it is kept."""
        return str(files[0]["sha256"]) if len(files) == 1 else None

    def heavy_stage(self, ref: ModelRef, manifest: Manifest, request: StageRequest) -> bool:
        """TorchScript and Keras files are converted; an ONNX file is validated (heavy when
        large, as for the ONNX zoo)."""
        if request.fmt == "onnx" and self.auto_stage(ref) == "onnx":
            from ..staging.onnx_check import HEAVY_CHECK_BYTES

            return manifest.files[0].size >= HEAVY_CHECK_BYTES
        return super().heavy_stage(ref, manifest, request)

    def stage(self, ref: ModelRef, manifest: Manifest, request: StageRequest) -> list[StagedEntry]:
        """``onnx`` validates an ONNX file; other formats arrive with their frameworks' hubs."""
        f = manifest.files[0]
        if request.fmt == "onnx" and self.auto_stage(ref) == "onnx":
            from ..staging.onnx_check import validate_entry

            return [
                validate_entry(
                    self.store.abspath(f.path), f.path, f.sha256, f.size, store=self.store, ref=ref
                )
            ]
        if request.fmt == "onnx" and manifest.framework == "pytorch":
            from ..staging.torchscript_onnx import export_torchscript, is_torchscript

            if not is_torchscript(self.store.abspath(f.path)):
                raise UnsupportedError(
                    f"{Path(f.path).name} is a bare weights file with no architecture: it is "
                    "stored as it is; staging needs torch:NAME or a TorchScript file"
                )
            return [export_torchscript(self.store, ref, manifest, request.options)]
        if request.fmt in ("h5", "keras", "pb") and manifest.framework == "keras":
            if manifest.details.get("weights_only") and request.auto:
                return []  # stored as it is; details["note"] says why
            from ..staging.keras_h5 import stage_url_keras

            return [stage_url_keras(self.store, ref, manifest, request.options, request.fmt)]
        return super().stage(ref, manifest, request)

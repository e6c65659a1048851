"""``onnx:`` — the ONNX Model Zoo through its manifest protocol.

``onnx.hub`` was removed in onnx 1.21, so modelhub speaks the protocol itself:
``{hub_url}/ONNX_HUB_MANIFEST.json`` lists ``{model, model_path, opset_version, metadata:
{model_sha, model_bytes, io_ports, tags}}``; files live at ``{hub_url}/{model_path}`` (upstream:
the GitHub LFS media host, since raw.githubusercontent.com serves LFS pointers).

The zoo manifest is cached under ``.modelhub/cache/onnx/`` so that resolving needs no network
when the model is already listed there; a model not in the cached copy triggers one refresh.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import posixpath
import urllib.parse
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .. import transfer
from ..config import UPSTREAM_URLS
from ..errors import IntegrityError, InvalidReferenceError, ModelNotFoundError, OfflineError
from ..refs import ModelRef
from ..store import Manifest, StagedEntry, layout
from ..store.files import atomic_write_bytes
from .base import ModelHub, Plan, RemoteFile, StageRequest

# ONNX files at least this large are validated in worker processes by `sync --jobs N`.
HEAVY_CHECK_BYTES = 8 * 2**20
MANIFEST_NAME = "ONNX_HUB_MANIFEST.json"
UPSTREAM_MEDIA = "https://media.githubusercontent.com/media/onnx/models/main"
_HEX = frozenset("0123456789abcdef")


def _entry_ok(entry: Any) -> bool:
    if not isinstance(entry, dict):
        return False
    meta = entry.get("metadata")
    if not isinstance(meta, dict):
        return False
    sha = meta.get("model_sha")
    size = meta.get("model_bytes")
    return (
        isinstance(entry.get("model"), str)
        and isinstance(entry.get("model_path"), str)
        and isinstance(entry.get("opset_version"), int)
        and isinstance(sha, str)
        and len(sha) == 64
        and set(sha) <= _HEX
        and (size is None or (isinstance(size, int) and not isinstance(size, bool) and size >= 0))
    )


def parse_zoo_manifest(data: bytes) -> list[dict[str, Any]]:
    """Parse an ONNX_HUB_MANIFEST.json; keep well-formed entries with safe paths.

    Raises IntegrityError when the document is not a JSON list.
    """
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise IntegrityError(f"{MANIFEST_NAME} is not valid JSON: {exc}") from None
    if not isinstance(doc, list):
        raise IntegrityError(f"{MANIFEST_NAME} is not a JSON list")
    entries = []
    for entry in doc:
        if not _entry_ok(entry):
            continue
        try:
            layout.check_relative(entry["model_path"])
            layout.safe_filename(posixpath.basename(entry["model_path"]))
        except InvalidReferenceError:
            continue
        entries.append(entry)
    return entries


def select(entries: list[dict[str, Any]], name: str, opset: int | None) -> dict[str, Any] | None:
    """Pick the entry for ``name``: by model name (case-insensitive) or by file stem.

    Highest opset unless ``opset`` is given.
    """
    wanted = name.lower()
    by_model = [e for e in entries if e["model"].lower() == wanted]
    if not by_model:
        by_model = [
            e
            for e in entries
            if posixpath.basename(e["model_path"]).removesuffix(".onnx").lower() == wanted
        ]
    if opset is not None:
        by_model = [e for e in by_model if e["opset_version"] == opset]
    if not by_model:
        return None
    return max(by_model, key=lambda e: (e["opset_version"], e["model_path"]))


class OnnxZooHub(ModelHub):
    """The ONNX Model Zoo (``onnx:NAME[@OPSET]`` or ``onnx:FILE-STEM``)."""

    name = "onnx"
    framework_name = "onnx"
    default_stage = "onnx"
    stages = ("none", "onnx")

    # --- the zoo manifest ----------------------------------------------------------------------
    def _cache_file(self) -> Path:
        key = hashlib.sha256(self.hub_url.encode()).hexdigest()[:16]
        return self.store.cache_dir("onnx") / f"{key}-{MANIFEST_NAME}"

    def zoo_manifest(self, *, offline: bool = False, refresh: bool = False) -> list[dict[str, Any]]:
        """The zoo's entries, from the cache unless ``refresh`` (one GET otherwise)."""
        cache = self._cache_file()
        if cache.is_file() and not refresh:
            return parse_zoo_manifest(cache.read_bytes())
        if offline:
            raise OfflineError(f"offline: the ONNX zoo manifest of {self.hub_url} is not cached")
        url = f"{self.hub_url}/{MANIFEST_NAME}"
        body = transfer.fetch(url).body
        entries = parse_zoo_manifest(body)
        atomic_write_bytes(cache, body, self.store.tmp_dir)
        return entries

    def _file_url(self, model_path: str) -> str:
        base = UPSTREAM_MEDIA if self.hub_url == UPSTREAM_URLS["onnx"] else self.hub_url
        return f"{base}/{urllib.parse.quote(model_path)}"

    # --- the three steps -----------------------------------------------------------------------
    def resolve(
        self, ref: ModelRef, *, offline: bool = False, options: Mapping[str, Any] | None = None
    ) -> Plan:
        """Find ``ref`` in the zoo manifest (cached copy first, one refresh if not found)."""
        opset = int(ref.revision) if ref.revision else None
        force = bool((options or {}).get("force")) and not offline  # --force: re-read the zoo
        cached = self._cache_file().is_file() and not force
        entries = self.zoo_manifest(offline=offline, refresh=force)
        entry = select(entries, ref.name, opset)
        if entry is None and cached and not offline:
            entries = self.zoo_manifest(refresh=True)
            entry = select(entries, ref.name, opset)
        if entry is None:
            names = sorted({e["model"] for e in entries})
            close = difflib.get_close_matches(ref.name, names, n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            at = f" at opset {opset}" if opset is not None else ""
            raise ModelNotFoundError(
                f"no model {ref.name!r}{at} in the ONNX zoo at {self.hub_url}{hint}"
            )
        meta = entry["metadata"]
        filename = posixpath.basename(entry["model_path"])
        url = self._file_url(entry["model_path"])
        return Plan(
            ref=ref,
            revision=meta["model_sha"],
            files=[
                RemoteFile(
                    url, layout.file_path(ref, filename), meta["model_sha"], meta.get("model_bytes")
                )
            ],
            source=[url],
            details={
                "model": entry["model"],
                "model_path": entry["model_path"],
                "opset": entry["opset_version"],
                "io_ports": meta.get("io_ports") or {},
                "tags": [t for t in meta.get("tags") or [] if isinstance(t, str)],
            },
        )

    def heavy_stage(self, ref: ModelRef, manifest: Manifest, request: StageRequest) -> bool:
        """Validating large models: checker, shape inference and an onnxruntime session hold
        the GIL (ResNet-50, 100 MB: ~0.6 s of CPU, no faster in two threads than one after the
        other); small ones are quicker in a thread than a round trip to a worker."""
        size = sum(f.size for f in manifest.files if f.path.endswith(".onnx"))
        return request.fmt == "onnx" and size >= HEAVY_CHECK_BYTES

    def stage(self, ref: ModelRef, manifest: Manifest, request: StageRequest) -> list[StagedEntry]:
        """``onnx``: validate the model in place (checker, shape inference, onnxruntime)."""
        if request.fmt != "onnx":
            return super().stage(ref, manifest, request)
        return [
            validate_entry(self.store.abspath(f.path), f.path, f.sha256, f.size)
            for f in manifest.files
            if f.path.endswith(".onnx")
        ]


def validate_entry(path: Path, rel: str, sha256: str, size: int) -> StagedEntry:
    """Validate an ONNX file already in the store and describe it as a staged entry."""
    from ..staging.onnx_check import CONVERTER, validate_onnx

    info = validate_onnx(path)
    return StagedEntry(
        path=rel,
        format="onnx",
        sha256=sha256,
        size=size,
        converter=CONVERTER,
        versions=info.versions,
        inputs=info.inputs,
        outputs=info.outputs,
        parity=None,
        details={"opset": info.opset, "ir_version": info.ir_version, "io_ports": info.io_ports},
    )

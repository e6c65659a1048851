"""``onnx:`` — the ONNX Model Zoo through its manifest protocol.

Follows ``onnx/hub.py`` of onnx 1.20 (the module onnx deleted since; ``list_models``,
``get_model_info``, ``load``): ``ONNX_HUB_MANIFEST.json`` from the zoo repository's raw base
(``{hub_url}/ONNX_HUB_MANIFEST.json``) lists ``{model, model_path, opset_version, metadata:
{model_sha, model_bytes, io_ports, tags}}``; a name matches ``model`` case-insensitively, the
highest opset wins unless one is asked, and the file must have the entry's sha256.

Where the file comes from is not onnx.hub's any more: since 2025-07-01 the zoo's files are no
longer served through GitHub LFS (onnx.hub's ``media.githubusercontent.com`` URLs answer with
pointer stubs), and the zoo's README sends users to its Hugging Face copy, the repository
``onnxmodelzoo/legacy_models`` holding the same ``validated/...`` tree. A model is one plain
GET by modelhub's transfer engine of ``{hf endpoint}/onnxmodelzoo/legacy_models/resolve/main/
{model_path}`` — the URL ``huggingface_hub.hf_hub_url`` builds (``file_download.py``,
huggingface_hub 2.4.0), at the Hugging Face endpoint in force (``MODELHUB_HF_URL``,
``HF_ENDPOINT``, the mirror's ``/hf``), registered as this hub's ``onnx-files`` endpoint. No Hub
API call is needed: the zoo manifest's sha256 is the check, and a Git LFS pointer served instead
of the model is refused.

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
from ..config import settings
from ..errors import IntegrityError, InvalidReferenceError, ModelNotFoundError, OfflineError
from ..refs import ModelRef
from ..store import Manifest, StagedEntry, layout
from ..store.files import atomic_write_bytes
from ..upstream import Memo, Recorded, UpstreamStatus, compare, status
from .base import ModelHub, Plan, RemoteFile, StageRequest

MANIFEST_NAME = "ONNX_HUB_MANIFEST.json"
#: The registry endpoint the zoo's files come from: ``{hf endpoint}/onnxmodelzoo/legacy_models/
#: resolve/main``, the zoo's Hugging Face copy (the same ``validated/...`` tree as on GitHub).
FILES_ENDPOINT = "onnx-files"
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

    @property
    def files_url(self) -> str:
        """Where the zoo's files are: ``{hf endpoint}/onnxmodelzoo/legacy_models/resolve/main``
        (``MODELHUB_ONNX_FILES_URL`` overrides it)."""
        return settings().hub_url(FILES_ENDPOINT)

    def file_url(self, model_path: str) -> str:
        """The URL of the zoo file ``model_path`` (quoted as ``hf_hub_url`` quotes it)."""
        return f"{self.files_url}/{urllib.parse.quote(model_path)}"

    # --- the three steps -----------------------------------------------------------------------
    def resolve(
        self,
        ref: ModelRef,
        *,
        offline: bool = False,
        options: Mapping[str, Any] | None = None,
        force: bool = False,
    ) -> Plan:
        """Find ``ref`` in the zoo manifest (cached copy first, one refresh if not found;
        ``force``: re-read the zoo)."""
        opset = int(ref.revision) if ref.revision else None
        force = force and not offline
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
        url = self.file_url(entry["model_path"])
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

    def check_upstream(self, recorded: Recorded, memo: Memo) -> UpstreamStatus:
        """The zoo manifest's ``model_sha`` now against the recorded sha256.

        One GET per zoo and run; it also refreshes the store's cached copy of the zoo
        manifest, so that a pull that follows (sync --update, --locked) resolves against
        what was seen here."""
        url = f"{self.hub_url}/{MANIFEST_NAME}"
        entries = memo.get(url, lambda: self.zoo_manifest(refresh=True))
        ref = recorded.ref
        entry = select(entries, ref.name, int(ref.revision) if ref.revision else None)
        how = "zoo manifest model_sha"
        if entry is None:
            return status(recorded, "missing", None, how, f"not listed in {url}")
        return compare(recorded, str(entry["metadata"]["model_sha"]), how)

    def import_kind(self, src: Path, ref: ModelRef) -> str:
        """An ``.onnx`` file (with its external data beside it) is a zoo model."""
        if src.is_file() and src.name.lower().endswith(".onnx"):
            return "onnx-model"
        return super().import_kind(src, ref)

    def heavy_stage(self, ref: ModelRef, manifest: Manifest, request: StageRequest) -> bool:
        """Validating large models: checker, shape inference and an onnxruntime session hold
        the GIL (ResNet-50, 100 MB: ~0.6 s of CPU, no faster in two threads than one after the
        other); small ones are quicker in a thread than a round trip to a worker."""
        from ..staging.onnx_check import HEAVY_CHECK_BYTES

        size = sum(f.size for f in manifest.files if f.path.endswith(".onnx"))
        return request.fmt == "onnx" and size >= HEAVY_CHECK_BYTES

    def stage(self, ref: ModelRef, manifest: Manifest, request: StageRequest) -> list[StagedEntry]:
        """``onnx``: validate the model in place (checker, shape inference, onnxruntime)."""
        if request.fmt != "onnx":
            return super().stage(ref, manifest, request)
        from ..staging.onnx_check import validate_entry

        return [
            validate_entry(
                self.store.abspath(f.path), f.path, f.sha256, f.size, store=self.store, ref=ref
            )
            for f in manifest.files
            if f.path.endswith(".onnx")
        ]

"""``kaggle:OWNER/MODEL/FRAMEWORK/VARIATION[/VERSION]`` — Kaggle Models in every framework,
fetched the way kagglehub 1.0.3 fetches them (``http_resolver.py``, ``ModelHttpResolver``):

1. without a version, ``GetModelInstance`` names the current one (recorded as the manifest's
   ``revision`` and in the lock);
2. a version complete in kagglehub's cache (:mod:`.kaggle_cache`) is taken from there with no
   request at all, linked into the store (the same bytes on disk once);
3. else ``ListModelInstanceVersionFiles`` (one page of 25): up to 25 files are fetched one by
   one, a version with more as one archive (tar.gz or zip, extracted with modelhub's guarded
   extractors) — each through ``DownloadModelInstanceVersion``, a JSON ``POST`` that Kaggle
   answers with a redirect to a signed storage URL. modelhub's transfer engine sends the POST,
   follows the redirect without the credentials, resumes with ``Range`` and re-sends the RPC when
   the signed URL expires. The ``x-goog-hash: md5=`` of every body is checked (kagglehub
   ``clients.py`` ``download_file``); the sha256 is recorded as for every hub;
4. the files go into the store (``<framework>/kaggle/OWNER/MODEL/VARIATION/VERSION/``); once
   every check passed (PyTorch pickles ``weights_only``, GGUF headers), they are hard-linked
   into kagglehub's cache, which is then marked complete exactly as kagglehub marks it, so
   ``kagglehub.model_download`` finds them with no request (a refused version leaves nothing
   there: kagglehub would serve it offline).

Protocol and credentials: :mod:`.kaggle_api`. Staging follows the framework (see ``STAGING``).
"""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from ..config import settings
from ..errors import (
    ArchiveError,
    HashMismatchError,
    IntegrityError,
    OfflineError,
    UnsupportedError,
)
from ..refs import ModelRef
from ..store import FileEntry, Manifest, StagedEntry, layout
from ..store.files import sha256_file
from ..upstream import Memo, Recorded, UpstreamStatus
from . import kaggle_cache as cache
from .access import settle
from .base import ModelHub, Plan, RemoteFile, StageRequest
from .kaggle_api import Client, Handle, credentials

# What each framework (kagglesdk's enum, by key) is staged to by ``--stage auto``, and which
# stages it can do at all.
STAGING: dict[str, tuple[str, tuple[str, ...]]] = {
    "tensorflow1": ("pb", ("none", "pb")),
    "tensorflow2": ("pb", ("none", "pb")),
    "tflite": ("tflite", ("none", "tflite")),
    "keras": ("keras", ("none", "keras", "h5")),
    "transformers": ("onnx", ("none", "onnx")),
    "onnx": ("onnx", ("none", "onnx")),
}
FILES_ONLY = (
    "files only: modelhub has no staging or check for this framework; load them with its own tools"
)
#: What ``info`` says of a framework that is checked but not staged.
NOTES = {
    "pytorch": (
        "files only, checked: every pickle (.pt, .pth, .bin, .ckpt) was opened only "
        "weights_only and every .safetensors checked by its header before anything was kept; "
        "other files (configs, tokenizers, non-pickle .bin) are kept as they are"
    ),
    "gguf": (
        "files only, checked: every .gguf header was read (version, metadata, every tensor "
        "inside the file) before anything was kept; load them with llama.cpp or the gguf package"
    ),
}
_PICKLES = (".pt", ".pth", ".bin", ".ckpt", ".safetensors")


@dataclass(frozen=True)
class KaggleFile(RemoteFile):
    """One download RPC: a file of the version (``path``) or, without one, its archive."""

    path: str | None = None
    body: bytes = b""


class KaggleHub(ModelHub):
    """Kaggle Models (``kaggle:OWNER/MODEL/FRAMEWORK/VARIATION[/VERSION]``), every framework."""

    name = "kaggle"
    stages: ClassVar[tuple[str, ...]] = ("none", "pb", "tflite", "keras", "h5", "onnx")

    @classmethod
    def sdk_caches(cls) -> dict[str, str]:
        """kagglehub's cache (``KAGGLEHUB_CACHE``), for ``modelhub doctor``."""
        return {"kagglehub cache": str(cache.cache_root().absolute())}

    def client(self) -> Client:
        """The RPC client of the configured endpoint, with the user's credentials."""
        return Client(self.hub_url, credentials())

    def auto_stage(self, ref: ModelRef) -> str:
        """By framework: ``pb`` (TensorFlow), ``tflite`` (validated), ``keras`` (KerasHub
        preset), ``onnx`` (Transformers export, ONNX validated); ``none`` for the rest."""
        return STAGING.get(Handle.of(ref).key, ("none", ()))[0]

    # --- resolve -------------------------------------------------------------------------------
    def resolve(
        self,
        ref: ModelRef,
        *,
        offline: bool = False,
        options: Mapping[str, Any] | None = None,
        force: bool = False,
    ) -> Plan:
        """The version (asked for when the reference has none), then its files: from
        kagglehub's cache when complete there, else the download RPCs."""
        handle = Handle.of(ref)
        opts = dict(options or {})
        client = self.client()
        locked = str(opts.get("locked_revision") or "")
        if handle.version is None and locked.isdigit():
            handle = handle.with_version(int(locked))  # sync --locked: the lock's version
        if handle.version is None:
            handle = handle.with_version(self._current_version(ref, handle, client, offline))
        folder = layout.model_dir(ModelRef(ref.hub, ref.name, str(handle.version)))
        details: dict[str, Any] = {
            "owner": handle.owner,
            "model": handle.model,
            "framework": handle.framework,
            "kaggle_framework": handle.slug,
            "variation": handle.variation,
            "version": handle.version,
            "folder": folder,
            "page": handle.page(),
        }
        if handle.key not in STAGING:
            details["note"] = NOTES.get(handle.key, FILES_ONLY)
        plan = Plan(
            ref=ref,
            revision=str(handle.version),
            files=[],
            source=[handle.page()],
            details=details,
            sdk_cache=str(cache.version_dir(handle)),
        )
        if force:
            cache.forget(handle)
        if cache.complete(handle):
            details["transport"] = "kagglehub-cache"
            if client.access:
                details["access"] = client.access  # "gated": served by a mirror with a token
            settle(details, self.store, ref)  # no RPC: as an earlier pull learned, or unknown
            return plan
        if offline:
            raise OfflineError(
                f"offline: {ref} version {handle.version} is neither in the store nor in "
                f"kagglehub's cache ({cache.cache_root()})"
            )
        names, more = client.list_files(handle)
        details["access"] = client.access or "public"  # "gated": a mirror wants a token for it
        url = client.url("DownloadModelInstanceVersion")
        if more:
            details["transport"] = "archive"
            plan.files = [
                KaggleFile(url, f"{folder}.archive", body=client.download_body(handle, None))
            ]
        else:
            details["transport"] = "files"
            plan.files = [
                KaggleFile(
                    url,
                    f"{folder}/{_safe_rel(name, ref)}",
                    size=size,
                    path=name,
                    body=client.download_body(handle, name),
                )
                for name, size in names
            ]
            if not plan.files:
                raise ArchiveError(f"{ref}: version {handle.version} holds no files")
        return plan

    def _current_version(self, ref: ModelRef, handle: Handle, client: Client, offline: bool) -> int:
        if offline or settings().offline:
            known = self.store.manifest(ref)
            if known is not None and str(known.revision).isdigit():
                return int(known.revision)
            cached = cache.newest_complete(handle)
            if cached is not None:
                return cached
            raise OfflineError(
                f"offline: {ref} names no version and none is in the store or kagglehub's "
                "cache; add /VERSION or go online"
            )
        return client.current_version(handle)

    # --- fetch ---------------------------------------------------------------------------------
    def fetch(
        self,
        plan: Plan,
        *,
        progress: bool | None = None,
        offline: bool = False,
        force: bool = False,
    ) -> list[FileEntry]:
        """Download (or take from kagglehub's cache) every file, md5-checked, into the store
        and kagglehub's cache; checks PyTorch pickles and GGUF headers before anything is
        kept."""
        d = plan.details
        handle = Handle.of(plan.ref).with_version(int(d["version"]))
        folder = str(d["folder"])
        if d["transport"] == "kagglehub-cache":
            pairs = cache.cached_files(handle)
            d["checked"] = self._check_files([p for _, p in pairs], plan.ref)
            return [self.store.link_in(p, f"{folder}/{rel}", plan.ref)[0] for rel, p in pairs]
        client = self.client()
        token, headers = client.auth()
        md5s: dict[str, str] = {}
        published: list[FileEntry] = []
        cached: list[tuple[FileEntry, str]] = []  # (store entry, path in the version)
        try:
            for rf in plan.files:
                assert isinstance(rf, KaggleFile)
                part, result = self._download(plan.ref, rf, token, headers, progress, md5s)
                if rf.path is None:
                    self._unpack(plan.ref, part, folder, published, cached)
                    continue
                entry = self.store.publish(part, rf.rel, plan.ref, result.sha256, result.size)
                published.append(entry)
                cached.append((entry, rf.path))
            d["checked"] = self._check_files(
                [self.store.abspath(e.path) for e in published], plan.ref
            )
            # Only checked files reach kagglehub's cache (kagglehub would serve them offline).
            cache.place_all([(self.store.abspath(e.path), rel) for e, rel in cached], handle)
        except BaseException:
            self._unpublish(published, plan.ref)
            raise
        cache.mark_complete(handle)
        d["md5"] = md5s
        return published

    def _download(
        self,
        ref: ModelRef,
        rf: KaggleFile,
        token: str | None,
        headers: dict[str, str],
        progress: bool | None,
        md5s: dict[str, str],
    ) -> tuple[Path, Any]:
        from .. import transfer

        # One stable part file per file of the version (a later run resumes it).
        tag = hashlib.sha1(rf.rel.encode(), usedforsecurity=False).hexdigest()[:10]
        part = self.store.tmp_path(ref, f"{tag}-{rf.rel.rsplit('/', 1)[-1]}")
        result = transfer.download_file(
            rf.url,
            part,
            token=token,
            headers=headers,
            progress=progress,
            desc=rf.path or "archive",
            method="POST",
            body=rf.body,
            expected_size=rf.size,
            md5=True,  # hashed inline beside the sha256: the file is not read again
        )
        try:
            self._check_download(part, rf, result.sha256, result.size)
            if result.content_md5:
                got = result.md5
                if got != result.content_md5:
                    raise HashMismatchError(
                        f"{ref}: {rf.path or 'the archive'} failed its md5 check (the server "
                        f"declared {result.content_md5}, the bytes hash to {got}); nothing was "
                        "kept"
                    )
                md5s[rf.path or "(archive)"] = got
        except BaseException:
            part.unlink(missing_ok=True)
            raise
        return part, result

    def _unpack(
        self,
        ref: ModelRef,
        archive: Path,
        folder: str,
        published: list[FileEntry],
        cached: list[tuple[FileEntry, str]],
    ) -> None:
        """Extract a version's archive (tar.gz or zip) and publish its files, each appended to
        ``published`` (and ``cached``, for kagglehub's cache) as soon as it is in the store, so
        that a failure part-way takes back what was already published."""
        from ..store.archives import extract_tar, extract_zip

        with open(archive, "rb") as fh:
            head = fh.read(4)
        dest = archive.with_name(archive.name + ".d")
        shutil.rmtree(dest, ignore_errors=True)
        try:
            if head[:2] == b"PK":
                extract_zip(archive, dest)
            else:
                extract_tar(archive, dest)
            count = 0
            for path in sorted(p for p in dest.rglob("*") if p.is_file()):
                rel = path.relative_to(dest).as_posix()
                sha, size = sha256_file(path)
                entry = self.store.publish(path, f"{folder}/{rel}", ref, sha, size)
                published.append(entry)
                cached.append((entry, rel))
                count += 1
            if not count:
                raise ArchiveError(f"{ref}: the version's archive holds no files")
        finally:
            shutil.rmtree(dest, ignore_errors=True)
            archive.unlink(missing_ok=True)

    def _unpublish(self, entries: list[FileEntry], ref: ModelRef) -> None:
        """Take back what this pull published (a later check failed): nothing half-kept."""
        for entry in entries:
            if not self.store.owners(entry.path, excluding=ref.canonical):
                self.store.abspath(entry.path).unlink(missing_ok=True)

    def _check_files(self, paths: list[Path], ref: ModelRef) -> dict[str, Any]:
        """PyTorch pickles open only ``weights_only``; GGUF files must have a GGUF header.
        Returns what was checked (for the manifest's ``details["checked"]``)."""
        key = Handle.of(ref).key
        if key == "pytorch":
            pickles = [p for p in paths if p.suffix.lower() in _PICKLES]
            if pickles:
                from ..staging.torch_files import check_torch_files

                found = check_torch_files(pickles)
                checked: dict[str, Any] = {
                    "how": "torch.load(weights_only=True); safetensors by header",
                    "files": len(found["files"]),
                    "tensors": found.get("tensors"),
                    "parameters": found.get("parameters"),
                }
                if found["plain"]:  # a .bin that is no pickle (raw weights, a vocabulary)
                    checked["plain"] = found["plain"]
                return checked
        if key == "gguf":
            from ..staging.gguf_check import check_gguf

            headers = {
                path.name: check_gguf(path) for path in paths if path.suffix.lower() == ".gguf"
            }
            return {
                name: {k: h.get(k) for k in ("version", "architecture", "tensor_count")}
                for name, h in headers.items()
            }
        return {}

    # --- stage ---------------------------------------------------------------------------------
    def stage(self, ref: ModelRef, manifest: Manifest, request: StageRequest) -> list[StagedEntry]:
        """By framework: freeze a SavedModel (``pb``), validate ``.tflite``/``.onnx`` files,
        save a KerasHub preset as one ``.keras`` (``h5`` where Keras allows), export a
        Transformers folder to ONNX."""
        if request.fmt == "none":
            return []
        key = Handle.of(ref).key
        allowed = STAGING.get(key, ("none", ("none",)))[1]
        if request.fmt not in allowed:
            raise UnsupportedError(
                f"{ref}: a Kaggle {Handle.of(ref).slug} model stages to "
                f"{', '.join(allowed)}, not {request.fmt!r}"
            )
        folder = self.store.abspath(str(manifest.details.get("folder")))
        if request.fmt == "pb":
            from ..staging.freeze_tf import stage_pb

            return [stage_pb(self.store, ref, folder, request.options)]
        if request.fmt == "tflite":
            from ..staging.tflite_check import validate_entry as check_tflite

            files = [f for f in manifest.files if f.path.lower().endswith(".tflite")]
            if not files:
                raise UnsupportedError(f"{ref} holds no .tflite file to validate")
            return [
                check_tflite(self.store.abspath(f.path), f.path, f.sha256, f.size) for f in files
            ]
        if request.fmt == "onnx" and key == "onnx":
            from ..staging.onnx_check import validate_entry as check_onnx

            files = [f for f in manifest.files if f.path.lower().endswith(".onnx")]
            if not files:
                raise UnsupportedError(f"{ref} holds no .onnx file to validate")
            base = str(manifest.details.get("folder"))
            return [
                check_onnx(
                    self.store.abspath(f.path),
                    f.path,
                    f.sha256,
                    f.size,
                    store=self.store,
                    ref=ref,
                    # beside the version's folder, which stays as Kaggle serves it
                    fixture_for=f"{base}.{f.path[len(base) + 1 :].replace('/', '--')}",
                )
                for f in files
            ]
        if request.fmt == "onnx":
            from ..staging.hf_onnx import export_hf_onnx

            return [export_hf_onnx(self.store, ref, manifest, request.options)]
        from ..staging.keras_preset import is_preset, stage_preset

        if request.auto and not is_preset(folder):
            return []  # a Keras version that is no KerasHub preset (e.g. one .h5): kept as is

        # ``keras``: the .keras file, and the legacy .h5 beside it where Keras can write one;
        # ``h5``: the .h5 as well (the .keras is what it is checked against).
        options = {"formats": ["keras", "h5"], **request.options}
        return stage_preset(self.store, ref, folder, options)

    # --- the other hooks -----------------------------------------------------------------------
    def check_upstream(self, recorded: Recorded, memo: Memo) -> UpstreamStatus:
        """``GetModelInstance``: a newer version than the one recorded is *changed* (a pinned
        version never changes: Kaggle versions are immutable)."""
        from ..upstream import compare

        ref = recorded.ref
        client = self.client()
        if ref.revision:
            client.list_files(Handle.of(ref))  # a version that is gone raises not-found
            return compare(recorded, str(ref.revision), "version")
        return compare(recorded, str(client.current_version(Handle.of(ref))), "version")

    def import_kind(self, src: Path, ref: ModelRef) -> str:
        """A version's folder, any framework (the reference names the version), or a SavedModel
        archive."""
        if src.is_dir():
            return "version-dir"
        if src.is_file() and src.name.lower().endswith((".tar.gz", ".tgz", ".tar")):
            return "savedmodel-tar"  # a TensorFlow version as Kaggle's archive
        return super().import_kind(src, ref)


def _safe_rel(name: str, ref: ModelRef) -> str:
    """A file name from the listing as a safe relative path (no '..', no absolute paths)."""
    parts = [p for p in name.replace("\\", "/").split("/") if p not in ("", ".")]
    if not parts or any(p == ".." for p in parts) or name.startswith("/"):
        raise IntegrityError(f"{ref}: the server listed an unsafe file name {name!r}")
    return "/".join(layout.safe_filename(p) for p in parts)


__all__ = ["STAGING", "KaggleHub"]

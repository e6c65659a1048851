"""``/kaggle/``: Kaggle Models as kagglehub 1.0.3 / kagglesdk 0.1.38 download them.

The protocol itself (what each RPC answers, the JSON shapes, the archive) is
:mod:`.kaggle_rpc`, read from kagglehub's ``http_resolver.py``, ``clients.py``, ``cache.py``,
``handle.py``, ``integrity.py`` and kagglesdk's ``kaggle_http_client.py``, ``kaggle_env.py``,
``models/types/model_api_service.py``, ``models/types/model_enums.py``,
``common/types/http_redirect.py``, ``common/types/file_download.py``. This module serves it
for every Kaggle version in the store:

- ``POST /kaggle/v1/models.ModelApiService/<Method>`` (``MODELHUB_KAGGLE_URL`` = ``MIRROR/kaggle``,
  the production shape ``https://api.kaggle.com/v1/...``) and the same at
  ``POST /api/v1/models.ModelApiService/<Method>``, where kagglesdk's non-production
  environments (``KAGGLE_API_ENVIRONMENT=TEST``: ``http://localhost:7777/api/v1/...``) post.
  ``GetModelInstance``, ``ListModelInstanceVersionFiles`` (paged), and
  ``DownloadModelInstanceVersion``, answered ``302`` to an absolute URL on this mirror (built
  from the request's ``Host``, so a recorder or proxy in front stays in the path):
- ``GET /kaggle/files/<owner>/<model>/<framework>/<variation>/<version>/<path>``: one file,
  ``application/octet-stream`` with ``x-goog-hash: md5=<base64>``, ``Content-Length``, ``ETag``
  (its sha256), ``Accept-Ranges``, ``Range``;
- ``GET /kaggle/archives/<owner>/<model>/<framework>/<variation>/<version>.tar.gz``: the whole
  version as a deterministic tar.gz, built once into ``.modelhub/cache/mirror/kaggle/`` and then
  a file response with the same headers (the md5 is the archive's).
- ``GET /kaggle/models/<handle>?tf-hub-format=compressed``: a TensorFlow SavedModel as
  tensorflow_hub fetches it from kaggle.com (:class:`~modelhub.mirror.tfhub.SavedModelRoutes`),
  kept for tensorflow_hub and the tfhub-format clients.

A version is read from its manifest's ``details`` (``owner``, ``model``, ``kaggle_framework`` or
``framework``, ``variation``, ``version``, ``folder``, ``md5``), else from its reference and
revision; only the manifest's ``files`` under the version folder are served (not staged
artifacts). Slugs match case-insensitively and the framework in any spelling; several manifests
of one version (pulled with and without a version) are one version.
"""

from __future__ import annotations

import asyncio
import logging
import tempfile
from pathlib import Path
from typing import Any

from aiohttp import web

from ..refs import ModelRef
from ..registry import HubRow
from ..store import Manifest, layout
from .http_files import PROBE, not_found, probed, send_file
from .index import ServedFile, Snapshot, StoreIndex, folder_of, under
from .kaggle_rpc import (
    SERVICE,
    ArchiveBuilder,
    BuiltArchive,
    Catalog,
    KaggleVersion,
    VersionFile,
    answer,
    error,
    framework_key,
    md5_b64_of,
    parse_body,
    split_url_path,
)
from .tfhub import SavedModelRoutes
from .urlpath import segments

log = logging.getLogger("modelhub.mirror")

GOOG_HASH = "x-goog-hash"
#: The path prefix kagglesdk puts before ``/v1/`` outside production (``{endpoint}/api``).
SDK_API_PREFIX = "/api"


def _int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value > 0 else None
    if isinstance(value, str) and value.isdigit():
        return int(value) or None
    return None


def version_of(
    manifest: Manifest, ref: ModelRef, own: dict[str, ServedFile]
) -> KaggleVersion | None:
    """The Kaggle version a manifest holds, or None when it does not say enough."""
    details = manifest.details
    parts = ref.name.split("/")
    if len(parts) < 4:
        return None

    def text(key: str, index: int) -> str:
        value = details.get(key)
        return value if isinstance(value, str) and value else parts[index]

    owner, model, variation = text("owner", 0), text("model", 1), text("variation", 3)
    framework = None
    for candidate in (details.get("kaggle_framework"), details.get("framework"), parts[2]):
        framework = framework_key(candidate) if isinstance(candidate, str) else None
        if framework is not None:
            break
    number = _int(details.get("version")) or _int(ref.revision) or _int(manifest.revision)
    if number is None and len(parts) == 5:
        number = _int(parts[4])
    if framework is None or number is None:
        return None
    listed = {f.path for f in manifest.files}
    files = under({rel: f for rel, f in own.items() if rel in listed}, folder_of(manifest, ref))
    if not files:
        return None
    recorded = details.get("md5")
    md5s: dict[str, Any] = recorded if isinstance(recorded, dict) else {}
    entries = {}
    for name, served in files.items():
        md5 = md5s.get(name)
        entries[name] = VersionFile(
            name, served.path, served.size, served.sha256, md5 if isinstance(md5, str) else None
        )
    return KaggleVersion(owner, model, framework, variation, number, entries, manifest.created)


class KaggleRoutes(SavedModelRoutes):
    """The Kaggle RPCs, file and archive URLs, and ``/kaggle/models/{handle}`` (tfhub format)."""

    handle_prefix = ("models",)

    def __init__(self, index: StoreIndex, row: HubRow, root: Path, page_size: int = 1000) -> None:
        super().__init__(index, row, root, page_size)
        self.archives = ArchiveBuilder(root / layout.CACHE / "mirror" / "kaggle")
        self._fallback: ArchiveBuilder | None = None
        self._md5: dict[tuple[str, str], str] = {}

    # --- index ---------------------------------------------------------------------------------
    def catalog(self, snap: Snapshot) -> Catalog:
        """This hub's versions in ``snap``."""
        found = snap.extra.setdefault(self.row.name, Catalog())
        assert isinstance(found, Catalog)
        return found

    def collect(
        self, snap: Snapshot, manifest: Manifest, ref: ModelRef, own: dict[str, ServedFile]
    ) -> None:
        """Index the version (for the RPCs) and, as before, the SavedModel handle: a handle
        pulled without a version is also served at ``.../VARIATION/<version>``."""
        super().collect(snap, manifest, ref, own)
        if not self.mine(ref):
            return
        found = version_of(manifest, ref, own)
        if found is None:
            return
        self.catalog(snap).add(found)
        model = snap.saved_models.get((ref.hub, ref.name))
        if model is not None and ref.name.count("/") == 3:
            snap.saved_models.setdefault((ref.hub, f"{ref.name}/{found.version}"), model)

    # --- routes --------------------------------------------------------------------------------
    def add_to(self, app: web.Application) -> None:
        """Register the RPCs (POST), the file and archive URLs and the tfhub-format handles."""
        super().add_to(app)
        for base in (self.prefix, SDK_API_PREFIX):
            app.router.add_post(f"{base}/v1/{SERVICE}/{{method}}", self.rpc)
        app.router.add_get(f"{self.prefix}/files/{{tail:.*}}", self.version_file)
        app.router.add_get(f"{self.prefix}/archives/{{tail:.*}}", self.version_archive)

    def owns(self, path: str) -> bool:
        """The hub's paths, and the RPCs at kagglesdk's ``/api/v1/`` outside production."""
        return super().owns(path) or path.startswith(f"{SDK_API_PREFIX}/v1/")

    async def denied(
        self, request: web.Request, status: int, message: str, *, model: bool = False
    ) -> web.Response:
        """Kaggle's error shape: the status and ``{"code", "message"}``."""
        return web.json_response(error(status, message).body, status=status)

    async def rpc(self, request: web.Request) -> web.StreamResponse:
        """One RPC: JSON answer, error ``{"code", "message"}``, or a 302 to the bytes."""
        body = parse_body(await request.read())
        if body is None:
            result = error(400, "The request body is not a JSON object")
        else:
            snap = await self.index.snapshot()
            result = answer(request.match_info["method"], body, self.catalog(snap))
        if result.is_redirect and result.version is not None:
            url = f"{request.url.origin()}{self.prefix}/{result.version.url_path(result.path)}"
            return web.Response(status=302, headers={"Location": url})
        return web.json_response(result.body, status=result.status)

    async def _find(self, request: web.Request, kind: str) -> tuple[KaggleVersion, str] | None:
        parts = segments(request.raw_path, self.depth + 1)
        split = split_url_path(parts or [])
        if split is None:
            return None
        (owner, model, fw, variation), last, rest = split
        if kind == "archive":
            if rest or not last.endswith(".tar.gz"):
                return None
            last = last.removesuffix(".tar.gz")
        elif not rest:
            return None
        if not last.isdigit():
            return None
        snap = await self.index.snapshot()
        found = self.catalog(snap).find(owner, model, fw, variation, int(last))
        return None if found is None else (found, "/".join(rest))

    async def version_file(self, request: web.Request) -> web.StreamResponse:
        """``/kaggle/files/O/M/FW/VAR/N/PATH``: one file of a version."""
        found = await self._find(request, "file")
        entry = None if found is None else found[0].files.get(found[1])
        if entry is None:
            return not_found()
        md5 = entry.md5 or await self._file_md5(entry)
        if md5 is None:
            return not_found()
        served = ServedFile(entry.name, entry.path, entry.sha256, entry.size)
        return await send_file(
            request,
            served,
            headers={GOOG_HASH: f"md5={md5}"},
            content_type="application/octet-stream",
        )

    async def _file_md5(self, entry: VersionFile) -> str | None:
        key = (str(entry.path), entry.sha256)
        if key not in self._md5:
            loop = asyncio.get_running_loop()
            try:
                self._md5[key] = await loop.run_in_executor(None, md5_b64_of, entry.path)
            except OSError:
                return None
        return self._md5[key]

    async def version_archive(self, request: web.Request) -> web.StreamResponse:
        """``/kaggle/archives/O/M/FW/VAR/N.tar.gz``: the version as one tar.gz."""
        found = await self._find(request, "archive")
        if found is None:
            return not_found()
        if PROBE.get():
            return probed()
        version = found[0]
        loop = asyncio.get_running_loop()
        try:
            built = await loop.run_in_executor(None, self._build, version)
        except OSError as exc:
            log.error("archive of %s failed: %s", version.handle, exc)
            return not_found()
        served = ServedFile(built.path.name, built.path, version.digest, built.size)
        return await send_file(
            request,
            served,
            headers={GOOG_HASH: f"md5={built.md5}"},
            content_type="application/gzip",
        )

    def _build(self, version: KaggleVersion) -> BuiltArchive:
        """The archive, from the store's cache; a read-only store builds into a temporary
        folder of this process instead."""
        if self._fallback is None:
            try:
                return self.archives.get(version)
            except PermissionError as exc:
                log.warning("archive cache not writable (%s): using a temporary folder", exc)
                folder = Path(tempfile.mkdtemp(prefix="modelhub-kaggle-archives-"))
                self._fallback = ArchiveBuilder(folder)
        return self._fallback.get(version)

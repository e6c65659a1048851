"""``/onnx/``: the ONNX Model Zoo manifest protocol, generated from the store.

``/onnx/ONNX_HUB_MANIFEST.json`` lists every ``onnx:`` manifest in the zoo's schema
(``model``, ``model_path``, ``onnx_version``, ``opset_version``, ``metadata: {model_sha,
model_bytes, tags, io_ports}``); ``/onnx/{model_path}`` serves the file an entry names. The
model path is the one the manifest recorded (the zoo's path for a pulled model, the path under
the store's ``onnx/`` folder for an imported one); any file under ``onnx/`` is also served at
its store path.
"""

from __future__ import annotations

import hashlib
import json

from aiohttp import hdrs, web

from .http_files import not_found, quote_etag, send_file
from .index import StoreIndex
from .urlpath import segments

MANIFEST_NAME = "ONNX_HUB_MANIFEST.json"


class OnnxRoutes:
    """Handlers for ``/onnx/...``."""

    def __init__(self, index: StoreIndex) -> None:
        self.index = index

    def add_to(self, app: web.Application) -> None:
        """Register the routes (GET answers HEAD too)."""
        app.router.add_get("/onnx/{tail:.*}", self.handle)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """The generated manifest, or one model file."""
        parts = segments(request.raw_path, 1)
        if not parts:
            return not_found()
        snap = await self.index.snapshot()
        if parts == [MANIFEST_NAME]:
            body = json.dumps(snap.onnx_entries, indent=1, sort_keys=True).encode()
            etag = quote_etag(hashlib.sha256(body).hexdigest())
            if etag in request.headers.get(hdrs.IF_NONE_MATCH, ""):
                return web.Response(status=304, headers={hdrs.ETAG: etag})
            return web.Response(
                body=body, content_type="application/json", headers={hdrs.ETAG: etag}
            )
        path = "/".join(parts)
        served = snap.onnx_files.get(path) or snap.by_rel.get(f"onnx/{path}")
        if served is None:
            return not_found()
        return await send_file(request, served)

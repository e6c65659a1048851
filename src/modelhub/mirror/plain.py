"""Plain file layouts: PyTorch weights, GitHub zipballs, Keras Applications, DL4J omnihub.

- ``/torch/models/{file}``: ``pytorch/{file}`` of any manifest (download.pytorch.org layout;
  ``torch.hub.load_state_dict_from_url(check_hash=True)`` checks the sha256 prefix in the name).
- ``/torch/github/{owner}/{repo}/zipball/{ref}``: the zipball a torch.hub manifest recorded
  (``details["zipball"]``).
- ``/keras/tensorflow/keras-applications/{family}/{file}`` and ``/keras/keras-applications/{file}``
  (EfficientNetB0–B7): ``keras/{file}`` of any manifest (storage.googleapis.com layout;
  ``keras.utils.get_file(file_hash=...)`` checks it).
- ``/omnihub/{framework}/{name...}``: the store file ``{framework}/{name...}`` (DL4J
  ``OmniHubUtils`` remote layout: a plain GET of the store path).
"""

from __future__ import annotations

from aiohttp import web

from .http_files import not_found, send_file
from .index import ServedFile, StoreIndex
from .urlpath import segments


class PlainRoutes:
    """Handlers for the layouts that are a plain file per URL."""

    def __init__(self, index: StoreIndex) -> None:
        self.index = index

    def add_to(self, app: web.Application) -> None:
        """Register the routes (GET answers HEAD too)."""
        app.router.add_get("/torch/models/{tail:.*}", self.torch_weights)
        app.router.add_get("/torch/github/{tail:.*}", self.zipball)
        app.router.add_get("/keras/tensorflow/keras-applications/{tail:.*}", self.keras)
        app.router.add_get("/keras/keras-applications/{tail:.*}", self.keras_flat)
        app.router.add_get("/omnihub/{tail:.*}", self.omnihub)

    async def _send(self, request: web.Request, served: ServedFile | None) -> web.StreamResponse:
        if served is None:
            return not_found()
        return await send_file(request, served)

    async def torch_weights(self, request: web.Request) -> web.StreamResponse:
        """``/torch/models/{file}``."""
        parts = segments(request.raw_path, 2)
        if parts is None or len(parts) != 1:
            return not_found()
        snap = await self.index.snapshot()
        return await self._send(request, snap.by_rel.get(f"pytorch/{parts[0]}"))

    async def zipball(self, request: web.Request) -> web.StreamResponse:
        """``/torch/github/{owner}/{repo}/zipball/{ref}``."""
        parts = segments(request.raw_path, 2)
        if parts is None or len(parts) < 4 or parts[2] != "zipball":
            return not_found()
        snap = await self.index.snapshot()
        key = (f"{parts[0]}/{parts[1]}", "/".join(parts[3:]))
        return await self._send(request, snap.zipballs.get(key))

    async def keras(self, request: web.Request) -> web.StreamResponse:
        """``/keras/tensorflow/keras-applications/{family}/{file}``."""
        parts = segments(request.raw_path, 3)
        if parts is None or len(parts) != 2:
            return not_found()
        snap = await self.index.snapshot()
        return await self._send(request, snap.by_rel.get(f"keras/{parts[1]}"))

    async def keras_flat(self, request: web.Request) -> web.StreamResponse:
        """``/keras/keras-applications/{file}`` (the origin EfficientNetB0–B7 use)."""
        parts = segments(request.raw_path, 2)
        if parts is None or len(parts) != 1:
            return not_found()
        snap = await self.index.snapshot()
        return await self._send(request, snap.by_rel.get(f"keras/{parts[0]}"))

    async def omnihub(self, request: web.Request) -> web.StreamResponse:
        """``/omnihub/{framework}/{name...}``."""
        parts = segments(request.raw_path, 1)
        if parts is None or len(parts) < 2:
            return not_found()
        snap = await self.index.snapshot()
        return await self._send(request, snap.by_rel.get("/".join(parts)))

"""The seam between the mirror and the hubs: one routes object per registered hub.

A hub's registry row names its routes class (``mirror_routes``); :func:`hub_routes` builds one
per row. ``collect`` adds the hub's models to every snapshot of the store's index (called for
each manifest, it keeps those of its own hub), and ``add_to`` registers the hub's URL paths
under ``/<mirror path>``. A hub without routes of its own is served by :class:`PlainHubRoutes`:
each file of a model at ``/<mirror path>/<ref name>/<path in the model's folder>``.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from aiohttp import web

from .. import registry
from ..refs import ModelRef
from ..store import Manifest, layout
from .http_files import not_found, send_file
from .index import ServedFile, Snapshot, StoreIndex, under
from .urlpath import segments


class HubRoutes:
    """Base of a hub's mirror routes (see the module docstring)."""

    def __init__(
        self, index: StoreIndex, row: registry.HubRow, root: Path, page_size: int = 1000
    ) -> None:
        self.index, self.row, self.root = index, row, root
        self.page_size = max(1, page_size)

    @property
    def prefix(self) -> str:
        """The URL path this hub is served under (``/<mirror path>``)."""
        return f"/{self.row.mirror}"

    @property
    def depth(self) -> int:
        """Path segments of :attr:`prefix`."""
        return len(self.prefix.strip("/").split("/"))

    def owns(self, path: str) -> bool:
        """Whether the URL ``path`` is one of this hub's (its error shapes answer it)."""
        return path == self.prefix or path.startswith(self.prefix + "/")

    async def denied(
        self, request: web.Request, status: int, message: str, *, model: bool = False
    ) -> web.Response:
        """The 401 (no token) or 403 (a token the mirror does not know) of this hub; the
        default is a short text, as the hub's file servers send. ``model``: the request names
        a withheld model (not only a mirror that wants a token for everything)."""
        return web.Response(status=status, text=message + "\n")

    def mine(self, ref: ModelRef) -> bool:
        """Whether ``ref`` is a model of this routes' hub."""
        return ref.hub == self.row.name

    def collect(
        self, snap: Snapshot, manifest: Manifest, ref: ModelRef, own: dict[str, ServedFile]
    ) -> None:
        """Add what this hub serves of ``manifest`` to ``snap`` (default: nothing)."""

    def add_to(self, app: web.Application) -> None:
        """Register this hub's routes (GET answers HEAD too)."""
        raise NotImplementedError


class PlainHubRoutes(HubRoutes):
    """A hub with no protocol of its own: each model file as a plain GET."""

    def collect(
        self, snap: Snapshot, manifest: Manifest, ref: ModelRef, own: dict[str, ServedFile]
    ) -> None:
        """Every file of the model, by ``<ref name>/<path inside the model's folder>``."""
        if not self.mine(ref):
            return
        files = snap.plain.setdefault(self.row.name, {})
        for inner, served in under(own, layout.model_dir(ref)).items():
            files.setdefault(f"{ref.name}/{inner}", served)

    def add_to(self, app: web.Application) -> None:
        """``/<mirror path>/<ref name>/<file>``."""
        app.router.add_get(f"{self.prefix}/{{tail:.*}}", self.handle)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """One model file, or 404."""
        parts = segments(request.raw_path, self.depth)
        if not parts:
            return not_found()
        snap = await self.index.snapshot()
        served = snap.plain.get(self.row.name, {}).get("/".join(parts))
        return not_found() if served is None else await send_file(request, served)


def routes_class(row: registry.HubRow) -> type[HubRoutes]:
    """The routes class the row names (imported now), else :class:`PlainHubRoutes`."""
    if not row.mirror_routes:
        return PlainHubRoutes
    module, _, name = row.mirror_routes.partition(":")
    found: type[HubRoutes] = getattr(importlib.import_module(module), name)
    return found


def hub_routes(index: StoreIndex, root: Path, page_size: int = 1000) -> list[HubRoutes]:
    """One routes object per registered hub that has a mirror path, collecting into ``index``."""
    found = []
    for row in registry.rows():
        if row.mirror is None:
            continue
        routes = routes_class(row)(index, row, root, page_size)
        index.collectors.append(routes.collect)
        found.append(routes)
    return found

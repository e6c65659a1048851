"""Plain file layouts: PyTorch weights, GitHub zipballs, Keras Applications, DL4J omnihub.

- ``/torch/models/{file}`` (and ``/torch/models/quantized/{file}``): ``pytorch/{file}`` of any
  manifest (download.pytorch.org layout; ``torch.hub.load_state_dict_from_url(check_hash=True)``
  checks the sha256 prefix in the name).
- ``/torch/github/{owner}/{repo}/zipball/{ref}``: the zipball a torch.hub manifest recorded
  (``details["zipball"]``); ``/torch/github/{owner}/{repo}/tree/{ref}/`` and
  ``/torch/github-api/repos/{owner}/{repo}/branches|tags``: what torch.hub asks before it
  (see :class:`TorchRoutes`).
- ``/keras/tensorflow/keras-applications/{family}/{file}`` and ``/keras/keras-applications/{file}``
  (EfficientNetB0–B7): ``keras/{file}`` of any manifest (storage.googleapis.com layout;
  ``keras.utils.get_file(file_hash=...)`` checks it).
- ``/omnihub/{framework}/{name...}``: the store file ``{framework}/{name...}`` (DL4J
  ``OmniHubUtils`` remote layout: a plain GET of the store path).
"""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web

from ..refs import ModelRef
from ..store import Manifest
from .http_files import not_found, send_file
from .index import ServedFile, Snapshot, StoreIndex
from .routes import HubRoutes
from .urlpath import segments

_COMMIT = re.compile(r"[0-9a-f]{40}")


async def _send(request: web.Request, served: ServedFile | None) -> web.StreamResponse:
    if served is None:
        return not_found()
    return await send_file(request, served)


class TorchRoutes(HubRoutes):
    """``/torch/models/{file}`` and ``/torch/models/quantized/{file}`` (weights), and at the
    row's second and third endpoints the GitHub stand-in torch.hub asks (torch 2.14.1
    ``torch/hub.py``): ``/torch/github/{owner}/{repo}/tree/{ref}/`` (200 when the store has the
    repository at that ref, else 404: torch's default-branch probe),
    ``/torch/github/{owner}/{repo}/zipball/{ref}`` and
    ``/torch/github-api/repos/{owner}/{repo}/branches|tags?per_page=&page=`` (torch's ref check:
    ``[{name, commit: {sha}}]`` pages, an empty list past the last).

    What the listing knows comes from the manifests: each ref a torch.hub model was pulled at,
    as the branch or tag the pull's own ref check found (unknown: a branch; a tip commit's
    prefix: listed among the tags under that name), with the commit its zipball records.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: (owner/repo, ref) → (branch|tag, commit), from the manifests; a lookup table that
        #: the current snapshot's zipballs select from.
        self._refs: dict[tuple[str, str], tuple[str, str]] = {}

    def collect(
        self, snap: Snapshot, manifest: Manifest, ref: ModelRef, own: dict[str, ServedFile]
    ) -> None:
        """Index the zipball a torch.hub manifest recorded, by (owner/repo, git ref)."""
        from ..frameworks.torch_env import zip_commit

        rel = manifest.details.get("zipball")
        if not self.mine(ref) or ref.entry is None:
            return
        if not isinstance(rel, str) or rel not in snap.by_rel:
            return
        served = snap.by_rel[rel]
        details = manifest.details
        commit = details.get("commit")
        if not (isinstance(commit, str) and _COMMIT.fullmatch(commit)):
            commit = zip_commit(served.path) or ""
        git_ref = details.get("git_ref") or ref.revision
        for key in (ref.revision, git_ref, commit, manifest.revision):
            if isinstance(key, str) and key:
                snap.zipballs.setdefault((ref.name, key), served)
        if isinstance(git_ref, str) and git_ref:
            kind = "branch" if details.get("ref_kind") in (None, "branch") else "tag"
            self._refs[(ref.name, git_ref)] = (kind, commit)

    @property
    def github(self) -> str:
        """The URL path of the GitHub stand-in (the row's second endpoint)."""
        return f"/{self.row.endpoints[1].mirror}"

    @property
    def github_api(self) -> str:
        """The URL path of the GitHub API stand-in (the row's third endpoint)."""
        return f"/{self.row.endpoints[2].mirror}"

    def add_to(self, app: web.Application) -> None:
        """Register the routes (GET answers HEAD too)."""
        app.router.add_get(f"{self.prefix}/models/{{tail:.*}}", self.torch_weights)
        app.router.add_get(f"{self.github}/{{tail:.*}}", self.github_web)
        app.router.add_get(f"{self.github_api}/repos/{{tail:.*}}", self.github_refs)

    async def torch_weights(self, request: web.Request) -> web.StreamResponse:
        """``/torch/models/{file}``, ``/torch/models/quantized/{file}``."""
        parts = segments(request.raw_path, self.depth + 1)
        if parts is None or not (len(parts) == 1 or (len(parts) == 2 and parts[0] == "quantized")):
            return not_found()
        snap = await self.index.snapshot()
        folder = self.row.folders[0]
        return await _send(request, snap.by_rel.get(f"{folder}/{parts[-1]}"))

    async def github_web(self, request: web.Request) -> web.StreamResponse:
        """``/torch/github/{owner}/{repo}/zipball/{ref}`` and ``.../tree/{ref}/``."""
        raw = request.raw_path.split("?", 1)[0]
        if raw.endswith("/"):
            raw = raw[:-1]  # the probe asks for tree/main/
        parts = segments(raw, len(self.github.strip("/").split("/")))
        if parts is None or len(parts) < 4 or parts[2] not in ("zipball", "tree"):
            return not_found()
        snap = await self.index.snapshot()
        served = snap.zipballs.get((f"{parts[0]}/{parts[1]}", "/".join(parts[3:])))
        if parts[2] == "tree":
            if served is None:
                return not_found()
            return web.Response(text="", content_type="text/html")
        return await _send(request, served)

    async def github_refs(self, request: web.Request) -> web.StreamResponse:
        """``/torch/github-api/repos/{owner}/{repo}/branches|tags?per_page=N&page=P``."""
        parts = segments(request.raw_path, len(self.github_api.strip("/").split("/")) + 1)
        if parts is None or len(parts) != 3 or parts[2] not in ("branches", "tags"):
            return not_found()
        try:
            per_page = min(100, max(1, int(request.query.get("per_page", "30"))))
            page = max(1, int(request.query.get("page", "1")))
        except ValueError:
            return web.json_response({"message": "Bad Request"}, status=400)
        repo = f"{parts[0]}/{parts[1]}"
        kind = "branch" if parts[2] == "branches" else "tag"
        snap = await self.index.snapshot()
        known = [(name, self._refs.get((r, name))) for r, name in snap.zipballs if r == repo]
        if not known:
            return web.json_response({"message": "Not Found"}, status=404)
        listed = sorted(
            {name: found[1] for name, found in known if found and found[0] == kind}.items()
        )
        chunk = listed[(page - 1) * per_page : page * per_page]
        return web.json_response([{"name": n, "commit": {"sha": sha}} for n, sha in chunk])


class KerasRoutes(HubRoutes):
    """``/keras/tensorflow/keras-applications/{family}/{file}`` and
    ``/keras/keras-applications/{file}`` (the origin EfficientNetB0–B7 use)."""

    def add_to(self, app: web.Application) -> None:
        """Register the routes (GET answers HEAD too)."""
        app.router.add_get(f"{self.prefix}/tensorflow/keras-applications/{{tail:.*}}", self.keras)
        app.router.add_get(f"{self.prefix}/keras-applications/{{tail:.*}}", self.keras_flat)

    async def keras(self, request: web.Request) -> web.StreamResponse:
        """``/keras/tensorflow/keras-applications/{family}/{file}``."""
        parts = segments(request.raw_path, self.depth + 2)
        if parts is None or len(parts) != 2:
            return not_found()
        snap = await self.index.snapshot()
        return await _send(request, snap.by_rel.get(f"{self.row.folders[0]}/{parts[1]}"))

    async def keras_flat(self, request: web.Request) -> web.StreamResponse:
        """``/keras/keras-applications/{file}``."""
        parts = segments(request.raw_path, self.depth + 1)
        if parts is None or len(parts) != 1:
            return not_found()
        snap = await self.index.snapshot()
        return await _send(request, snap.by_rel.get(f"{self.row.folders[0]}/{parts[0]}"))


class OmnihubRoutes:
    """``/omnihub/{framework}/{name...}``: DL4J ``OmniHubUtils``' remote layout, a plain GET
    of any store file a manifest lists (every hub's)."""

    def __init__(self, index: StoreIndex) -> None:
        self.index = index

    def add_to(self, app: web.Application) -> None:
        """Register the route (GET answers HEAD too)."""
        app.router.add_get("/omnihub/{tail:.*}", self.omnihub)

    async def omnihub(self, request: web.Request) -> web.StreamResponse:
        """``/omnihub/{framework}/{name...}``."""
        parts = segments(request.raw_path, 1)
        if parts is None or len(parts) < 2:
            return not_found()
        snap = await self.index.snapshot()
        return await _send(request, snap.by_rel.get("/".join(parts)))

"""``/onnx/``: the ONNX Model Zoo manifest protocol, generated from the store — and the zoo's
files as the Hugging Face copy upstream serves them.

``/onnx/ONNX_HUB_MANIFEST.json`` lists every ``onnx:`` manifest in the zoo's schema (``model``,
``model_path``, ``onnx_version``, ``opset_version``, ``metadata: {model_sha, model_bytes, tags,
io_ports}``), as ``onnx/hub.py`` (onnx 1.20) reads it. Upstream, the files an entry names are
no longer on GitHub but in the zoo's Hugging Face copy (``onnx:`` fetches
``{hf endpoint}/onnxmodelzoo/legacy_models/resolve/main/{model_path}``, the row's second
endpoint): so each model file is also indexed as a file of that repository's ``main`` revision
in the snapshot's Hugging Face structure, and the Hugging Face routes answer it exactly as the
Hub would (``X-Repo-Commit``, ``ETag`` = sha256, ``Range``, HEAD, the API and tree listing).
The revision's commit is derived from its files (it changes when a model is added). A real
snapshot of that repository pulled with ``hf:`` takes ``main`` over; the zoo revision stays
reachable by its commit.

The model path is the one the manifest recorded (the zoo's path for a pulled model, the path
under the store's ``onnx/`` folder for an imported one). ``/onnx/{model_path}`` (the layout
before the zoo moved) still serves the file too, as does any file under ``onnx/`` at its store
path.
"""

from __future__ import annotations

import hashlib
import json

from aiohttp import hdrs, web

from ..errors import InvalidReferenceError
from ..refs import ModelRef
from ..store import Manifest, layout
from .http_files import not_found, quote_etag, send_file
from .index import HfRepo, HfRevision, ServedFile, Snapshot
from .routes import HubRoutes
from .urlpath import segments

MANIFEST_NAME = "ONNX_HUB_MANIFEST.json"
_SEED = hashlib.sha1(b"modelhub-onnx-zoo-revision-v1\n", usedforsecurity=False).hexdigest()


def _file_id(path: str, served: ServedFile) -> int:
    line = f"{path}\0{served.sha256}\0{served.size}\n".encode()
    return int(hashlib.sha1(line, usedforsecurity=False).hexdigest(), 16)


class OnnxRoutes(HubRoutes):
    """Handlers for ``/<mirror path>/...`` (``/onnx``)."""

    def collect(
        self, snap: Snapshot, manifest: Manifest, ref: ModelRef, own: dict[str, ServedFile]
    ) -> None:
        """List the model's ONNX file in the generated zoo manifest."""
        if not self.mine(ref):
            return
        models = [f for f in manifest.files if f.path.endswith(".onnx")]
        if not models:
            return
        model_file = own[models[0].path]
        details = manifest.details
        model_path = details.get("model_path")
        if not isinstance(model_path, str) or not model_path:
            model_path = model_file.rel.removeprefix("onnx/")
        try:
            layout.check_relative(model_path)
        except InvalidReferenceError:
            return
        staged = next((s for s in manifest.staged if s.format == "onnx"), None)
        opset = details.get("opset")
        if not isinstance(opset, int) and staged is not None:
            opset = staged.details.get("opset")
        io_ports = details.get("io_ports")
        if not isinstance(io_ports, dict) and staged is not None:
            io_ports = staged.details.get("io_ports")
        onnx_version = details.get("onnx_version")
        if not isinstance(onnx_version, str) and staged is not None:
            onnx_version = staged.versions.get("onnx")
        tags = [t for t in details.get("tags") or [] if isinstance(t, str)]
        snap.onnx_files[model_path] = model_file
        self._add_to_files_repo(snap, model_path, model_file)
        snap.onnx_entries.append(
            {
                "model": str(details.get("model") or ref.name),
                "model_path": model_path,
                "onnx_version": str(onnx_version or ""),
                "opset_version": int(opset) if isinstance(opset, int) else 0,
                "metadata": {
                    "model_sha": model_file.sha256,
                    "model_bytes": model_file.size,
                    "tags": tags,
                    "io_ports": io_ports or {"inputs": [], "outputs": []},
                },
            }
        )

    def files_repo(self) -> tuple[str, str]:
        """(repo id, revision) of the Hugging Face repository the zoo's files come from, read
        from the row's endpoint below the Hugging Face one (``{repo}/resolve/{revision}``)."""
        for endpoint in self.row.endpoints:
            if endpoint.under is not None:
                org, name, _, revision = endpoint.under[1].strip("/").split("/", 3)
                return f"{org}/{name}", revision
        raise LookupError(f"the {self.row.name} row has no files endpoint")

    def _add_to_files_repo(self, snap: Snapshot, model_path: str, served: ServedFile) -> None:
        """File ``model_path`` in the zoo revision of the files repository (first one wins)."""
        repo_id, name = self.files_repo()
        repo = snap.hf.setdefault(repo_id, HfRepo(repo_id))
        zoo = next((r for r in repo.by_commit.values() if r.details.get("onnx_zoo")), None)
        if zoo is None:
            # last_modified "": a real snapshot of the repository (hf:) always takes the name.
            zoo = HfRevision(repo_id, _SEED, {name}, {}, "", {"onnx_zoo": True})
            repo.by_commit[zoo.commit] = zoo
            repo.by_name.setdefault(name, zoo)
        if model_path in zoo.files:
            return
        zoo.files[model_path] = served
        # The commit is a digest of the files, kept up to date one file at a time (XOR of
        # per-file digests: independent of the order manifests are read in).
        del repo.by_commit[zoo.commit]
        zoo.commit = f"{int(zoo.commit, 16) ^ _file_id(model_path, served):040x}"
        repo.by_commit[zoo.commit] = zoo

    def add_to(self, app: web.Application) -> None:
        """Register the routes (GET answers HEAD too)."""
        app.router.add_get(f"{self.prefix}/{{tail:.*}}", self.handle)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """The generated manifest, or one model file."""
        parts = segments(request.raw_path, self.depth)
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

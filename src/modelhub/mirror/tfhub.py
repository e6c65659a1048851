"""``/tfhub/{handle}`` (and, through :mod:`.kaggle`, ``/kaggle/models/{handle}``): a
SavedModel as one tar.gz, a TFLite model as its ``.tflite`` file, a TF.js model as its files.

tensorflow_hub 0.16.1 (``compressed_module_resolver.py``, ``resolver.py``, ``file_utils.py``)
appends ``?tf-hub-format=compressed`` to any http(s) handle, opens it with ``urllib`` (no
timeout) and reads the body with ``tarfile.open(mode="r|*")``: members must be regular files
or folders (a link is an error), named relative to the model folder. Kaggle Models answers the
same query on ``/models/OWNER/MODEL/FRAMEWORK/VARIATION/VERSION``. The other forms tfhub.dev
served: ``{handle}?lite-format=tflite`` answers a TFLite model's ``.tflite`` file, and
``{handle}/{file}?tfjs-format=file`` each file of a TF.js model (``model.json`` and the weight
shards it names; tfjs-converter ``graph_model.ts`` / tfjs-core ``io/http.ts``).

The archive is deterministic (sorted members, fixed owners, modes and mtimes, gzip header
without name or time), so its identity is a digest of the manifest's file hashes. The first
request streams it while the same bytes are written to ``.modelhub/cache/mirror/``; every later
request is a plain file response from that cache (sendfile, Content-Length, ETag, Range, HEAD).
Compression runs once per model version, not once per client, and the first client gets bytes
at once instead of waiting for a large SavedModel to be compressed. When the cache folder is not
writable (a read-only store), every request streams.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as _dt
import gzip
import io
import logging
import os
import stat
import tarfile
import threading
import time
from pathlib import Path
from typing import IO, Any

from aiohttp import hdrs, web

from ..refs import ModelRef, parse
from ..registry import HubRow
from ..store import Manifest, layout
from .http_files import PROBE, not_found, probed, quote_etag, send_file
from .index import SavedModel, ServedFile, Snapshot, StoreIndex, folder_of, under
from .routes import HubRoutes
from .urlpath import segments

log = logging.getLogger("modelhub.mirror")

GZIP_LEVEL = 1  # weights are high-entropy floats: higher levels cost 3-4x CPU for a few %
_PIPE_BUFFER = 1 << 20
_SLOTS = 8
_STALE_TMP = 3600.0


def _epoch(iso: str) -> int:
    try:
        return int(_dt.datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp())
    except ValueError:
        return 0


def write_archive(model: SavedModel, out: IO[bytes]) -> None:
    """Write ``model``'s folder to ``out`` as a deterministic tar.gz.

    Raises OSError when a file is missing or no longer has the size its manifest records.
    """
    mtime = _epoch(model.created)
    folders = sorted(
        {rel.rsplit("/", i)[0] for rel in model.files for i in range(1, rel.count("/") + 1)}
    )
    with (
        gzip.GzipFile(filename="", mode="wb", fileobj=out, compresslevel=GZIP_LEVEL, mtime=0) as gz,
        tarfile.open(fileobj=gz, mode="w|", format=tarfile.PAX_FORMAT) as tar,
    ):
        for folder in folders:
            info = tarfile.TarInfo(folder)
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, mtime
            tar.addfile(info)
        for rel, served in sorted(model.files.items()):
            with open(served.path, "rb") as fh:
                if os.fstat(fh.fileno()).st_size != served.size:
                    raise OSError(f"{served.rel} changed size since its manifest was written")
                info = tarfile.TarInfo(rel)
                info.size, info.mode, info.mtime = served.size, 0o644, mtime
                tar.addfile(info, fh)


FORMAT = "tf-hub-format"
LITE_FORMAT = "lite-format"
TFJS_FORMAT = "tfjs-format"


def _tflite_files(model: SavedModel) -> list[ServedFile]:
    return [f for rel, f in sorted(model.files.items()) if rel.lower().endswith(".tflite")]


def _description(hub: str, handle: str, model: SavedModel) -> str:
    """The short text a browser gets for a handle: what it is and how to download it."""
    if _tflite_files(model):
        kind, how = "TFLite", "?lite-format=tflite"
    elif "model.json" in model.files:
        kind, how = "TF.js", "model.json?tfjs-format=file and the files it names"
    else:
        kind, how = "SavedModel", "?tf-hub-format=compressed"
    return (
        f"{hub}:{handle} ({kind}, {len(model.files)} files) served by modelhub.\n"
        f"Download it with {how}\n"
    )


def _intact(model: SavedModel) -> bool:
    """True when every file of ``model`` is a regular file of its recorded size."""
    for served in model.files.values():
        try:
            st = os.stat(served.path)
        except OSError:
            return False
        if not stat.S_ISREG(st.st_mode) or st.st_size != served.size:
            log.warning("%s is missing or changed since its manifest was written", served.rel)
            return False
    return True


class _Abort(Exception):
    """The client left and nothing else wants the bytes."""


class _Pipe(io.RawIOBase):
    """A writable file for the producer thread: bytes go to the event loop (and a tee file)."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        queue: asyncio.Queue[Any],
        slots: threading.Semaphore,
        stop: threading.Event,
        tee: IO[bytes] | None,
    ) -> None:
        super().__init__()
        self._loop, self._queue, self._slots, self._stop, self._tee = loop, queue, slots, stop, tee

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        chunk = bytes(data)
        if self._tee is not None:
            self._tee.write(chunk)
        if not self._stop.is_set():
            while not self._slots.acquire(timeout=0.5):
                if self._stop.is_set():
                    break
            else:
                self._loop.call_soon_threadsafe(self._queue.put_nowait, chunk)
        if self._stop.is_set() and self._tee is None:
            raise _Abort
        return len(chunk)


class ArchiveCache:
    """Built archives under ``.modelhub/cache/mirror`` (or none when it cannot be written)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._dir: Path | None = None
        self._checked = False
        self._building: set[str] = set()
        self._guard = threading.Lock()

    def folder(self) -> Path | None:
        """The cache folder, created on first use; None when the store is read-only."""
        if not self._checked:
            self._checked = True
            folder = self.root / layout.CACHE / "mirror"
            try:
                folder.mkdir(parents=True, exist_ok=True)
                probe = folder / f".probe.{os.getpid()}"
                probe.touch()
                probe.unlink()
                self._dir = folder
            except OSError as exc:
                log.warning("archive cache disabled (%s): SavedModels are streamed each time", exc)
        return self._dir

    @staticmethod
    def name(model: SavedModel) -> str:
        """File name of ``model``'s archive: readable key plus content digest."""
        return f"{layout.ref_key(parse(model.ref))}-{model.digest[:32]}.tar.gz"

    def cached(self, model: SavedModel) -> Path | None:
        """The finished archive of ``model``, if built."""
        folder = self.folder()
        if folder is None:
            return None
        path = folder / self.name(model)
        return path if path.is_file() else None

    def claim(self, model: SavedModel) -> Path | None:
        """The final path to build ``model``'s archive at, or None if another request is."""
        folder = self.folder()
        if folder is None:
            return None
        with self._guard:
            if model.digest in self._building:
                return None
            self._building.add(model.digest)
        return folder / self.name(model)

    def release(self, model: SavedModel) -> None:
        """Forget a claim (built or failed)."""
        with self._guard:
            self._building.discard(model.digest)

    def prune(self, keep: Path) -> None:
        """Remove older archives of the same reference and stale temporary files."""
        prefix = keep.name[: -len(".tar.gz") - 33]
        now = time.time()
        for path in keep.parent.iterdir():
            with contextlib.suppress(OSError):
                older = path != keep and path.name.startswith(prefix + "-") and path.suffix == ".gz"
                stale = path.name.endswith(".tmp") and now - path.stat().st_mtime > _STALE_TMP
                if older or stale:
                    path.unlink()


def _produce(
    model: SavedModel,
    pipe: _Pipe,
    tee: IO[bytes] | None,
    tmp: Path | None,
    final: Path | None,
    done: Any,
) -> None:
    """Producer thread: write the archive into the pipe; publish the tee'd copy if complete."""
    error: BaseException | None = None
    try:
        with io.BufferedWriter(pipe, _PIPE_BUFFER) as buffered:
            write_archive(model, buffered)
        if tee is not None and tmp is not None and final is not None:
            tee.flush()
            os.fsync(tee.fileno())
            tee.close()
            os.replace(tmp, final)
    except BaseException as exc:  # handed to the event loop, which ends the response
        error = exc
    finally:
        if tee is not None:
            tee.close()
        if tmp is not None:
            with contextlib.suppress(OSError):
                tmp.unlink()
        done(error)


class SavedModelRoutes(HubRoutes):
    """Handlers for ``/<mirror path>/<handle_prefix>/{handle}`` (``/tfhub/{handle}``)."""

    #: Path segments between the mirror path and the handle (Kaggle: ``models``).
    handle_prefix: tuple[str, ...] = ()

    def __init__(self, index: StoreIndex, row: HubRow, root: Path, page_size: int = 1000) -> None:
        super().__init__(index, row, root, page_size)
        self.cache = ArchiveCache(root)

    def collect(
        self, snap: Snapshot, manifest: Manifest, ref: ModelRef, own: dict[str, ServedFile]
    ) -> None:
        """Index the model's SavedModel folder under its handle."""
        if not self.mine(ref):
            return
        files = under(own, folder_of(manifest, ref))
        if not files:
            return
        model = SavedModel(ref.hub, ref.name, ref.canonical, files, manifest.created)
        snap.saved_models[(ref.hub, ref.name)] = model

    def add_to(self, app: web.Application) -> None:
        """Register the routes (GET answers HEAD too)."""
        base = "/".join([self.prefix, *self.handle_prefix])
        app.router.add_get(f"{base}/{{tail:.*}}", self.handle)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """A handle of this hub."""
        skip = self.depth + len(self.handle_prefix)
        return await self._handle(request, self.row.name, segments(request.raw_path, skip))

    async def _handle(
        self, request: web.Request, hub: str, parts: list[str] | None
    ) -> web.StreamResponse:
        if not parts:
            return not_found()
        handle = "/".join(parts)
        snap = await self.index.snapshot()
        model = snap.saved_models.get((hub, handle))
        if model is None:
            return await self._model_file(request, snap, hub, parts)
        lite = request.query.get(LITE_FORMAT)
        if lite is not None:
            tflite = _tflite_files(model)
            if lite != "tflite" or len(tflite) != 1:
                return not_found(text=f"{hub}:{handle} has no TFLite file to serve\n")
            return await send_file(request, tflite[0])
        fmt = request.query.get(FORMAT)
        if fmt is None:
            # What a browser gets: a short description, never the model.
            return web.Response(text=_description(hub, handle, model))
        if fmt != "compressed":
            return not_found(text=f"format {fmt!r} is not served here; use compressed")
        return await self.archive(request, model)

    async def _model_file(
        self, request: web.Request, snap: Snapshot, hub: str, parts: list[str]
    ) -> web.StreamResponse:
        """``{handle}/{file}``: one file of a model's folder (how TF.js loads model.json and
        its weight shards, with ``?tfjs-format=file``)."""
        query = request.query
        if query.get(TFJS_FORMAT, "file") != "file" or LITE_FORMAT in query or FORMAT in query:
            return not_found()
        for cut in range(len(parts) - 1, 0, -1):
            model = snap.saved_models.get((hub, "/".join(parts[:cut])))
            if model is not None:
                served = model.files.get("/".join(parts[cut:]))
                return not_found() if served is None else await send_file(request, served)
        return not_found()

    async def archive(self, request: web.Request, model: SavedModel) -> web.StreamResponse:
        """The tar.gz of ``model``: from the cache, else streamed (and cached on the way)."""
        if PROBE.get():
            return probed()
        loop = asyncio.get_running_loop()
        cached = await loop.run_in_executor(None, self.cache.cached, model)
        if cached is not None:
            served = ServedFile(cached.name, cached, model.digest, cached.stat().st_size)
            response = await send_file(request, served, content_type="application/gzip")
            if response.status != 404:
                return response
        etag = quote_etag(model.digest)
        if etag in request.headers.get(hdrs.IF_NONE_MATCH, ""):
            return web.Response(status=304, headers={hdrs.ETAG: etag})
        if not await loop.run_in_executor(None, _intact, model):
            return not_found()
        response = web.StreamResponse(
            headers={hdrs.CONTENT_TYPE: "application/gzip", hdrs.ETAG: etag}
        )
        if request.method == hdrs.METH_HEAD:
            return response
        await response.prepare(request)
        if await self._stream(response, model):
            await response.write_eof()
        elif request.transport is not None:
            # Never end a broken archive with a clean last chunk: the client must see an error.
            request.transport.abort()
        return response

    async def _stream(self, response: web.StreamResponse, model: SavedModel) -> bool:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Any] = asyncio.Queue()
        slots = threading.Semaphore(_SLOTS)
        stop = threading.Event()
        final = await loop.run_in_executor(None, self.cache.claim, model)
        tmp = tee = None
        if final is not None:
            tmp = final.with_name(f"{final.name}.{os.getpid()}.{os.urandom(4).hex()}.tmp")
            try:
                tee = open(tmp, "wb")  # noqa: SIM115 - closed by the producer
            except OSError:
                self.cache.release(model)
                final = tmp = None

        def done(error: BaseException | None) -> None:
            if final is not None:
                self.cache.release(model)
                if error is None:
                    with contextlib.suppress(OSError):
                        self.cache.prune(final)
            with contextlib.suppress(RuntimeError):  # the loop may be gone at shutdown
                loop.call_soon_threadsafe(queue.put_nowait, error or StopIteration())

        pipe = _Pipe(loop, queue, slots, stop, tee)
        thread = threading.Thread(
            target=_produce, args=(model, pipe, tee, tmp, final, done), daemon=True
        )
        thread.start()
        try:
            while True:
                item = await queue.get()
                if isinstance(item, bytes):
                    slots.release()
                    await response.write(item)
                elif isinstance(item, StopIteration):
                    return True
                else:
                    log.error("archive of %s failed: %s", model.ref, item)
                    return False
        finally:
            stop.set()

"""The mirror application: routes, the blocking ``serve()``, and a background runner for tests.

Read-only: only GET and HEAD are routed (anything else is 405), and every route answers from
the :class:`~modelhub.mirror.index.StoreIndex` of manifest-listed files. Unknown paths get a
bare 404.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

from aiohttp import web

from .hf import HfRoutes
from .index import StoreIndex
from .onnx_zoo import OnnxRoutes
from .plain import PlainRoutes
from .tfhub import SavedModelRoutes

ACCESS_LOG_FORMAT = '%a "%r" %s %b %Tf "%{User-Agent}i"'
INDEX_KEY = web.AppKey("modelhub_index", StoreIndex)
# Every request seen, as (method, path with query): how tests prove a cache hit made none.
REQUESTS_KEY = web.AppKey("modelhub_requests", list[tuple[str, str]])

log = logging.getLogger("modelhub.mirror")


@web.middleware
async def _bare_errors(request: web.Request, handler: Callable[..., object]) -> web.StreamResponse:
    """Turn aiohttp's HTML error pages (404/405 on unrouted paths) into short text."""
    try:
        return await handler(request)  # type: ignore[misc, no-any-return]
    except web.HTTPException as exc:
        if exc.status >= 400:
            return web.Response(status=exc.status, text=exc.reason, headers=exc.headers)
        raise


@web.middleware
async def _record(request: web.Request, handler: Callable[..., object]) -> web.StreamResponse:
    request.app[REQUESTS_KEY].append((request.method, request.path_qs))
    return await handler(request)  # type: ignore[misc, no-any-return]


async def _root(request: web.Request) -> web.Response:
    return web.Response(
        text="modelhub mirror: /hf /tfhub /kaggle/models /onnx /torch /keras /omnihub\n"
    )


def make_app(root: Path, *, tree_page_size: int = 1000) -> web.Application:
    """The mirror of the store at ``root`` as an aiohttp application.

    ``tree_page_size`` caps the entries of one Hugging Face tree page (the Hub's own cap is
    1000; tests lower it to exercise pagination).
    """
    root = Path(root).expanduser().absolute()
    index = StoreIndex(root)
    app = web.Application(middlewares=[_record, _bare_errors])
    app[INDEX_KEY] = index
    app[REQUESTS_KEY] = []
    app.router.add_get("/", _root)
    HfRoutes(index, page_size=tree_page_size).add_to(app)
    SavedModelRoutes(index, root).add_to(app)
    OnnxRoutes(index).add_to(app)
    PlainRoutes(index).add_to(app)
    return app


def _url(host: str, port: int) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}"


def _access_logger() -> logging.Logger:
    """aiohttp's access logger, sent to stderr unless the caller configured logging."""
    logger = logging.getLogger("aiohttp.access")
    if not logger.handlers and not logging.getLogger().handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
        logger.addHandler(handler)
        logger.propagate = False
    if logger.level == logging.NOTSET:
        logger.setLevel(logging.INFO)
    return logger


async def _start(app: web.Application, host: str, port: int) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(
        app,
        access_log=_access_logger(),
        access_log_format=ACCESS_LOG_FORMAT,
        handle_signals=False,
    )
    await runner.setup()
    site = web.TCPSite(runner, host, port, backlog=1024, reuse_address=True)
    await site.start()
    bound = runner.addresses[0]
    return runner, _url(host, int(bound[1]))


async def _serve_forever(
    app: web.Application, host: str, port: int, ready: Callable[[str], None] | None
) -> None:
    runner, url = await _start(app, host, port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, stop.set)
    try:
        log.info("serving %s at %s", app[INDEX_KEY].root, url)
        if ready is not None:
            ready(url)
        await stop.wait()
    finally:
        await runner.cleanup()


def serve(
    root: Path,
    host: str = "127.0.0.1",
    port: int = 8080,
    *,
    ready: Callable[[str], None] | None = None,
    tree_page_size: int = 1000,
) -> None:
    """Serve the store at ``root`` until SIGINT/SIGTERM; blocking, prints nothing on stdout.

    ``port`` 0 picks a free port; ``ready(url)`` is called with the bound URL once listening.
    The access log goes to stderr (logger ``aiohttp.access``). Raises OSError when the
    address cannot be bound.
    """
    app = make_app(root, tree_page_size=tree_page_size)
    asyncio.run(_serve_forever(app, host, port, ready))


class BackgroundMirror:
    """A mirror in a daemon thread, random port: ``with BackgroundMirror(root) as url: ...``."""

    def __init__(
        self, root: Path, host: str = "127.0.0.1", port: int = 0, *, tree_page_size: int = 1000
    ) -> None:
        self.root, self.host, self.port = Path(root), host, port
        self.tree_page_size = tree_page_size
        self.url = ""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self._started = threading.Event()
        self._error: BaseException | None = None
        self.app = make_app(self.root, tree_page_size=self.tree_page_size)

    @property
    def requests(self) -> list[tuple[str, str]]:
        """(method, path?query) of every request served so far."""
        seen: list[tuple[str, str]] = self.app[REQUESTS_KEY]
        return seen.copy()

    def _run(self) -> None:
        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            try:
                runner, self.url = await _start(self.app, self.host, self.port)
            except BaseException as exc:
                self._error = exc
                self._started.set()
                return
            self._started.set()
            try:
                await self._stop.wait()
            finally:
                await runner.cleanup()

        asyncio.run(main())

    def start(self) -> str:
        """Start serving; return the base URL."""
        self._thread = threading.Thread(target=self._run, name="modelhub-mirror", daemon=True)
        self._thread.start()
        self._started.wait(30)
        if self._error is not None:
            raise self._error
        if not self.url:
            raise RuntimeError("the mirror did not start within 30 s")
        return self.url

    def stop(self) -> None:
        """Stop serving and wait for the thread."""
        if self._loop is not None and self._stop is not None:
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(30)

    def __enter__(self) -> str:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextlib.contextmanager
def running(root: Path, *, tree_page_size: int = 1000) -> Iterator[str]:
    """Serve ``root`` on a random 127.0.0.1 port for the duration of the block; yield the URL."""
    with BackgroundMirror(root, tree_page_size=tree_page_size) as url:
        yield url

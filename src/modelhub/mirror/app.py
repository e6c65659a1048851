"""The mirror application: routes, the blocking ``serve()``, and a background runner for tests.

Read-only: only GET and HEAD are routed (anything else is 405), and every route answers from
the :class:`~modelhub.mirror.index.StoreIndex` of manifest-listed files. Unknown paths get a
bare 404. The mirror keeps no per-request state: a caller that wants to see the requests (a
test counting them) passes ``make_app(..., on_request=...)`` or ``BackgroundMirror(...,
record=True)``; ``serve()`` never records.
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
from aiohttp.typedefs import Handler, Middleware

from . import access as access_check
from .access import Access
from .index import StoreIndex
from .page import front_page, healthz
from .plain import OmnihubRoutes
from .routes import hub_routes

ACCESS_LOG_FORMAT = '%a "%r" %s %b %Tf "%{User-Agent}i"'
INDEX_KEY = web.AppKey("modelhub_index", StoreIndex)
# Told (method, path with query) of every request, before it is handled.
RequestHook = Callable[[str, str], None]

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


def _telling(on_request: RequestHook) -> Middleware:
    """A middleware that tells ``on_request`` of every request; it keeps nothing itself."""

    @web.middleware
    async def tell(request: web.Request, handler: Handler) -> web.StreamResponse:
        on_request(request.method, request.path_qs)
        return await handler(request)

    return tell


def make_app(
    root: Path,
    *,
    tree_page_size: int = 1000,
    on_request: RequestHook | None = None,
    access: Access | None = None,
) -> web.Application:
    """The mirror of the store at ``root`` as an aiohttp application.

    ``tree_page_size`` caps the entries of one Hugging Face tree page (the Hub's own cap is
    1000; tests lower it to exercise pagination). ``on_request(method, path_qs)`` is called
    for every request (tests keep their own log with it); without it the application keeps
    nothing per request. ``access`` is who may read what (:mod:`.access`; default: no tokens,
    so public models to anyone and gated/private ones to nobody).
    """
    root = Path(root).expanduser().absolute()
    index = StoreIndex(root)
    hubs = hub_routes(index, root, tree_page_size)
    middlewares: list[Middleware] = [] if on_request is None else [_telling(on_request)]
    middlewares.append(access_check.middleware(access or Access(), index, hubs))
    app = web.Application(middlewares=[*middlewares, _bare_errors])
    app[INDEX_KEY] = index
    app.router.add_get("/", front_page(index, hubs))
    app.router.add_get("/healthz", healthz)
    for routes in hubs:
        routes.add_to(app)
    OmnihubRoutes(index).add_to(app)
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
    access: Access | None = None,
) -> None:
    """Serve the store at ``root`` until SIGINT/SIGTERM; blocking, prints nothing on stdout.

    ``port`` 0 picks a free port; ``ready(url)`` is called with the bound URL once listening.
    The access log goes to stderr (logger ``aiohttp.access``; it never shows a request's
    headers, so no token). ``access``: see :func:`make_app`. Raises OSError when the address
    cannot be bound.
    """
    app = make_app(root, tree_page_size=tree_page_size, access=access)
    asyncio.run(_serve_forever(app, host, port, ready))


class BackgroundMirror:
    """A mirror in a daemon thread, random port: ``with BackgroundMirror(root) as url: ...``.

    ``record=True`` keeps (method, path?query) of every request in :attr:`requests`, for tests
    that count requests; without it nothing is kept per request and ``requests`` is absent.
    ``access``: see :func:`make_app`.
    """

    def __init__(
        self,
        root: Path,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        tree_page_size: int = 1000,
        record: bool = False,
        access: Access | None = None,
    ) -> None:
        self.root, self.host, self.port = Path(root), host, port
        self.tree_page_size = tree_page_size
        self.url = ""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self._started = threading.Event()
        self._error: BaseException | None = None
        self._seen: list[tuple[str, str]] | None = [] if record else None
        self.app = make_app(
            self.root,
            tree_page_size=tree_page_size,
            on_request=self._note if record else None,
            access=access,
        )

    def _note(self, method: str, path_qs: str) -> None:
        if self._seen is not None:
            self._seen.append((method, path_qs))

    @property
    def requests(self) -> list[tuple[str, str]]:
        """(method, path?query) of every request served so far (``record=True`` only)."""
        if self._seen is None:
            raise AttributeError(
                "this BackgroundMirror keeps no requests: make it with record=True to count them"
            )
        return self._seen.copy()

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

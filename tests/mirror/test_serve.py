"""The server process: random port, URL on stdout only, access log on stderr, clean stop; and a
mirror that keeps nothing per request."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
import subprocess
import sys
import threading
import types
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from modelhub.mirror import BackgroundMirror, serve
from modelhub.store import Manifest, Store
from tests.support.mirror_fixtures import raw_request


def test_process_serves_and_stops_cleanly(store: Store, populated: dict[str, Manifest]) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "modelhub", "serve", "--root", str(store.root), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:") and not url.endswith(":0")
        with urllib.request.urlopen(f"{url}/torch/models/tiny-weights.pth") as response:
            assert response.read() == (store.root / "pytorch/tiny-weights.pth").read_bytes()
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0
    assert out == ""  # nothing on stdout but the URL line read above
    assert '"GET /torch/models/tiny-weights.pth HTTP/1.1" 200' in err


def test_port_in_use_is_an_error(store: Store) -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        with pytest.raises(OSError):
            serve(store.root, port=port, ready=lambda url: None)


def test_root_path_lists_the_protocols(mirror: str) -> None:
    with urllib.request.urlopen(mirror + "/") as response:
        assert b"/hf" in response.read()


def test_empty_store_serves_nothing(tmp_path: Path) -> None:
    from modelhub.mirror import running

    with running(tmp_path / "empty") as url:
        with urllib.request.urlopen(f"{url}/onnx/ONNX_HUB_MANIFEST.json") as response:
            assert response.read() == b"[]"
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(f"{url}/hf/api/models/a/b")
        assert info.value.code == 404
        assert info.value.headers["X-Error-Code"] == "RepoNotFound"


# --- no per-request state ------------------------------------------------------------------------
# One of each kind of answer: a listing, a file, ranged and conditional reads, a JSON document, a
# 404 and a 405, so that no route keeps something per request unseen.
_PROBES: list[tuple[str, str, dict[str, str]]] = [
    ("GET", "/", {}),
    ("GET", "/torch/models/tiny-weights.pth", {}),
    ("GET", "/torch/models/tiny-weights.pth", {"Range": "bytes=3-9"}),
    ("HEAD", "/onnx/ONNX_HUB_MANIFEST.json", {}),
    ("GET", "/hf/api/models/test-org/tiny-model", {}),
    ("GET", "/hf/test-org/tiny-model/resolve/main/config.json", {"If-None-Match": '"x"'}),
    ("GET", "/no/such/path", {}),
    ("POST", "/onnx/ONNX_HUB_MANIFEST.json", {}),
]


def _held(root: object) -> int:
    """How many objects ``root`` holds: everything reachable from it through references, except
    what is shared rather than its own (modules, classes, functions' globals, event loops,
    threads, and loggers: the access log goes to handlers, which pytest's capture keeps). A
    function is followed into its closure, where a middleware keeps what it was given."""
    shared = (
        type,
        types.ModuleType,
        asyncio.AbstractEventLoop,
        threading.Thread,
        logging.Logger,
        logging.Handler,
        logging.Manager,
    )
    seen: set[int] = set()
    stack = [root]
    while stack:
        obj = stack.pop()
        if id(obj) in seen or isinstance(obj, shared):
            continue
        seen.add(id(obj))
        if isinstance(obj, types.FunctionType):
            for cell in obj.__closure__ or ():
                with contextlib.suppress(ValueError):  # an empty cell
                    stack.append(cell.cell_contents)
            continue
        stack.extend(gc.get_referents(obj))
    return len(seen)


def _probe(url: str, rounds: int) -> None:
    for _ in range(rounds):
        for method, target, headers in _PROBES:
            status, _, _ = raw_request(url, target, method, headers)
            assert 200 <= status < 500, (method, target, status)


def test_a_mirror_keeps_nothing_per_request(store: Store, populated: dict[str, Manifest]) -> None:
    """A mirror made without ``record=True`` (as ``serve()`` makes its application) holds no
    per-request state: after a warm-up, 56 more requests leave its application holding
    exactly as many objects as before, and it has no request list to read. The same measure
    on a recording mirror grows by at least one entry per request, so it does see a log."""
    growth: dict[bool, int] = {}
    for record in (False, True):
        mirror = BackgroundMirror(store.root, record=record)
        with mirror as url:
            _probe(url, 2)  # indexes, caches and lazily built state are in place
            before = _held(mirror.app)
            _probe(url, 7)
            growth[record] = _held(mirror.app) - before
        if record:
            assert len(mirror.requests) == 9 * len(_PROBES)
        else:
            assert not hasattr(mirror, "requests")
            with pytest.raises(AttributeError, match="record=True"):
                _ = mirror.requests
    assert growth[False] == 0, f"the application grew by {growth[False]} objects"
    assert growth[True] >= 7 * len(_PROBES), growth


def test_on_request_is_told_every_request(store: Store, populated: dict[str, Manifest]) -> None:
    """``make_app(on_request=...)`` calls the hook with (method, path?query) of each request,
    answered or not; the application itself keeps nothing."""
    from aiohttp import web

    from modelhub.mirror import make_app

    told: list[tuple[str, str]] = []
    app = make_app(store.root, on_request=lambda method, path: told.append((method, path)))

    async def main() -> None:
        runner = web.AppRunner(app, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        url = f"http://127.0.0.1:{runner.addresses[0][1]}"
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(None, _probe, url, 1)
            await loop.run_in_executor(None, raw_request, url, "/onnx/x.onnx?a=1&b=%2e")
        finally:
            await runner.cleanup()

    asyncio.run(main())
    assert told == [(m, t) for m, t, _ in _PROBES] + [("GET", "/onnx/x.onnx?a=1&b=%2e")]

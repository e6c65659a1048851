"""A helper process that does one SDK's share of many pulls at once, beside the caller's threads.

``modelhub sync --jobs N`` pulls its models in threads of one process, so all their Python work
shares one GIL. For Hugging Face models that work is mostly the SDK's: importing
``huggingface_hub`` (~0.2 s of CPU), then per snapshot its HTTP client, per-file threads, file
locks and cache links — and it queued behind the other hubs' work (the ONNX checks, imports of
onnx and onnxruntime) on one core while the other core idled. An :class:`Offload` starts one child
process that imports the SDK at once, while the caller begins its other pulls, and then runs the
calls of any of the caller's threads concurrently in threads of its own.

A call is a module-level function with plain-data arguments and result (pickled both ways); an
exception raised in the child is raised again in the caller (one that cannot cross the process
boundary arrives as a :class:`~modelhub.errors.ModelhubError` naming it). If the child dies,
every call waiting on it and every later one fails with :class:`OffloadCrashedError`.

In a process modelhub owns (the command line) with no other thread running, on Linux, the
child is forked directly (~1 ms): no thread can hold a lock the child would inherit, and
modelhub knows every file and socket the process has open. Otherwise (a program calling the
library, whose open sockets and locks a fork would duplicate) the child comes from a
``forkserver`` (Linux) or is spawned (elsewhere), as the staging workers are
(:mod:`modelhub.workers`): ~0.1 s more before the SDK import starts. Either way it
takes the caller's environment of the moment, ignores Ctrl-C (the caller handles it) and, on
Linux, dies with its parent.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import pickle
import signal
import sys
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from ._frameworks import owns_process
from .errors import ModelhubError, OffloadCrashedError


def _portable(call_id: int, ok: bool, value: Any) -> bytes:
    """The pickled reply; an outcome that would not survive the trip becomes an error naming it."""
    try:
        data = pickle.dumps((call_id, ok, value))
        pickle.loads(data)  # an exception whose constructor takes other arguments fails here
        return data
    except Exception as exc:
        what = f"{type(value).__name__}: {value}" if not ok else f"its result ({exc})"
        return pickle.dumps((call_id, False, ModelhubError(f"{what} (in the helper process)")))


def _serve(conn: Any, environ: dict[str, str], threads: int, warm: Callable[[], None]) -> None:
    """The child: warm up, then run each request in a thread of its own and send its outcome."""
    from concurrent.futures import ThreadPoolExecutor

    from .workers import worker_init

    worker_init(environ)
    send_lock = threading.Lock()

    def run(call_id: int, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
        try:
            data = _portable(call_id, True, fn(*args))
        except BaseException as exc:  # handed to the caller, whatever it is
            data = _portable(call_id, False, exc)
        with send_lock:
            conn.send_bytes(data)

    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="modelhub-offload") as pool:
        with contextlib.suppress(Exception):  # each call that needs the SDK then says why
            warm()
        while True:
            try:
                request = conn.recv()
            except (EOFError, OSError):
                break
            if request is None:
                break
            pool.submit(run, *request)


def _context() -> Any:
    if sys.platform.startswith("linux") and owns_process() and threading.active_count() == 1:
        import multiprocessing

        return multiprocessing.get_context("fork")
    from .workers import worker_context

    return worker_context()


class Offload:
    """One helper process running up to ``threads`` calls at once; thread-safe.

    ``warm`` (a module-level function) runs in the child first, before any call: the SDK
    import. ``what`` names the helper in errors. Use as a context manager, or call
    :meth:`close`.
    """

    def __init__(self, threads: int, warm: Callable[[], None], what: str = "SDK") -> None:
        self.what = what
        context = _context()
        self._conn, child = context.Pipe()
        self._process = context.Process(
            target=_serve,
            args=(child, dict(os.environ), max(1, threads), warm),
            name="modelhub-offload",
            daemon=True,
        )
        self._process.start()
        child.close()
        self.pid: int | None = self._process.pid
        self._ids = itertools.count()
        self._waiting: dict[int, Future[Any]] = {}
        self._lock = threading.Lock()
        self._dead = False
        self._reader = threading.Thread(target=self._read, name="modelhub-offload", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while True:
            try:
                call_id, ok, value = pickle.loads(self._conn.recv_bytes())
            except (EOFError, OSError):
                break
            with self._lock:
                future = self._waiting.pop(call_id, None)
            if future is not None:
                if ok:
                    future.set_result(value)
                else:
                    future.set_exception(value)
        with self._lock:
            self._dead = True
            waiting, self._waiting = self._waiting, {}
        if waiting:
            crashed = self._crashed()
            for future in waiting.values():
                future.set_exception(crashed)

    def _crashed(self) -> OffloadCrashedError:
        self._process.join(timeout=1)  # its exit status, when it has one
        code = self._process.exitcode
        if code is not None and code < 0:
            try:
                how = f": killed by {signal.Signals(-code).name}"
            except ValueError:
                how = f": killed by signal {-code}"
        else:
            how = f" (exit code {code})" if code is not None else ""
        return OffloadCrashedError(f"the {self.what} helper process {self.pid} died{how}")

    def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        """``fn(*args)`` in the helper process: its result, or its exception raised here."""
        future: Future[Any] = Future()
        with self._lock:
            sent = not self._dead
            if sent:
                call_id = next(self._ids)
                self._waiting[call_id] = future
                try:
                    self._conn.send((call_id, fn, args))
                except OSError:
                    self._waiting.pop(call_id, None)
                    sent = False
        if not sent:  # waiting for its exit status is done outside the lock
            raise self._crashed()
        return future.result()

    def close(self, *, wait: bool = True) -> None:
        """Stop the helper: after the calls running now (``wait``), else at once."""
        if wait:
            with self._lock, contextlib.suppress(OSError):
                self._conn.send(None)
            self._process.join(timeout=60)
        if self._process.is_alive():
            self._process.kill()
            self._process.join()
        self._conn.close()
        self._reader.join(timeout=5)

    def __enter__(self) -> Offload:
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        # On an error (Ctrl-C included) the calls still running are not waited for: their
        # callers are gone, and the SDK's cache keeps only completed files under their names.
        self.close(wait=exc_type is None)

"""Staging in worker processes, for many models at once (``modelhub sync --jobs N``).

Downloads mostly wait on the network, so threads overlap them well; staging is CPU work in
Python and native code (ONNX checks, ``torch.onnx.export``, TensorFlow freezing, parity runs)
that holds the GIL for much of its time, so threads queue behind one another on one core. A
:class:`ProcessStager` runs each ``hub.stage()`` call in a pool of worker processes instead
(at most one per CPU), which also isolates the frameworks: a crash in native code fails that
model, not the sync, and a worker's memory goes back to the system when the pool closes.

What crosses the process boundary is plain data (the reference, the manifest, the request and
the staged entries that come back); the worker writes the staged files into the store itself,
with the same atomic publication as in-process staging. The caller keeps holding the model's
lock and writes the manifest, as :func:`modelhub.pipeline.pull` always does.

Workers are started with ``forkserver`` on Linux (a clean process forks them: the caller's
threads and sockets are never duplicated) and ``spawn`` elsewhere; they take the caller's
environment as it is when the pool starts, ignore Ctrl-C (the caller handles it) and, on
Linux, die with their parent (``PR_SET_PDEATHSIG``).
"""

from __future__ import annotations

import os
import threading
from typing import TYPE_CHECKING

from .errors import StagingCrashedError
from .workers import worker_context, worker_init

if TYPE_CHECKING:
    from concurrent.futures import ProcessPoolExecutor

    from .hubs import ModelHub, StageRequest
    from .refs import ModelRef
    from .store import Manifest
    from .store.manifest import StagedEntry


def _stage_in_worker(
    root: str, link_mode: str, ref: ModelRef, manifest: Manifest, request: StageRequest
) -> list[StagedEntry]:
    from .hubs import get_hub
    from .store import Store

    hub = get_hub(ref.hub, Store(root, link_mode=link_mode))
    return hub.stage(ref, manifest, request)


class ProcessStager:
    """Runs ``hub.stage()`` calls in up to ``workers`` processes; thread-safe; a context manager.

    The pool starts on the first call, so a sync with nothing to stage starts no process.
    """

    def __init__(self, workers: int) -> None:
        self.workers = max(1, workers)
        self._pool: ProcessPoolExecutor | None = None
        self._lock = threading.Lock()

    def __enter__(self) -> ProcessStager:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _executor(self) -> ProcessPoolExecutor:
        with self._lock:
            if self._pool is None:
                # Imported on first use: a sync whose models need no worker never pays for
                # multiprocessing's import.
                from concurrent.futures import ProcessPoolExecutor

                self._pool = ProcessPoolExecutor(
                    max_workers=self.workers,
                    mp_context=worker_context(),
                    initializer=worker_init,
                    initargs=(dict(os.environ),),
                )
            return self._pool

    def _discard(self, pool: ProcessPoolExecutor) -> None:
        with self._lock:
            if self._pool is pool:
                self._pool = None
        pool.shutdown(wait=False, cancel_futures=True)

    def stage(
        self, hub: ModelHub, ref: ModelRef, manifest: Manifest, request: StageRequest
    ) -> list[StagedEntry]:
        """``hub.stage(ref, manifest, request)``, run in a worker process."""
        from concurrent.futures.process import BrokenProcessPool

        pool = self._executor()
        store = hub.store
        try:
            future = pool.submit(
                _stage_in_worker, str(store.root), store.link_mode, ref, manifest, request
            )
            return future.result()
        except BrokenProcessPool:
            # Every call running in this pool fails with it; later calls get a new pool.
            self._discard(pool)
            raise StagingCrashedError(
                f"staging {ref} to {request.fmt}: the worker process died "
                "(a crash in the framework, or killed); nothing was staged"
            ) from None

    def close(self) -> None:
        """Stop the workers (after the calls running now)."""
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)

"""How modelhub starts its worker processes (the sync's staging workers, :mod:`.stager`, and the
SDK helper, :mod:`.offload`): ``forkserver`` on Linux, ``spawn`` elsewhere; each worker takes
the caller's environment, ignores Ctrl-C and dies with its parent.
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Any

from ._frameworks import own_process

_PR_SET_PDEATHSIG = 1


def worker_context() -> Any:
    """The multiprocessing context of modelhub's worker processes: ``forkserver`` on Linux (a
    clean process forks them: the caller's threads and sockets are never duplicated), else
    ``spawn``."""
    import multiprocessing

    if sys.platform.startswith("linux"):
        context = multiprocessing.get_context("forkserver")
        # The fork server need not import the caller's __main__ (a script without an
        # `if __name__ == "__main__"` guard would run again): workers only need modelhub's
        # modules, which they import by name.
        context.set_forkserver_preload([])
        return context
    return multiprocessing.get_context("spawn")


def worker_init(environ: dict[str, str]) -> None:
    """First thing in a worker process: the caller's environment, modelhub's own process,
    Ctrl-C ignored (the caller handles it), and on Linux death with the parent."""
    # The environment of the caller now, not of whoever started the fork server: settings,
    # SDK caches (HF_HUB_CACHE, TORCH_HOME, KERAS_HOME, ...) and tokens are read from it.
    os.environ.clear()
    os.environ.update(environ)
    own_process()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if sys.platform.startswith("linux"):
        import ctypes

        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        except (OSError, AttributeError):
            pass
        if os.getppid() == 1:  # the parent died before prctl took effect
            os._exit(1)

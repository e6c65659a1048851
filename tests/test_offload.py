"""The helper process of a parallel sync (modelhub.offload): calls run there, concurrently;
outcomes come back typed; a dead helper fails its calls instead of hanging them."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from modelhub.errors import HashMismatchError, HTTPStatusError, ModelhubError, OffloadCrashedError
from modelhub.offload import Offload

# --- functions run in the helper (module level: they travel by name) ---------------------------
_state: dict[str, object] = {}
_state_lock = threading.Lock()


def _warm() -> None:
    _state["warm_pid"] = os.getpid()


def _warm_fails() -> None:
    raise RuntimeError("no SDK here")


def _warmed_by() -> object:
    return _state.get("warm_pid")


def _meet(parties: int) -> int:
    """Return once ``parties`` calls are inside at the same time (BrokenBarrierError if not)."""
    with _state_lock:
        barrier = _state.setdefault("barrier", threading.Barrier(parties, timeout=20))
    assert isinstance(barrier, threading.Barrier)
    barrier.wait()
    return os.getpid()


def _raise(kind: str) -> None:
    if kind == "hash":
        raise HashMismatchError("model.bin arrived with sha256 00ab…")
    if kind == "status":
        raise HTTPStatusError("HTTP 418 from the hub", 418)
    raise _Unportable("a", "b")


class _Unportable(Exception):
    def __init__(self, a: str, b: str) -> None:  # pickle rebuilds it with one argument: fails
        super().__init__(f"{a}-{b}")


def _die() -> None:
    os._exit(7)


def _echo(value: object) -> object:
    return value


# --- tests --------------------------------------------------------------------------------------
def test_calls_run_at_once_in_the_helper_after_its_warm_up() -> None:
    with Offload(3, _warm) as helper:
        assert helper.call(_warmed_by) == helper.pid  # warm ran in the child, before any call
        with ThreadPoolExecutor(3) as pool:
            # Each call waits inside the helper until all three are there: done one after the
            # other, the barrier would time out and the calls raise BrokenBarrierError.
            pids = list(pool.map(lambda _: helper.call(_meet, 3), range(3)))
        assert pids == [helper.pid] * 3 and helper.pid != os.getpid()
        assert helper.call(_echo, {"plan": [1, 2]}) == {"plan": [1, 2]}


def test_errors_come_back_with_their_type_and_fields() -> None:
    with Offload(1, _warm_fails) as helper:  # a failed warm-up does not stop the helper
        with pytest.raises(HashMismatchError, match="sha256 00ab"):
            helper.call(_raise, "hash")
        with pytest.raises(HTTPStatusError) as caught:
            helper.call(_raise, "status")
        assert caught.value.status == 418
        with pytest.raises(ModelhubError, match=r"_Unportable: a-b \(in the helper process\)"):
            helper.call(_raise, "other")
        assert helper.call(_echo, 5) == 5  # still serving


def test_a_dead_helper_fails_waiting_and_later_calls() -> None:
    helper = Offload(2, _warm)
    try:
        with pytest.raises(
            OffloadCrashedError, match=r"SDK helper process \d+ died \(exit code 7\)"
        ):
            helper.call(_die)
        with pytest.raises(OffloadCrashedError):
            helper.call(_echo, 1)
    finally:
        helper.close()


_START_METHODS = """
import threading
from modelhub._frameworks import own_process
from modelhub.offload import Offload, _context
from tests.test_offload import _warm, _warmed_by

print(_context().get_start_method())  # a program calling the library: never forked
own_process()  # the command line's process
stop = threading.Event()
other = threading.Thread(target=stop.wait)
other.start()  # a thread could hold a lock the forked child would inherit held
print(_context().get_start_method())
stop.set()
other.join()
print(_context().get_start_method())
with Offload(1, _warm) as helper:
    print(helper.call(_warmed_by) == helper.pid)
"""


def test_forks_only_its_own_process_without_other_threads() -> None:
    if not sys.platform.startswith("linux"):
        pytest.skip("fork and forkserver are the Linux choices")
    done = subprocess.run(
        [sys.executable, "-c", _START_METHODS], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-800:]
    assert done.stdout.split() == ["forkserver", "forkserver", "fork", "True"]

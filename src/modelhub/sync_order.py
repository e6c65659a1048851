"""The order in which ``modelhub sync`` starts its models, and the hand-out to its workers.

Only ``spec.ref.hub`` of each model matters here: a hub's first model pays the hub's one-time
set-up (its SDK import, under the GIL), and hubs differ in how many round trips a model costs.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING

from . import registry
from .errors import UnsupportedError

if TYPE_CHECKING:
    from .modelset import ModelSpec


def _weight(hub: str) -> int:
    """Rough relative cost of one model of ``hub`` (its registry row's ``weight``): metadata
    round trips before the bytes, SDK work."""
    try:
        return registry.row(hub).weight
    except UnsupportedError:  # a hub this version does not know: its models fail in the pull
        return 2


def schedule(specs: Sequence[ModelSpec]) -> list[int]:
    """The order to start the models in (indexes into ``specs``).

    First one model of each hub, costliest hubs first: each hub's one-time set-up (importing
    its SDK, which holds the GIL) then overlaps with the other hubs' network waits instead of
    queueing behind itself. Then the rest, longest first (by hub), so that the quick models
    come last and no worker is left with a long pull while the others have finished.
    """

    def weight(i: int) -> int:
        return _weight(specs[i].ref.hub)

    first: dict[str, int] = {}
    for i, spec in enumerate(specs):
        first.setdefault(spec.ref.hub, i)
    wave = sorted(first.values(), key=lambda i: (-weight(i), i))
    started = set(wave)
    rest = sorted((i for i in range(len(specs)) if i not in started), key=lambda i: (-weight(i), i))
    return wave + rest


class Picker:
    """Hands out models in :func:`schedule` order, holding back a hub still warming up.

    A hub's first model pays its one-time set-up (``hub.warm_up()``: the SDK import, ~0.2 s
    of CPU for huggingface_hub). Until that is done, a free worker takes a model of another
    hub rather than the next of the same hub, which would only wait on the import lock; when
    nothing else is left it takes the held-back model anyway.
    """

    def __init__(self, specs: Sequence[ModelSpec]) -> None:
        self._hubs = [spec.ref.hub for spec in specs]
        self._pending = schedule(specs)
        self._started: set[str] = set()
        self._warm: set[str] = set()
        self._lock = threading.Lock()

    def next(self) -> tuple[int, bool] | None:
        """The next model to start and whether it is its hub's first; None when none is left."""
        with self._lock:
            if not self._pending:
                return None
            pick = next(
                (
                    i
                    for i in self._pending
                    if self._hubs[i] in self._warm or self._hubs[i] not in self._started
                ),
                self._pending[0],
            )
            self._pending.remove(pick)
            hub = self._hubs[pick]
            first = hub not in self._started
            self._started.add(hub)
            return pick, first

    def warm(self, index: int) -> None:
        """The hub of model ``index`` is set up (its ``warm_up`` returned or failed)."""
        with self._lock:
            self._warm.add(self._hubs[index])

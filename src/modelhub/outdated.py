"""``modelhub outdated``: has a hub changed a model since it was pulled (or locked)?

Only metadata is requested, never model bytes. Each hub's adapter answers for its own models
(``ModelHub.check_upstream``; the types and the HTTP validator comparison are in
:mod:`modelhub.upstream`); this module runs the checks, many at once, and turns every failure
into a state: ``unreachable`` (network, offline), ``missing`` (the hub no longer has it),
``unknown`` (the hub offers nothing to compare) or ``error`` (e.g. access denied).
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from .config import settings
from .errors import (
    EXIT_CHANGES,
    EXIT_ERROR,
    EXIT_NETWORK,
    EXIT_OK,
    ModelhubError,
    ModelNotFoundError,
    NetworkError,
    OfflineError,
    UnsupportedError,
    exit_code_for,
)
from .hubs import get_hub
from .store import Store
from .upstream import STATES, Memo, Recorded, UpstreamStatus, status


def check(recorded: Recorded, store: Store, memo: Memo | None = None) -> UpstreamStatus:
    """Ask ``recorded.ref``'s hub for its current revision (metadata only).

    Never raises for a failure of the hub or the network: it is the returned status.
    """
    memo = memo or Memo()
    try:
        if settings().offline:
            raise OfflineError("offline mode is on")
        return get_hub(recorded.ref.hub, store).check_upstream(recorded, memo)
    except NetworkError as exc:
        return status(recorded, "unreachable", None, "", str(exc), exc)
    except ModelNotFoundError as exc:
        return status(recorded, "missing", None, "", str(exc), exc)
    except UnsupportedError as exc:
        return status(recorded, "unknown", None, "", str(exc))
    except ModelhubError as exc:
        return status(recorded, "error", None, "", str(exc), exc)
    except Exception as exc:  # an SDK's unexpected answer: one model's error, not the run's
        err = ModelhubError(f"{type(exc).__name__}: {exc}")
        return status(recorded, "error", None, "", str(err), err)


# --- many ---------------------------------------------------------------------------------------
def check_many(
    records: Sequence[Recorded], store: Store, *, jobs: int | None = None
) -> list[UpstreamStatus]:
    """Check every record (in parallel, ``jobs`` at once); results in the records' order."""
    if not records:
        return []
    memo = Memo()
    workers = max(1, min(jobs or 8, len(records)))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(lambda r: check(r, store, memo), records))


def check_store(
    refs: Sequence[str] | None = None, *, store: Store | None = None, jobs: int | None = None
) -> list[UpstreamStatus]:
    """Check the models ``refs`` (default: every model in the store).

    Raises NotInStoreError (exit 3) for a named model that was never pulled.
    """
    from .pipeline import as_ref

    st = store if store is not None else Store()
    if refs:
        manifests = [st.require(as_ref(r)) for r in refs]
    else:
        manifests = sorted((m for _, m in st.manifests()), key=lambda m: m.ref)
    return check_many([Recorded.from_manifest(m) for m in manifests], st, jobs=jobs)


def exit_code(statuses: Sequence[UpstreamStatus]) -> int:
    """``EXIT_CHANGES`` (10) if any model changed (or is gone) upstream: the question is
    answered even when another hub could not be asked; else 6 if a hub was unreachable; else
    the code of another failure (e.g. 4, access denied); else 0 (``unknown`` counts as no
    change)."""
    if any(s.changed for s in statuses):
        return EXIT_CHANGES
    if any(s.state == "unreachable" for s in statuses):
        return EXIT_NETWORK
    for s in statuses:
        if s.state == "error":
            return exit_code_for(s.error) if s.error is not None else EXIT_ERROR
    return EXIT_OK


__all__ = [
    "STATES",
    "Recorded",
    "UpstreamStatus",
    "check",
    "check_many",
    "check_store",
    "exit_code",
]

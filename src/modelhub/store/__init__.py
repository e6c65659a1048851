"""The store: layout, atomic publication, locks, link modes and manifests.

Submodules load on first use (PEP 562) so that ``store.lookup`` (the CLI's cache-hit path)
does not pay for dataclasses and the writer.
"""

from __future__ import annotations

# Not `from typing import ...`: typing costs ~3 ms at start-up, the fast path's budget.
TYPE_CHECKING = False

if TYPE_CHECKING:
    from typing import Any

    from .manifest import FileEntry, Manifest, StagedEntry
    from .store import Store

_LAZY = {
    "FileEntry": "manifest",
    "Manifest": "manifest",
    "StagedEntry": "manifest",
    "Store": "store",
}

__all__ = ["FileEntry", "Manifest", "StagedEntry", "Store"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'modelhub.store' has no attribute {name!r}")

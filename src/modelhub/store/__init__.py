"""The store: layout, atomic publication, locks, link modes and manifests."""

from .manifest import FileEntry, Manifest, StagedEntry
from .store import Store

__all__ = ["FileEntry", "Manifest", "StagedEntry", "Store"]

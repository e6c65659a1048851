"""The seed interface, kept for callers that want one hub object: ``modelhub.get_hub(name)``
returns the hub's adapter with ``download_model`` and ``stage_model`` on top.

It sits above the pipeline (it calls :func:`modelhub.pipeline.pull`), so the adapters below
never call back into the code that drives them: the object returned is an instance of a
subclass of the hub's adapter class that adds :class:`SeedInterface`.
"""

from __future__ import annotations

import enum
import functools
import os
from pathlib import Path

from .errors import UnsupportedError
from .hubs import ModelHub, adapter_class
from .pipeline import pull, stage_existing
from .refs import parse
from .store import Store


class StorageType(enum.Enum):
    """How original files are kept in the store."""

    COMPRESSED = "compressed"
    UNCOMPRESSED = "uncompressed"


class SeedInterface(ModelHub):
    """``download_model``/``stage_model`` over :func:`~modelhub.pipeline.pull` (mixed into
    each hub's adapter class by :func:`get_hub`)."""

    def download_model(self, path: str, storage: StorageType = StorageType.UNCOMPRESSED) -> Path:
        """Download the model ``path`` (the reference without the hub prefix) into the store.

        Returns the absolute path of the original artifact. Nothing is staged.
        """
        ref = parse(f"{self.name}:{path}")
        model = pull(ref, stage="none", storage=storage.value, store=self.store)
        return model.original

    def stage_model(self, model: Path) -> Path:
        """Stage an original artifact previously downloaded into the store (default stage).

        Returns the absolute path of the staged artifact. Raises UnsupportedError when ``model``
        is not an original file of this hub's models in the store.
        """
        rel = Path(os.path.abspath(model)).relative_to(self.store.root).as_posix()
        for _, manifest in self.store.manifests():
            if manifest.hub == self.name and rel in manifest.all_paths():
                ref = parse(manifest.ref)
                staged = stage_existing(ref, "auto", store=self.store)
                return staged.path
        raise UnsupportedError(
            f"{model} is not an original file of a {self.name}: model in {self.store.root}"
        )


@functools.cache
def _seed_class(adapter: type[ModelHub]) -> type[ModelHub]:
    return type(adapter.__name__, (SeedInterface, adapter), {"__module__": adapter.__module__})


def get_hub(name: str, store: Store | None = None) -> ModelHub:
    """The adapter of hub ``name`` bound to ``store``, with the seed interface
    (``download_model``, ``stage_model``). Raises UnsupportedError (exit 2) for unknown hubs."""
    return _seed_class(adapter_class(name))(store)


__all__ = ["SeedInterface", "StorageType", "get_hub"]

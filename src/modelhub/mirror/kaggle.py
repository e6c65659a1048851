"""``/kaggle/models/{handle}``: Kaggle Models' SavedModels, served as TF Hub's are
(:class:`~modelhub.mirror.tfhub.SavedModelRoutes`), at the path kaggle.com answers them."""

from __future__ import annotations

from ..refs import ModelRef
from ..store import Manifest
from .index import ServedFile, Snapshot
from .tfhub import SavedModelRoutes


class KaggleRoutes(SavedModelRoutes):
    """``/kaggle/models/OWNER/MODEL/FRAMEWORK/VARIATION[/VERSION]``."""

    handle_prefix = ("models",)

    def collect(
        self, snap: Snapshot, manifest: Manifest, ref: ModelRef, own: dict[str, ServedFile]
    ) -> None:
        """As a SavedModel; a handle pulled without a version is also served at
        ``.../VARIATION/<version>``, as upstream serves it."""
        super().collect(snap, manifest, ref, own)
        model = snap.saved_models.get((ref.hub, ref.name))
        version = str(manifest.details.get("version") or manifest.revision)
        if self.mine(ref) and model is not None and ref.name.count("/") == 3 and version.isdigit():
            snap.saved_models.setdefault((ref.hub, f"{ref.name}/{version}"), model)

"""``kaggle:OWNER/MODEL/FRAMEWORK/VARIATION[/VERSION]`` — Kaggle Models, TensorFlow 2
variations, fetched as TF Hub does (``{base}/models/{handle}?tf-hub-format=compressed``, the
form kaggle.com and tensorflow_hub use) through the shared machinery of :mod:`.savedmodel`.
"""

from __future__ import annotations

from ..refs import ModelRef
from .savedmodel import SavedModelArchiveHub


class KaggleHub(SavedModelArchiveHub):
    """Kaggle Models, TensorFlow 2 variations (``kaggle:OWNER/MODEL/TensorFlow2/VAR[/VER]``)."""

    name = "kaggle"

    def handle_url(self, ref: ModelRef) -> str:
        """``{base}/models/{handle}``, the form kaggle.com and tensorflow_hub use."""
        return f"{self.hub_url}/models/{ref.name}"

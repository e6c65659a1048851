"""``modelhub view REF``: a model of the store in the netron viewer (optional extra ``view``).

netron (``pip install 'modelhub[view]'``) serves its web app and the model from a local HTTP
server: ``/`` is the app (its ``index.html`` names the model in ``<meta name="file"
content="/data/NAME">``) and ``/data/NAME`` is the model file; files beside it (ONNX external
data) are served from the same folder. modelhub binds it to 127.0.0.1 only.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import NotFoundError, UnsupportedError
from .store import Manifest, Store

HOST = "127.0.0.1"
# In a folder-shaped model (a snapshot, a SavedModel), the file netron should open, best first.
_FOLDER_PREFERENCE = (
    ".onnx",
    "saved_model.pb",
    ".safetensors",
    ".tflite",
    ".h5",
    ".keras",
    ".pt",
    ".pth",
    ".bin",
    ".pb",
)


def artifact(store: Store, manifest: Manifest, *, original: bool = False) -> Path:
    """The file to show: the first staged artifact (unless ``original``), else the original
    file; for a folder, its model file (by ``_FOLDER_PREFERENCE``, then the largest file).

    Raises NotFoundError when the file is missing from the store.
    """
    candidates: list[str] = []
    if not original:
        candidates += [s.path for s in manifest.staged]
    files = [f for f in manifest.files]
    for suffix in _FOLDER_PREFERENCE:
        candidates += [f.path for f in files if f.path.lower().endswith(suffix)]
    candidates += [f.path for f in sorted(files, key=lambda f: -f.size)]
    for rel in candidates:
        path = store.abspath(rel)
        if path.is_file():
            return path
    raise NotFoundError(f"{manifest.ref}: its files are missing from {store.root}; pull it again")


@dataclass
class Viewer:
    """A running netron server: its URL, the file it shows, and how to stop it."""

    url: str
    path: Path
    address: tuple[str, int]

    @property
    def model_url(self) -> str:
        """Where netron serves the model file itself."""
        import urllib.parse

        return f"{self.url}/data/{urllib.parse.quote(self.path.name)}"

    def alive(self) -> bool:
        """True while the server runs."""
        return bool(_netron().status(self.address))

    def stop(self) -> None:
        """Stop the server."""
        _netron().stop(self.address)

    def wait(self) -> None:
        """Block until the server stops (or KeyboardInterrupt)."""
        while self.alive():
            time.sleep(0.2)


def _netron() -> Any:
    try:
        import netron
    except ImportError:
        raise UnsupportedError(
            "modelhub view needs netron: pip install 'modelhub[view]' (or pip install netron)"
        ) from None
    return netron


def start(path: Path, *, port: int = 0, browse: bool = False) -> Viewer:
    """Serve ``path`` with netron on 127.0.0.1:``port`` (0: a free port); open a browser when
    ``browse``. Returns at once; the server runs in a daemon thread of this process.

    Raises UnsupportedError (exit 2) when netron is not installed, OSError when the port is
    taken.
    """
    netron = _netron()
    address = netron.start(str(path), address=(HOST, int(port)), browse=browse)
    host, bound = address
    return Viewer(url=f"http://{host}:{bound}", path=Path(path), address=(host, int(bound)))


__all__ = ["HOST", "Viewer", "artifact", "start"]

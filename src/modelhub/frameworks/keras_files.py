"""Keras in modelhub's processes: importing it quietly, and what a Keras file holds.

- :func:`import_keras`: Keras (and TensorFlow beneath it), imported once with TensorFlow's
  start-up chatter muted; :func:`quiet_keras` for the calls that print;
- :func:`keras_file_kind` / :func:`weights_only_note`: a full model or weights only, from the
  file's own structure (HDF5 ``model_config``, ``.keras`` ``config.json``);
- :func:`load_keras_model`: a full model opened with ``safe_mode`` on.

Shared by the hub adapters (``keras:``, ``url:``) and the conversions (:mod:`modelhub.staging`).
"""

from __future__ import annotations

import contextlib
import os
import sys
import warnings
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .._frameworks import settle
from ..errors import IntegrityError, StagingError, UnsupportedError

# TensorFlow reads this once, when Keras first imports it: set it before any Keras import here.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"


# --- quiet ------------------------------------------------------------------------------------
@contextlib.contextmanager
def quiet_keras() -> Iterator[None]:
    """Keep Keras/TF chatter (warnings, absl lines, stdout prints) off stdout and quieter."""
    import logging

    from .tf_env import quiet_tf

    absl = logging.getLogger("absl")  # Keras' "saving as HDF5 is legacy" lines go through it
    level = absl.level
    absl.setLevel(logging.ERROR)
    try:
        with (
            quiet_tf(),
            contextlib.redirect_stdout(sys.stderr),
            warnings.catch_warnings(),
        ):
            warnings.simplefilter("ignore")
            yield
    finally:
        absl.setLevel(level)


@contextlib.contextmanager
def _muted_stderr_fd() -> Iterator[None]:
    """Point file descriptor 2 at /dev/null for the block (not with ``MODELHUB_DEBUG=1``)."""
    from ..config import settings

    if settings().debug:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def import_keras() -> Any:
    """Import Keras (and TensorFlow beneath it); return the module.

    TensorFlow's C++ logging prints lines at import and at device discovery that no
    environment variable silences, while modelhub's stderr carries one-line messages: the
    first import runs with stderr muted at the file-descriptor level (errors still arrive as
    exceptions; ``MODELHUB_DEBUG=1`` keeps everything).
    """
    if "keras" in sys.modules:
        return sys.modules["keras"]
    import importlib.util

    if importlib.util.find_spec("keras") is None:
        from ..errors import UsageError

        raise UsageError(
            "keras: models need Keras and TensorFlow: pip install 'modelhub[tensorflow]'"
        )
    with _muted_stderr_fd():
        import keras

        if keras.backend.backend() == "tensorflow":
            import tensorflow as tf

            tf.config.list_physical_devices()  # device discovery logs now, muted
    settle()
    return keras


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:240] if text else type(exc).__name__


def versions() -> dict[str, str]:
    """Versions of the packages a staged Keras file depends on."""
    import h5py

    keras = import_keras()

    found = {"keras": keras.__version__, "h5py": h5py.__version__}
    if "tensorflow" in sys.modules:
        found["tensorflow"] = sys.modules["tensorflow"].__version__
    return found


def is_hdf5(path: Path) -> bool:
    """True when ``path`` starts like an HDF5 file (the signature may sit at 0, 512, 1024...)."""
    with open(path, "rb") as fh:
        for offset in (0, 512, 1024, 2048):
            fh.seek(offset)
            if fh.read(8) == HDF5_MAGIC:
                return True
    return False


def keras_file_kind(path: Path) -> str:
    """``"model"`` for a full model (architecture + weights), ``"weights"`` for weights only.

    A legacy HDF5 full model carries a ``model_config`` attribute; a ``.keras`` archive a
    ``config.json``. Raises IntegrityError for a file that is neither HDF5 nor a zip.
    """
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            return "model" if "config.json" in archive.namelist() else "weights"
    if not is_hdf5(path):
        raise IntegrityError(f"{path.name} is neither an HDF5 file nor a .keras archive")
    import h5py

    with h5py.File(path, "r") as h5:
        return "model" if "model_config" in h5.attrs else "weights"


def weights_only_note(path: Path) -> str | None:
    """The note for a manifest when ``path`` holds weights only (None for a full model)."""
    if keras_file_kind(path) == "model":
        return None
    return (
        f"{path.name} holds weights only (no architecture): it is stored as it is; "
        "staging needs a full model (model.save) or keras:NAME for a Keras application"
    )


def load_keras_model(path: Path) -> Any:
    """Open a full Keras model file (``.h5``/``.hdf5``/``.keras``) with ``keras.models.load_model``.

    ``safe_mode`` stays on: a Lambda layer's Python code is refused, not run. Raises
    UnsupportedError for a weights-only file, StagingError when Keras cannot load it.
    """
    if keras_file_kind(path) != "model":
        raise UnsupportedError(weights_only_note(path) or f"{path.name} is not a full model")
    keras = import_keras()

    with quiet_keras():
        try:
            return keras.models.load_model(str(path), compile=False)
        except Exception as exc:
            raise StagingError(f"keras cannot load {path.name}: {first_line(exc)}") from None

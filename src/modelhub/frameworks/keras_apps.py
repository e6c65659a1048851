"""Keras Applications: which weights file an application asks for, and building it from the
Keras cache. Knowledge the ``keras:`` hub (what to download) and its staging (what to build)
share; read from ``keras.applications`` itself, never from a hand-written table.
"""

from __future__ import annotations

import contextlib
import inspect
import re
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ModelhubError, ModelNotFoundError, StagingError, UsageError
from .keras_files import first_line, import_keras, quiet_keras

# ``keras.src.utils.file_utils.get_file`` is a module attribute every application looks up at
# call time; swapping it is process-wide, so discovery and builds take turns.
_GET_FILE_LOCK = threading.RLock()


@dataclass(frozen=True)
class WeightsFile:
    """The weights file an application asks Keras' ``get_file`` for."""

    fname: str
    origin: str
    file_hash: str | None
    cache_subdir: str

    @property
    def hash_algorithm(self) -> str | None:
        """The algorithm of ``file_hash`` (None without one)."""
        return hash_algorithm(self.file_hash) if self.file_hash else None


def hash_algorithm(file_hash: str) -> str:
    """``sha256`` for 64 hex digits, else ``md5``, as ``get_file(hash_algorithm="auto")``."""
    return "sha256" if len(file_hash) == 64 else "md5"


class _WeightsRequested(Exception):
    """Raised by the discovery recorder to stop an application at its ``get_file`` call."""

    def __init__(self, arguments: dict[str, Any]) -> None:
        super().__init__("weights requested")
        self.arguments = arguments


def application_names() -> list[str]:
    """Every application ``keras.applications`` exports (its public builder functions)."""
    keras = import_keras()

    return sorted(
        name
        for name in dir(keras.applications)
        if name[:1].isupper() and callable(getattr(keras.applications, name))
    )


def application(name: str) -> Callable[..., Any]:
    """The builder ``keras.applications.<name>``.

    Raises ModelNotFoundError (exit 3) naming the closest applications when there is none.
    """
    import difflib

    keras = import_keras()

    names = application_names()
    if name in names:
        return getattr(keras.applications, name)  # type: ignore[no-any-return]
    same_case = [n for n in names if n.lower() == name.lower()]
    close = same_case or difflib.get_close_matches(name, names, n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(close)}?" if close else f" (e.g. {', '.join(names[:6])})"
    raise ModelNotFoundError(f"keras.applications has no {name!r}{hint}")


def _call_application(name: str, kwargs: Mapping[str, Any]) -> Any:
    builder = application(name)
    try:
        return builder(weights="imagenet", **dict(kwargs))
    except _WeightsRequested:
        raise
    except (ValueError, TypeError) as exc:
        # Keras validates the options (input sizes, alpha values) with ValueError.
        raise UsageError(f"keras.applications.{name}: {first_line(exc)}") from None


@contextlib.contextmanager
def _get_file_replaced(replacement: Callable[..., Any]) -> Iterator[Callable[..., Any]]:
    """Swap Keras' ``get_file`` for ``replacement`` in the block; yield the original."""
    import_keras()
    from keras.src.utils import file_utils

    with _GET_FILE_LOCK:
        original = file_utils.get_file
        file_utils.get_file = replacement
        try:
            yield original
        finally:
            file_utils.get_file = original


def discover_weights(name: str, kwargs: Mapping[str, Any]) -> WeightsFile:
    """The weights file (name, origin URL, hash, cache folder) application ``name`` expects.

    Keras 3 publishes no registry of these: each application computes the file name from its
    options (alpha, input size, include_top) and passes it, with the origin URL and the hash,
    straight to ``keras.src.utils.file_utils.get_file`` (looked up as a module attribute at call
    time). So the application is built with ``weights="imagenet"`` while ``get_file`` is
    replaced by a recorder that keeps the arguments and aborts the build before anything is
    read or downloaded. This is discovery, not a test double: the values come from the
    installed Keras' own code, for exactly these options.

    Raises ModelNotFoundError for an unknown application, UsageError for options Keras
    rejects, StagingError if the application never asks for a weights file.
    """
    import_keras()
    from keras.src.utils import file_utils

    signature = inspect.signature(file_utils.get_file)

    def recorder(*args: Any, **kw: Any) -> Any:
        raise _WeightsRequested(dict(signature.bind(*args, **kw).arguments))

    with quiet_keras(), _get_file_replaced(recorder):
        try:
            _call_application(name, kwargs)
        except _WeightsRequested as found:
            args = found.arguments
        else:
            raise StagingError(f"keras.applications.{name} loaded no weights file")
    origin = str(args.get("origin") or "")
    fname = str(args.get("fname") or origin.rsplit("/", 1)[-1])
    file_hash = args.get("file_hash") or args.get("md5_hash")
    return WeightsFile(
        fname=fname,
        origin=origin,
        file_hash=str(file_hash).lower() if file_hash else None,
        cache_subdir=str(args.get("cache_subdir") or "datasets"),
    )


def build_application(
    name: str, kwargs: Mapping[str, Any], weights: WeightsFile, cache_dir: Path
) -> Any:
    """Build application ``name`` with ``weights="imagenet"``, its weights from ``cache_dir``.

    Keras' own ``get_file`` finds the file at ``cache_dir/<cache_subdir>/<fname>`` (and checks
    its hash when it has one). It is called with ``cache_dir`` pinned because Keras reads
    ``KERAS_HOME`` once, at import, while modelhub placed the file where ``KERAS_HOME`` points
    now. The file must be there: nothing is downloaded while building.

    Raises StagingError when the file is missing or the application asks for another file.
    """
    expected = cache_dir / weights.cache_subdir / weights.fname
    if not expected.is_file():
        raise StagingError(f"{weights.fname} is not in the Keras cache at {expected.parent}")
    import_keras()
    from keras.src.utils import file_utils

    original = file_utils.get_file
    signature = inspect.signature(original)

    def pinned(*args: Any, **kw: Any) -> Any:
        arguments = dict(signature.bind(*args, **kw).arguments)
        if arguments.get("fname") != weights.fname:
            raise StagingError(
                f"keras.applications.{name} asked for {arguments.get('fname')!r}, "
                f"not the fetched {weights.fname!r}"
            )
        arguments["cache_dir"] = str(cache_dir)
        arguments["force_download"] = False
        return original(**arguments)

    with quiet_keras(), _get_file_replaced(pinned):
        try:
            return _stable_input_names(_call_application(name, kwargs))
        except ModelhubError:
            raise
        except Exception as exc:
            raise StagingError(
                f"keras.applications.{name} could not load {weights.fname}: {first_line(exc)}"
            ) from None


def _stable_input_names(model: Any) -> Any:
    """Undo Keras' per-process numbering of the applications' unnamed inputs.

    Keras names an unnamed Input ``input_layer``, then ``input_layer_1``, ``_2``... for each
    model built in the process (discovery builds one too), so the staged files and the manifest
    would depend on what ran before. The names are reset to ``input_layer``.
    """
    keras = import_keras()

    inputs = [layer for layer in model.layers if isinstance(layer, keras.layers.InputLayer)]
    others = {layer.name for layer in model.layers} - {layer.name for layer in inputs}
    for i, layer in enumerate(inputs):
        wanted = "input_layer" if len(inputs) == 1 else f"input_layer_{i}"
        if re.fullmatch(r"input_layer(_\d+)?", layer.name) and wanted not in others:
            layer.name = wanted
    return model


def parse_shape(raw: Any, rank: int = 3) -> list[int]:
    """``"96,96,3"``, ``"96x96x3"`` or a sequence → ``[96, 96, 3]``: an input shape without
    the batch, of ``rank`` sizes (a leading batch size, if given too, is dropped).

    Raises UsageError for anything else."""
    try:
        if isinstance(raw, str):
            dims = [int(x) for x in raw.replace("x", ",").split(",") if x.strip()]
        else:
            dims = [int(x) for x in raw]
    except (TypeError, ValueError):
        raise UsageError(f"--input-shape {raw!r} is not like 224,224,3") from None
    if len(dims) == rank + 1:
        dims = dims[1:]
    if len(dims) != rank or any(d <= 0 for d in dims):
        raise UsageError(f"--input-shape {raw!r} needs {rank} positive sizes, like 224,224,3")
    return dims

"""Stages ``h5``, ``keras`` and ``pb`` for Keras models: Keras Applications and full-model files.

Everything here that runs Keras:

- :func:`application` / :func:`discover_weights`: an application and the weights file it asks
  ``get_file`` for, learnt from ``keras.applications`` itself (no hand-written table);
- :func:`build_application`: the application built with ``weights="imagenet"``, its weights
  read by Keras' own ``get_file`` from the Keras cache the hub filled (no network);
- :func:`stage_model`: the model saved as a full model (legacy HDF5 ``.h5`` and/or ``.keras``),
  reloaded with ``keras.models.load_model`` and checked against the model it was saved from on
  seeded inputs; or frozen to a flat GraphDef (``pb``) through ``tf.function`` and
  ``convert_variables_to_constants_v2`` (tf2onnx cannot read Keras 3 models) and run in a
  fresh session against the model;
- :func:`stage_url_keras`: the same for a ``url:`` ``.h5``/``.hdf5``/``.keras`` full model;
  a weights-only file has no architecture to stage and says so.

Staging is stateless: each call builds or loads its model, writes into the store's tmp folder,
proves parity and only then publishes (a failed check publishes nothing).
"""

from __future__ import annotations

import contextlib
import inspect
import os
import re
import sys
import threading
import warnings
import zipfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._frameworks import settle
from ..errors import (
    IntegrityError,
    ModelhubError,
    ModelNotFoundError,
    StagingError,
    UnsupportedError,
    UsageError,
)
from .parity import DEFAULT_TOLERANCE, compare

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ..refs import ModelRef
    from ..store import Manifest, StagedEntry, Store

# TensorFlow reads this once, when Keras first imports it: set it before any Keras import here.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# Applications are image models: an unknown spatial size becomes the ImageNet one.
APP_UNKNOWN_DIM = 224
# Other models (url:) get small sizes for unknown dimensions.
UNKNOWN_DIM = 8
PARITY_BATCH = 2
HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
_TF_NAME = re.compile(r"[A-Za-z0-9.][A-Za-z0-9_.\-/]*")

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


# --- quiet ------------------------------------------------------------------------------------
@contextlib.contextmanager
def quiet_keras() -> Iterator[None]:
    """Keep Keras/TF chatter (warnings, absl lines, stdout prints) off stdout and quieter."""
    import logging

    from .freeze_tf import quiet_tf

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


def _first_line(exc: BaseException) -> str:
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


# --- applications -----------------------------------------------------------------------------
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
        raise UsageError(f"keras.applications.{name}: {_first_line(exc)}") from None


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
                f"keras.applications.{name} could not load {weights.fname}: {_first_line(exc)}"
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


# --- files ------------------------------------------------------------------------------------
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
            raise StagingError(f"keras cannot load {path.name}: {_first_line(exc)}") from None


# --- parity inputs and runs -------------------------------------------------------------------
def input_names(model: Any) -> list[str]:
    """Names of the model's input layers, in the order of ``model.inputs``."""
    keras = import_keras()

    by_output = {
        id(layer.output): layer.name
        for layer in model.layers
        if isinstance(layer, keras.layers.InputLayer)
    }
    return [by_output.get(id(t), f"input_{i}") for i, t in enumerate(model.inputs)]


def output_names(model: Any) -> list[str]:
    """Names of the model's outputs (``model.output_names``)."""
    names = list(getattr(model, "output_names", None) or [])
    return (
        names
        if len(names) == len(model.outputs)
        else [f"output_{i}" for i in range(len(model.outputs))]
    )


def example_inputs(
    model: Any, fill: int = UNKNOWN_DIM, shapes: Sequence[Sequence[int]] | None = None
) -> list[Any]:
    """Seeded inputs for ``model``: batch 2, unknown dimensions ``fill`` (or ``shapes``)."""
    import numpy as np

    rng = np.random.default_rng(0)
    feeds = []
    for i, tensor in enumerate(model.inputs):
        if shapes is not None:
            dims = [int(d) for d in shapes[i]]
        else:
            dims = [fill if d is None else int(d) for d in tensor.shape]
            dims[0] = PARITY_BATCH
        dtype = np.dtype(str(tensor.dtype))
        if dtype.kind == "f":
            feeds.append(rng.standard_normal(dims).astype(dtype))
        elif dtype.kind in "iu":
            feeds.append(rng.integers(0, 10, size=dims).astype(dtype))
        elif dtype.kind == "b":
            feeds.append(rng.integers(0, 2, size=dims).astype(bool))
        else:
            raise StagingError(f"cannot build an example input of dtype {dtype}")
    return feeds


def run_model(model: Any, feeds: Sequence[Any]) -> list[Any]:
    """Run ``model`` in inference mode; return its outputs as a flat list of numpy arrays."""
    keras = import_keras()
    from keras import tree

    with quiet_keras():
        out = model(list(feeds) if len(feeds) > 1 else feeds[0], training=False)
        return [keras.ops.convert_to_numpy(t) for t in tree.flatten(out)]


# --- staging ----------------------------------------------------------------------------------
def _tmp(store: Store, stem: str, suffix: str) -> Path:
    return store.tmp_dir / f".{stem}.{os.getpid()}.{os.urandom(4).hex()}{suffix}"


def _publish(
    store: Store,
    ref: ModelRef,
    tmp: Path,
    rel: str,
    fmt: str,
    converter: str,
    inputs: list[str],
    outputs: list[str],
    parity: dict[str, Any],
    details: dict[str, Any],
) -> StagedEntry:
    from ..store import StagedEntry
    from ..store.files import sha256_file

    sha, size = sha256_file(tmp)
    store.publish(tmp, rel, ref, sha, size)
    return StagedEntry(
        path=rel,
        format=fmt,
        sha256=sha,
        size=size,
        converter=converter,
        versions=versions(),
        inputs=inputs,
        outputs=outputs,
        parity=parity,
        details=details,
    )


def save_full(
    store: Store,
    ref: ModelRef,
    model: Any,
    rel: str,
    fmt: str,
    feeds: Sequence[Any],
    reference: Sequence[Any],
    details: Mapping[str, Any],
    tolerance: float = DEFAULT_TOLERANCE,
) -> StagedEntry:
    """Save ``model`` as a full model (``fmt`` ``h5`` or ``keras``) at ``rel``, parity-checked.

    The file is written in the store's tmp folder, reloaded with ``keras.models.load_model``
    and run on ``feeds``; only when it matches ``reference`` within ``tolerance`` is it
    published. Raises ParityError (exit 5) otherwise, StagingError when saving or loading fails.
    """
    keras = import_keras()

    suffix = ".h5" if fmt == "h5" else ".keras"
    tmp = _tmp(store, Path(rel).stem, suffix)
    try:
        with quiet_keras():
            try:
                model.save(str(tmp))
                reloaded = keras.models.load_model(str(tmp), compile=False)
            except Exception as exc:
                raise StagingError(
                    f"{ref}: saving as {suffix} failed: {_first_line(exc)}"
                ) from None
        names = output_names(model)
        parity = compare(
            reference,
            run_model(reloaded, feeds),
            what=f"reloaded {suffix} vs the model",
            tolerance=tolerance,
            names=names,
        )
        converter = "keras.Model.save (legacy HDF5)" if fmt == "h5" else "keras.Model.save"
        return _publish(
            store, ref, tmp, rel, fmt, converter, input_names(model), names, parity, dict(details)
        )
    finally:
        tmp.unlink(missing_ok=True)


def _tf_name(name: str, index: int, taken: set[str]) -> str:
    candidate = name if _TF_NAME.fullmatch(name) else f"input_{index}"
    if candidate in taken:
        candidate = f"{candidate}_{index}"
    taken.add(candidate)
    return candidate


def freeze_model(
    store: Store,
    ref: ModelRef,
    model: Any,
    rel: str,
    feeds: Sequence[Any],
    reference: Sequence[Any],
    details: Mapping[str, Any],
    tolerance: float = DEFAULT_TOLERANCE,
) -> StagedEntry:
    """Freeze ``model`` into one flat GraphDef at ``rel`` (``pb``), parity-checked.

    ``tf.function`` over the model in inference mode (batch dimension left open), then
    ``convert_variables_to_constants_v2``; the GraphDef must be flat and, run in a fresh
    session as an importer would, match ``reference``. Raises IntegrityError/ParityError
    (exit 5), StagingError when Keras does not run on TensorFlow.
    """
    keras = import_keras()

    if keras.backend.backend() != "tensorflow":
        raise StagingError(
            f"--stage pb needs Keras on TensorFlow (KERAS_BACKEND={keras.backend.backend()})"
        )
    from .freeze_tf import check_flat, run_frozen

    with quiet_keras():
        import tensorflow as tf
        from tensorflow.python.framework.convert_to_constants import (
            convert_variables_to_constants_v2,
        )

        taken: set[str] = set()
        names_in = input_names(model)
        placeholders = [_tf_name(n, i, taken) for i, n in enumerate(names_in)]
        specs = [
            tf.TensorSpec([None, *list(t.shape)[1:]], t.dtype, name=placeholder)
            for t, placeholder in zip(model.inputs, placeholders, strict=True)
        ]

        def serve(*args: Any) -> tuple[Any, ...]:
            out = model(list(args) if len(args) > 1 else args[0], training=False)
            return tuple(tf.nest.flatten(out))

        try:
            concrete = tf.function(serve).get_concrete_function(*specs)
            frozen = convert_variables_to_constants_v2(concrete)
        except Exception as exc:
            raise StagingError(f"{ref}: freezing failed: {_first_line(exc)}") from None
        graph_def = frozen.graph.as_graph_def()
        check_flat(graph_def)
        graph_bytes = graph_def.SerializeToString()
        tensors_in = [t.name for t in frozen.inputs if t.dtype != tf.resource]
        tensors_out = [t.name for t in frozen.outputs]
        names_out = output_names(model)
        actual = run_frozen(graph_bytes, dict(zip(tensors_in, feeds, strict=True)), tensors_out)
    parity = compare(
        reference, actual, what="frozen graph vs the model", tolerance=tolerance, names=names_out
    )
    tmp = _tmp(store, Path(rel).stem, ".pb")
    try:
        tmp.write_bytes(graph_bytes)
        extra = {
            **details,
            "input_map": dict(zip(names_in, tensors_in, strict=True)),
            "output_map": dict(zip(names_out, tensors_out, strict=True)),
        }
        return _publish(
            store,
            ref,
            tmp,
            rel,
            "pb",
            "convert_variables_to_constants_v2",
            tensors_in,
            tensors_out,
            parity,
            extra,
        )
    finally:
        tmp.unlink(missing_ok=True)


def stage_model(
    store: Store,
    ref: ModelRef,
    model: Any,
    stem: str,
    formats: Sequence[str],
    details: Mapping[str, Any],
    *,
    fill: int = UNKNOWN_DIM,
    shapes: Sequence[Sequence[int]] | None = None,
    avoid: str | None = None,
) -> list[StagedEntry]:
    """Stage a built or loaded Keras ``model`` in each of ``formats``; return the entries.

    ``h5`` gives ``<stem>.h5``, ``keras`` ``<stem>.keras``, ``pb`` ``<stem>.pb``, all checked
    against the model's own outputs on one set of seeded inputs (unknown dimensions ``fill``,
    or ``shapes``). A staged path equal to ``avoid`` (the original file) gets ``.staged``
    before its extension.
    """
    from ..store import layout

    bad = [f for f in formats if f not in ("h5", "keras", "pb")]
    if bad:
        raise UnsupportedError(f"{ref}: a Keras model stages to h5, keras or pb, not {bad[0]!r}")
    feeds = example_inputs(model, fill, shapes)
    reference = run_model(model, feeds)
    shapes_used = {"input_shapes": [list(f.shape) for f in feeds]}

    def rel_for(kind: str) -> str:
        rel = layout.staged_path(ref, stem, kind)
        return layout.staged_path(ref, f"{stem}.staged", kind) if rel == avoid else rel

    info = {**details, **shapes_used}
    return [
        freeze_model(store, ref, model, rel_for(kind), feeds, reference, info)
        if kind == "pb"
        else save_full(store, ref, model, rel_for(kind), kind, feeds, reference, info)
        for kind in formats
    ]


def stage_url_keras(
    store: Store,
    ref: ModelRef,
    manifest: Manifest,
    options: Mapping[str, Any],
    fmt: str = "h5",
) -> StagedEntry:
    """Stage a ``url:`` ``.h5``/``.hdf5``/``.keras`` full model; return the primary entry.

    The file is loaded with ``keras.models.load_model`` (a Keras 2 / tf_keras ``.h5`` loads
    in Keras 3) and saved as ``keras/<stem>.h5`` (``fmt`` ``h5``), ``.keras`` or ``.pb``,
    parity-checked against the loaded model. ``options["input_shape"]`` (without the batch)
    replaces unknown dimensions. Raises UnsupportedError for a weights-only file (no
    architecture), StagingError when Keras cannot load it, ParityError (exit 5) on mismatch.
    """
    original = manifest.files[0]
    path = store.abspath(original.path)
    model = load_keras_model(path)
    shapes = None
    raw = options.get("input_shape")
    if raw and len(model.inputs) == 1:
        shapes = [[PARITY_BATCH, *parse_shape(raw, rank=len(model.inputs[0].shape) - 1)]]
    stem = Path(original.path).name.rsplit(".", 1)[0]
    details = {"source_file": original.path}
    [staged] = stage_model(
        store, ref, model, stem, [fmt], details, shapes=shapes, avoid=original.path
    )
    return staged


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


__all__ = [
    "WeightsFile",
    "application",
    "application_names",
    "build_application",
    "discover_weights",
    "hash_algorithm",
    "keras_file_kind",
    "load_keras_model",
    "parse_shape",
    "stage_model",
    "stage_url_keras",
    "weights_only_note",
]

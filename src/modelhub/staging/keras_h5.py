"""Stages ``h5``, ``keras`` and ``pb`` for Keras models: Keras Applications and full-model files.

- :func:`stage_model`: a built or loaded model saved as a full model (``.h5`` and/or
  ``.keras``), reloaded and checked against the model on seeded inputs (the ``.h5`` in the
  Keras 2 layout DL4J reads, by a tf_keras twin, when that matches; else Keras 3's, with
  ``details["dl4j_error"]``); or frozen to a flat GraphDef (``pb``) through
  ``tf.function`` and ``convert_variables_to_constants_v2`` (tf2onnx cannot read Keras 3
  models) and run in a fresh session against the model;
- :func:`stage_url_keras`: the same for a ``url:`` ``.h5``/``.hdf5``/``.keras`` full model;
  a weights-only file has no architecture to stage and says so.

Building an application and reading Keras files is :mod:`modelhub.frameworks` knowledge.
Staging is stateless: each call builds or loads its model, writes into the store's tmp folder,
proves parity and only then publishes (a failed check publishes nothing).
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..errors import ParityError, StagingError, UnsupportedError
from ..frameworks.keras_apps import parse_shape
from ..frameworks.keras_files import (
    first_line,
    import_keras,
    load_keras_model,
    quiet_keras,
    versions,
)
from .keras2_h5 import KERAS2_CONVERTER, save_keras2
from .onnx_dl4j import ERROR_KEY, READY_KEY
from .parity import DEFAULT_TOLERANCE, compare, write_fixture

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ..refs import ModelRef
    from ..store import Manifest, StagedEntry, Store

# Applications are image models: an unknown spatial size becomes the ImageNet one.
APP_UNKNOWN_DIM = 224
# Other models (url:) get small sizes for unknown dimensions.
UNKNOWN_DIM = 8
PARITY_BATCH = 2
_TF_NAME = re.compile(r"[A-Za-z0-9.][A-Za-z0-9_.\-/]*")


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
    fixture: tuple[Sequence[Any], Sequence[Any]],
) -> StagedEntry:
    from ..store import StagedEntry
    from ..store.files import sha256_file

    sha, size = sha256_file(tmp)
    store.publish(tmp, rel, ref, sha, size)
    fixture_record = write_fixture(store, ref, rel, *fixture)
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
        fixture=fixture_record,
    )


#: The details key saying why a ``.h5`` is in Keras 3's layout although tf_keras rebuilt the
#: model (Keras 3 cannot read tf_keras' file); ``pull --for dl4j`` then adds the Keras 2 copy.
KERAS3_NOTE = "dl4j_note"


def _keras3_reads(
    path: Path,
    feeds: Sequence[Any],
    reference: Sequence[Any],
    tolerance: float,
    names: Sequence[str],
) -> str | None:
    """None when Keras 3 loads the ``.h5`` at ``path`` and matches ``reference``; else why
    not (one line)."""
    keras = import_keras()
    with quiet_keras():
        try:
            reloaded = keras.models.load_model(str(path), compile=False)
            actual = run_model(reloaded, feeds)
        except Exception as exc:
            return first_line(exc).split(" using config=")[0]
    try:
        compare(reference, actual, what="Keras 3", tolerance=tolerance, names=list(names))
    except ParityError as exc:
        return str(exc).split(";")[0]
    return None


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
    names = output_names(model)
    info = dict(details)
    try:
        if fmt == "h5":
            # The Keras 2 layout by default (DL4J reads no other), when tf_keras rebuilds the
            # model, its file matches and Keras 3 loads it too; else Keras 3's, saying why.
            try:
                parity = save_keras2(ref, model, tmp, feeds, reference, tolerance, names)
                keras3 = _keras3_reads(tmp, feeds, reference, tolerance, names)
            except (StagingError, ParityError) as exc:
                tmp.unlink(missing_ok=True)
                info[ERROR_KEY] = f"{exc} (the .h5 is in Keras 3's layout, which DL4J refuses)"
            else:
                if keras3 is not None:
                    tmp.unlink(missing_ok=True)
                    info[KERAS3_NOTE] = (
                        f"the .h5 is in Keras 3's layout (DL4J refuses it): Keras 3 cannot load "
                        f"the Keras 2 one tf_keras writes ({keras3}); pull --for dl4j adds it"
                    )
            if ERROR_KEY not in info and KERAS3_NOTE not in info:
                import tf_keras

                published = _publish(
                    store,
                    ref,
                    tmp,
                    rel,
                    fmt,
                    KERAS2_CONVERTER,
                    input_names(model),
                    names,
                    parity,
                    {**info, READY_KEY: True, "rewrites": ["tf_keras"]},
                    (feeds, reference),
                )
                return dataclasses.replace(
                    published, versions={**published.versions, "tf_keras": tf_keras.__version__}
                )
        with quiet_keras():
            try:
                model.save(str(tmp))
                reloaded = keras.models.load_model(str(tmp), compile=False)
            except Exception as exc:
                raise StagingError(f"{ref}: saving as {suffix} failed: {first_line(exc)}") from None
        parity = compare(
            reference,
            run_model(reloaded, feeds),
            what=f"reloaded {suffix} vs the model",
            tolerance=tolerance,
            names=names,
        )
        converter = "keras.Model.save (legacy HDF5)" if fmt == "h5" else "keras.Model.save"
        return _publish(
            store,
            ref,
            tmp,
            rel,
            fmt,
            converter,
            input_names(model),
            names,
            parity,
            info,
            (feeds, reference),
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
            raise StagingError(f"{ref}: freezing failed: {first_line(exc)}") from None
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
            (feeds, reference),
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


# --- --for dl4j: the Keras 2 layout beside a .h5 staged in Keras 3's ------------------------
def dl4j_h5_entry(store: Store, ref: ModelRef, entry: StagedEntry) -> StagedEntry:
    """The Keras 2 layout of the staged ``.h5`` of ``entry``, which DL4J's KerasModelImport
    reads (it refuses Keras 3's): ``<stem>.dl4j.h5``, written by tf_keras from a twin of the
    model with its weights copied, reloaded with tf_keras and checked against ``entry``'s
    fixture (the source's outputs); published with its own fixture (the same arrays). (The
    default ``.h5`` staging is already in that layout when tf_keras can rebuild the model;
    this is for a ``.h5`` staged before that.)

    Raises StagingError (one line) when tf_keras cannot rebuild the model, ParityError
    (exit 5) when the reloaded twin's numbers differ (nothing is published).
    """
    from .onnx_dl4j import FOR_DL4J, dl4j_path, read_fixture

    inputs, reference = read_fixture(store, entry)
    model = load_keras_model(store.abspath(entry.path))
    rel = dl4j_path(entry.path)
    tmp = _tmp(store, Path(rel).stem, ".h5")
    try:
        tolerance = float((entry.parity or {}).get("tolerance", DEFAULT_TOLERANCE))
        parity = save_keras2(ref, model, tmp, inputs, reference, tolerance, entry.outputs)
        import tf_keras

        published = _publish(
            store,
            ref,
            tmp,
            rel,
            "h5",
            KERAS2_CONVERTER,
            list(entry.inputs),
            list(entry.outputs),
            parity,
            {"for": FOR_DL4J, "rewrites": ["tf_keras"], "source": entry.path},
            (inputs, reference),
        )
        return dataclasses.replace(
            published, versions={**published.versions, "tf_keras": tf_keras.__version__}
        )
    finally:
        tmp.unlink(missing_ok=True)


__all__ = [
    "APP_UNKNOWN_DIM",
    "UNKNOWN_DIM",
    "dl4j_h5_entry",
    "example_inputs",
    "freeze_model",
    "run_model",
    "save_full",
    "stage_model",
    "stage_url_keras",
]

"""Stage ``pb``: a SavedModel signature frozen into one flat GraphDef, parity-checked.

TF2 path: ``tf.saved_model.load`` + ``convert_variables_to_constants_v2`` on the signature (the
loaded object is kept alive while freezing). TF1 fallback for legacy SavedModels that TF 2.21
cannot load: the v1 loader in a Session and ``convert_variables_to_constants``. Either way the
result must be flat — no variable ops, no function-call ops, no function library — or staging
fails with exit 5 saying why. Parity: the frozen graph against the SavedModel on seeded inputs
built from the signature's specs (unknown dimensions become small sizes).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import IntegrityError, StagingError
from ..frameworks.tf_env import quiet_tf
from .parity import DEFAULT_TOLERANCE, compare, write_fixture

VARIABLE_OPS = frozenset(
    {
        "VarHandleOp",
        "VariableV2",
        "Variable",
        "ReadVariableOp",
        "AssignVariableOp",
        "VarIsInitializedOp",
        "ResourceGather",
    }
)
CALL_OPS = frozenset({"PartitionedCall", "StatefulPartitionedCall"})
UNKNOWN_DIM = 2


@dataclass(frozen=True)
class Frozen:
    """A frozen graph and what it takes and gives."""

    graph_bytes: bytes
    inputs: list[str]  # tensor names, e.g. "x:0"
    outputs: dict[str, str]  # signature output key -> tensor name
    input_keys: dict[str, str]  # signature input key -> tensor name
    parity: dict[str, Any]
    loader: str  # "tf2" or "tf1"
    versions: dict[str, str]
    #: (seeded inputs in ``inputs`` order, the SavedModel's outputs in sorted key order).
    fixture: tuple[list[Any], list[Any]]


def _example(dtype: Any, shape: list[int | None], rng: Any) -> Any:
    import numpy as np

    dims = [UNKNOWN_DIM if d is None or d < 0 else int(d) for d in shape]
    np_dtype = dtype.as_numpy_dtype
    if dtype.is_floating:
        return rng.standard_normal(dims).astype(np_dtype)
    if dtype.is_integer:
        return rng.integers(0, 10, size=dims).astype(np_dtype)
    if dtype.is_bool:
        return rng.integers(0, 2, size=dims).astype(bool)
    if dtype.name == "string":
        return np.array([b"modelhub"] * int(np.prod(dims)), dtype=object).reshape(dims)
    raise StagingError(f"cannot build an example input of dtype {dtype.name}")


def check_flat(graph_def: Any) -> None:
    """Raise IntegrityError unless ``graph_def`` is flat: no variables, calls or functions."""
    bad = sorted({n.op for n in graph_def.node if n.op in VARIABLE_OPS | CALL_OPS})
    if bad:
        raise IntegrityError(
            f"the frozen graph still has {', '.join(bad)} ops: it cannot be "
            "frozen into a flat GraphDef"
        )
    if len(graph_def.library.function):
        raise IntegrityError(
            f"the frozen graph still has {len(graph_def.library.function)} "
            "library functions: it cannot be frozen into a flat GraphDef"
        )


@contextlib.contextmanager
def plain_graphs() -> Iterator[Any]:
    """Run graphs as written in the block, without grappler's rewrites; yield a matching
    ``ConfigProto`` for ``tf.compat.v1.Session``.

    Parity runs each graph once on a small batch: grappler optimising a large graph first
    costs more than the run (and a plain run is what a GraphDef importer reproduces).
    """
    import tensorflow as tf

    config = tf.compat.v1.ConfigProto()
    config.graph_options.rewrite_options.disable_meta_optimizer = True
    saved = tf.config.optimizer.get_experimental_options()
    tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": True})
    try:
        yield config
    finally:
        tf.config.optimizer.set_experimental_options(
            {"disable_meta_optimizer": bool(saved.get("disable_meta_optimizer", False))}
        )


def run_frozen(graph_bytes: bytes, feeds: Mapping[str, Any], outputs: list[str]) -> list[Any]:
    """Run a frozen GraphDef in a fresh graph and session (as an importer would)."""
    import tensorflow as tf

    graph_def = tf.compat.v1.GraphDef()
    graph_def.ParseFromString(graph_bytes)
    with tf.Graph().as_default() as graph, plain_graphs() as config:
        tf.compat.v1.import_graph_def(graph_def, name="")
        with tf.compat.v1.Session(graph=graph, config=config) as sess:
            return list(sess.run(outputs, feed_dict=dict(feeds)))


def _freeze_tf2(
    saved: Path, signature: str, rng: Any
) -> tuple[Any, dict[str, str], dict[str, str], dict[str, Any], dict[str, Any]]:
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import (
        convert_variables_to_constants_v2,
    )

    loaded = tf.saved_model.load(str(saved))  # kept alive until freezing is done
    if signature not in loaded.signatures:
        names = ", ".join(sorted(loaded.signatures)) or "none"
        raise StagingError(f"no signature {signature!r} (the SavedModel has: {names})")
    fn = loaded.signatures[signature]
    frozen = convert_variables_to_constants_v2(fn)
    graph_def = frozen.graph.as_graph_def()
    _, spec_kwargs = fn.structured_input_signature
    feeds_by_key = {
        k: _example(s.dtype, s.shape.as_list(), rng) for k, s in sorted(spec_kwargs.items())
    }
    placeholders = [t for t in frozen.inputs if t.dtype != tf.resource]
    # Frozen inputs keep the signature's argument order; map them back to keys by name.
    input_keys: dict[str, str] = {}
    for key in feeds_by_key:
        match = [t for t in placeholders if t.name.split(":")[0] == key]
        input_keys[key] = match[0].name if match else placeholders[len(input_keys)].name
    out_keys = sorted(fn.structured_outputs)
    outputs = {key: t.name for key, t in zip(out_keys, frozen.outputs, strict=True)}
    with plain_graphs():
        reference = fn(**{k: tf.constant(v) for k, v in feeds_by_key.items()})
    ref_values = {k: reference[k].numpy() for k in out_keys}
    del loaded
    return graph_def, input_keys, outputs, feeds_by_key, ref_values


def _freeze_tf1(
    saved: Path, signature: str, rng: Any
) -> tuple[Any, dict[str, str], dict[str, str], dict[str, Any], dict[str, Any]]:
    import tensorflow as tf

    with tf.Graph().as_default() as graph, tf.compat.v1.Session(graph=graph) as sess:
        meta = tf.compat.v1.saved_model.loader.load(sess, ["serve"], str(saved))
        if signature not in meta.signature_def:
            names = ", ".join(sorted(meta.signature_def)) or "none"
            raise StagingError(f"no signature {signature!r} (the SavedModel has: {names})")
        sig = meta.signature_def[signature]
        input_keys = {k: v.name for k, v in sorted(sig.inputs.items())}
        outputs = {k: v.name for k, v in sorted(sig.outputs.items())}
        feeds_by_key = {}
        for key, info in sorted(sig.inputs.items()):
            dtype = tf.dtypes.as_dtype(info.dtype)
            shape = [None if d.size < 0 else d.size for d in info.tensor_shape.dim]
            feeds_by_key[key] = _example(dtype, shape, rng)
        feed = {input_keys[k]: v for k, v in feeds_by_key.items()}
        values = sess.run(list(outputs.values()), feed_dict=feed)
        ref_values = dict(zip(outputs, values, strict=True))
        graph_def = tf.compat.v1.graph_util.convert_variables_to_constants(
            sess, graph.as_graph_def(), sorted({n.split(":")[0] for n in outputs.values()})
        )
        graph_def = tf.compat.v1.graph_util.remove_training_nodes(graph_def)
    return graph_def, input_keys, outputs, feeds_by_key, ref_values


def freeze_saved_model(
    saved: Path, signature: str = "serving_default", tolerance: float = DEFAULT_TOLERANCE
) -> Frozen:
    """Freeze ``signature`` of the SavedModel at ``saved``; prove parity; return the graph.

    Raises StagingError when no loader can read the model, IntegrityError (exit 5) when the
    result is not flat, ParityError (exit 5) when outputs differ beyond ``tolerance``.
    """
    import numpy as np

    with quiet_tf():
        import tensorflow as tf

        rng = np.random.default_rng(0)
        loader = "tf2"
        try:
            graph_def, input_keys, outputs, feeds, reference = _freeze_tf2(saved, signature, rng)
        except StagingError:
            raise
        except Exception as tf2_error:
            loader = "tf1"
            try:
                graph_def, input_keys, outputs, feeds, reference = _freeze_tf1(
                    saved, signature, np.random.default_rng(0)
                )
            except StagingError:
                raise
            except Exception as tf1_error:
                first2 = str(tf2_error).strip().splitlines()[0] if str(tf2_error) else ""
                first1 = str(tf1_error).strip().splitlines()[0] if str(tf1_error) else ""
                raise StagingError(
                    f"cannot load the SavedModel: TF2 loader: {first2[:160]}; "
                    f"TF1 loader: {first1[:160]}"
                ) from None
        check_flat(graph_def)
        graph_bytes = graph_def.SerializeToString()
        keys = sorted(outputs)
        actual = run_frozen(
            graph_bytes, {input_keys[k]: v for k, v in feeds.items()}, [outputs[k] for k in keys]
        )
        parity = compare(
            [reference[k] for k in keys],
            actual,
            what="frozen graph vs SavedModel",
            tolerance=tolerance,
            names=keys,
        )
        return Frozen(
            graph_bytes,
            [input_keys[k] for k in sorted(input_keys)],
            outputs,
            input_keys,
            parity,
            loader,
            {"tensorflow": tf.__version__},
            ([feeds[k] for k in sorted(input_keys)], [reference[k] for k in keys]),
        )


def stage_pb(store: Any, ref: Any, saved: Path, options: Mapping[str, Any]) -> Any:
    """Freeze ``saved`` and publish ``<model folder>.pb``; return its staged entry."""
    from ..store import StagedEntry, layout
    from ..store.files import sha256_file

    signature = str(options.get("signature") or "serving_default")
    frozen = freeze_saved_model(saved, signature)
    tmp = store.tmp_dir / f".{os.getpid()}.{os.urandom(4).hex()}.pb"
    tmp.write_bytes(frozen.graph_bytes)
    sha, size = sha256_file(tmp)
    rel = layout.staged_path(ref, saved.name, "pb")
    store.publish(tmp, rel, ref, sha, size)
    fixture = write_fixture(store, ref, rel, *frozen.fixture)
    keys = sorted(frozen.outputs)
    return StagedEntry(
        path=rel,
        format="pb",
        sha256=sha,
        size=size,
        converter=f"convert_variables_to_constants{'_v2' if frozen.loader == 'tf2' else ''}",
        versions=frozen.versions,
        inputs=frozen.inputs,
        outputs=[frozen.outputs[k] for k in keys],
        parity=frozen.parity,
        fixture=fixture,
        details={
            "signature": signature,
            "loader": frozen.loader,
            "output_map": frozen.outputs,
            "input_map": frozen.input_keys,
        },
    )


class FrozenGraph:
    """A callable over a frozen GraphDef: ``graph(x=array, ...) -> {output_key: array}``."""

    def __init__(
        self, path: Path, input_map: Mapping[str, str], output_map: Mapping[str, str]
    ) -> None:
        import tensorflow as tf

        graph_def = tf.compat.v1.GraphDef()
        graph_def.ParseFromString(Path(path).read_bytes())
        self.graph = tf.Graph()
        with self.graph.as_default():
            tf.compat.v1.import_graph_def(graph_def, name="")
        self.session = tf.compat.v1.Session(graph=self.graph)
        self.input_map = dict(input_map)
        self.output_map = dict(output_map)

    def __call__(self, **inputs: Any) -> dict[str, Any]:
        """Run the graph on named inputs (signature keys); return outputs by signature key."""
        unknown = set(inputs) - set(self.input_map)
        if unknown:
            raise StagingError(
                f"unknown inputs {sorted(unknown)}; expected {sorted(self.input_map)}"
            )
        keys = sorted(self.output_map)
        values = self.session.run(
            [self.output_map[k] for k in keys],
            feed_dict={self.input_map[k]: v for k, v in inputs.items()},
        )
        return dict(zip(keys, values, strict=True))

"""The Keras 2 layout of a Keras 3 model: what Deeplearning4j's Keras import reads.

DL4J 1.0.0-M2.1's ``KerasModelImport`` refuses the ``.h5`` Keras 3 writes ("Keras major version
has to be either 1 or 2"). :func:`save_keras2` rebuilds the model in tf_keras (PyPI
``tf_keras``: Keras 2) from its config, one level of built-in layers, copies the weights, saves
the twin as ``.h5`` and checks the reloaded file against the source's outputs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..errors import StagingError
from ..frameworks.keras_files import first_line, quiet_keras
from .parity import compare

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ..refs import ModelRef

# Keras 3 config keys tf_keras' layers do not take; initializers, regularizers and constraints
# are left at their defaults (the weights are copied, and none of them matters for inference).
_KERAS3_ONLY = frozenset({"optional", "quantization_config", "batch_shape", "build_config"})
_INFERENCE_FREE = ("_initializer", "_regularizer", "_constraint")


def _keras2_config(cls: Any, config: Mapping[str, Any]) -> dict[str, Any]:
    """A Keras 3 layer config as the tf_keras layer class ``cls`` takes it."""
    import inspect

    params = set(inspect.signature(cls.__init__).parameters) | {"name", "trainable", "dtype"}
    out: dict[str, Any] = {}
    for key, value in config.items():
        if key in _KERAS3_ONLY or key.endswith(_INFERENCE_FREE) or key not in params:
            continue
        if key == "dtype" and isinstance(value, dict):
            value = (value.get("config") or {}).get("name", "float32")
        if isinstance(value, dict) and "class_name" in value:
            raise StagingError(
                f"layer {config.get('name')!r}: {key} is a {value['class_name']} object "
                "modelhub does not carry over to tf_keras"
            )
        out[key] = value
    return out


def _history(arg: Any) -> Any:
    """The ``keras_history`` triples a Keras 3 node argument refers to (nested like it)."""
    if isinstance(arg, dict) and arg.get("class_name") == "__keras_tensor__":
        return tuple(arg["config"]["keras_history"])
    if isinstance(arg, list | tuple):
        return [_history(a) for a in arg]
    raise StagingError(f"a layer is called on {type(arg).__name__} arguments tf_keras cannot take")


def _tf_keras_twin(model: Any) -> Any:
    """A tf_keras model with ``model``'s architecture and weights (Sequential or Functional,
    one level of built-in layers). Raises StagingError naming what tf_keras cannot rebuild."""
    import tf_keras

    config = model.get_config()
    layers: dict[str, Any] = {}

    def build(spec: Mapping[str, Any]) -> Any:
        name = spec["class_name"]
        if spec.get("module") not in (None, "keras.layers") or not hasattr(tf_keras.layers, name):
            raise StagingError(f"tf_keras has no layer {name} (module {spec.get('module')})")
        cls = getattr(tf_keras.layers, name)
        layer = cls(**_keras2_config(cls, spec["config"]))
        layers[layer.name] = layer
        return layer

    def shape_of(spec: Mapping[str, Any]) -> list[Any]:
        return list(spec["config"]["batch_shape"])

    def triples(raw: Any) -> list[tuple[str, int, int]]:
        raw = list(raw)
        return [tuple(raw)] if raw and isinstance(raw[0], str) else [tuple(t) for t in raw]

    specs = list(config["layers"])
    if type(model).__name__ == "Sequential":
        first, rest = (
            (specs[0], specs[1:]) if specs[0]["class_name"] == "InputLayer" else (None, specs)
        )
        if first is None:
            raise StagingError("a Sequential model without an Input layer")
        twin = tf_keras.Sequential(name=config.get("name"))
        twin.add(tf_keras.Input(batch_shape=shape_of(first), dtype=first["config"].get("dtype")))
        for spec in rest:
            twin.add(build(spec))
    else:
        made: dict[tuple[str, int], Any] = {}
        for spec in specs:
            name = spec["name"]
            if spec["class_name"] == "InputLayer":
                made[(name, 0)] = tf_keras.Input(
                    batch_shape=shape_of(spec), dtype=spec["config"].get("dtype"), name=name
                )
                continue
            layer = build(spec)
            for index, node in enumerate(spec.get("inbound_nodes") or []):
                args = _history(node.get("args") or [])
                kwargs = {k: v for k, v in (node.get("kwargs") or {}).items() if v is not None}
                if kwargs:
                    raise StagingError(f"layer {name!r} is called with {sorted(kwargs)}")

                def tensor(h: Any) -> Any:
                    if isinstance(h, tuple):
                        out = made[(h[0], h[1])]
                        return out[h[2]] if isinstance(out, list | tuple) else out
                    return [tensor(x) for x in h]

                made[(name, index)] = layer(*[tensor(a) for a in args])
        inputs = [made[(n, i)] for n, i, _ in triples(config["input_layers"])]

        def pick(n: str, i: int, t: int) -> Any:
            out = made[(n, i)]
            return out[t] if isinstance(out, list | tuple) else out

        outputs = [pick(*t) for t in triples(config["output_layers"])]
        twin = tf_keras.Model(inputs, outputs, name=config.get("name"))
    for layer in model.layers:
        if layer.weights:
            layers[layer.name].set_weights(layer.get_weights())
    return twin


KERAS2_CONVERTER = "tf_keras.Model.save (Keras 2 HDF5)"


#: Config keys tf_keras writes for depthwise/separable convolutions that those layers do not
#: use (they inherit them from Conv) and Keras 3 refuses ("Unrecognized keyword arguments").
_UNUSED_CONV_KEYS = {
    "DepthwiseConv2D": ("groups", "kernel_initializer", "kernel_regularizer", "kernel_constraint"),
    "SeparableConv2D": ("groups", "kernel_initializer", "kernel_regularizer", "kernel_constraint"),
}


def _drop_unused_conv_keys(path: Path) -> None:
    """Remove :data:`_UNUSED_CONV_KEYS` from the ``model_config`` of the ``.h5`` at ``path``
    (so that Keras 3 loads the file too; tf_keras and DL4J read it as before)."""
    import json

    import h5py

    with h5py.File(path, "r+") as h5:
        raw = h5.attrs["model_config"]
        config = json.loads(raw.decode() if isinstance(raw, bytes) else raw)
        changed = False
        for layer in (config.get("config") or {}).get("layers") or []:
            for key in _UNUSED_CONV_KEYS.get(layer.get("class_name"), ()):
                if key in layer["config"]:
                    del layer["config"][key]
                    changed = True
        if changed:
            h5.attrs["model_config"] = json.dumps(config).encode()


def save_keras2(
    ref: ModelRef,
    model: Any,
    tmp: Path,
    feeds: Sequence[Any],
    reference: Sequence[Any],
    tolerance: float,
    names: Sequence[str],
) -> dict[str, Any]:
    """Write ``model`` at ``tmp`` in the Keras 2 layout (a tf_keras twin with its weights),
    reload it with tf_keras, run it on ``feeds`` and compare with ``reference``; return the
    parity record. Raises StagingError (one line) when tf_keras cannot rebuild, save or run
    it, ParityError when the numbers differ."""
    with quiet_keras():
        import tf_keras

        try:
            twin = _tf_keras_twin(model)
        except StagingError as exc:
            raise StagingError(f"{ref}: no Keras 2 .h5 for DL4J: {exc}") from None
        except Exception as exc:  # tf_keras refusing a config: its own words
            raise StagingError(
                f"{ref}: no Keras 2 .h5 for DL4J: tf_keras cannot rebuild the model: "
                f"{first_line(exc)}"
            ) from None
        try:
            twin.save(str(tmp), save_format="h5")
            _drop_unused_conv_keys(tmp)
            reloaded = tf_keras.models.load_model(str(tmp), compile=False)
            out = reloaded(list(feeds) if len(feeds) > 1 else feeds[0], training=False)
        except Exception as exc:
            raise StagingError(
                f"{ref}: no Keras 2 .h5 for DL4J: tf_keras failed: {first_line(exc)}"
            ) from None
        actual = [t.numpy() for t in (out if isinstance(out, list | tuple) else [out])]
    return compare(
        reference,
        actual,
        what=f"{tmp.suffix} written by tf_keras (Keras 2 layout, for DL4J) vs the source",
        tolerance=tolerance,
        names=list(names),
    )


__all__ = ["KERAS2_CONVERTER", "save_keras2"]

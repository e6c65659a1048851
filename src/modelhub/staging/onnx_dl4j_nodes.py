"""Rewrites of single ONNX nodes for Deeplearning4j 1.0.0-M2.1, used by
:func:`modelhub.staging.onnx_dl4j.rewrite` (which owns the graph walk, the names and the
checks). Each answers one failure measured with the harness in ``interop/dl4j`` on
silero-vad's ONNX files (FINDINGS.md there); each keeps the node's outputs and numbers:

- ``fold``: a node whose inputs are all initializers is evaluated (onnx's reference runtime,
  at the model's opset) and replaced by its result as an initializer. Shape arithmetic on
  constants (``Concat``/``Slice``/``Cast`` into a ``Pad``'s pads) is otherwise handed to
  DL4J's ops at import, where it arrives empty ("PAD op: wrong shape of paddings array ...
  but got [0]"); ``ConstantOfShape`` of a constant shape goes too (its ``value`` tensor
  attribute makes the importer fail: ``IndexOutOfBoundsException: Index: 0`` in
  ``OnnxIRAttr.tensorValue``).
- ``conv1d``: a 1-D ``Conv`` (weights ``[M, C, k]``) becomes ``Unsqueeze`` → 2-D ``Conv``
  (weights ``[M, C, 1, k]``) → ``Squeeze``: the importer reads every Conv attribute as 2-D
  ("IndexOutOfBoundsException: Index:1, Size:1" for ``kernel_shape [k]``).
- ``lstm``: ``LSTM``'s defaults written out (``activations``, ``direction``): the importer maps
  a missing ``activations`` to an empty list ("Index 0 out of bounds for length 0").
- ``pow``: ``Pow(x, 2)`` becomes ``Mul(x, x)`` (DL4J has no ONNX ``Pow`` import).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, MutableMapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import onnx

#: Ops never folded: random, or with a subgraph, or that only exist to be fed at run time.
_NOT_FOLDED = frozenset(
    {
        "RandomNormal",
        "RandomNormalLike",
        "RandomUniform",
        "RandomUniformLike",
        "Multinomial",
        "Bernoulli",
        "If",
        "Loop",
        "Scan",
        "Constant",  # the ``constants`` step's
        "Identity",  # likewise
    }
)
#: A folded result larger than this (elements) is left to the runtime: folding would grow the
#: file (a ``Tile`` or ``Expand`` of a weight).
FOLD_LIMIT = 1 << 20


def fold(
    n: onnx.NodeProto,
    initializers: MutableMapping[str, onnx.TensorProto],
    graph_io: set[str],
    opset: int,
) -> list[onnx.TensorProto] | None:
    """The outputs of ``n`` as initializers, when every input is one (None: leave ``n``)."""
    import numpy as np
    from onnx import helper, numpy_helper
    from onnx.reference import ReferenceEvaluator

    inputs = [i for i in n.input if i]
    if (
        n.domain not in ("", "ai.onnx")
        or n.op_type in _NOT_FOLDED
        or not inputs
        or any(i not in initializers for i in inputs)
        or any(o in graph_io for o in n.output)
        or any(a.type in (a.GRAPH, a.GRAPHS) for a in n.attribute)
    ):
        return None
    feeds = {i: numpy_helper.to_array(initializers[i]) for i in inputs}
    graph = helper.make_graph(
        [n],
        "fold",
        [helper.make_tensor_value_info(i, initializers[i].data_type, None) for i in inputs],
        [helper.make_tensor_value_info(o, 0, None) for o in n.output if o],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    try:
        results = ReferenceEvaluator(model).run(None, feeds)
    except Exception:  # an op the reference runtime lacks: the node stays as it is
        return None
    if any(np.asarray(r).size > FOLD_LIMIT for r in results):
        return None
    outputs = [o for o in n.output if o]
    return [
        numpy_helper.from_array(np.asarray(r), name)
        for r, name in zip(results, outputs, strict=True)
    ]


def conv1d(
    n: onnx.NodeProto,
    initializers: MutableMapping[str, onnx.TensorProto],
    add: Callable[[onnx.TensorProto], None],
    taken: set[str],
    opset: int,
) -> list[onnx.NodeProto] | None:
    """A 1-D ``Conv`` with initializer weights as ``Unsqueeze`` → 2-D ``Conv`` → ``Squeeze``
    (None: not such a Conv); ``add`` takes the new initializers."""
    import numpy as np
    from onnx import helper, numpy_helper

    if n.op_type != "Conv" or len(n.input) < 2 or n.input[1] not in initializers:
        return None
    weights = numpy_helper.to_array(initializers[n.input[1]])
    attrs: dict[str, Any] = {a.name: helper.get_attribute_value(a) for a in n.attribute}
    if weights.ndim != 3 or attrs.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
        return None
    w2d = unique(f"{n.input[1]}__2d", taken)
    add(numpy_helper.from_array(weights[:, :, None, :], w2d))
    pads = list(attrs.get("pads", [0, 0]))
    conv_attrs: dict[str, Any] = {
        "kernel_shape": [1, int(attrs.get("kernel_shape", [weights.shape[2]])[0])],
        "pads": [0, int(pads[0]), 0, int(pads[1])],
        "strides": [1, int(attrs.get("strides", [1])[0])],
        "dilations": [1, int(attrs.get("dilations", [1])[0])],
        "group": int(attrs.get("group", 1)),
    }
    label = n.name or f"{n.output[0]}__conv"
    wide, out = unique(f"{n.output[0]}__4d_in", taken), unique(f"{n.output[0]}__4d", taken)
    if opset >= 13:  # Unsqueeze/Squeeze take their axes as an input from opset 13
        axes = unique(f"{label}__axes", taken)
        add(numpy_helper.from_array(np.array([2], np.int64), axes))
        unsq = helper.make_node("Unsqueeze", [n.input[0], axes], [wide], name=f"{label}__u")
        sq = helper.make_node("Squeeze", [out, axes], [n.output[0]], name=f"{label}__s")
    else:
        unsq = helper.make_node("Unsqueeze", [n.input[0]], [wide], name=f"{label}__u", axes=[2])
        sq = helper.make_node("Squeeze", [out], [n.output[0]], name=f"{label}__s", axes=[2])
    conv = helper.make_node("Conv", [wide, w2d, *n.input[2:]], [out], name=label, **conv_attrs)
    return [unsq, conv, sq]


def lstm_defaults(n: onnx.NodeProto) -> bool:
    """Write ``LSTM``'s default ``direction`` and ``activations`` into ``n``; True if any was
    missing."""
    from onnx import helper

    if n.op_type != "LSTM":
        return False
    have = {a.name for a in n.attribute}
    direction = next(
        (helper.get_attribute_value(a) for a in n.attribute if a.name == "direction"), b"forward"
    )
    added = False
    if "direction" not in have:
        n.attribute.append(helper.make_attribute("direction", "forward"))
        added = True
    if "activations" not in have:
        per_direction = ["Sigmoid", "Tanh", "Tanh"]
        times = 2 if direction in (b"bidirectional", "bidirectional") else 1
        n.attribute.append(helper.make_attribute("activations", per_direction * times))
        added = True
    return added


def pow_square(
    n: onnx.NodeProto, initializers: MutableMapping[str, onnx.TensorProto]
) -> onnx.NodeProto | None:
    """``Pow(x, 2)`` (a constant exponent of 2) as ``Mul(x, x)`` (None: another Pow)."""
    from onnx import helper, numpy_helper

    if n.op_type != "Pow" or len(n.input) != 2 or n.input[1] not in initializers:
        return None
    exponent = numpy_helper.to_array(initializers[n.input[1]])
    if exponent.size != 1 or float(exponent.reshape(-1)[0]) != 2.0:
        return None
    return helper.make_node("Mul", [n.input[0], n.input[0]], list(n.output), name=n.name)


def unique(base: str, taken: set[str]) -> str:
    """``base``, or ``base_1``, ``base_2``... the first not in ``taken`` (then added to it)."""
    name = base
    i = 1
    while name in taken:
        name = f"{base}_{i}"
        i += 1
    taken.add(name)
    return name


def layer_norm(
    n: onnx.NodeProto,
    label: str,
    ranks: Mapping[str, int],
    opset: int,
    taken: set[str],
    g: onnx.GraphProto,
) -> list[onnx.NodeProto] | None:
    """``LayerNormalization`` as the ops it is defined by (ONNX's function body, computed in
    the input's type): ``(x - mean) / sqrt(var + eps) * scale + bias`` over the axes from
    ``axis`` to the last. None (left as it is) when the node uses its optional ``Mean`` /
    ``InvStdDev`` outputs or its input is not float32 (``stash_type`` then matters)."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    if any(n.output[1:]):
        return None
    attrs = {a.name: helper.get_attribute_value(a) for a in n.attribute}
    axis = int(attrs.get("axis", -1))
    epsilon = float(attrs.get("epsilon", 1e-5))
    x = n.input[0]
    rank = ranks.get(x)
    if rank is None and axis != -1:
        return None  # which axes to reduce depends on a rank shape inference did not give
    axes = list(range(axis % rank, rank)) if rank else [-1]
    elem = elem_type(g, x)
    if elem not in (None, TensorProto.FLOAT):
        return None

    def name(suffix: str) -> str:
        return unique(f"{n.output[0]}__ln_{suffix}", taken)

    def const(suffix: str, value: Any) -> str:
        tensor = numpy_helper.from_array(np.asarray(value), name(suffix))
        g.initializer.append(tensor)
        return tensor.name

    def reduce_mean(src: str, out: str, suffix: str) -> onnx.NodeProto:
        if opset >= 18:  # ReduceMean's axes became an input
            return helper.make_node(
                "ReduceMean",
                [src, const(f"{suffix}_axes", np.array(axes, np.int64))],
                [out],
                name=f"{label}__{suffix}",
                keepdims=1,
            )
        return helper.make_node(
            "ReduceMean", [src], [out], name=f"{label}__{suffix}", axes=axes, keepdims=1
        )

    mean, centred, squared, var = name("mean"), name("centred"), name("sq"), name("var")
    shifted, std, normed = name("var_eps"), name("std"), name("normed")
    has_bias = len(n.input) > 2 and n.input[2] != ""
    scaled = name("scaled") if has_bias else n.output[0]
    nodes = [
        reduce_mean(x, mean, "mean"),
        helper.make_node("Sub", [x, mean], [centred], name=f"{label}__sub"),
        # x * x, not Pow(x, 2) (ONNX's definition): DL4J's Pow import fails at import
        # ("Index 1 out of bounds for length 1"), and the product is the same number.
        helper.make_node("Mul", [centred, centred], [squared], name=f"{label}__square"),
        reduce_mean(squared, var, "var"),
        helper.make_node(
            "Add",
            [var, const("eps", np.array(epsilon, np.float32))],
            [shifted],
            name=f"{label}__eps",
        ),
        helper.make_node("Sqrt", [shifted], [std], name=f"{label}__sqrt"),
        helper.make_node("Div", [centred, std], [normed], name=f"{label}__div"),
        helper.make_node("Mul", [normed, n.input[1]], [scaled], name=f"{label}__scale"),
    ]
    if has_bias:
        nodes.append(
            helper.make_node("Add", [scaled, n.input[2]], [n.output[0]], name=f"{label}__bias")
        )
    return nodes


def elem_type(g: onnx.GraphProto, name: str) -> int | None:
    """The element type of tensor ``name`` where the graph declares it (None: unknown)."""
    for vi in [*g.input, *g.value_info, *g.output]:
        if vi.name == name and vi.type.tensor_type.elem_type:
            return int(vi.type.tensor_type.elem_type)
    for t in g.initializer:
        if t.name == name:
            return int(t.data_type)
    return None


__all__ = [
    "FOLD_LIMIT",
    "conv1d",
    "elem_type",
    "fold",
    "layer_norm",
    "lstm_defaults",
    "pow_square",
    "unique",
]

"""``--for dl4j``: an ONNX copy that Deeplearning4j 1.0.0-M2.1's ONNX importer imports correctly.

What DL4J refuses or silently gets wrong, and why each rewrite exists, was measured with the
harness in ``interop/dl4j`` (FINDINGS.md there). Each step answers one defect; every rewrite
keeps the graph's inputs and outputs (names, order) and its numbers:

- ``constants``: ``Constant`` nodes become initializers (a Reshape/Clip fed by a Constant node is
  refused: NPE in the Reshape hook, "Samediff output op ... did not have any ops associated").
- ``gemm``: ``Gemm(A, B, C)`` becomes ``Gemm(A, B)`` + ``Add(C)`` with ``alpha``/``beta`` written
  out (the importer drops C and reads a missing ``alpha`` as 0: silent wrong numbers).
- ``matmul``: 2-D ``MatMul`` becomes ``Gemm(alpha=1)`` (the importer maps MatMul with alpha 0:
  all-zero output).
- ``pool``: ``GlobalAveragePool`` becomes ``ReduceMean`` over the spatial axes (kept): the
  importer's GlobalAveragePool hook crashes the JVM (SIGSEGV in ``execTransformAny``) on a
  batch of one.
- ``layernorm``: ``LayerNormalization`` (opset 17+, what transformers exports) becomes
  ``ReduceMean, Sub, Mul (the square: DL4J fails on Pow), ReduceMean, Add, Sqrt, Div, Mul,
  Add`` over the normalized axes (the importer has no mapping for it: "No import process
  defined for LayerNormalization");
  ``ReduceMean`` takes its axes as an attribute before opset 18 and as an input from 18 on.
- ``fold`` (constant folding), ``conv1d``, ``lstm``, ``pow``: node rewrites for what
  silero-vad's files need; each is described in :mod:`modelhub.staging.onnx_dl4j_nodes`.
- ``reshape``: ``allowzero`` is dropped from Reshapes whose constant shape has no 0 (the same
  result; the hook fails on the attribute).
- ``names``: every node gets a unique name (nodes without one are skipped), every intermediate
  tensor a name that cannot collide with the variables the importer generates ("conv2d",
  "add", ...), and ``:`` leaves initializer names ("onnx::Conv_193" is not found).

Not handled (DL4J's importer reports them, ``modelhub check --importer dl4j`` records its error):
MatMul of rank > 2, shape arithmetic on dynamic dimensions (Shape/Gather/Unsqueeze/Concat into
Reshape: onnxslim folds it, it is not a dependency), control-flow subgraphs.

:func:`dl4j_onnx_entry` stages the rewrite of a staged ONNX file as ``<stem>.dl4j.onnx`` beside
it (the original is never modified), checked against the parity fixture of the file it came
from (the *source's* outputs), with its own fixture; :mod:`modelhub.staging.for_dl4j` adds it
(and the Keras 2 ``.h5``) to a staging.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import StagingError
from . import onnx_dl4j_nodes as nodes_
from .parity import DEFAULT_TOLERANCE, compare, write_fixture

if TYPE_CHECKING:
    import onnx

    from ..refs import ModelRef
    from ..store import StagedEntry, Store

#: The rewrites, in the order they run.
STEPS = (
    "constants",
    "fold",
    "gemm",
    "matmul",
    "pool",
    "layernorm",
    "conv1d",
    "lstm",
    "pow",
    "reshape",
    "names",
)
#: ``options["for"]`` (``pull --for dl4j``, model sets' ``for = "dl4j"``).
FOR_DL4J = "dl4j"
#: Staged formats that get a DL4J-ready copy (``pb`` imports as it is).
DL4J_FORMATS = ("onnx", "h5")
CONVERTER = "modelhub.staging.onnx_dl4j"
#: The manifest key, on an entry that got no DL4J-ready copy, saying why.
ERROR_KEY = "dl4j_error"
#: The details key of a staging's own entry that is already in the form DL4J imports (the
#: rewrite applied by default, or a Keras 2 ``.h5``): ``--for dl4j`` adds no copy of it.
READY_KEY = "dl4j_ready"


def dl4j_path(rel: str) -> str:
    """Where the DL4J-ready copy of the staged file ``rel`` goes: ``x/m.onnx`` →
    ``x/m.dl4j.onnx`` (the same folder, the same extension)."""
    folder, _, name = rel.rpartition("/")
    stem, dot, ext = name.rpartition(".")
    new = f"{stem}.dl4j.{ext}" if dot else f"{name}.dl4j"
    return f"{folder}/{new}" if folder else new


def is_dl4j_form(entry: StagedEntry) -> bool:
    """True for an entry made by ``--for dl4j`` (not a staging's own form)."""
    return entry.details.get("for") == FOR_DL4J


def is_dl4j_ready(entry: StagedEntry) -> bool:
    """True for an entry already in the form DL4J imports: made by ``--for dl4j``, or a
    staging's own file written that way by default (``details["dl4j_ready"]``)."""
    return is_dl4j_form(entry) or entry.details.get(READY_KEY) is True


# --- the rewrite ------------------------------------------------------------------------------
def _weightless(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of ``model`` whose initializers are graph inputs of their type and shape: what
    shape inference and the checker read of them, without their bytes (a resnet's 45 MB are
    not serialized into onnx's C++ and back for either)."""
    import onnx

    light = onnx.ModelProto()
    light.ir_version = model.ir_version
    light.opset_import.extend(model.opset_import)
    light.functions.extend(model.functions)
    g, lg = model.graph, light.graph
    lg.name = g.name
    for field in ("node", "input", "output", "value_info", "sparse_initializer"):
        getattr(lg, field).extend(getattr(g, field))
    bound = {vi.name for vi in g.input}
    for t in g.initializer:
        if t.name not in bound:
            lg.input.append(onnx.helper.make_tensor_value_info(t.name, t.data_type, t.dims))
    return light


def _ranks(model: onnx.ModelProto) -> dict[str, int]:
    """Known tensor ranks, from ONNX shape inference (empty where it cannot tell)."""
    import onnx

    ranks: dict[str, int] = {}
    light = _weightless(model)
    try:
        inferred = onnx.shape_inference.infer_shapes(light)
    except Exception:  # a model shape inference cannot read: no rank-based rewrites
        return ranks
    g = inferred.graph
    for vi in [*g.value_info, *g.input, *g.output]:
        if vi.type.tensor_type.HasField("shape"):
            ranks[vi.name] = len(vi.type.tensor_type.shape.dim)
    for t in g.initializer:
        ranks[t.name] = len(t.dims)
    return ranks


def rewrite(
    model: onnx.ModelProto, steps: Iterable[str] = STEPS, *, in_place: bool = False
) -> tuple[onnx.ModelProto, dict[str, int]]:
    """A rewritten copy of ``model`` (the input is not modified; with ``in_place``, ``model``
    itself, not copied) and how many places each of ``steps`` changed. Raises ValueError for
    an unknown step, onnx's checker errors for a result it refuses."""
    import numpy as np
    import onnx
    from onnx import helper, numpy_helper

    chosen = set(steps)
    unknown = chosen - set(STEPS)
    if unknown:
        raise ValueError(f"unknown steps {sorted(unknown)} (known: {', '.join(STEPS)})")
    counts = dict.fromkeys(STEPS, 0)
    m = model if in_place else onnx.ModelProto()
    if not in_place:
        m.CopyFrom(model)
    g = m.graph
    graph_io = {v.name for v in g.input} | {v.name for v in g.output}
    taken = (
        set(graph_io)
        | {t.name for t in g.initializer}
        | {o for n in g.node for o in n.output}
        | {n.name for n in g.node}
    )
    ranks = _ranks(m) if {"matmul", "pool", "layernorm"} & chosen else {}
    opset = max((o.version for o in m.opset_import if o.domain in ("", "ai.onnx")), default=0)
    initializers = {t.name: t for t in g.initializer}

    nodes: list[onnx.NodeProto] = []
    alias: dict[str, str] = {}  # a removed Identity's output -> the initializer it passed on

    def add(tensor: onnx.TensorProto) -> None:
        g.initializer.append(tensor)
        initializers[tensor.name] = g.initializer[-1]
        taken.add(tensor.name)

    for i, n in enumerate(g.node):
        label = n.name or f"{n.op_type}_{i}"
        for k, name in enumerate(n.input):
            if name in alias:
                n.input[k] = alias[name]
        if (
            "constants" in chosen
            and n.op_type == "Constant"
            and len(n.attribute) == 1
            and n.attribute[0].name == "value"
            and n.output[0] not in graph_io
        ):
            t = onnx.TensorProto()
            t.CopyFrom(n.attribute[0].t)
            t.name = n.output[0]
            g.initializer.append(t)
            initializers[t.name] = t
            counts["constants"] += 1
            continue
        if (
            "constants" in chosen
            and n.op_type == "Identity"
            and n.input[0] in initializers
            and n.output[0] not in graph_io
        ):
            # The exporter shares equal weights through Identity nodes (zero biases of a
            # fresh network, tied weights); DL4J finds no op behind such a value. Its
            # consumers read the initializer itself.
            alias[n.output[0]] = n.input[0]
            counts["constants"] += 1
            continue
        if "fold" in chosen:
            folded = nodes_.fold(n, initializers, graph_io, opset)
            if folded is not None:
                for tensor in folded:
                    add(tensor)
                counts["fold"] += 1
                continue
        if "gemm" in chosen and n.op_type == "Gemm":
            attrs = {a.name: helper.get_attribute_value(a) for a in n.attribute}
            has_c = len(n.input) > 2 and n.input[2] != ""
            product = nodes_.unique(f"{n.output[0]}__ab", taken) if has_c else n.output[0]
            nodes.append(
                helper.make_node(
                    "Gemm",
                    list(n.input[:2]),
                    [product],
                    name=label,
                    alpha=float(attrs.get("alpha", 1.0)),
                    beta=1.0,
                    transA=int(attrs.get("transA", 0)),
                    transB=int(attrs.get("transB", 0)),
                )
            )
            if has_c:
                bias = n.input[2]
                beta = float(attrs.get("beta", 1.0))
                if beta != 1.0:
                    scale = nodes_.unique(f"{label}__beta", taken)
                    g.initializer.append(numpy_helper.from_array(np.array(beta, np.float32), scale))
                    scaled = nodes_.unique(f"{bias}__scaled", taken)
                    nodes.append(
                        helper.make_node("Mul", [bias, scale], [scaled], name=f"{label}__beta")
                    )
                    bias = scaled
                nodes.append(
                    helper.make_node("Add", [product, bias], [n.output[0]], name=f"{label}__bias")
                )
            counts["gemm"] += 1
            continue
        if (
            "matmul" in chosen
            and n.op_type == "MatMul"
            and ranks.get(n.input[0]) == 2
            and ranks.get(n.input[1]) == 2
        ):
            nodes.append(
                helper.make_node(
                    "Gemm", list(n.input), list(n.output), name=label, alpha=1.0, beta=1.0
                )
            )
            counts["matmul"] += 1
            continue
        rank = ranks.get(n.input[0], 0) if n.input else 0
        if "pool" in chosen and n.op_type == "GlobalAveragePool" and rank > 2:
            axes = list(range(2, rank))
            if opset >= 18:  # ReduceMean's axes became an input
                name = nodes_.unique(f"{label}__axes", taken)
                g.initializer.append(numpy_helper.from_array(np.array(axes, np.int64), name))
                initializers[name] = g.initializer[-1]
                node = helper.make_node(
                    "ReduceMean", [n.input[0], name], list(n.output), name=label, keepdims=1
                )
            else:
                node = helper.make_node(
                    "ReduceMean", [n.input[0]], list(n.output), name=label, axes=axes, keepdims=1
                )
            nodes.append(node)
            counts["pool"] += 1
            continue
        if "layernorm" in chosen and n.op_type == "LayerNormalization":
            made = nodes_.layer_norm(n, label, ranks, opset, taken, g)
            if made is not None:
                nodes.extend(made)
                counts["layernorm"] += 1
                continue
        if "conv1d" in chosen and (wide := nodes_.conv1d(n, initializers, add, taken, opset)):
            nodes.extend(wide)
            counts["conv1d"] += 1
            continue
        if "lstm" in chosen and nodes_.lstm_defaults(n):
            counts["lstm"] += 1
        if "pow" in chosen and (square := nodes_.pow_square(n, initializers)) is not None:
            nodes.append(square)
            counts["pow"] += 1
            continue
        if "reshape" in chosen and n.op_type == "Reshape":
            shape = initializers.get(n.input[1]) if len(n.input) > 1 else None
            has_allowzero = any(a.name == "allowzero" for a in n.attribute)
            if has_allowzero and shape is not None and 0 not in numpy_helper.to_array(shape):
                kept = [a for a in n.attribute if a.name != "allowzero"]
                del n.attribute[:]
                n.attribute.extend(kept)
                counts["reshape"] += 1
        nodes.append(n)
    del g.node[:]
    g.node.extend(nodes)

    if "names" in chosen:
        counts["names"] = _rename(g, graph_io, initializers)

    onnx.checker.check_model(_weightless(m))  # the graph the rewrite made (onnxruntime
    # loads the whole file after it: the weights are the exporter's, untouched)
    return m, counts


def _rename(g: onnx.GraphProto, graph_io: set[str], initializers: Mapping[str, Any]) -> int:
    """Give every node a unique name, intermediate tensors names the importer cannot collide
    with, and initializers names without ``:``; returns how many names changed."""
    mapping: dict[str, str] = {}
    used = set(graph_io)
    for n in g.node:
        for out in n.output:
            if out and out not in graph_io and out not in initializers and out not in mapping:
                mapping[out] = nodes_.unique(f"t{len(mapping)}/{out.replace(':', '_')}", used)
    for t in g.initializer:
        if ":" in t.name and t.name not in graph_io:
            new = nodes_.unique(t.name.replace(":", "_"), used | set(initializers))
            mapping[t.name] = new
            t.name = new
    changed = len(mapping)
    for j, n in enumerate(g.node):
        name = f"n{j}/{n.op_type}"
        changed += n.name != name
        n.name = name
        for k, value in enumerate(n.input):
            if value in mapping:
                n.input[k] = mapping[value]
        for k, value in enumerate(n.output):
            if value in mapping:
                n.output[k] = mapping[value]
    for vi in [*g.value_info, *g.input]:
        if vi.name in mapping:
            vi.name = mapping[vi.name]
    return changed


def make_dl4j_compatible(model: onnx.ModelProto, steps: Iterable[str] = STEPS) -> onnx.ModelProto:
    """A rewritten copy of ``model`` (the input is not modified); ``steps`` picks rewrites."""
    return rewrite(model, steps)[0]


# --- staging ----------------------------------------------------------------------------------
def rewrite_if_parity_holds(
    path: Path,
    exported: bytes | memoryview,
    feeds: Sequence[Mapping[str, Any]],
    references: Sequence[Sequence[Any]],
    outputs: Sequence[str],
    *,
    tolerance: float = DEFAULT_TOLERANCE,
    what: str = "model",
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The DL4J rewrite as a staging's default: write the ONNX file ``path`` (a scratch path
    the caller publishes or removes) from the exporter's ``exported`` bytes, as their rewrite
    when the rewritten graph matches the source's ``references`` on every one of ``feeds``
    (onnxruntime) within ``tolerance``, else as exported. The model is parsed from memory.

    Returns the details to record and the worst parity record of the rewritten file:
    ``({"dl4j_ready": True, "rewrites": [...]}, parity)`` when it wrote the rewrite,
    ``({"dl4j_error": why}, None)`` when it wrote the file as exported (a rewrite that fails or
    changes the numbers; ``--for dl4j`` then does not try again): its check is the caller's.
    """
    import onnx

    from ..errors import ParityError
    from .onnx_check import check_session

    details: dict[str, Any] = {}
    worst: dict[str, Any] | None = None
    try:
        model = onnx.ModelProto()
        model.ParseFromString(exported)  # a buffer: parsed where it is, not copied
        model, counts = rewrite(model, in_place=True)
        onnx.save(model, str(path))  # a scratch path: published by the caller once checked
        del model
        session = check_session(path, weights_in_place=True)  # written just now
        for feed, reference in zip(feeds, references, strict=True):
            actual = session.run(list(outputs), dict(feed))
            record = compare(
                reference,
                actual,
                what=f"{what} (rewritten for DL4J)",
                tolerance=tolerance,
                names=list(outputs),
            )
            if worst is None or record["max_abs_diff"] > worst["max_abs_diff"]:
                worst = record
        del session
        details = {READY_KEY: True, "rewrites": [step for step in STEPS if counts[step]]}
    except ParityError as exc:
        why = str(exc).replace("; the staged file was not published", "")
        details = {ERROR_KEY: f"kept as exported: the DL4J rewrite changes the numbers: {why}"}
    except Exception as exc:  # the rewrite or onnxruntime refusing the result: its words
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        details = {ERROR_KEY: f"kept as exported: the DL4J rewrite failed: {first}"}
    if ERROR_KEY in details:
        worst = None
        path.write_bytes(exported)
    return details, worst


def read_fixture(store: Store, entry: StagedEntry) -> tuple[list[Any], list[Any]]:
    """The seeded inputs and the source's outputs of ``entry``'s parity fixture. Raises
    StagingError when the entry has none (nothing to check a DL4J-ready form against)."""
    import numpy as np

    record = entry.fixture
    if not record:
        why = entry.details.get("fixture_error")
        raise StagingError(
            f"{Path(entry.path).name} has no parity fixture"
            + (f" ({why})" if why else "")
            + ": a DL4J-ready copy cannot be checked, so none is made"
        )
    with np.load(store.abspath(str(record["path"])), allow_pickle=False) as npz:
        inputs = [npz[f"input_{i}"] for i in range(len(entry.inputs))]
        outputs = [npz[f"output_{i}"] for i in range(len(entry.outputs))]
    return inputs, outputs


def dl4j_onnx_entry(store: Store, ref: ModelRef, entry: StagedEntry) -> StagedEntry:
    """Rewrite the staged ONNX file of ``entry`` for DL4J as ``<stem>.dl4j.onnx`` beside it,
    run it with onnxruntime on ``entry``'s fixture inputs and publish it (with its own fixture,
    the same arrays) only when it matches the fixture's source outputs.

    Raises StagingError when there is no fixture or the rewrite cannot be written,
    ParityError (exit 5) when the rewritten graph's numbers differ (nothing is published).
    """
    import onnx
    import onnxruntime

    from ..store import StagedEntry as Entry
    from ..store.files import sha256_file
    from .onnx_check import check_session

    inputs, reference = read_fixture(store, entry)
    source = store.abspath(entry.path)
    rel = dl4j_path(entry.path)
    tmp = store.tmp_dir / f".{Path(rel).name}.{os.getpid()}.{os.urandom(4).hex()}.onnx"
    try:
        try:
            model, counts = rewrite(onnx.load(str(source)))
            onnx.save(model, str(tmp))
        except (ValueError, onnx.checker.ValidationError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise StagingError(
                f"{ref}: the DL4J rewrite of {source.name} failed: {first}"
            ) from None
        session = check_session(tmp)
        actual = session.run(list(entry.outputs), dict(zip(entry.inputs, inputs, strict=True)))
        tolerance = float((entry.parity or {}).get("tolerance", DEFAULT_TOLERANCE))
        parity = compare(
            reference,
            actual,
            what=f"{Path(rel).name} (rewritten for DL4J) vs the source",
            tolerance=tolerance,
            names=entry.outputs,
        )
        sha, size = sha256_file(tmp)
        store.publish(tmp, rel, ref, sha, size)
    finally:
        tmp.unlink(missing_ok=True)
    fixture = write_fixture(store, ref, rel, inputs, reference)
    opset = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0)
    return Entry(
        path=rel,
        format="onnx",
        sha256=sha,
        size=size,
        converter=CONVERTER,
        versions={"onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__},
        inputs=list(entry.inputs),
        outputs=list(entry.outputs),
        parity=parity,
        fixture=fixture,
        details={
            "for": FOR_DL4J,
            "rewrites": [step for step in STEPS if counts[step]],
            "source": entry.path,
            "opset": int(opset),
        },
    )


__all__ = [
    "DL4J_FORMATS",
    "ERROR_KEY",
    "FOR_DL4J",
    "READY_KEY",
    "STEPS",
    "dl4j_onnx_entry",
    "dl4j_path",
    "is_dl4j_ready",
    "make_dl4j_compatible",
    "rewrite",
    "rewrite_if_parity_holds",
]

"""Stage ``onnx`` for an ONNX source: validate it (checker, shape inference, onnxruntime load).

Stateless and idempotent: it reads the model and reports; it never rewrites the file.
"""

from __future__ import annotations

import mmap
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import IntegrityError, StagingError
from .onnx_wire import opset_in, weights_by_reference

if TYPE_CHECKING:
    from ..refs import ModelRef
    from ..store import StagedEntry, Store

CONVERTER = "onnx.checker+shape_inference+onnxruntime"
# ONNX files at least this large are validated in worker processes by `sync --jobs N`: the
# checks hold the GIL (ResNet-50, 100 MB: ~0.6 s of CPU).
HEAVY_CHECK_BYTES = 8 * 2**20
_LFS_PREFIX = b"version https://git-lfs.github.com/spec/"


@dataclass(frozen=True)
class OnnxInfo:
    """What validation learned about an ONNX model."""

    inputs: list[str]
    outputs: list[str]
    io_ports: dict[str, list[dict[str, Any]]]
    opset: int
    ir_version: int
    versions: dict[str, str] = field(default_factory=dict)


def is_lfs_pointer(head: bytes) -> bool:
    """True when ``head`` (the first bytes of a file) is a Git LFS pointer, not content."""
    return head.startswith(_LFS_PREFIX)


# The session option naming the external-data folder of a model loaded from bytes.
_FOLDER_OPTION_SINCE = (1, 21)


def _version(text: str) -> tuple[int, ...]:
    """The leading numeric release fields of a version string: "1.21.0rc1" → (1, 21, 0)."""
    release = re.match(r"\d+(?:\.\d+)*", text)
    return tuple(int(n) for n in release.group().split(".")) if release else ()


def check_session(path: Path, *, weights_in_place: bool = False, threads: int = 0) -> Any:
    """An onnxruntime CPU session on the ONNX file ``path``, for checking it.

    Graph optimizations are off, so that a check runs the graph as the file writes it (and
    session creation skips the layout rewrites that cost more than a small check's runs);
    idle worker threads do not spin, so that the framework computing the reference outputs
    next is not starved of cores.

    ``weights_in_place``: load a copy of the model whose large initializers reference their
    bytes inside ``path`` (``onnx_wire.weights_by_reference``) instead of the file itself, so
    that onnxruntime maps the weights rather than parsing and copying them (the graph and the
    weight bytes it runs are still the file's). For checking a file modelhub just wrote; a
    file from elsewhere is loaded whole, which is what proves that onnxruntime accepts it.
    onnxruntime before 1.21 has no option for the folder of such a view: the file is loaded.

    ``threads``: onnxruntime's intra-op threads (0: its default, one per core); 1 for a
    session that is only loaded, never run, so that no thread pool is started for it.
    """
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.intra_op_num_threads = threads
    model: str | bytes = str(path)
    if weights_in_place and _version(onnxruntime.__version__) >= _FOLDER_OPTION_SINCE:
        view = weights_by_reference(path)
        if view is not None:
            model = view
            options.add_session_config_entry(
                "session.model_external_initializers_file_folder_path", str(path.parent)
            )
    return onnxruntime.InferenceSession(model, options, providers=["CPUExecutionProvider"])


def read_opset(path: Path) -> int:
    """The default-domain opset an ONNX file imports, without parsing its graph.

    Walks the top-level fields of the ModelProto and decodes only ``opset_import`` (field 8):
    the graph (field 7), which holds the weights, is skipped by its length prefix. Raises
    StagingError for a file that is not a well-formed protobuf message.
    """
    try:
        with open(path, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as buf:
            return opset_in(buf)
    except (OSError, ValueError) as exc:  # WireError is a ValueError; mmap of an empty file too
        raise StagingError(f"{path.name} is not a readable ONNX model: {exc}") from None


def _ports(values: Any, initializers: set[str]) -> list[dict[str, Any]]:
    import onnx

    ports = []
    for value in values:
        if value.name in initializers:
            continue
        tensor = value.type.tensor_type
        shape = [
            d.dim_param if d.dim_param else (d.dim_value if d.HasField("dim_value") else None)
            for d in tensor.shape.dim
        ]
        elem = onnx.helper.tensor_dtype_to_string(tensor.elem_type) if tensor.elem_type else ""
        ports.append(
            {
                "name": value.name,
                "shape": shape,
                "type": f"tensor({elem.replace('TensorProto.', '').lower()})",
            }
        )
    return ports


def validate_onnx(path: Path) -> OnnxInfo:
    """Check an ONNX model fully and return its interface.

    Runs ``onnx.checker`` (by path, so models with external data or over 2 GB work), strict
    shape inference, and an onnxruntime session load. Raises IntegrityError for an LFS pointer
    or a file that is not a valid model, StagingError when onnxruntime cannot load it.
    """
    return _validate(path)[0]


def _validate(path: Path) -> tuple[OnnxInfo, Any]:
    """:func:`validate_onnx`, also returning the onnxruntime session it loaded (one thread)."""
    with open(path, "rb") as fh:
        if is_lfs_pointer(fh.read(64)):
            raise IntegrityError(f"{path.name} is a Git LFS pointer file, not an ONNX model")
    import onnx
    import onnxruntime

    try:
        onnx.checker.check_model(str(path), full_check=False)
        model = onnx.load(str(path), load_external_data=False)
        onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=False)
    except Exception as exc:  # onnx raises several unrelated exception types
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise IntegrityError(f"{path.name} is not a valid ONNX model: {first}") from None
    try:
        session = check_session(path, threads=1)  # loaded to prove it loads
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise StagingError(f"onnxruntime cannot load {path.name}: {first}") from None
    initializers = {init.name for init in model.graph.initializer}
    opset = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0)
    info = OnnxInfo(
        inputs=[i.name for i in session.get_inputs()],
        outputs=[o.name for o in session.get_outputs()],
        io_ports={
            "inputs": _ports(model.graph.input, initializers),
            "outputs": _ports(model.graph.output, set()),
        },
        opset=int(opset),
        ir_version=int(model.ir_version),
        versions={"onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__},
    )
    return info, session


_NUMPY_TYPES = {
    "tensor(float)": "float32",
    "tensor(double)": "float64",
    "tensor(float16)": "float16",
    "tensor(int64)": "int64",
    "tensor(int32)": "int32",
    "tensor(int8)": "int8",
    "tensor(uint8)": "uint8",
    "tensor(bool)": "bool",
}


def seeded_run(path: Path, seed: int = 0, session: Any = None) -> tuple[list[Any], list[Any]]:
    """Seeded inputs for the ONNX model at ``path`` and onnxruntime's outputs for them: the
    file's own parity fixture (an ONNX source is its own staged form). Unknown dimensions are
    1 (the first) or 8 (the others); floats are standard normal, integers 0-9.

    ``session``: an onnxruntime session of ``path`` already loaded (validation's), else one is.
    Raises StagingError for an input type it cannot make (strings, sequences, maps).
    """
    import numpy as np

    if session is None:
        session = check_session(path)
    rng = np.random.default_rng(seed)
    feeds: dict[str, Any] = {}
    for port in session.get_inputs():
        dtype = _NUMPY_TYPES.get(port.type)
        if dtype is None:
            raise StagingError(f"{path.name}: cannot make a seeded input of type {port.type}")
        dims = [
            d if isinstance(d, int) and d > 0 else (1 if i == 0 else 8)
            for i, d in enumerate(port.shape or [])
        ]
        if dtype == "bool":
            feeds[port.name] = rng.integers(0, 2, size=dims).astype(bool)
        elif np.dtype(dtype).kind in "iu":
            feeds[port.name] = rng.integers(0, 10, size=dims).astype(dtype)
        else:
            feeds[port.name] = rng.standard_normal(dims).astype(dtype)
    outputs = session.run(None, feeds)
    return list(feeds.values()), list(outputs)


def validate_entry(
    path: Path,
    rel: str,
    sha256: str,
    size: int,
    *,
    store: Store | None = None,
    ref: ModelRef | None = None,
    fixture_for: str | None = None,
) -> StagedEntry:
    """Validate an ONNX file already in the store (``rel``) and describe it as a staged entry
    (the file is its own staged form: checked, not converted). With ``store`` and ``ref``, its
    parity fixture (seeded inputs, onnxruntime's outputs) is published beside it; a model that
    cannot be run on seeded inputs gets none (``details["fixture_error"]`` says why).
    ``fixture_for``: name the fixture after this path instead of ``rel`` (a file inside a
    folder that must stay as its hub serves it keeps its fixture beside the folder)."""
    from ..store.manifest import StagedEntry as Entry
    from .parity import write_fixture

    info, session = _validate(path)
    fixture = None
    notes: dict[str, Any] = {}
    if store is not None and ref is not None:
        try:
            inputs, outputs = seeded_run(path, session=session)
        except Exception as exc:  # the model's own failure to run: recorded, not fatal
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            notes["fixture_error"] = first[:240]
        else:
            fixture = write_fixture(store, ref, fixture_for or rel, inputs, outputs)
    return Entry(
        path=rel,
        format="onnx",
        sha256=sha256,
        size=size,
        converter=CONVERTER,
        versions=info.versions,
        inputs=info.inputs,
        outputs=info.outputs,
        parity=None,
        fixture=fixture,
        details={
            "opset": info.opset,
            "ir_version": info.ir_version,
            "io_ports": info.io_ports,
            **notes,
        },
    )

"""Stage ``tflite`` for a TFLite (LiteRT) flatbuffer: validate it in the LiteRT interpreter.

The file is its own staged form (checked, never rewritten): it must carry the flatbuffer
identifier ``TFL3``, the interpreter must load it and allocate its tensors, and one run on
seeded inputs must give outputs of the declared shapes (floats all finite). The input and
output tensor names, shapes and types, and the signatures, go into the staged entry.

The interpreter is LiteRT's (``ai_edge_litert.interpreter.Interpreter``, the ``ai-edge-litert``
package, which ``modelhub[tensorflow]`` installs); where it is missing, TensorFlow's own
``tf.lite.Interpreter`` (deprecated in favour of LiteRT, same API) is the fallback. Stateless
and idempotent.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import IntegrityError, StagingError

if TYPE_CHECKING:
    from ..store import StagedEntry

CONVERTER = "litert.Interpreter(allocate_tensors+invoke)"
#: The flatbuffer file identifier of a TFLite model, at bytes 4..8.
TFLITE_IDENTIFIER = b"TFL3"
SEED = 0


def is_tflite(head: bytes) -> bool:
    """True when ``head`` (a file's first bytes) starts a TFLite flatbuffer."""
    return len(head) >= 8 and head[4:8] == TFLITE_IDENTIFIER


def interpreter_class() -> tuple[Any, str, dict[str, str]]:
    """(Interpreter class, its name, package versions): LiteRT's, else TensorFlow's.

    Raises StagingError (with what to install) when neither is importable.
    """
    from importlib import metadata

    try:
        from ai_edge_litert.interpreter import Interpreter

        return Interpreter, "ai_edge_litert", {"ai-edge-litert": metadata.version("ai-edge-litert")}
    except ImportError:
        pass
    try:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        from ..frameworks.tf_env import quiet_tf

        with quiet_tf():
            import tensorflow as tf

        return tf.lite.Interpreter, "tf.lite", {"tensorflow": str(tf.__version__)}
    except ImportError:
        raise StagingError(
            "validating a TFLite model needs the LiteRT interpreter: "
            "pip install 'modelhub[tensorflow]' (ai-edge-litert)"
        ) from None


@contextlib.contextmanager
def _quiet_warnings() -> Iterator[None]:
    """TensorFlow's interpreter warns on every construction that it is deprecated."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def seeded_input(shape: Any, dtype: Any, rng: Any) -> Any:
    """A seeded input of ``shape``/``dtype``: normal floats, small integers, booleans."""
    import numpy as np

    kind = np.dtype(dtype).kind
    if kind == "f":
        return rng.standard_normal(shape).astype(dtype)
    if kind in "iu":
        info = np.iinfo(dtype)
        return rng.integers(max(info.min, -4), min(info.max, 4), size=shape, endpoint=True).astype(
            dtype
        )
    if kind == "b":
        return rng.integers(0, 1, size=shape, endpoint=True).astype(bool)
    raise StagingError(f"cannot make a seeded input of type {np.dtype(dtype)}")


def _port(detail: dict[str, Any]) -> dict[str, Any]:
    import numpy as np

    signature = detail.get("shape_signature")
    shape = signature if signature is not None and len(signature) else detail["shape"]
    return {
        "name": str(detail["name"]),
        "shape": [int(d) for d in shape],
        "type": str(np.dtype(detail["dtype"])),
    }


def validate_tflite(path: Path) -> dict[str, Any]:
    """Load ``path`` in the interpreter, allocate, run once on seeded inputs; return what was
    learnt (``inputs``/``outputs`` ports, ``signatures``, ``interpreter``, ``versions``).

    Raises IntegrityError (exit 5) when the file is not a TFLite model the interpreter runs.
    """
    import numpy as np

    with open(path, "rb") as fh:
        head = fh.read(8)
    if not is_tflite(head):
        raise IntegrityError(f"{path.name} is not a TFLite model (no TFL3 flatbuffer identifier)")
    interpreter_type, which, versions = interpreter_class()
    try:
        with _quiet_warnings():
            interpreter = interpreter_type(model_path=str(path))
            interpreter.allocate_tensors()
            inputs = interpreter.get_input_details()
            rng = np.random.default_rng(SEED)
            for detail in inputs:
                data = seeded_input(tuple(detail["shape"]), detail["dtype"], rng)
                interpreter.set_tensor(detail["index"], data)
            interpreter.invoke()
            outputs = interpreter.get_output_details()
            values = [interpreter.get_tensor(d["index"]) for d in outputs]
            signatures = interpreter.get_signature_list()
    except StagingError:
        raise
    except (ValueError, RuntimeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise IntegrityError(
            f"{path.name}: the LiteRT interpreter cannot run it: {first}"
        ) from None
    for detail, value in zip(outputs, values, strict=True):
        if list(value.shape) != [int(d) for d in detail["shape"]]:
            raise IntegrityError(
                f"{path.name}: output {detail['name']} has shape {list(value.shape)}, "
                f"not the declared {list(detail['shape'])}"
            )
        if value.dtype.kind == "f" and not np.isfinite(value).all():
            raise IntegrityError(f"{path.name}: output {detail['name']} is not finite")
    return {
        "inputs": [_port(d) for d in inputs],
        "outputs": [_port(d) for d in outputs],
        "signatures": {
            str(k): {"inputs": list(v.get("inputs", [])), "outputs": list(v.get("outputs", []))}
            for k, v in (signatures or {}).items()
        },
        "interpreter": which,
        "versions": versions,
    }


def validate_entry(path: Path, rel: str, sha256: str, size: int) -> StagedEntry:
    """Validate a TFLite file already in the store (``rel``) and describe it as a staged entry
    (the file is its own staged form: checked, not converted)."""
    from ..store.manifest import StagedEntry as Entry

    info = validate_tflite(path)
    return Entry(
        path=rel,
        format="tflite",
        sha256=sha256,
        size=size,
        converter=CONVERTER,
        versions=info["versions"],
        inputs=[p["name"] for p in info["inputs"]],
        outputs=[p["name"] for p in info["outputs"]],
        parity=None,
        details={
            "interpreter": info["interpreter"],
            "io_ports": {"inputs": info["inputs"], "outputs": info["outputs"]},
            "signatures": info["signatures"],
            "seed": SEED,
        },
    )

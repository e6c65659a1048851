"""Tiny real ONNX models built with onnx.helper, and ONNX-zoo manifests describing them."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any


def make_mlp(path: Path, *, seed: int = 0, opset: int = 13, width: int = 4) -> Path:
    """Write a real ONNX model y = relu(x @ W + b) with seeded weights; return ``path``."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    weight = rng.standard_normal((width, 3)).astype(np.float32)
    bias = rng.standard_normal((3,)).astype(np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "W"], ["xw"]),
            helper.make_node("Add", ["xw", "b"], ["pre"]),
            helper.make_node("Relu", ["pre"], ["y"]),
        ],
        f"mlp_{seed}",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", width])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])],
        [numpy_helper.from_array(weight, "W"), numpy_helper.from_array(bias, "b")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def zoo_entry(model: str, model_path: str, data: bytes, opset: int) -> dict[str, Any]:
    """One ONNX_HUB_MANIFEST.json entry (the real schema) for ``data``."""
    return {
        "model": model,
        "model_path": model_path,
        "onnx_version": "1.14",
        "opset_version": opset,
        "metadata": {
            "model_sha": hashlib.sha256(data).hexdigest(),
            "model_bytes": len(data),
            "tags": ["test"],
            "io_ports": {
                "inputs": [{"name": "x", "shape": ["N", 4], "type": "tensor(float)"}],
                "outputs": [{"name": "y", "shape": ["N", 3], "type": "tensor(float)"}],
            },
        },
    }


def zoo_manifest(entries: list[dict[str, Any]]) -> bytes:
    """Serialise a list of entries as ONNX_HUB_MANIFEST.json."""
    return json.dumps(entries, indent=1).encode()

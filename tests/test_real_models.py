"""Real third-party ONNX models (the silero-vad wheel's files) through a zoo on 127.0.0.1."""

from __future__ import annotations

import numpy as np
import pytest

import modelhub
from tests.conftest import ZOO_FILES
from tests.support.onnx_models import zoo_manifest

SILERO = [
    "silero_vad.onnx",
    "silero_vad_16k_op15.onnx",
    "silero_vad_half.onnx",
    "silero_vad_op18_ifless.onnx",
]


@pytest.fixture
def silero_zoo(real_models, monkeypatch):
    from modelhub.staging.onnx_check import validate_onnx
    from tests.support.httpserver import HTTPTestServer

    server = HTTPTestServer()
    entries = []
    for name in SILERO:
        path = real_models[name]
        info = validate_onnx(path)
        data = path.read_bytes()
        import hashlib

        model_path = f"validated/audio/silero/{name}"
        entries.append(
            {
                "model": name.removesuffix(".onnx").replace("_", "-"),
                "model_path": model_path,
                "onnx_version": "1.16",
                "opset_version": info.opset,
                "metadata": {
                    "model_sha": hashlib.sha256(data).hexdigest(),
                    "model_bytes": len(data),
                    "tags": ["audio"],
                    "io_ports": info.io_ports,
                },
            }
        )
        server.add(f"/{ZOO_FILES}/{model_path}", path)  # the zoo's Hugging Face copy
    server.add("/ONNX_HUB_MANIFEST.json", zoo_manifest(entries))
    with server:
        monkeypatch.setenv("MODELHUB_ONNX_URL", server.url)
        monkeypatch.setenv("MODELHUB_HF_URL", server.url)
        yield entries


def test_real_silero_models_pull_stage_and_run(silero_zoo, real_models, store_root) -> None:
    for entry in silero_zoo:
        model = modelhub.pull(f"onnx:{entry['model']}")
        name = entry["model_path"].rsplit("/", 1)[-1]
        assert model.path == store_root / "onnx" / name
        assert model.path.read_bytes() == real_models[name].read_bytes()
        staged = model.manifest.staged[0]
        assert staged.format == "onnx"
        assert staged.inputs and staged.outputs
        assert staged.details["opset"] == entry["opset_version"]
    session = modelhub.load("onnx:silero-vad")
    feeds = {}
    for inp in session.get_inputs():
        shape = [d if isinstance(d, int) else 1 for d in inp.shape]
        if inp.name == "input":
            shape = [1, 512]
        dtype = np.int64 if "int64" in inp.type else np.float32
        feeds[inp.name] = (
            np.array(16000, dtype=dtype) if inp.name == "sr" else np.zeros(shape, dtype=dtype)
        )
    outputs = session.run(None, feeds)
    prob = float(np.asarray(outputs[0]).ravel()[0])
    assert 0.0 <= prob <= 1.0

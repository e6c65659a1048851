"""url: PyTorch files: real third-party state_dicts and TorchScript, stored as they are."""

from __future__ import annotations

from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

import modelhub  # noqa: E402
from modelhub.errors import UnsupportedError, UsageError  # noqa: E402
from modelhub.staging.torchscript_onnx import is_torchscript  # noqa: E402
from tests.support.httpserver import HTTPTestServer  # noqa: E402


def _host(server: HTTPTestServer) -> str:
    """The store folder of the server's url: files (host_port)."""
    return "127.0.0.1_" + server.url.rsplit(":", 1)[1]


def test_real_facenet_state_dicts_load_weights_only(real_models, store_root: Path) -> None:
    files = {n: real_models[n] for n in ("pnet.pt", "rnet.pt", "onet.pt")}
    with HTTPTestServer({f"/facenet/{n}": p for n, p in files.items()}) as server:
        for name, path in files.items():
            model = modelhub.pull(f"url:{server.url}/facenet/{name}")
            assert model.path == store_root / "pytorch" / _host(server) / "facenet" / name
            assert model.path.read_bytes() == path.read_bytes()
            assert model.manifest.staged == []
            state = torch.load(model.path, weights_only=True)
            assert all(isinstance(v, torch.Tensor) for v in state.values())
            assert any(k.endswith("weight") for k in state)
        with pytest.raises(UnsupportedError, match="staging needs torch:NAME"):
            modelhub.pull(f"url:{server.url}/facenet/pnet.pt", stage="onnx")


def test_real_silero_torchscript_is_stored_and_runs(real_models, store_root: Path) -> None:
    with HTTPTestServer({"/silero/silero_vad.jit": real_models["silero_vad.jit"]}) as server:
        model = modelhub.pull(f"url:{server.url}/silero/silero_vad.jit")
    assert model.path == store_root / "pytorch" / _host(server) / "silero" / "silero_vad.jit"
    assert is_torchscript(model.path)
    net = torch.jit.load(str(model.path), map_location="cpu")
    with torch.no_grad():
        prob = float(net(torch.zeros(1, 512), 16000).reshape(-1)[0])
    assert 0.0 <= prob <= 1.0


def test_torchscript_stages_to_onnx_with_parity(tmp_path: Path, store_root: Path) -> None:
    torch.manual_seed(3)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.LazyLinear(6)
    )
    net(torch.zeros(1, 3, 8, 8))
    scripted = torch.jit.trace(net.eval(), torch.zeros(1, 3, 8, 8))
    path = tmp_path / "traced.pt"
    scripted.save(str(path))
    with HTTPTestServer({"/ts/traced.pt": path}) as server:
        url = f"url:{server.url}/ts/traced.pt"
        with pytest.raises(UsageError, match="--input-shape"):
            modelhub.pull(url, stage="onnx")
        model = modelhub.pull(url, stage="onnx", options={"input_shape": "1,3,8,8"})
    staged = model.manifest.staged[0]
    assert model.path == store_root / "pytorch" / _host(server) / "ts" / "traced.onnx"
    assert staged.parity["max_abs_diff"] <= 1e-4
    assert staged.converter == "torch.jit+torch.onnx.export"

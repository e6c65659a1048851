"""The torch: hub: torchvision names, verified weights in torch's cache, ONNX with parity."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
tvm = pytest.importorskip("torchvision.models")

import modelhub  # noqa: E402
from modelhub.errors import HashMismatchError, IntegrityError, UntrustedCodeError  # noqa: E402
from modelhub.hubs.torch_hub import TorchHub  # noqa: E402
from tests.support.httpserver import HTTPTestServer  # noqa: E402
from tests.support.torchvision_models import (  # noqa: E402
    EVIL_NAME,
    NAME,
    register,
    register_evil,
)


@pytest.fixture
def torch_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "torch-home"
    monkeypatch.setenv("TORCH_HOME", str(home))
    return home


@pytest.fixture
def weights_server(monkeypatch: pytest.MonkeyPatch):
    tiny = register()
    with HTTPTestServer({f"/models/{tiny.filename}": tiny.data}) as server:
        monkeypatch.setenv("MODELHUB_TORCH_URL", server.url)
        yield server, tiny


@pytest.mark.parametrize(
    ("ref", "filename"),
    [
        ("torch:resnet18@IMAGENET1K_V1", "resnet18-f37072fd.pth"),
        ("torch:resnet18", "resnet18-f37072fd.pth"),
        ("torch:mobilenet_v3_small", "mobilenet_v3_small-047dcff4.pth"),
    ],
)
def test_real_torchvision_names_resolve(
    ref: str, filename: str, torch_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MODELHUB_TORCH_URL", "http://mirror.invalid/torch")
    hub = TorchHub()
    plan = hub.resolve(modelhub.parse(ref))
    weights = tvm.get_model_weights(ref.split(":")[1].split("@")[0])
    assert Path(plan.files[0].url).name == filename == Path(weights.DEFAULT.url).name
    assert plan.files[0].url == f"http://mirror.invalid/torch/models/{filename}"
    assert plan.files[0].rel == f"pytorch/{filename}"
    assert plan.sdk_cache == str(torch_home / "hub" / "checkpoints" / filename)
    assert plan.details["input_shape"] == [1, 3, 224, 224]


def test_pull_verifies_fills_cache_and_stages(
    weights_server, torch_home: Path, store_root: Path
) -> None:
    server, tiny = weights_server
    model = modelhub.pull(f"torch:{NAME}")
    cached = torch_home / "hub" / "checkpoints" / tiny.filename
    stored = store_root / "pytorch" / tiny.filename
    assert cached.read_bytes() == tiny.data == stored.read_bytes()
    assert model.manifest.files[0].sha256 == tiny.sha256
    assert model.manifest.sdk_cache == str(cached)
    staged = model.manifest.staged[0]
    assert model.path == store_root / "pytorch" / f"{NAME}.onnx"
    assert staged.inputs == ["input"] and staged.outputs == ["output"]
    assert staged.parity["max_abs_diff"] <= 1e-4
    assert staged.details["opset"] == 17
    assert staged.details["input_shape"] == [1, 3, 32, 32]
    # The session runs with another batch size: the batch axis is dynamic.
    session = modelhub.load(f"torch:{NAME}")
    (out,) = session.run(None, {"input": torch.zeros(5, 3, 32, 32).numpy()})
    assert out.shape == (5, 10)
    # torchvision now builds the model from torch's cache with no server at all.
    server.stop()
    net = tvm.get_model(NAME, weights="DEFAULT")
    expected = torch.load(io.BytesIO(tiny.data), weights_only=True)
    assert all(torch.equal(net.state_dict()[k], v) for k, v in expected.items())


def test_cache_reuse_makes_no_request(
    weights_server, torch_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server, tiny = weights_server
    modelhub.pull(f"torch:{NAME}", stage="none")
    assert len(server.requests) == 1
    monkeypatch.setenv("MODELHUB_PATH", str(tmp_path / "second-store"))
    again = modelhub.pull(f"torch:{NAME}", stage="none")
    assert len(server.requests) == 1, "a file in torch's cache needs no network"
    assert again.manifest.details["cache_hit"] is True
    assert (
        os.stat(again.original).st_ino
        == os.stat(torch_home / "hub" / "checkpoints" / tiny.filename).st_ino
    )


def test_wrong_content_under_real_name_is_rejected(
    torch_home: Path, store_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tiny = register()
    other = bytearray(tiny.data)
    other[len(other) // 2] ^= 0xFF  # same name and size, other content
    with HTTPTestServer({f"/models/{tiny.filename}": bytes(other)}) as server:
        monkeypatch.setenv("MODELHUB_TORCH_URL", server.url)
        with pytest.raises(HashMismatchError, match="prefix") as info:
            modelhub.pull(f"torch:{NAME}")
    assert info.value.exit_code == 5
    assert not (store_root / "pytorch" / tiny.filename).exists()
    assert not (torch_home / "hub" / "checkpoints" / tiny.filename).exists()
    assert modelhub.Store().manifest(modelhub.parse(f"torch:{NAME}")) is None


def test_pickle_with_code_is_refused(
    torch_home: Path, store_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    marker = store_root.parent / "pwned-by-pickle"
    evil = register_evil(str(marker))
    with HTTPTestServer({f"/models/{evil.filename}": evil.data}) as server:
        monkeypatch.setenv("MODELHUB_TORCH_URL", server.url)
        with pytest.raises(IntegrityError, match="not plain data") as info:
            modelhub.pull(f"torch:{EVIL_NAME}")
    assert info.value.exit_code == 5
    assert not marker.exists(), "the pickle's code ran"
    assert not (store_root / "pytorch" / f"{EVIL_NAME}.onnx").exists()


def test_untrusted_hub_repo_never_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(UntrustedCodeError, match="--trust") as info:
        modelhub.pull("torch:someone/somerepo/entry")
    assert info.value.exit_code == 4


def test_missing_prefix_is_an_integrity_error() -> None:
    from modelhub.hubs.torch_hub import hash_prefix

    assert hash_prefix("resnet18-f37072fd.pth") == "f37072fd"
    for bad in ("resnet18.pth", "resnet18-abc.pth", "model-XYZ12345.pth"):
        with pytest.raises(IntegrityError):
            hash_prefix(bad)


HUBCONF = '''
import torch
from torch import nn

dependencies = ["torch"]


def tiny(pretrained=False, **kwargs):
    """A small conv net with seeded weights."""
    torch.manual_seed(7)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(4, 5))
'''


def _zipball(tmp_path: Path, hubconf: str) -> bytes:
    import zipfile

    path = tmp_path / "repo.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("someone-tinyrepo-abc1234/hubconf.py", hubconf)
        zf.writestr("someone-tinyrepo-abc1234/README.md", "tiny")
    return path.read_bytes()


def test_trusted_hub_repo_pulls_stages_and_reuses(
    tmp_path: Path, torch_home: Path, store_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = _zipball(tmp_path, HUBCONF)
    with HTTPTestServer({"/someone/tinyrepo/zipball/main": data}) as server:
        monkeypatch.setenv("MODELHUB_GITHUB_URL", server.url)
        monkeypatch.setenv("MODELHUB_TRUSTED_REPOS", "other/repo, someone/tinyrepo")
        model = modelhub.pull("torch:someone/tinyrepo/tiny", options={"input_shape": "1,3,16,16"})
    repo_dir = torch_home / "hub" / "someone_tinyrepo_main"
    assert (repo_dir / "hubconf.py").read_text() == HUBCONF
    assert model.manifest.sdk_cache == str(repo_dir)
    assert model.manifest.files[0].path == "pytorch/hub/someone/tinyrepo/tiny/tinyrepo-main.zip"
    staged = model.manifest.staged[0]
    assert model.path == store_root / "pytorch/hub/someone/tinyrepo/tiny.onnx"
    assert staged.parity["max_abs_diff"] <= 1e-4
    assert staged.details["input_shape"] == [1, 3, 16, 16]
    # torch.hub itself reuses the extracted repository with no network.
    net = torch.hub.load(str(repo_dir), "tiny", source="local")
    assert net(torch.zeros(2, 3, 16, 16)).shape == (2, 5)


def test_untrusted_hub_repo_makes_no_request_and_runs_nothing(
    tmp_path: Path, torch_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    marker = tmp_path / "hubconf-ran"
    evil = f"open({str(marker)!r}, 'w').write('ran')\n" + HUBCONF
    with HTTPTestServer({"/someone/tinyrepo/zipball/main": _zipball(tmp_path, evil)}) as server:
        monkeypatch.setenv("MODELHUB_GITHUB_URL", server.url)
        with pytest.raises(UntrustedCodeError):
            modelhub.pull("torch:someone/tinyrepo/tiny")
        assert server.requests == []
    assert not marker.exists()
    assert not (torch_home / "hub" / "someone_tinyrepo_main").exists()


def test_hostile_zipball_is_refused(
    tmp_path: Path, torch_home: Path, store_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import zipfile

    from modelhub.errors import ArchiveError

    path = tmp_path / "evil.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("top/hubconf.py", HUBCONF)
        zf.writestr("top/../../escaped.py", "x = 1")
    with HTTPTestServer({"/someone/tinyrepo/zipball/main": path.read_bytes()}) as server:
        monkeypatch.setenv("MODELHUB_GITHUB_URL", server.url)
        with pytest.raises(ArchiveError, match="outside"):
            modelhub.pull("torch:someone/tinyrepo/tiny", options={"trust": True})
    assert not list(tmp_path.rglob("escaped.py"))
    assert not (torch_home / "hub" / "someone_tinyrepo_main").exists()

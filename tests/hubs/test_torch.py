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
from modelhub.importer import import_path  # noqa: E402
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


def test_untrusted_hub_repo_makes_no_request_and_runs_nothing(
    tmp_path: Path, torch_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Trust is decided before any request (the default-branch probe included)."""
    import zipfile

    marker = tmp_path / "hubconf-ran"
    path = tmp_path / "repo.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("someone-tinyrepo-abc1234/", b"")
        zf.writestr("someone-tinyrepo-abc1234/hubconf.py", f"open({str(marker)!r}, 'w')\n")
    files = {
        "/someone/tinyrepo/zipball/main": path.read_bytes(),
        "/someone/tinyrepo/tree/main/": b"",
    }
    with HTTPTestServer(files) as server:
        monkeypatch.setenv("MODELHUB_GITHUB_URL", server.url)
        with pytest.raises(UntrustedCodeError, match="--trust") as info:
            modelhub.pull("torch:someone/tinyrepo/tiny")
        assert server.requests == []
    assert info.value.exit_code == 4
    assert not marker.exists()
    assert not (torch_home / "hub" / "someone_tinyrepo_main").exists()


def test_hash_prefix_is_torchs_rule() -> None:
    """torch.hub's ``-([a-f0-9]*)\\.`` searched in the name; no match (or an empty one): no
    published hash."""
    from modelhub.frameworks.torch_env import hash_prefix

    assert hash_prefix("resnet18-f37072fd.pth") == "f37072fd"
    assert hash_prefix("shufflenetv2_x1-5666bf0f80.pth") == "5666bf0f80"
    assert hash_prefix("mnasnet0.5_top1_67.823-3ffadce67e.pth") == "3ffadce67e"
    assert hash_prefix("resnet18-abc.pth") == "abc"  # torch checks these 3 digits
    assert hash_prefix("a-abc.b-0123abcd.pth") == "abc"  # the first match, as torch
    for unpublished in (
        "mobilenet_v2_qnnpack_37f702c5.pth",
        "resnet18_fbgemm_16fa66dd.pth",
        "resnet18.pth",
        "model-XYZ12345.pth",
        "model-.pth",
    ):
        assert hash_prefix(unpublished) is None, unpublished


@pytest.mark.parametrize(
    ("ref", "path"),
    [
        ("torch:quantized_mobilenet_v2", "/models/quantized/mobilenet_v2_qnnpack_37f702c5.pth"),
        ("torch:quantized_resnet18", "/models/quantized/resnet18_fbgemm_16fa66dd.pth"),
        (
            "torch:quantized_resnet50@IMAGENET1K_FBGEMM_V1",
            "/models/quantized/resnet50_fbgemm_bf931d71.pth",
        ),
    ],
)
def test_real_quantized_weights_resolve_without_a_published_hash(
    ref: str, path: str, torch_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MODELHUB_TORCH_URL", "http://mirror.invalid/torch")
    plan = TorchHub().resolve(modelhub.parse(ref))
    assert plan.files[0].url == f"http://mirror.invalid/torch{path}"
    assert plan.files[0].rel == f"pytorch/{Path(path).name}"
    assert plan.details["sha256_prefix"] is None


def _register_unhashed() -> tuple[str, bytes, str]:
    """A torchvision-registered net whose weights file is named like the quantized ones
    (``_<hex>.pth``, no ``-<hex>.``): torch checks no hash for it."""
    import hashlib
    from functools import partial

    from torchvision.models._api import Weights, WeightsEnum, register_model
    from torchvision.transforms._presets import ImageClassification

    from tests.support import torchvision_models as tvmodels

    name = "modelhub_unhashednet"
    torch.manual_seed(99)
    net_class = tvmodels._net()
    buf = io.BytesIO()
    torch.save(net_class(10).state_dict(), buf)
    data = buf.getvalue()
    filename = f"{name}_fbgemm_{hashlib.sha256(data).hexdigest()[:8]}.pth"
    if name not in tvm.list_models():
        weights = Weights(
            url=f"https://download.pytorch.org/models/quantized/{filename}",
            transforms=partial(ImageClassification, crop_size=32, resize_size=36),
            meta={"categories": tvmodels.CATEGORIES},
        )
        enum = WeightsEnum(f"{name}_Weights", [("IMAGENET1K_V1", weights), ("DEFAULT", weights)])

        def builder(*, weights: object = None, progress: bool = True, **kwargs: object) -> object:
            weights = enum.verify(weights)
            net = net_class(10)
            if weights is not None:
                net.load_state_dict(weights.get_state_dict(progress=progress, check_hash=True))
            return net

        builder.__annotations__["weights"] = enum | None
        register_model(name=name)(builder)
    return name, data, filename


def test_weights_without_a_published_hash_are_accepted_and_recorded(
    torch_home: Path, store_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    name, data, filename = _register_unhashed()
    with HTTPTestServer({f"/models/quantized/{filename}": data}) as server:
        monkeypatch.setenv("MODELHUB_TORCH_URL", server.url)
        model = modelhub.pull(f"torch:{name}")
    import hashlib

    assert model.manifest.files[0].sha256 == hashlib.sha256(data).hexdigest()
    assert model.manifest.details["sha256_prefix"] is None
    assert (torch_home / "hub" / "checkpoints" / filename).read_bytes() == data
    assert model.manifest.staged[0].parity["max_abs_diff"] <= 1e-4
    # modelhub.lock pins what no file name does.
    hub = TorchHub()
    files = [{"path": f.path, "sha256": f.sha256} for f in model.manifest.files]
    assert hub.lock_pin(files) == model.manifest.files[0].sha256
    assert hub.lock_pin([{"path": "pytorch/resnet18-f37072fd.pth", "sha256": "0" * 64}]) is None


def test_pinned_sha256_decides_for_unhashed_weights(
    torch_home: Path, store_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What ``sync --locked`` does for a file whose name publishes no hash: the pin decides."""
    import hashlib

    name, data, filename = _register_unhashed()
    with HTTPTestServer({f"/models/quantized/{filename}": data}) as server:
        monkeypatch.setenv("MODELHUB_TORCH_URL", server.url)
        with pytest.raises(HashMismatchError, match="does not match the expected"):
            modelhub.pull(f"torch:{name}", stage="none", sha256="0" * 64)
        assert not (store_root / "pytorch" / filename).exists()
        assert not (torch_home / "hub" / "checkpoints" / filename).exists()
        pinned = hashlib.sha256(data).hexdigest()
        model = modelhub.pull(f"torch:{name}", stage="none", sha256=pinned)
    assert model.manifest.files[0].sha256 == pinned


def test_torchs_downloaded_weights_are_used_with_no_request(
    weights_server, torch_home: Path, store_root: Path
) -> None:
    """torchvision fills $TORCH_HOME/hub/checkpoints; modelhub then asks nothing."""
    server, tiny = weights_server
    cached = torch_home / "hub" / "checkpoints" / tiny.filename
    cached.parent.mkdir(parents=True)
    cached.write_bytes(tiny.data)
    model = modelhub.pull(f"torch:{NAME}", stage="none")
    assert server.requests == []
    assert model.manifest.details["cache_hit"] is True
    assert (store_root / "pytorch" / tiny.filename).read_bytes() == tiny.data


def test_imported_weights_are_staged_from_the_store_with_no_network(
    torch_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``import FILE --as torch:NAME`` (a fine-tune, any file name): staging builds the
    network with torchvision's builder and *these* weights, offline, asking no server and
    leaving torch's cache alone (it used to let torchvision download its published file)."""
    import numpy as np
    import onnxruntime

    register()
    with HTTPTestServer({}) as server:  # where a download would go: nothing is asked
        monkeypatch.setenv("MODELHUB_TORCH_URL", server.url)
        monkeypatch.setenv("MODELHUB_OFFLINE", "1")
        torch.manual_seed(7)
        net = tvm.get_model(NAME, weights=None).eval()
        mine = tmp_path / "my-finetune.pth"
        torch.save(net.state_dict(), mine)
        import_path(modelhub.Store(), mine, modelhub.parse(f"torch:{NAME}"))
        model = modelhub.pull(f"torch:{NAME}")
        assert server.requests == []
    assert not (torch_home / "hub" / "checkpoints").exists()
    staged = model.manifest.staged[0]
    assert staged.parity["max_abs_diff"] <= 1e-4
    x = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    session = onnxruntime.InferenceSession(str(model.path), providers=["CPUExecutionProvider"])
    (out,) = session.run(None, {"input": x.numpy()})
    with torch.no_grad():
        assert np.allclose(out, net(x).numpy(), atol=1e-5)


def test_mirror_serves_torch_weights_and_the_github_stand_in(
    tmp_path: Path, torch_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The mirror answers what torch.hub asks of download.pytorch.org, github.com and
    api.github.com, from a store that pulled the models."""
    import json
    import urllib.error
    import urllib.request

    from modelhub.mirror import running
    from tests.hubs.test_torch_hub import COMMIT, FakeGitHub, make_zipball

    name, data, filename = _register_unhashed()
    zipball = make_zipball("someone", "tinyrepo", {"hubconf.py": "dependencies = []\n"})
    seed = modelhub.Store(tmp_path / "seed")
    with HTTPTestServer({f"/models/quantized/{filename}": data}) as server:
        hub = FakeGitHub(server, "someone", "tinyrepo")
        hub.add_ref("main", zipball)
        hub.add_ref("v2", zipball, kind="tag", commit="1" * 40)
        monkeypatch.setenv("MODELHUB_TORCH_URL", server.url)
        monkeypatch.setenv("MODELHUB_GITHUB_URL", server.url)
        monkeypatch.setenv("MODELHUB_GITHUB_API_URL", hub.api)
        modelhub.pull(f"torch:{name}", stage="none", store=seed)
        for ref in ("torch:someone/tinyrepo/entry", "torch:someone/tinyrepo:v2/entry"):
            modelhub.pull(ref, stage="none", store=seed, options={"trust": True})

    def get(url: str) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(url) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as exc:
            return exc.code, b""

    with running(seed.root) as url:
        assert get(f"{url}/torch/models/quantized/{filename}") == (200, data)
        assert get(f"{url}/torch/models/{filename}") == (200, data)
        assert get(f"{url}/torch/models/other/{filename}")[0] == 404
        assert get(f"{url}/torch/github/someone/tinyrepo/tree/main/")[0] == 200
        assert get(f"{url}/torch/github/someone/tinyrepo/tree/master/")[0] == 404
        assert get(f"{url}/torch/github/someone/tinyrepo/zipball/main") == (200, zipball)
        assert get(f"{url}/torch/github/someone/tinyrepo/zipball/{COMMIT}") == (200, zipball)
        api = f"{url}/torch/github-api/repos/someone/tinyrepo"
        status, body = get(f"{api}/branches?per_page=100&page=1")
        assert status == 200
        assert json.loads(body) == [{"name": "main", "commit": {"sha": COMMIT}}]
        assert json.loads(get(f"{api}/branches?per_page=100&page=2")[1]) == []
        assert json.loads(get(f"{api}/tags?per_page=1&page=1")[1]) == [
            {"name": "v2", "commit": {"sha": COMMIT}}  # the commit its zipball records
        ]
        assert json.loads(get(f"{api}/tags?per_page=1&page=2")[1]) == []
        assert get(f"{url}/torch/github-api/repos/nobody/nothing/branches?page=1")[0] == 404

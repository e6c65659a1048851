"""The onnx: hub against a real zoo server on 127.0.0.1."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

import modelhub
from modelhub.errors import (
    HashMismatchError,
    LFSPointerError,
    ModelNotFoundError,
    NotInStoreError,
    OfflineError,
)
from tests.support.onnx_models import make_mlp, zoo_entry, zoo_manifest


def _model_requests(zoo, suffix: str = ".onnx") -> int:
    return sum(1 for r in zoo.server.requests if r.path.endswith(suffix))


def test_pull_highest_opset_by_name(zoo, store_root: Path) -> None:
    model = modelhub.pull("onnx:tiny-mlp")
    assert model.path == store_root / "onnx" / "tiny-mlp-13.onnx"
    assert model.path.read_bytes() == zoo.files["tiny-mlp-13.onnx"]
    m = model.manifest
    assert m.ref == "onnx:tiny-mlp"
    assert m.hub == "onnx" and m.framework == "onnx"
    assert m.revision == zoo.sha("tiny-mlp-13.onnx")
    assert m.storage == "uncompressed" and m.sdk_cache is None
    assert m.files[0].path == "onnx/tiny-mlp-13.onnx"
    assert m.files[0].sha256 == zoo.sha("tiny-mlp-13.onnx")
    assert m.source == [f"{zoo.url}/validated/tiny/model/tiny-mlp-13.onnx"]
    staged = m.staged[0]
    assert staged.format == "onnx" and staged.inputs == ["x"] and staged.outputs == ["y"]
    assert staged.details["opset"] == 13
    assert set(staged.versions) == {"onnx", "onnxruntime"}
    doc = json.loads(
        (store_root / ".modelhub/manifests/onnx").glob("*.json").__next__().read_text()
    )
    for key in (
        "ref",
        "hub",
        "framework",
        "revision",
        "source",
        "storage",
        "sdk_cache",
        "files",
        "staged",
        "created",
    ):
        assert key in doc


def test_pull_by_opset_and_by_file_stem(zoo, store_root: Path) -> None:
    by_opset = modelhub.pull("onnx:tiny-mlp@12")
    by_stem = modelhub.pull("onnx:tiny-mlp-12")
    assert by_opset.path == by_stem.path == store_root / "onnx" / "tiny-mlp-12.onnx"
    assert by_opset.manifest.revision == zoo.sha("tiny-mlp-12.onnx")
    # Two references, one identical file: both manifests own it, nothing was overwritten.
    assert by_stem.path.read_bytes() == zoo.files["tiny-mlp-12.onnx"]


def test_present_model_makes_zero_requests(zoo) -> None:
    modelhub.pull("onnx:tiny-mlp")
    before = len(zoo.server.requests)
    again = modelhub.pull("onnx:tiny-mlp")
    assert len(zoo.server.requests) == before
    assert again.path.is_file()


def test_zoo_manifest_cached_and_refreshed(zoo) -> None:
    modelhub.pull("onnx:tiny-mlp")
    modelhub.pull("onnx:other-mlp")
    manifests = [r for r in zoo.server.requests if r.path.endswith("ONNX_HUB_MANIFEST.json")]
    assert len(manifests) == 1, "the second model was found in the cached zoo manifest"
    with pytest.raises(ModelNotFoundError):
        modelhub.pull("onnx:not-there")
    manifests = [r for r in zoo.server.requests if r.path.endswith("ONNX_HUB_MANIFEST.json")]
    assert len(manifests) == 2, "a model missing from the cache triggers exactly one refresh"


def test_unknown_model_suggests(zoo) -> None:
    with pytest.raises(ModelNotFoundError, match="did you mean tiny-mlp") as info:
        modelhub.pull("onnx:tiny-mpl")
    assert info.value.exit_code == 3


def test_unknown_opset(zoo) -> None:
    with pytest.raises(ModelNotFoundError, match="opset 7"):
        modelhub.pull("onnx:tiny-mlp@7")


def test_wrong_sha_leaves_nothing(tmp_path: Path, store_root: Path, monkeypatch) -> None:
    from tests.support.httpserver import HTTPTestServer

    data = make_mlp(tmp_path / "m.onnx").read_bytes()
    entry = zoo_entry("bad", "m/bad.onnx", data, 13)
    entry["metadata"]["model_sha"] = hashlib.sha256(b"other").hexdigest()
    with HTTPTestServer(
        {"/ONNX_HUB_MANIFEST.json": zoo_manifest([entry]), "/m/bad.onnx": data}
    ) as server:
        monkeypatch.setenv("MODELHUB_ONNX_URL", server.url)
        with pytest.raises(HashMismatchError) as info:
            modelhub.pull("onnx:bad")
    assert info.value.exit_code == 5
    assert not (store_root / "onnx" / "bad.onnx").exists()
    assert not list((store_root / ".modelhub" / "manifests").rglob("*.json"))


def test_lfs_pointer_detected(tmp_path: Path, store_root: Path, monkeypatch) -> None:
    from tests.support.httpserver import HTTPTestServer

    data = make_mlp(tmp_path / "m.onnx").read_bytes()
    pointer = (
        b"version https://git-lfs.github.com/spec/v1\n"
        b"oid sha256:" + hashlib.sha256(data).hexdigest().encode() + b"\nsize 123\n"
    )
    entry = zoo_entry("lfs", "m/lfs.onnx", data, 13)
    with HTTPTestServer(
        {"/ONNX_HUB_MANIFEST.json": zoo_manifest([entry]), "/m/lfs.onnx": pointer}
    ) as server:
        monkeypatch.setenv("MODELHUB_ONNX_URL", server.url)
        with pytest.raises(LFSPointerError, match="LFS pointer"):
            modelhub.pull("onnx:lfs")
    assert not (store_root / "onnx" / "lfs.onnx").exists()


def test_hostile_zoo_paths_are_ignored(tmp_path: Path, store_root: Path, monkeypatch) -> None:
    from tests.support.httpserver import HTTPTestServer

    data = make_mlp(tmp_path / "m.onnx").read_bytes()
    entries = [
        zoo_entry("evil", "../../evil.onnx", data, 13),
        zoo_entry("evil", "/etc/evil.onnx", data, 12),
        zoo_entry("evil", "a/..%2f..%2fevil.onnx", data, 11),
    ]
    entries[0]["metadata"]["model_bytes"] = -5
    with HTTPTestServer({"/ONNX_HUB_MANIFEST.json": zoo_manifest(entries)}) as server:
        monkeypatch.setenv("MODELHUB_ONNX_URL", server.url)
        with pytest.raises(ModelNotFoundError):
            modelhub.pull("onnx:evil")
    assert not (tmp_path / "evil.onnx").exists()
    assert not [p for p in store_root.rglob("*evil*") if "locks" not in p.parts]


def test_offline(zoo, store_root: Path) -> None:
    modelhub.pull("onnx:tiny-mlp")
    before = len(zoo.server.requests)
    # In the cached zoo manifest but not downloaded: offline must refuse, not call out.
    with pytest.raises(OfflineError) as info:
        modelhub.pull("onnx:other-mlp", offline=True)
    assert info.value.exit_code == 6
    assert len(zoo.server.requests) == before
    assert modelhub.pull("onnx:tiny-mlp", offline=True).path.is_file()


def test_path_needs_no_server(zoo) -> None:
    pulled = modelhub.pull("onnx:tiny-mlp")
    zoo.server.stop()
    assert modelhub.path("onnx:tiny-mlp") == pulled.path
    with pytest.raises(NotInStoreError):
        modelhub.path("onnx:other-mlp")


def test_load_returns_a_working_session(zoo) -> None:
    session = modelhub.load("onnx:tiny-mlp")
    x = np.ones((2, 4), dtype=np.float32)
    (y,) = session.run(None, {"x": x})
    assert y.shape == (2, 3)
    assert (y >= 0).all()


def test_seed_interface(zoo, store_root: Path) -> None:
    hub = modelhub.get_hub("onnx")
    assert hub.hub_url == zoo.url
    assert hub.framework_name == "onnx"
    original = hub.download_model("tiny-mlp", storage=modelhub.StorageType.UNCOMPRESSED)
    assert original == store_root / "onnx" / "tiny-mlp-13.onnx"
    assert modelhub.Store().require(modelhub.parse("onnx:tiny-mlp")).staged == []
    staged = hub.stage_model(original)
    assert staged == original
    manifest = modelhub.Store().require(modelhub.parse("onnx:tiny-mlp"))
    assert manifest.staged[0].outputs == ["y"]


def test_invalid_onnx_is_an_integrity_error(tmp_path: Path, store_root: Path, monkeypatch) -> None:
    from tests.support.httpserver import HTTPTestServer

    junk = b"\x08\x07not an onnx model at all" * 10
    entry = zoo_entry("junk", "m/junk.onnx", junk, 13)
    with HTTPTestServer(
        {"/ONNX_HUB_MANIFEST.json": zoo_manifest([entry]), "/m/junk.onnx": junk}
    ) as server:
        monkeypatch.setenv("MODELHUB_ONNX_URL", server.url)
        with pytest.raises(modelhub.ModelhubError, match="not a valid ONNX model") as info:
            modelhub.pull("onnx:junk")
    assert info.value.exit_code == 5
    assert modelhub.Store().manifest(modelhub.parse("onnx:junk")) is None

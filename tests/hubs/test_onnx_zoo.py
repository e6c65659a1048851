"""The onnx: hub against a real zoo server on 127.0.0.1: the manifest from the zoo's GitHub base,
the files from its Hugging Face copy (``{hf endpoint}/onnxmodelzoo/legacy_models/resolve/main``)."""

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
from tests.conftest import ZOO_FILES
from tests.support.onnx_models import make_mlp, zoo_entry, zoo_manifest


def _zoo_server(manifest: bytes, files: dict[str, bytes], monkeypatch) -> object:
    """A server with the zoo manifest at / and ``files`` (model_path → bytes) at the Hugging
    Face copy's paths; MODELHUB_ONNX_URL and MODELHUB_HF_URL point at it."""
    from tests.support.httpserver import HTTPTestServer

    server = HTTPTestServer({"/ONNX_HUB_MANIFEST.json": manifest})
    for model_path, data in files.items():
        server.add(f"/{ZOO_FILES}/{model_path}", data)
    monkeypatch.setenv("MODELHUB_ONNX_URL", server.url)
    monkeypatch.setenv("MODELHUB_HF_URL", server.url)
    return server


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
    file_url = f"{zoo.url}/{ZOO_FILES}/validated/tiny/model/tiny-mlp-13.onnx"
    assert m.source == [file_url]
    # The manifest from the zoo's base, the file with one plain GET from the Hugging Face copy.
    assert [(r.method, r.path) for r in zoo.server.requests] == [
        ("GET", "/ONNX_HUB_MANIFEST.json"),
        ("GET", f"/{ZOO_FILES}/validated/tiny/model/tiny-mlp-13.onnx"),
    ]
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

    data = make_mlp(tmp_path / "m.onnx").read_bytes()
    entry = zoo_entry("bad", "m/bad.onnx", data, 13)
    entry["metadata"]["model_sha"] = hashlib.sha256(b"other").hexdigest()
    with (
        _zoo_server(zoo_manifest([entry]), {"m/bad.onnx": data}, monkeypatch),
        pytest.raises(HashMismatchError) as info,
    ):
        modelhub.pull("onnx:bad")
    assert info.value.exit_code == 5
    assert not (store_root / "onnx" / "bad.onnx").exists()
    assert not list((store_root / ".modelhub" / "manifests").rglob("*.json"))


def test_lfs_pointer_detected(tmp_path: Path, store_root: Path, monkeypatch) -> None:

    data = make_mlp(tmp_path / "m.onnx").read_bytes()
    pointer = (
        b"version https://git-lfs.github.com/spec/v1\n"
        b"oid sha256:" + hashlib.sha256(data).hexdigest().encode() + b"\nsize 123\n"
    )
    entry = zoo_entry("lfs", "m/lfs.onnx", data, 13)
    with (
        _zoo_server(zoo_manifest([entry]), {"m/lfs.onnx": pointer}, monkeypatch),
        pytest.raises(LFSPointerError, match="LFS pointer"),
    ):
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

    junk = b"\x08\x07not an onnx model at all" * 10
    entry = zoo_entry("junk", "m/junk.onnx", junk, 13)
    with (
        _zoo_server(zoo_manifest([entry]), {"m/junk.onnx": junk}, monkeypatch),
        pytest.raises(modelhub.ModelhubError, match="not a valid ONNX model") as info,
    ):
        modelhub.pull("onnx:junk")
    assert info.value.exit_code == 5
    assert modelhub.Store().manifest(modelhub.parse("onnx:junk")) is None


# --- where the files come from: the zoo's Hugging Face copy ---------------------------------
def _readme_zoo() -> list[dict[str, object]]:
    """Entries shaped like the real zoo's for the README's examples (model names, paths)."""
    data = b"\x08\x08" + bytes(64)
    base = "validated/vision/classification"
    return [
        zoo_entry("MNIST", f"{base}/mnist/model/mnist-8.onnx", data, 8),
        zoo_entry("MNIST", f"{base}/mnist/model/mnist-12.onnx", data, 12),
        zoo_entry("MNIST-12-int8", f"{base}/mnist/model/mnist-12-int8.onnx", data, 12),
        zoo_entry("ResNet50", f"{base}/resnet/model/resnet50-v1-7.onnx", data, 7),
        zoo_entry("ResNet50", f"{base}/resnet/model/resnet50-v1-12.onnx", data, 12),
    ]


def test_readme_examples_resolve_to_the_hugging_face_copy(monkeypatch) -> None:
    """`onnx:mnist` and `onnx:resnet50-v1-12` (README) name the zoo's files in its Hugging Face
    copy at the Hub itself when nothing is overridden; the manifest still comes from GitHub."""
    from tests.support.httpserver import HTTPTestServer

    hub = modelhub.get_hub("onnx")
    assert hub.hub_url == "https://raw.githubusercontent.com/onnx/models/main"
    with HTTPTestServer({"/ONNX_HUB_MANIFEST.json": zoo_manifest(_readme_zoo())}) as server:
        monkeypatch.setenv("MODELHUB_ONNX_URL", server.url)  # the manifest only
        mnist = hub.resolve(modelhub.parse("onnx:mnist"))
        resnet = hub.resolve(modelhub.parse("onnx:resnet50-v1-12"))
    files = "https://huggingface.co/onnxmodelzoo/legacy_models/resolve/main/validated/vision"
    assert [f.url for f in mnist.files] == [f"{files}/classification/mnist/model/mnist-12.onnx"]
    assert mnist.files[0].rel == "onnx/mnist-12.onnx" and mnist.details["opset"] == 12
    assert [f.url for f in resnet.files] == [
        f"{files}/classification/resnet/model/resnet50-v1-12.onnx"
    ]


def test_files_follow_the_hugging_face_endpoint_in_force(monkeypatch) -> None:
    """HF_ENDPOINT (the SDK's variable), MODELHUB_HF_URL, the mirror, and the files endpoint's own
    override MODELHUB_ONNX_FILES_URL, in that order of strength."""
    hub = modelhub.get_hub("onnx")
    path = "validated/a b/m.onnx"
    monkeypatch.setenv("MODELHUB_MIRROR", "http://mirror.test:1")
    assert hub.file_url(path) == (
        "http://mirror.test:1/hf/onnxmodelzoo/legacy_models/resolve/main/validated/a%20b/m.onnx"
    )
    assert hub.hub_url == "http://mirror.test:1/onnx"
    monkeypatch.setenv("HF_ENDPOINT", "http://hf-endpoint.test/")
    assert hub.files_url == "http://hf-endpoint.test/onnxmodelzoo/legacy_models/resolve/main"
    monkeypatch.setenv("MODELHUB_HF_URL", "http://hf.test/prefix")
    assert hub.files_url == "http://hf.test/prefix/onnxmodelzoo/legacy_models/resolve/main"
    monkeypatch.setenv("MODELHUB_ONNX_FILES_URL", "http://files.test/zoo")
    assert hub.file_url(path) == "http://files.test/zoo/validated/a%20b/m.onnx"


def test_hub_style_redirect_to_the_storage_bridge(tmp_path: Path, monkeypatch) -> None:
    """The Hub answers a large file's resolve with a 302 to a signed URL on another host (its
    storage bridge); the plain GET follows it, and the manifest's sha256 is the check."""
    from tests.support.httpserver import HTTPTestServer

    data = make_mlp(tmp_path / "m.onnx", seed=4).read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    entry = zoo_entry("bridged", "validated/b/bridged-13.onnx", data, 13)
    with (
        HTTPTestServer({f"/xet-bridge/{sha}": data}) as bridge,
        _zoo_server(zoo_manifest([entry]), {}, monkeypatch) as hub_server,
    ):
        resolve = f"/{ZOO_FILES}/validated/b/bridged-13.onnx"
        hub_server.redirect(resolve, f"{bridge.url}/xet-bridge/{sha}?X-Amz-Signature=abc")
        model = modelhub.pull("onnx:bridged")
        assert [r.path for r in hub_server.requests] == ["/ONNX_HUB_MANIFEST.json", resolve]
        assert [r.path for r in bridge.requests] == [f"/xet-bridge/{sha}?X-Amz-Signature=abc"]
    assert model.path.read_bytes() == data
    assert model.manifest.revision == sha
    assert model.manifest.source == [f"{hub_server.url}{resolve}"]


def test_not_in_the_hugging_face_copy_is_not_found(tmp_path: Path, monkeypatch) -> None:
    """A manifest entry whose file the copy lacks: exit 3, nothing kept."""
    data = make_mlp(tmp_path / "m.onnx").read_bytes()
    entry = zoo_entry("gone", "validated/g/gone-13.onnx", data, 13)
    with (
        _zoo_server(zoo_manifest([entry]), {}, monkeypatch),
        pytest.raises(ModelNotFoundError) as info,
    ):
        modelhub.pull("onnx:gone")
    assert info.value.exit_code == 3
    assert not list(Path(modelhub.Store().root).rglob("gone-13.onnx"))

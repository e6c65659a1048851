"""``/onnx/``: the generated zoo manifest, proven by modelhub's own ``onnx:`` hub."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import pytest

from modelhub.hubs.onnx_zoo import parse_zoo_manifest
from modelhub.store import Manifest, Store


def test_manifest_has_the_zoo_schema(mirror: str, populated: dict[str, Manifest]) -> None:
    with urllib.request.urlopen(f"{mirror}/onnx/ONNX_HUB_MANIFEST.json") as response:
        body = response.read()
        etag = response.headers["ETag"]
    entries = parse_zoo_manifest(body)  # the client's own parser keeps only valid entries
    assert len(entries) == len(json.loads(body)) == 1
    (entry,) = entries
    model_file = populated["onnx"].files[0]
    assert entry["model"] == "tiny-mlp"
    assert entry["model_path"] == "tiny-mlp-13.onnx"
    assert entry["opset_version"] == 13
    assert entry["metadata"]["model_sha"] == model_file.sha256
    assert entry["metadata"]["model_bytes"] == model_file.size
    ports = entry["metadata"]["io_ports"]
    assert [p["name"] for p in ports["inputs"]] == ["x"]
    assert ports["outputs"] == [{"name": "y", "shape": ["N", 3], "type": "tensor(float)"}]
    request = urllib.request.Request(
        f"{mirror}/onnx/ONNX_HUB_MANIFEST.json", headers={"If-None-Match": etag}
    )
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(request)
    assert info.value.code == 304


def test_model_file_at_model_path(mirror: str, store_root: Path) -> None:
    with urllib.request.urlopen(f"{mirror}/onnx/tiny-mlp-13.onnx") as response:
        assert response.read() == (store_root / "onnx" / "tiny-mlp-13.onnx").read_bytes()


def test_modelhub_onnx_hub_pulls_through_the_mirror(
    mirror: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, populated: dict[str, Manifest]
) -> None:
    import modelhub

    monkeypatch.setenv("MODELHUB_MIRROR", mirror)
    fresh = Store(tmp_path / "fresh")
    model = modelhub.pull("onnx:tiny-mlp", store=fresh)
    original = populated["onnx"].files[0]
    assert model.manifest.revision == original.sha256
    assert model.manifest.files[0].sha256 == original.sha256
    assert model.manifest.staged[0].format == "onnx"
    assert model.manifest.details["model_path"] == "tiny-mlp-13.onnx"
    assert model.path.read_bytes() == (Store().root / original.path).read_bytes()


def test_pulled_zoo_model_is_served_under_its_zoo_path(
    zoo: object, tmp_path: Path, store: Store
) -> None:
    """A model pulled from the zoo keeps its zoo model_path when mirrored."""
    import modelhub
    from modelhub.mirror import running

    pulled = modelhub.pull("onnx:tiny-mlp@12", store=store)
    with running(store.root) as url:
        with urllib.request.urlopen(f"{url}/onnx/ONNX_HUB_MANIFEST.json") as response:
            (entry,) = json.loads(response.read())
        assert entry["model_path"] == "validated/tiny/model/tiny-mlp-12.onnx"
        assert entry["opset_version"] == 12
        with urllib.request.urlopen(f"{url}/onnx/{entry['model_path']}") as response:
            assert response.read() == pulled.path.read_bytes()

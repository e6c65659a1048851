"""Parity fixtures in the store: every staged artifact keeps its seeded inputs and the *source's*
outputs beside it (``<staged>.fixture.npz``, in the manifest with its sha256), so that any
importer — DL4J's, a user's own — checks against the same numbers without the source framework.

For each registered hub, the scenario's staging pull (its default stage; for ``hf:`` a real
BERT with ``--stage onnx``) must leave a fixture per staged file, and the staged file itself,
run on the fixture's inputs by the format's own runtime (onnxruntime, a TensorFlow session on
the frozen GraphDef, Keras), must reproduce the fixture's outputs within the tolerance.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from modelhub.hubs import supported_hubs
from modelhub.store import Store
from tests.contract.test_contract import Cli, _ok, _scenario
from tests.faults.hubs import SeedStore
from tests.faults.proxy import FaultProxy

TOLERANCE = 1e-4


def _run(staged: dict[str, Any], path: Path, inputs: list[Any]) -> list[Any]:
    fmt = staged["format"]
    if fmt == "onnx":
        import onnxruntime

        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        feed = dict(zip(staged["inputs"], inputs, strict=True))
        return list(session.run(staged["outputs"], feed))
    if fmt == "pb":
        from modelhub.staging.freeze_tf import run_frozen

        feed = dict(zip(staged["inputs"], inputs, strict=True))
        return run_frozen(path.read_bytes(), feed, staged["outputs"])
    if fmt in ("h5", "keras"):
        from modelhub.frameworks.keras_files import load_keras_model
        from modelhub.staging.keras_h5 import run_model

        return run_model(load_keras_model(path), inputs)
    raise AssertionError(f"no runtime for staged format {fmt!r}")


@pytest.mark.parametrize("hub", supported_hubs())
def test_every_staged_file_has_a_fixture_that_reproduces_its_source(
    hub: str,
    seed: SeedStore,
    proxy: FaultProxy,
    tmp_path: Path,
    store_root: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    scenario = _scenario(seed, hub)
    cli = Cli(scenario, proxy, tmp_path, store_root, monkeypatch, capsys)
    ref = scenario.ref_for(proxy.url, staging=True)
    _ok(cli("pull", ref, *scenario.staging_args), "staging pull")
    doc = json.loads(_ok(cli("info", ref, "--json"), "info"))
    if not scenario.staged_names:
        assert doc["staged"] == [] or all(s["fixture"] for s in doc["staged"])
        return
    assert doc["staged"], f"{hub}: the staging pull staged nothing"
    for staged in doc["staged"]:
        fixture = staged["fixture"]
        assert fixture is not None, f"{staged['path']} has no parity fixture"
        assert fixture["path"] == staged["path"] + ".fixture.npz"
        path = store_root / fixture["path"]
        with np.load(path) as npz:
            inputs = [npz[f"input_{i}"] for i in range(len(staged["inputs"]))]
            outputs = [npz[f"output_{i}"] for i in range(len(staged["outputs"]))]
            assert len(npz.files) == len(inputs) + len(outputs)
        actual = _run(staged, store_root / staged["path"], inputs)
        assert len(actual) == len(outputs)
        for want, got in zip(outputs, actual, strict=True):
            assert np.asarray(got).shape == want.shape
            assert float(np.max(np.abs(np.asarray(got, np.float64) - want))) <= TOLERANCE
    # The fixtures belong to the model: verified with it, removed with it.
    store = Store(store_root)
    [manifest] = [m for _, m in store.manifests()]
    fixture_rel = manifest.staged[0].fixture["path"]  # type: ignore[index]
    assert fixture_rel in manifest.all_paths() and store.verify(manifest) == []
    (store_root / fixture_rel).write_bytes(b"not the fixture")
    assert any(fixture_rel in problem for problem in store.verify(manifest))
    _ok(cli("rm", ref, "--force"), "rm")
    assert not (store_root / fixture_rel).exists()

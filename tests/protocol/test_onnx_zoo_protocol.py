"""Protocol proof for ``onnx:``, against a recording proxy (tests/support/recorder.py) in front
of ``modelhub serve``.

onnx.hub (``onnx/hub.py``, onnx 1.20) is gone from onnx, and the zoo's files are no longer where
it fetched them (GitHub LFS); what remains of its protocol is the manifest, which modelhub
asks for as it did (``GET {base}/ONNX_HUB_MANIFEST.json``). The files now live in the zoo's
Hugging Face copy, so the client whose requests modelhub's must match is huggingface_hub's own
``hf_hub_download("onnxmodelzoo/legacy_models", model_path)``: modelhub's one plain GET is the
resource that client asks for (its HEAD folded into GET), the bytes are the same, and the
client files them under the blob name the Hub gives an LFS file, the sha256 that the zoo
manifest pins. modelhub keeps no SDK cache for ``onnx:`` (the store is the only copy), so there
is no cache to share either way.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

huggingface_hub = pytest.importorskip("huggingface_hub")

import modelhub  # noqa: E402
from modelhub.mirror.app import BackgroundMirror  # noqa: E402
from tests.conftest import ZOO_FILES  # noqa: E402
from tests.support.httpserver import HTTPTestServer  # noqa: E402
from tests.support.onnx_models import make_mlp, zoo_entry, zoo_manifest  # noqa: E402
from tests.support.recorder import Recorder, normalize  # noqa: E402

REPO = "onnxmodelzoo/legacy_models"
MNIST_PATH = "validated/vision/classification/mnist/model/mnist-12.onnx"


@dataclass
class Seeded:
    """The mirror's URL and the model it serves."""

    url: str
    data: bytes

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Seeded]:
    """A store holding ``onnx:mnist`` pulled from a zoo shaped like the real one, served."""
    work = tmp_path_factory.mktemp("zoo")
    data = make_mlp(work / "mnist-12.onnx", seed=12, opset=12).read_bytes()
    upstream = {
        "/ONNX_HUB_MANIFEST.json": zoo_manifest([zoo_entry("MNIST", MNIST_PATH, data, 12)]),
        f"/{ZOO_FILES}/{MNIST_PATH}": data,
    }
    seed = modelhub.Store(work / "seed")
    with pytest.MonkeyPatch.context() as env, HTTPTestServer(upstream) as zoo:
        env.setenv("MODELHUB_ONNX_URL", zoo.url)
        env.setenv("MODELHUB_HF_URL", zoo.url)
        modelhub.pull("onnx:mnist", stage="none", store=seed)
    with BackgroundMirror(seed.root) as url:
        yield Seeded(url, data)


def test_modelhub_asks_what_onnx_hub_and_huggingface_hub_ask(
    seeded: Seeded, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with Recorder(seeded.url) as rec:
        got = huggingface_hub.hf_hub_download(
            REPO, MNIST_PATH, endpoint=f"{rec.url}/hf", cache_dir=str(tmp_path / "hf-cache")
        )
        rec.wait_idle()
        sdk = list(rec.log)
        rec.clear()
        monkeypatch.setenv("MODELHUB_MIRROR", rec.url)
        pulled = modelhub.pull("onnx:mnist", store=modelhub.Store(tmp_path / "store"))
        rec.wait_idle()
        ours = list(rec.log)
    file_path = f"/hf/{REPO}/resolve/main/{MNIST_PATH}"
    # The manifest as onnx.hub's list_models asked for it, then one GET of the file.
    assert [(r.method, r.target) for r in ours] == [
        ("GET", "/onnx/ONNX_HUB_MANIFEST.json"),
        ("GET", file_path),
    ]
    assert all(r.status in (200, 206) and r.location is None for r in ours)
    # The file: the resource huggingface_hub asks for (its HEAD folded into GET).
    assert normalize(sdk) == normalize(ours[1:]) == [("GET", file_path)]
    assert {r.method for r in sdk} == {"HEAD", "GET"}
    # Same bytes; huggingface_hub names the blob by the ETag, the sha256 the zoo pins.
    assert Path(got).read_bytes() == pulled.path.read_bytes() == seeded.data
    assert Path(got).resolve().name == seeded.sha256 == pulled.manifest.revision
    commit = next(r.response_headers["x-repo-commit"] for r in sdk if r.method == "HEAD")
    assert got.endswith(f"/snapshots/{commit}/{MNIST_PATH}")


def test_the_copy_answers_the_hub_api_for_the_zoo_files(seeded: Seeded, tmp_path: Path) -> None:
    """huggingface_hub's listing and snapshot of the copy: the zoo files, nothing else."""
    api = huggingface_hub.HfApi(endpoint=f"{seeded.url}/hf")
    assert api.list_repo_files(REPO) == [MNIST_PATH]
    folder = huggingface_hub.snapshot_download(
        REPO, endpoint=f"{seeded.url}/hf", cache_dir=str(tmp_path / "hf-cache")
    )
    assert (Path(folder) / MNIST_PATH).read_bytes() == seeded.data

"""One small real model per hub, in a seed store that the mirror serves behind the fault proxy.

Each :class:`Scenario` says what a pull of its reference must leave in a fresh store (the seed
manifest's files, byte for byte), which request carries the model's bytes (the fault target),
and how to pull it for the transport rows (the cheapest stage) and for the staging row (the
hub's default stage). The models are ~12 MiB (keras: 7 MB), so "resume, not restart" is
measurable:

    onnx     onnx:faultnet                   ONNX MLP, validated by onnx + onnxruntime
    url      url:{proxy}/omnihub/onnx/models.example.com/files/urlnet.onnx --sha256 ...
    hf       hf:fault-org/fault-model        a snapshot: config, tokenizer, 12 MiB safetensors
             hf:fault-org/tiny-bert          (staging row) a real BERT, --stage onnx
    torch    torch:modelhub_faultnet         a torchvision-registered net, weights named by
                                             their sha256 prefix like torchvision's
    tfhub    tfhub:fault/savedmodel/1        a SavedModel (+ a 12 MiB asset), frozen to .pb
    kaggle   kaggle:fault/kagglenet/onnx/default/1  Kaggle's RPCs: an ONNX MLP, fetched through
                                             DownloadModelInstanceVersion's redirect, md5-checked
    keras    keras:MobileNetV2 (alpha 0.35, 96x96), when the keras: hub is registered
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import io
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MiB = 1 << 20
# 12 MiB models. modelhub's transfer hands bytes to the writer one 4 MiB receive buffer at a
# time and re-fetches at most one 1 MiB read step after a reset: a process killed halfway
# through a 12 MiB file has 4 MiB on disk and resumes from there (1.17x in all); a smaller file
# would measure the buffer, not the resume.
SIZE = 12 * MiB
WIDTH = SIZE // 12  # an ONNX MLP of this width holds ~SIZE bytes of weights
REPO = Path(__file__).resolve().parents[2]

HUBS = ("onnx", "url", "hf", "torch", "tfhub", "kaggle", "keras")
FAULTS = (
    "reset",
    "5xx_burst",
    "429_retry_after",
    "wrong_bytes",
    "truncated",
    "stall",
    "kill_download",
    "kill_staging",
    "disk_full",
    "signed_expiry",
)
# The link each cell runs over: "loopback" (the mirror's speed: one connection outruns the
# disk, modelhub keeps one) and "shaped" (tests/support/shaper.py in front of the fault proxy:
# SHAPED_RATE per connection, SHAPED_RTT round trip; there modelhub's ranged probe finds one
# connection slow and the rest of a 12 MiB file worth splitting, so it goes parallel). The
# link is slower than bench/links.py's 25 MiB/s and 40 ms so that a 12 MiB file is split at
# all (at 25 MiB/s the rest after the probe takes 0.3 s: not worth a second connection).
PATHS = ("loopback", "shaped")
SHAPED_RATE = 8 * MiB
SHAPED_RTT = 0.020
TORCH_NAME = "modelhub_faultnet"
HF_REPO = "fault-org/fault-model"
HF_BERT = "fault-org/tiny-bert"
TFHUB_HANDLE = "fault/savedmodel/1"
KAGGLE_HANDLE = "fault/kagglenet/onnx/default/1"
KERAS_OPTIONS = ["--alpha", "0.35", "--input-shape", "96,96,3"]


def sha256(data: bytes) -> str:
    """Hex sha256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def has(module: str) -> bool:
    """Whether ``module`` is importable here (without importing it)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


@dataclass
class Scenario:
    """One hub's model as served, and what pulling it must produce."""

    hub: str
    ref: str  # ``{proxy}`` is replaced by the proxy's URL
    target: str  # matches (proxy.matches) the path of the request carrying the model's bytes
    size: int  # bytes of that response body (the whole file)
    # store path -> (sha256, size) after a pull; ``{proxy_dir}``: the store folder of the
    # proxy's host and port, where url: files pulled through it are filed (see ``bound``)
    files: dict[str, tuple[str, int]]
    transport_args: list[str] = field(default_factory=list)
    staging_args: list[str] = field(default_factory=list)
    staging_ref: str | None = None  # another model for the staging row (hf: a real BERT)
    staging_files: dict[str, tuple[str, int]] | None = None
    staging_target: str | None = None
    staged_names: tuple[str, ...] = ()  # staged artifacts' store paths (either row)
    known: dict[str, str] = field(default_factory=dict)  # other final names -> valid sha256
    env: dict[str, str] = field(default_factory=dict)  # extra environment for the CLI
    sdk_retries: bool = False  # transport is the hub SDK's own (hf): its retry policy rules
    # Seconds between the originals' publication and the kill in the staging row: the hubs
    # whose staging imports a framework (seconds) are killed well inside it, not in the few
    # milliseconds between publishing a file and placing it in the SDK's cache.
    staging_settle: float = 0.0
    # (environment variable, path under it) that exists once the original is also in the SDK's
    # cache: the last step before staging for hubs that publish first, then fill the cache.
    staging_marker: tuple[str, str] | None = None
    # Why a corrupted body cannot be detected for this model (no hash published upstream).
    unverifiable: str = ""

    def bound(self, proxy: str) -> Scenario:
        """This scenario for a proxy at ``proxy``: ``{proxy_dir}`` in its store paths replaced
        by ``HOST_PORT``, the folder url: files from it are filed under."""
        host = proxy.split("://", 1)[1].rstrip("/").replace(":", "_")

        def paths(found: dict[str, tuple[str, int]]) -> dict[str, tuple[str, int]]:
            return {rel.replace("{proxy_dir}", host): value for rel, value in found.items()}

        return dataclasses.replace(
            self,
            files=paths(self.files),
            staging_files=paths(self.staging_files) if self.staging_files else None,
            staged_names=tuple(n.replace("{proxy_dir}", host) for n in self.staged_names),
        )

    def ref_for(self, proxy: str, staging: bool = False) -> str:
        """The reference to pull through ``proxy``."""
        ref = self.staging_ref if staging and self.staging_ref else self.ref
        return ref.replace("{proxy}", proxy)


# --- seed builders ------------------------------------------------------------------------------
def _files_of(manifest: Any) -> dict[str, tuple[str, int]]:
    return {f.path: (f.sha256, f.size) for f in manifest.files}


def build_onnx(seed: Any, work: Path) -> Scenario:
    from modelhub import parse
    from modelhub.importer import import_path
    from tests.support.onnx_models import make_mlp

    path = make_mlp(work / "faultnet-13.onnx", seed=7, opset=13, width=WIDTH)
    manifest = import_path(seed, path, parse("onnx:faultnet"))
    return Scenario(
        hub="onnx",
        ref="onnx:faultnet",
        # The zoo's files come from its Hugging Face copy, under the mirror's /hf.
        target="/hf/onnxmodelzoo/legacy_models/resolve/main/faultnet-13.onnx",
        size=path.stat().st_size,
        files=_files_of(manifest),
    )


def build_url(seed: Any, work: Path) -> Scenario:
    from modelhub import parse
    from modelhub.importer import import_path
    from tests.support.onnx_models import make_mlp

    path = make_mlp(work / "urlnet.onnx", seed=8, opset=13, width=WIDTH)
    manifest = import_path(seed, path, parse("url:https://models.example.com/files/urlnet.onnx"))
    sha = manifest.files[0].sha256
    served = manifest.files[0].path.removeprefix("onnx/")  # url: files are filed by source
    return Scenario(
        hub="url",
        ref=f"url:{{proxy}}/omnihub/onnx/{served}",
        target=f"/omnihub/onnx/{served}",
        size=path.stat().st_size,
        files={f"onnx/{{proxy_dir}}/omnihub/onnx/{served}": (sha, manifest.files[0].size)},
        transport_args=["--sha256", sha],
        staging_args=["--sha256", sha],
    )


def build_hf(seed: Any, work: Path) -> Scenario:
    import json
    import random

    from modelhub import parse
    from modelhub.importer import import_path

    folder = work / "hf-snapshot"
    rng = random.Random(11)
    files = {
        "config.json": json.dumps({"model_type": "fault", "hidden": 8}).encode(),
        "tokenizer.json": json.dumps({"vocab": ["a", "b", "c"]}).encode(),
        "model.safetensors": rng.randbytes(SIZE),
    }
    for rel, data in files.items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_bytes(data)
    manifest = import_path(seed, folder, parse(f"hf:{HF_REPO}"))
    scenario = Scenario(
        hub="hf",
        ref=f"hf:{HF_REPO}",
        target=f"/hf/{HF_REPO}/resolve/*/model.safetensors",
        size=len(files["model.safetensors"]),
        files=_files_of(manifest),
        # The 12 MiB file is an LFS file above hf_engine.ENGINE_MIN_BYTES: modelhub's engine
        # fetches it (resumes, retries), not the SDK; the small files stay the SDK's.
        env={"HF_HUB_DISABLE_TELEMETRY": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1"},
    )
    if has("transformers") and has("torch"):
        from tests.support.hf_models import make_transformers_model

        bert = make_transformers_model("bert", work / "tiny-bert", seed=3)
        staged = import_path(seed, bert, parse(f"hf:{HF_BERT}"))
        scenario.staging_ref = f"hf:{HF_BERT}"
        scenario.staging_args = ["--stage", "onnx"]
        scenario.staging_files = _files_of(staged)
        scenario.staging_target = f"/hf/{HF_BERT}/resolve/*"
        scenario.staged_names = ("huggingface/fault-org/tiny-bert.onnx",)
        scenario.staging_settle = 1.0
    return scenario


class FaultNet:
    """A torchvision-style classifier whose weights file is ~12 MB (a wide hidden layer)."""

    def __new__(cls, num_classes: int = 10) -> Any:  # type: ignore[misc]
        from torch import nn

        return nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(8, 165_000),
            nn.ReLU(),
            nn.Linear(165_000, num_classes),
        )


_TORCH_REGISTERED: Any = None


def faultnet_weights() -> bytes:
    """Seeded weights of FaultNet, as torch.save writes them."""
    import torch

    torch.manual_seed(4321)
    buf = io.BytesIO()
    torch.save(FaultNet(10).state_dict(), buf)
    return buf.getvalue()


def register_faultnet(data: bytes) -> Any:
    """Register ``modelhub_faultnet`` in torchvision's registry with these weights (once)."""
    global _TORCH_REGISTERED
    if _TORCH_REGISTERED is None:
        from tests.support.torchvision_models import _register

        _TORCH_REGISTERED = _register(TORCH_NAME, data, FaultNet)
    return _TORCH_REGISTERED


def build_torch(seed: Any, work: Path) -> Scenario:
    from modelhub import parse
    from modelhub.importer import import_path

    data = faultnet_weights()
    weights = register_faultnet(data)
    path = work / weights.filename
    path.write_bytes(data)
    (work / "faultnet-weights.bin").write_bytes(data)
    manifest = import_path(seed, path, parse(f"torch:{TORCH_NAME}"))
    return Scenario(
        hub="torch",
        ref=f"torch:{TORCH_NAME}",
        target=f"/torch/models/{weights.filename}",
        size=len(data),
        files=_files_of(manifest),
        transport_args=["--stage", "none"],
        staged_names=(f"pytorch/{TORCH_NAME}.onnx",),
        staging_marker=("TORCH_HOME", f"hub/checkpoints/{weights.filename}"),
        env={"FAULTS_TORCH_WEIGHTS": str(work / "faultnet-weights.bin")},
    )


def _savedmodel_folder(work: Path) -> tuple[Path, bool]:
    """A real SavedModel when TensorFlow is here, else a folder shaped like one; plus 12 MiB."""
    import random

    folder = work / "savedmodel"
    real = has("tensorflow")
    if real:
        from tests.support.tf_models import make_saved_model

        make_saved_model(folder, seed=5)
    else:
        from tests.support.mirror_fixtures import make_savedmodel_folder

        make_savedmodel_folder(folder, seed=5)
    (folder / "assets").mkdir(exist_ok=True)
    (folder / "assets" / "blob.bin").write_bytes(random.Random(5).randbytes(SIZE))
    return folder, real


def build_tfhub(seed: Any, work: Path, mirror_url: str) -> dict[str, Scenario]:
    import urllib.request

    from modelhub import parse
    from modelhub.importer import import_path

    folder, real = _savedmodel_folder(work)
    out = {}
    for hub, handle, route in (("tfhub", TFHUB_HANDLE, f"/tfhub/{TFHUB_HANDLE}"),):
        manifest = import_path(seed, folder, parse(f"{hub}:{handle}"))
        # Warm the mirror's archive cache (outside the proxy): its first answer is streamed
        # without a length while it compresses; every later one is a plain ranged file.
        with urllib.request.urlopen(f"{mirror_url}{route}?tf-hub-format=compressed") as resp:
            archive = resp.read()
        rel = f"tensorflow/{hub}/{handle}"
        out[hub] = Scenario(
            hub=hub,
            ref=f"{hub}:{handle}",
            target=route,
            size=len(archive),
            files=_files_of(manifest),
            transport_args=["--stage", "none"],
            staging_args=[] if real else ["--stage", "none"],
            staged_names=(f"{rel}.pb",),
            staging_settle=1.0 if real else 0.0,
            known={f"{rel}.tar.gz": sha256(archive)},
        )
    return out


def build_kaggle(seed: Any, work: Path) -> Scenario:
    """A Kaggle ONNX version of one file: the RPC answers with a redirect to the bytes, whose
    x-goog-hash md5 is checked; staged as ONNX zoo files are (validated)."""
    from modelhub import parse
    from modelhub.importer import import_path
    from tests.support.onnx_models import make_mlp

    folder = work / "kaggle-version"
    folder.mkdir(parents=True, exist_ok=True)
    path = make_mlp(folder / "kagglenet.onnx", seed=9, opset=13, width=WIDTH)
    manifest = import_path(seed, folder, parse(f"kaggle:{KAGGLE_HANDLE}"))
    return Scenario(
        hub="kaggle",
        ref=f"kaggle:{KAGGLE_HANDLE}",
        target=f"/kaggle/files/{KAGGLE_HANDLE}/kagglenet.onnx",
        size=path.stat().st_size,
        files=_files_of(manifest),
        env={"KAGGLE_CONFIG_DIR": str(work / "no-kaggle-credentials")},
        # The version is marked complete in kagglehub's cache after its files are published,
        # right before staging: a kill before that mark fetches again, as kagglehub would.
        staging_marker=("KAGGLEHUB_CACHE", "models/fault/kagglenet/onnx/default/1.complete"),
    )


def build_keras(seed: Any, work: Path) -> Scenario:
    from modelhub import parse
    from modelhub.importer import import_path
    from tests.support.keras_models import MOBILENET_V2_035_96, mobilenet_v2_weights

    published = mobilenet_v2_weights(work / "keras", seed=0)
    manifest = import_path(seed, published.path, parse("keras:MobileNetV2"))
    return Scenario(
        hub="keras",
        ref="keras:MobileNetV2",
        target=f"/keras/tensorflow/keras-applications/mobilenet_v2/{MOBILENET_V2_035_96}",
        size=published.path.stat().st_size,
        files=_files_of(manifest),
        transport_args=["--stage", "none", *KERAS_OPTIONS],
        staging_args=KERAS_OPTIONS,
        staged_names=("keras/mobilenetv2.h5", "keras/mobilenetv2.keras"),
        staging_marker=("KERAS_HOME", f"models/{MOBILENET_V2_035_96}"),
        unverifiable=(
            "keras: MobileNetV2's weights are published without a hash (keras.applications "
            "calls get_file with no file_hash), so a corrupted body of the right size and HDF5 "
            "signature cannot be detected; applications Keras pins are checked "
            "(tests/hubs/test_keras.py::test_hash_pinned_by_keras_is_enforced)"
        ),
    )


# hub → the modules its row needs (the test environment's, not modelhub's core).
NEEDS: dict[str, tuple[str, ...]] = {
    "onnx": ("onnx", "onnxruntime"),
    "url": ("onnx", "onnxruntime"),
    "hf": ("huggingface_hub", "onnx"),
    "torch": ("torch", "torchvision", "onnx"),
    "tfhub": ("onnx",),
    "kaggle": ("onnx", "onnxruntime"),
    "keras": ("keras", "tensorflow", "tf_keras", "h5py"),
}


def why_not(hub: str) -> str | None:
    """Why ``hub``'s row cannot run here (None when it can)."""
    missing = [m for m in NEEDS[hub] if not has(m)]
    if missing:
        return f"{hub}: needs {', '.join(missing)} (not installed in this environment)"
    if hub == "keras":
        from modelhub.hubs import supported_hubs

        if "keras" not in supported_hubs():
            return (
                "keras: src/modelhub/hubs/keras_apps.py exists but the hub is not registered "
                "(modelhub.get_hub('keras') raises UnsupportedError: 'not supported yet')"
            )
    return None


class SeedStore:
    """The seed store behind the mirror, filled one hub at a time on first use."""

    def __init__(self, root: Path, work: Path) -> None:
        from modelhub import Store

        self.store = Store(root)
        self.work = work
        self.mirror_url = ""
        self._built: dict[str, Scenario] = {}

    def scenario(self, hub: str) -> Scenario:
        """The scenario of ``hub`` (building its model into the seed store the first time)."""
        if hub not in self._built:
            work = self.work / ("tf" if hub == "tfhub" else hub)
            work.mkdir(parents=True, exist_ok=True)
            self._built.update(BUILDERS[hub](self.store, work, self.mirror_url))
        return self._built[hub]


# What builds a hub's scenario(s) into the seed store: (seed store, work folder, mirror URL).
Builder = Callable[[Any, Path, str], dict[str, Scenario]]


def _one(build: Callable[[Any, Path], Scenario]) -> Builder:
    return lambda seed, work, _mirror_url: {(scenario := build(seed, work)).hub: scenario}


BUILDERS: dict[str, Builder] = {
    "onnx": _one(build_onnx),
    "url": _one(build_url),
    "hf": _one(build_hf),
    "torch": _one(build_torch),
    "tfhub": build_tfhub,
    "kaggle": _one(build_kaggle),
    "keras": _one(build_keras),
}


def environment(tmp: Path, scenario: Scenario, proxy_url: str, store: Path) -> dict[str, str]:
    """The environment of a modelhub process for ``scenario``: the mirror through the proxy,
    fresh SDK caches under ``tmp``, the store at ``store``."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("MODELHUB_", "HF_", "TFHUB_", "TORCH_HOME", "KERAS_HOME", "KAGGLE"))
    }
    env.update(
        {
            "MODELHUB_PATH": str(store),
            "MODELHUB_MIRROR": proxy_url,
            "MODELHUB_QUIET": "1",
            "MODELHUB_RETRIES": "3",
            "MODELHUB_TIMEOUT": "10",
            "HF_HUB_CACHE": str(tmp / "hf-cache"),
            "TORCH_HOME": str(tmp / "torch-home"),
            "TFHUB_CACHE_DIR": str(tmp / "tfhub-cache"),
            "KERAS_HOME": str(tmp / "keras-home"),
            "KAGGLEHUB_CACHE": str(tmp / "kagglehub-cache"),
            "NO_PROXY": "127.0.0.1,localhost",
            "PYTHONPATH": os.pathsep.join(
                p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p
            ),
            **scenario.env,
        }
    )
    return env

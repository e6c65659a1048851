"""The README's examples, read from the README, and a seed store holding a stand-in for every
model they name (tests/test_readme_examples.py runs them against it, offline).

The examples are the fenced blocks between ``<!-- examples:begin -->`` and
``<!-- examples:end -->`` in README.md: in a ``bash`` block every line that runs ``modelhub``
is one example (``#`` comments dropped, ``\\`` continuations joined); a ``python`` block is one
example, run statement by statement.

**Placeholders** — what the README writes for values a reader supplies, replaced before a
command runs (:func:`substitute`); anything else that looks like a placeholder (``<...>``, or
``...`` inside a reference) fails the test, so a new one must be added here:

    https://example.org   → {mirror}/omnihub/onnx/example.org: the mirror serves the stand-in
                            of url:https://example.org/model.onnx (stored at
                            onnx/example.org/model.onnx: url: files are filed under their
                            source) there, in DL4J's omnihub layout, so
                            url:https://example.org/model.onnx becomes
                            url:{mirror}/omnihub/onnx/example.org/model.onnx
    <hex>                 → the sha256 of that stand-in
    "tfhub:..."           → "tfhub:<the handle of the tfhub: stand-in>" (the Python block)

**Stand-ins** — one per reference the examples name (:data:`STAND_INS`), put into the seed store
under that reference: a tiny real model of the same kind, built here, that the mirror then
serves exactly as it would serve the real one. Where the real hub pins a model's content by a
hash that no stand-in can match (torchvision names its weights after their sha256:
``resnet18-f37072fd.pth``), there is no stand-in: the example must make exactly the request the
real model would need of the mirror and exit 3 with one line saying it is not found.

Models that ``modelhub import`` cannot produce as a pull would (an ONNX zoo entry with its zoo
path and name, a torch.hub repository) are pulled into the seed store from small stand-in
upstreams (:func:`upstream_files`) by ``modelhub pull`` itself.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shlex
import subprocess
import sys
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
BEGIN = "<!-- examples:begin -->"
END = "<!-- examples:end -->"
EXAMPLE_HOST = "https://example.org"
# Any request that is not for 127.0.0.1 goes to this proxy, which refuses connections: the
# examples run with no internet even on a machine that has it.
DEAD_PROXY = "http://127.0.0.1:9"

TFHUB_HANDLE = "google/imagenet/mobilenet_v2_100_224/classification/5"
KERAS_WEIGHTS = "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224.h5"
TORCHVISION_RESNET18 = "resnet18-f37072fd.pth"
VISION_REF = "v0.10.0"


# --- the examples --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Example:
    """One example as the README writes it."""

    kind: str  # "cli" (one command line) or "python" (a whole block)
    text: str
    line: int  # 1-based line in README.md

    @property
    def id(self) -> str:
        """A short, stable test id."""
        if self.kind == "python":
            return f"python-block-line-{self.line}"
        words = shlex.split(self.text, comments=True)
        return " ".join(w for w in words[1:] if not w.startswith("<"))[:70]


def examples(text: str) -> list[Example]:
    """Every example between the markers of ``text`` (README.md's), in order.

    Raises ValueError when the markers are missing or unbalanced.
    """
    lines = text.splitlines()
    found: list[Example] = []
    inside = False
    fence: str | None = None
    block: list[tuple[int, str]] = []
    pairs = 0
    for number, line in enumerate(lines, start=1):
        stripped = line.strip()
        if stripped == BEGIN:
            if inside:
                raise ValueError(f"README.md:{number}: {BEGIN} inside another examples block")
            inside, pairs = True, pairs + 1
            continue
        if stripped == END:
            if not inside or fence is not None:
                raise ValueError(f"README.md:{number}: {END} without a matching {BEGIN}")
            inside = False
            continue
        if not inside:
            continue
        if fence is None and stripped.startswith("```"):
            fence, block = stripped[3:].strip() or "text", []
            continue
        if fence is not None and stripped.startswith("```"):
            found.extend(_block_examples(fence, block))
            fence = None
            continue
        if fence is not None:
            block.append((number, line))
    if inside or pairs == 0:
        raise ValueError(f"README.md has no complete {BEGIN} ... {END} block")
    return found


def _block_examples(fence: str, block: list[tuple[int, str]]) -> list[Example]:
    if fence == "python":
        code = "\n".join(line for _, line in block)
        return [Example("python", code, block[0][0])] if block else []
    if fence not in ("bash", "sh", "shell", "console"):
        return []
    out: list[Example] = []
    pending: tuple[int, str] | None = None
    for number, line in block:
        text = line.strip().removeprefix("$ ")
        if pending is not None:
            number, text = pending[0], pending[1] + " " + text
            pending = None
        if text.endswith("\\"):
            pending = (number, text[:-1].rstrip())
            continue
        words = shlex.split(text, comments=True)
        if words and words[0] == "modelhub":
            out.append(Example("cli", " ".join(shlex.quote(w) for w in words), number))
    return out


# --- placeholders --------------------------------------------------------------------------------
class UnknownPlaceholder(ValueError):
    """An example holds a placeholder this module does not know how to fill."""


def substitute(example: Example, mirror: str | None, url_sha256: str) -> str:
    """The example with its placeholders filled (see the module docstring); raises
    UnknownPlaceholder for any other. ``mirror`` None keeps the example host (to look the
    references up among the stand-ins)."""
    text = example.text
    if mirror is not None:
        text = text.replace(EXAMPLE_HOST, f"{mirror}/omnihub/onnx/example.org")
    text = text.replace("<hex>", url_sha256)
    text = text.replace('"tfhub:..."', f'"tfhub:{TFHUB_HANDLE}"')
    left = re.findall(r"<[A-Za-z_][^<>\s]*>", text)
    left += re.findall(r"[\"'][a-z]+:[^\"']*\.\.\.[^\"']*[\"']", text)
    if example.kind == "cli" and "..." in text:
        left.append("...")
    if left:
        raise UnknownPlaceholder(
            f"README.md:{example.line}: no substitution for {', '.join(sorted(set(left)))} in "
            f"{example.text!r}: add one to tests/support/readme_seed.py (substitute)"
        )
    return text


def references(text: str) -> list[str]:
    """The model references an example names (``hub:...`` words or string literals)."""
    from modelhub.registry import hub_names

    hubs = "|".join(sorted(hub_names(), key=len, reverse=True))
    return re.findall(rf"(?<![\w/.-])(?:{hubs}):[^\s\"'#]+", text)


# --- stand-ins -----------------------------------------------------------------------------------
@dataclass
class SeedContext:
    """Where stand-ins are built: the seed store and a work folder, plus the files of the
    stand-in upstream that seeding pulls read (mirror layout: ``/onnx/...``, ``/hf/...``,
    ``/torch/github/...``)."""

    store: Any  # modelhub.Store
    work: Path
    upstream: dict[str, bytes] = field(default_factory=dict)
    pulls: list[list[str]] = field(default_factory=list)  # `modelhub pull` argv tails
    sha256: dict[str, str] = field(default_factory=dict)  # reference -> content sha256


@dataclass(frozen=True)
class StandIn:
    """What stands in for one reference of the examples, and what its example must produce."""

    ref: str
    build: Callable[[SeedContext], None] | None
    # The store path (relative) the command prints; ``{mirror}`` stands for the store folder
    # of the mirror's host and port (where url: files from it are filed).
    produces: str | None = None
    # No stand-in can match the content the hub pins: the one request the example must make
    # (path on the mirror), and why.
    unmatchable: str | None = None
    why: str = ""
    # When not empty: the example is unmatchable only when its text holds one of these (the
    # arguments that make the model load content the hub pins), e.g. a torch.hub entrypoint
    # asked for its pretrained weights.
    pinned_if: tuple[str, ...] = ()
    extra: tuple[str, ...] = ()  # other store paths that must exist afterwards
    # Paths in the example's SDK caches (see environment) that must exist afterwards.
    cached: tuple[str, ...] = ()

    def produced(self, mirror: str) -> str | None:
        """``produces`` for a mirror at ``mirror`` (``http://HOST:PORT``)."""
        if self.produces is None:
            return None
        host = mirror.split("://", 1)[1].rstrip("/").replace(":", "_")
        return self.produces.replace("{mirror}", host)

    def pinned(self, text: str) -> str | None:
        """The one request ``text`` (an example naming this stand-in's reference) must make
        for content no stand-in can match, or None when the stand-in serves it."""
        if self.unmatchable is None:
            return None
        if self.pinned_if and not any(arg in text for arg in self.pinned_if):
            return None
        return self.unmatchable


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _zoo_model(
    ctx: SeedContext, model: str, model_path: str, opset: int, seed: int
) -> tuple[bytes, dict[str, Any]]:
    from tests.support.onnx_models import make_mlp, zoo_entry

    path = make_mlp(ctx.work / "zoo" / Path(model_path).name, seed=seed, opset=opset)
    data = path.read_bytes()
    ctx.upstream[f"/hf/onnxmodelzoo/legacy_models/resolve/main/{model_path}"] = data
    ctx.upstream[f"/onnx/{model_path}"] = data
    return data, zoo_entry(model, model_path, data, opset)


def build_onnx_zoo(ctx: SeedContext) -> None:
    """The zoo's MNIST (opsets 8 and 12) and ResNet50 v1 (opsets 7 and 12) as ONNX MLPs, under
    the zoo's own names and paths, pulled into the seed store from a stand-in zoo (manifest +
    the files of its Hugging Face copy), so their store manifests record the zoo entries."""
    from tests.support.onnx_models import zoo_manifest

    if "/onnx/ONNX_HUB_MANIFEST.json" in ctx.upstream:
        return
    base = "validated/vision/classification"
    models = [
        ("MNIST", f"{base}/mnist/model/mnist-8.onnx", 8, 81, "onnx:mnist@8"),
        ("MNIST", f"{base}/mnist/model/mnist-12.onnx", 12, 82, "onnx:mnist@12"),
        ("ResNet50", f"{base}/resnet/model/resnet50-v1-7.onnx", 7, 83, "onnx:resnet50-v1-7"),
        ("ResNet50", f"{base}/resnet/model/resnet50-v1-12.onnx", 12, 84, "onnx:resnet50-v1-12"),
    ]
    entries = []
    for model, model_path, opset, seed, ref in models:
        data, entry = _zoo_model(ctx, model, model_path, opset, seed)
        entries.append(entry)
        ctx.pulls.append([ref, "--stage", "none"])
        ctx.sha256[ref] = _sha(data)
    ctx.upstream["/onnx/ONNX_HUB_MANIFEST.json"] = zoo_manifest(entries)


VISION_HUBCONF = '''"""Stand-in for pytorch/vision v0.10.0's hubconf.py (modelhub's README
test): the same entrypoint name and signature, a small network instead of ResNet-18. As in
torchvision 0.10, resnet18() builds an untrained network unless pretrained=True, which loads
the weights from download.pytorch.org."""

import torch
from torch import nn

dependencies = ["torch"]

MODEL_URLS = {"resnet18": "https://download.pytorch.org/models/resnet18-f37072fd.pth"}


def resnet18(pretrained=False, progress=True, **kwargs):
    """ResNet-18 (stand-in). Like torchvision 0.10's ResNet, other keyword arguments than
    its constructor's are an error."""
    num_classes = kwargs.pop("num_classes", 1000)
    if kwargs:
        raise TypeError(f"__init__() got an unexpected keyword argument {next(iter(kwargs))!r}")
    torch.manual_seed(18)
    net = nn.Sequential(
        nn.Conv2d(3, 8, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, num_classes),
    )
    if pretrained:
        state = torch.hub.load_state_dict_from_url(MODEL_URLS["resnet18"], progress=progress)
        net.load_state_dict(state)
    return net
'''


def vision_zipball() -> bytes:
    """GitHub's zipball of the stand-in pytorch/vision at v0.10.0 (one top folder)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        top = "pytorch-vision-300a8a4"
        zf.writestr(f"{top}/hubconf.py", VISION_HUBCONF)
        zf.writestr(f"{top}/README.md", "stand-in for pytorch/vision v0.10.0\n")
    return buf.getvalue()


def build_torch_hub(ctx: SeedContext) -> None:
    """pytorch/vision at v0.10.0 on a stand-in GitHub (zipball, branches and tags as the API
    lists them), pulled into the seed store (``--stage none``: the repository only)."""
    zipball = vision_zipball()
    sha = "300a8a4e" + "0" * 32
    api = "/torch/github-api/repos/pytorch/vision"
    ctx.upstream[f"/torch/github/pytorch/vision/zipball/{VISION_REF}"] = zipball
    ctx.upstream["/torch/github/pytorch/vision/tree/main/"] = b"<html>stand-in</html>"
    branches = [{"name": "main", "commit": {"sha": "1" * 40}}]
    tags = [{"name": VISION_REF, "commit": {"sha": sha}}]
    for kind, listing in (("branches", branches), ("tags", tags)):
        ctx.upstream[f"{api}/{kind}?per_page=100&page=1"] = json.dumps(listing).encode()
        ctx.upstream[f"{api}/{kind}?per_page=100&page=2"] = b"[]"
    ctx.pulls.append([f"torch:pytorch/vision:{VISION_REF}/resnet18", "--trust", "--stage", "none"])


def build_hf_bert(ctx: SeedContext) -> None:
    """A tiny BERT (transformers, safetensors) as hf:google-bert/bert-base-uncased."""
    from modelhub import parse
    from modelhub.importer import import_path
    from tests.support.hf_models import make_transformers_model

    folder = make_transformers_model("bert", ctx.work / "bert-base-uncased", seed=16)
    import_path(ctx.store, folder, parse("hf:google-bert/bert-base-uncased"))


def build_tfhub(ctx: SeedContext) -> None:
    """A tiny SavedModel (variables, serving_default) under the README's TF Hub handle."""
    from modelhub import parse
    from modelhub.importer import import_path
    from tests.support.tf_models import make_saved_model

    folder = make_saved_model(ctx.work / "tfhub-savedmodel", seed=16)
    import_path(ctx.store, folder, parse(f"tfhub:{TFHUB_HANDLE}"))


def build_keras_mobilenet_v2(ctx: SeedContext) -> None:
    """keras.applications.MobileNetV2()'s weights file (alpha 1.0, 224x224, with the
    classifier), written by Keras 2 (tf_keras) as Keras publishes it, with seeded values.
    Keras publishes no hash for it (get_file has no file_hash), so a stand-in is accepted."""
    import tf_keras

    from modelhub import parse
    from modelhub.importer import import_path
    from tests.support.keras_models import _randomise

    model = tf_keras.applications.MobileNetV2(weights=None)
    _randomise(model, 16)
    path = ctx.work / "keras" / KERAS_WEIGHTS
    path.parent.mkdir(parents=True, exist_ok=True)
    model.save_weights(str(path))
    import_path(ctx.store, path, parse("keras:MobileNetV2"))


def build_url_onnx(ctx: SeedContext) -> None:
    """An ONNX MLP as url:https://example.org/model.onnx (at onnx/example.org/model.onnx)."""
    from modelhub import parse
    from modelhub.importer import import_path
    from tests.support.onnx_models import make_mlp

    ref = f"url:{EXAMPLE_HOST}/model.onnx"
    path = make_mlp(ctx.work / "url" / "model.onnx", seed=16)
    import_path(ctx.store, path, parse(ref))
    ctx.sha256[ref] = _sha(path.read_bytes())


STAND_INS: dict[str, StandIn] = {
    s.ref: s
    for s in (
        StandIn("onnx:mnist", build_onnx_zoo, produces="onnx/mnist-12.onnx"),
        StandIn("onnx:resnet50-v1-12", build_onnx_zoo, produces="onnx/resnet50-v1-12.onnx"),
        StandIn(
            "torch:resnet18",
            None,
            unmatchable=f"/torch/models/{TORCHVISION_RESNET18}",
            why=(
                "torchvision names ResNet-18's weights after their sha256 (f37072fd...) and "
                "modelhub checks the whole file against that prefix, so no stand-in can be "
                "seeded: the pull must ask the mirror for exactly that file and say it is not "
                "found"
            ),
        ),
        StandIn(
            f"torch:pytorch/vision:{VISION_REF}/resnet18",
            build_torch_hub,
            produces=f"pytorch/hub/pytorch/vision@{VISION_REF}/resnet18.onnx",
            cached=(f"torch-home/hub/pytorch_vision_{VISION_REF}/hubconf.py",),
            # resnet18(pretrained=True) loads torchvision's published weights, pinned by name.
            unmatchable=f"/torch/models/{TORCHVISION_RESNET18}",
            pinned_if=("pretrained=true", "pretrained=True", "pretrained=1"),
            why="asked for its pretrained weights: torchvision's, pinned by their sha256",
        ),
        StandIn(
            "hf:google-bert/bert-base-uncased",
            build_hf_bert,
            produces="huggingface/google-bert/bert-base-uncased.onnx",
            cached=("hf-cache/models--google-bert--bert-base-uncased",),
        ),
        StandIn(
            f"tfhub:{TFHUB_HANDLE}", build_tfhub, produces=f"tensorflow/tfhub/{TFHUB_HANDLE}.pb"
        ),
        StandIn(
            "keras:MobileNetV2",
            build_keras_mobilenet_v2,
            produces="keras/mobilenetv2.h5",
            extra=(f"keras/{KERAS_WEIGHTS}", "keras/mobilenetv2.keras"),
            cached=(f"keras-home/models/{KERAS_WEIGHTS}",),
        ),
        StandIn(
            f"url:{EXAMPLE_HOST}/model.onnx",
            build_url_onnx,
            produces="onnx/{mirror}/omnihub/onnx/example.org/model.onnx",
        ),
    )
}


def stand_in_for(ref: str) -> StandIn | None:
    """The stand-in of ``ref`` as an example writes it (before substitution), if any."""
    from modelhub import parse

    try:
        key = str(parse(ref))
    except Exception:
        key = ref
    for candidate, stand_in in STAND_INS.items():
        try:
            if str(parse(candidate)) == key:
                return stand_in
        except Exception:
            continue
    return None


# --- processes -----------------------------------------------------------------------------------
def environment(tmp: Path, store: Path, mirror: str) -> dict[str, str]:
    """A modelhub process's environment: store ``store``, every hub at ``mirror``, fresh SDK
    caches under ``tmp``, no internet (a dead proxy for anything but 127.0.0.1), not offline."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("MODELHUB_", "HF_", "HUGGING", "TFHUB_", "TORCH_HOME", "KERAS_"))
        and key.lower() not in ("http_proxy", "https_proxy", "all_proxy", "no_proxy")
    }
    for name in ("hf-cache", "torch-home", "tfhub-cache", "keras-home"):
        (tmp / name).mkdir(parents=True, exist_ok=True)
    env.update(
        {
            "MODELHUB_PATH": str(store),
            "MODELHUB_MIRROR": mirror,
            "MODELHUB_QUIET": "1",
            "MODELHUB_RETRIES": "1",
            "MODELHUB_TIMEOUT": "20",
            "HF_HUB_CACHE": str(tmp / "hf-cache"),
            "HF_HUB_DISABLE_TELEMETRY": "1",
            "HF_HUB_DISABLE_PROGRESS_BARS": "1",
            "TORCH_HOME": str(tmp / "torch-home"),
            "TFHUB_CACHE_DIR": str(tmp / "tfhub-cache"),
            "KERAS_HOME": str(tmp / "keras-home"),
            "HTTP_PROXY": DEAD_PROXY,
            "HTTPS_PROXY": DEAD_PROXY,
            "http_proxy": DEAD_PROXY,
            "https_proxy": DEAD_PROXY,
            "NO_PROXY": "127.0.0.1,localhost",
            "no_proxy": "127.0.0.1,localhost",
            "TF_CPP_MIN_LOG_LEVEL": "3",
            "PYTHONPATH": os.pathsep.join(
                p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p
            ),
        }
    )
    return env


def modelhub_argv(words: list[str]) -> list[str]:
    """``modelhub ARGS`` as this interpreter runs it."""
    assert words and words[0] == "modelhub", words
    return [sys.executable, "-m", "modelhub", *words[1:]]


def run(
    argv: list[str], env: Mapping[str, str], timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` with ``env``; capture stdout and stderr."""
    return subprocess.run(
        argv, env=dict(env), capture_output=True, text=True, timeout=timeout, cwd=REPO
    )


def upstream_files(ctx: SeedContext) -> dict[str, bytes]:
    """The stand-in upstream's files (mirror layout), for an HTTPTestServer."""
    return dict(ctx.upstream)

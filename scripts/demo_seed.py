#!/usr/bin/env python3
"""The demo's plan: which real model files go into the seed store as what, and how to pull them.

    python scripts/demo_seed.py MODELS.json WORKDIR > plan.tsv

``MODELS.json`` is what ``scripts/fetch_models.py --all --list`` prints ({file name: path}).
``WORKDIR`` receives the folders the plan imports (a Hugging Face-style snapshot of silero-vad).
Each line of the plan, tab-separated:

    SOURCE   IMPORT-REF   PULL-REF   SHA256

``modelhub import SOURCE --as IMPORT-REF`` fills the seed store; ``modelhub pull PULL-REF``
fetches the model back through the mirror (``{mirror}`` stands for the mirror's base URL;
``SHA256`` is the sha256 pin of a ``url:`` pull (``--sha256``, or ``sha256 =`` in the demo's
modelhub.toml), ``-`` otherwise):

- every silero-vad ``.onnx`` → ``onnx:<stem>``: pulled through the mirror's ONNX Model Zoo
  manifest (``/onnx/ONNX_HUB_MANIFEST.json``), validated on arrival;
- a snapshot folder of silero-vad files → ``hf:snakers4/silero-vad``: pulled through the
  mirror's Hugging Face API by ``huggingface_hub``;
- facenet-pytorch's ``pnet/rnet/onet.pt`` → one Kaggle PyTorch version
  ``kaggle:timesler/facenet-pytorch/pyTorch/mtcnn/1``: pulled without its version through the
  mirror's Kaggle RPCs (the newest version resolved, every file md5-checked, pickles opened
  weights_only);
- facenet-pytorch's ``pnet/rnet/onet.pt`` → ``torch:<stem>`` and fer's ``emotion_model.hdf5``
  → ``keras:emotion_model``: the mirror serves them in the download.pytorch.org and Keras
  Applications layouts; ``torch:NAME``/``keras:NAME`` pulls resolve names through torchvision's
  and Keras' own registries, which these models are not in, so the demo pulls them as
  sha256-pinned ``url:`` files at their mirror URLs.

Models whose file is missing from ``MODELS.json`` are left out. Exit status 1 with a one-line
message if nothing is left.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
from pathlib import Path

HF_REPO = "snakers4/silero-vad"
HF_FILES = ("silero_vad.onnx", "silero_vad_16k_op15.onnx", "silero_vad_16k.safetensors")
HF_README = """\
---
license: mit
library_name: onnx
pipeline_tag: voice-activity-detection
tags: [silero, vad, audio]
---
# silero-vad (modelhub demo snapshot)

Files from the `silero-vad==6.2.3` wheel on PyPI (MIT license, https://github.com/snakers4/silero-vad),
imported into a modelhub seed store as `hf:snakers4/silero-vad` and served by `modelhub serve`.
"""
TORCH_FILES = ("pnet.pt", "rnet.pt", "onet.pt")
KERAS_FILE, KERAS_FAMILY = "emotion_model.hdf5", "fer"
KAGGLE_MODEL = "kaggle:timesler/facenet-pytorch/pyTorch/mtcnn"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def plan(models: dict[str, Path], work: Path) -> list[tuple[str, str, str, str]]:
    """The plan rows (source, import ref, pull ref, sha256 or '-')."""
    rows: list[tuple[str, str, str, str]] = []
    for name in sorted(n for n in models if n.endswith(".onnx")):
        stem = Path(name).stem
        rows.append((str(models[name]), f"onnx:{stem}", f"onnx:{stem}", "-"))
    present = [n for n in HF_FILES if n in models]
    if present:
        snapshot = work / "hf-snapshot" / HF_REPO.split("/")[1]
        shutil.rmtree(snapshot, ignore_errors=True)
        snapshot.mkdir(parents=True)
        for name in present:
            shutil.copyfile(models[name], snapshot / name)
        (snapshot / "README.md").write_text(HF_README, encoding="utf-8")
        rows.append((str(snapshot), f"hf:{HF_REPO}", f"hf:{HF_REPO}", "-"))
    for name in TORCH_FILES:
        if name in models:
            url = f"url:{{mirror}}/torch/models/{name}"
            rows.append((str(models[name]), f"torch:{Path(name).stem}", url, ""))
    mtcnn = [n for n in TORCH_FILES if n in models]
    if mtcnn:
        # The same state_dicts as one Kaggle PyTorch version (three files, each pickle checked
        # weights_only on arrival), pulled without a version: the newest one is resolved.
        version = work / "kaggle-version" / "mtcnn"
        shutil.rmtree(version, ignore_errors=True)
        version.mkdir(parents=True)
        for name in mtcnn:
            shutil.copyfile(models[name], version / name)
        rows.append((str(version), f"{KAGGLE_MODEL}/1", KAGGLE_MODEL, "-"))
    if KERAS_FILE in models:
        url = f"url:{{mirror}}/keras/tensorflow/keras-applications/{KERAS_FAMILY}/{KERAS_FILE}"
        rows.append((str(models[KERAS_FILE]), f"keras:{Path(KERAS_FILE).stem}", url, ""))
    return [(src, ref, pull, sha or sha256_file(Path(src))) for src, ref, pull, sha in rows]


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__.split("\n\n")[1].strip(), file=sys.stderr)
        return 2
    try:
        listed = json.loads(Path(argv[0]).read_text(encoding="utf-8"))
        models = {str(k): Path(v) for k, v in listed.items() if Path(v).is_file()}
        rows = plan(models, Path(argv[1]))
    except (OSError, ValueError, AttributeError) as exc:
        print(f"demo_seed: error: {exc}", file=sys.stderr)
        return 1
    if not rows:
        print(f"demo_seed: error: no demo model files listed in {argv[0]}", file=sys.stderr)
        return 1
    for row in rows:
        print("\t".join(row))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

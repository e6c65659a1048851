"""Eight processes pulling the same model: one download, eight successes, one manifest."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def test_eight_processes_one_download(zoo, store_root: Path) -> None:
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "modelhub", "pull", "onnx:tiny-mlp"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=dict(os.environ),
        )
        for _ in range(8)
    ]
    results = [(*p.communicate(timeout=180), p.returncode) for p in procs]
    assert [code for _, _, code in results] == [0] * 8, [err for _, err, _ in results]
    paths = {out.strip() for out, _, _ in results}
    assert paths == {str(store_root / "onnx" / "tiny-mlp-13.onnx")}
    model_gets = [
        r for r in zoo.server.requests if r.method == "GET" and r.path.endswith("tiny-mlp-13.onnx")
    ]
    zoo_gets = [r for r in zoo.server.requests if r.path.endswith("ONNX_HUB_MANIFEST.json")]
    assert len(model_gets) == 1
    assert len(zoo_gets) == 1
    manifests = list((store_root / ".modelhub" / "manifests").rglob("*.json"))
    assert len(manifests) == 1
    leftovers = [p for p in (store_root / ".modelhub" / "tmp").rglob("*") if p.is_file()]
    assert leftovers == []

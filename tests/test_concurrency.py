"""Processes sharing one store: eight pulling the same model (one download, eight successes,
one manifest), eight pulling eight models, and a pull racing `gc` and `rm`."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import ZOO_FILES


def test_eight_processes_one_download(zoo, store_root: Path) -> None:
    procs = [_pull("onnx:tiny-mlp") for _ in range(8)]
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


def _start(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """``modelhub ARGS...`` running in the background."""
    return subprocess.Popen(
        [sys.executable, "-m", "modelhub", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(env or os.environ),
    )


def _pull(ref: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return _start("pull", ref, env=env)


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "modelhub", *args],
        capture_output=True,
        text=True,
        timeout=180,
        env=dict(os.environ),
    )


def test_eight_processes_eight_models_one_store(
    tmp_path: Path, store_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Eight processes, eight different models, one store: each model is downloaded once, every
    manifest verifies, the shared zoo-manifest cache stays valid, nothing is left in tmp."""
    import hashlib
    import json

    from tests.support.httpserver import HTTPTestServer
    from tests.support.onnx_models import make_mlp, zoo_entry, zoo_manifest

    names = [f"par-{i}" for i in range(8)]
    files = {
        n: make_mlp(tmp_path / "zoo" / f"{n}.onnx", seed=20 + i, width=8192).read_bytes()
        for i, n in enumerate(names)
    }
    entries = [zoo_entry(n, f"m/{n}.onnx", files[n], 13) for n in names]
    server = HTTPTestServer({"/ONNX_HUB_MANIFEST.json": zoo_manifest(entries)})
    for n in names:  # the zoo's files, where its Hugging Face copy serves them
        server.add(f"/{ZOO_FILES}/m/{n}.onnx", files[n])
    with server:
        monkeypatch.setenv("MODELHUB_ONNX_URL", server.url)
        monkeypatch.setenv("MODELHUB_HF_URL", server.url)
        procs = {n: _pull(f"onnx:{n}") for n in names}
        results = {n: (*p.communicate(timeout=300), p.returncode) for n, p in procs.items()}
    assert {n: r[2] for n, r in results.items()} == dict.fromkeys(names, 0), results
    for n, (out, _, _) in results.items():
        path = Path(out.strip())
        assert path == store_root / "onnx" / f"{n}.onnx"
        assert hashlib.sha256(path.read_bytes()).hexdigest() == hashlib.sha256(files[n]).hexdigest()
    gets = [r.path for r in server.requests if r.method == "GET" and r.path.endswith(".onnx")]
    expected = sorted(f"/{ZOO_FILES}/m/{n}.onnx" for n in names)
    assert sorted(gets) == expected, "each model fetched once"
    verify = _cli("verify")
    assert verify.returncode == 0, verify.stderr
    assert verify.stdout.count("ok ") == 8
    cached = list((store_root / ".modelhub" / "cache" / "onnx").glob("*.json"))
    assert len(cached) == 1 and len(json.loads(cached[0].read_text())) == 8
    leftovers = [p for p in (store_root / ".modelhub" / "tmp").rglob("*") if p.is_file()]
    assert leftovers == []


def test_pull_racing_gc_and_rm(zoo, store_root: Path) -> None:
    """While a pull is mid-download (its part file in tmp, its lock held), `gc` and `rm` of
    another model run: gc keeps the pull's part file, rm removes exactly the other model, the
    pull completes and verifies."""
    from tests.support.httpserver import Fault

    first = _cli("pull", "onnx:other-mlp")
    assert first.returncode == 0, first.stderr
    other = Path(first.stdout.strip())
    size = len(zoo.files["tiny-mlp-13.onnx"])
    zoo.server.faults.append(
        Fault(
            "stall",
            after=size // 2,
            seconds=3,
            path=f"/{ZOO_FILES}/validated/tiny/model/tiny-mlp-13.onnx",
        )
    )
    pull = _pull("onnx:tiny-mlp")
    part = None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and part is None:
        found = list((store_root / ".modelhub" / "tmp").rglob("*.part"))
        part = found[0] if found else None
        time.sleep(0.01)
    assert part is not None, "the pull never started its download"
    gc = _start("gc")
    rm = _cli("rm", "onnx:other-mlp")
    _, gc_err = gc.communicate(timeout=120)
    assert gc.returncode == 0, gc_err
    assert rm.returncode == 0, rm.stderr
    assert "a pull of this model is running" in gc_err, gc_err
    assert part.exists(), "gc removed the part file of a running pull"
    out, err = pull.communicate(timeout=180)
    assert pull.returncode == 0, err
    model = Path(out.strip())
    assert model.read_bytes() == zoo.files["tiny-mlp-13.onnx"]
    assert not other.exists(), "rm removed its model"
    assert _cli("path", "onnx:other-mlp").returncode == 3
    verify = _cli("verify")
    assert verify.returncode == 0 and verify.stdout.split() == ["ok", "onnx:tiny-mlp"], verify
    assert not [p for p in (store_root / ".modelhub" / "tmp").rglob("*") if p.is_file()]


@pytest.mark.parametrize("round_", range(4))
def test_gc_racing_a_pull_at_publication(zoo, store_root: Path, round_: int) -> None:
    """`gc` started together with a pull (and with `rm` of the model pulled before): whatever
    the interleaving, the pull ends with its files and manifest, and gc removes nothing a
    manifest lists."""
    assert _cli("pull", "onnx:other-mlp").returncode == 0
    procs = [_pull("onnx:tiny-mlp")]
    time.sleep(0.02 * round_)
    gc = _start("gc")
    rm = _start("rm", "onnx:other-mlp")
    for proc in (*procs, gc, rm):
        _, err = proc.communicate(timeout=180)
        assert proc.returncode == 0, err
    verify = _cli("verify")
    assert verify.returncode == 0 and verify.stdout.split() == ["ok", "onnx:tiny-mlp"], verify
    assert (store_root / "onnx" / "tiny-mlp-13.onnx").read_bytes() == zoo.files["tiny-mlp-13.onnx"]
    assert not (store_root / "onnx" / "other-mlp-13.onnx").exists()

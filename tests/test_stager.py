"""Staging in worker processes (``modelhub.stager``), as ``modelhub sync --jobs N`` does it.

Real hubs, real ONNX models, real worker processes: the staged artifacts equal in-process
staging, errors keep their type and exit code across the process boundary, a worker killed
with SIGKILL fails only the call it was running (the next call gets a new pool), and the CLI's
sync really stages out of process (the framework is never imported by the caller).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from modelhub.errors import ModelhubError, StagingCrashedError
from modelhub.hubs import StageRequest, get_hub
from modelhub.importer import import_path
from modelhub.mirror.app import BackgroundMirror
from modelhub.refs import parse
from modelhub.stager import ProcessStager
from modelhub.store import Store
from tests.support.onnx_models import make_mlp

REPO = Path(__file__).resolve().parents[1]


def _imported(store: Store, tmp_path: Path, name: str, seed: int) -> tuple:
    ref = parse(f"onnx:{name}")
    src = make_mlp(tmp_path / "src" / f"{name}-13.onnx", seed=seed, opset=13)
    with store.lock(ref):
        manifest = import_path(store, src, ref)
    return ref, manifest


def test_worker_staging_equals_in_process_staging(tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    ref, manifest = _imported(store, tmp_path, "mlp-a", seed=1)
    hub = get_hub("onnx", store)
    request = StageRequest("onnx")
    with ProcessStager(2) as stager:
        remote = stager.stage(hub, ref, manifest, request)
    local = hub.stage(ref, manifest, request)
    assert remote and [s.format for s in remote] == ["onnx"]
    assert remote[0].inputs and remote[0].outputs
    assert (remote[0].path, remote[0].sha256, remote[0].inputs, remote[0].outputs) == (
        local[0].path,
        local[0].sha256,
        local[0].inputs,
        local[0].outputs,
    )


def test_worker_errors_keep_their_type_and_message(tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    ref, manifest = _imported(store, tmp_path, "mlp-b", seed=2)
    target = store.abspath(manifest.files[0].path)
    target.unlink()  # the store's copy may be a hard link to the source: replace, not edit
    target.write_bytes(b"\x08\x07 this is not an ONNX model")
    hub = get_hub("onnx", store)
    request = StageRequest("onnx")
    with pytest.raises(ModelhubError) as here:
        hub.stage(ref, manifest, request)
    with ProcessStager(1) as stager, pytest.raises(ModelhubError) as there:
        stager.stage(hub, ref, manifest, request)
    assert type(there.value) is type(here.value)
    assert str(there.value) == str(here.value)
    assert there.value.exit_code == here.value.exit_code != 0


def test_killed_worker_fails_one_call_and_the_next_gets_a_new_pool(tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    ref, manifest = _imported(store, tmp_path, "mlp-c", seed=3)
    hub = get_hub("onnx", store)
    request = StageRequest("onnx")
    with ProcessStager(1) as stager:
        assert stager.stage(hub, ref, manifest, request)
        pool = stager._pool
        assert pool is not None
        pids = list(pool._processes)  # type: ignore[attr-defined]
        assert pids
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while not pool._broken and time.monotonic() < deadline:  # type: ignore[attr-defined]
            time.sleep(0.05)
        with pytest.raises(StagingCrashedError, match="worker process died"):
            stager.stage(hub, ref, manifest, request)
        assert stager._pool is None
        again = stager.stage(hub, ref, manifest, request)
        assert again and again[0].format == "onnx"
        assert stager._pool is not pool


SYNC_AND_REPORT = """
import json, sys
from modelhub.cli.main import main
code = main(["sync", sys.argv[1], "--jobs", "3", "--json"])
imported = sorted(m for m in ("onnx", "tensorflow") if m in sys.modules)
print(json.dumps({"code": code, "imported": imported}), file=sys.stderr)
"""


def _sync_subprocess(
    tmp_path: Path, seed: Store, refs: list[str], env: dict[str, str] | None = None
) -> tuple[dict, dict]:
    """``modelhub sync --jobs 3`` of ``refs`` from ``seed`` (served by the mirror) in a child
    process; returns (its report of imported frameworks + exit code, the --json document)."""
    toml = tmp_path / "project" / "modelhub.toml"
    toml.parent.mkdir()
    toml.write_text("".join(f'[[model]]\nref = "{r}"\n\n' for r in refs), encoding="utf-8")
    mirror = BackgroundMirror(seed.root)
    url = mirror.start()
    try:
        proc = subprocess.run(
            [sys.executable, "-c", SYNC_AND_REPORT, str(toml)],
            env={
                **os.environ,
                "MODELHUB_MIRROR": url,
                "MODELHUB_PATH": str(tmp_path / "store"),
                "MODELHUB_QUIET": "1",
                "NO_PROXY": "127.0.0.1,localhost",
                "PYTHONPATH": str(REPO / "src"),
                **(env or {}),
            },
            capture_output=True,
            text=True,
            timeout=600,
        )
    finally:
        mirror.stop()
    report = json.loads(proc.stderr.strip().splitlines()[-1])
    assert report["code"] == 0, proc.stderr
    return report, json.loads(proc.stdout)


def test_cli_sync_converts_in_worker_processes(tmp_path: Path) -> None:
    """A SavedModel frozen to a flat GraphDef by a worker (TensorFlow never imported by the
    sync process); small ONNX zoo models validated in the sync's own threads (a quick check: a
    worker would cost more than it saves)."""
    pytest.importorskip("tensorflow")
    from tests.support.tf_models import make_saved_model

    seed = Store(tmp_path / "seed")
    refs = []
    for i in range(2):
        ref, _ = _imported(seed, tmp_path, f"mlp-{i}", seed=10 + i)
        refs.append(ref.canonical)
    saved = make_saved_model(tmp_path / "src" / "tiny-sm")
    tf_ref = parse("tfhub:test/tiny-sm/1")
    with seed.lock(tf_ref):
        import_path(seed, saved, tf_ref)
    refs.append(tf_ref.canonical)
    report, doc = _sync_subprocess(
        tmp_path, seed, refs, {"TFHUB_CACHE_DIR": str(tmp_path / "tfhub-cache")}
    )
    assert [m["status"] for m in doc["models"]] == ["ok"] * 3
    store = Store(tmp_path / "store")
    formats = {r: [s.format for s in store.require(parse(r)).staged] for r in refs}
    assert formats == {refs[0]: ["onnx"], refs[1]: ["onnx"], refs[2]: ["pb"]}
    frozen = store.require(tf_ref).staged[0]
    assert frozen.parity is not None and frozen.parity["max_abs_diff"] <= 1e-4
    # Frozen (parity recorded above) by a worker: TensorFlow never entered this process;
    # the ONNX checks did.
    assert report["imported"] == ["onnx"]


def test_cli_sync_validates_large_onnx_files_in_workers(tmp_path: Path) -> None:
    """ONNX files of HEAVY_CHECK_BYTES and more are validated by workers (the checks hold the
    GIL for seconds on real models); the sync process never imports onnx then."""
    from modelhub.staging.onnx_check import HEAVY_CHECK_BYTES

    seed = Store(tmp_path / "seed")
    width = HEAVY_CHECK_BYTES // 12 + 1024  # a (width x 3) float32 weight: just over the line
    refs = []
    for i in range(2):
        ref = parse(f"onnx:big-{i}")
        src = make_mlp(tmp_path / "src" / f"big-{i}-13.onnx", seed=i, opset=13, width=width)
        assert src.stat().st_size >= HEAVY_CHECK_BYTES
        with seed.lock(ref):
            import_path(seed, src, ref)
        refs.append(ref.canonical)
    report, _ = _sync_subprocess(tmp_path, seed, refs)
    store = Store(tmp_path / "store")
    for ref in refs:
        staged = store.require(parse(ref)).staged
        assert [s.format for s in staged] == ["onnx"] and staged[0].inputs == ["x"]
    assert report["imported"] == []

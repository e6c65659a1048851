"""A pull killed with SIGKILL mid-download resumes in the next run; nothing half-written shows."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.support.httpserver import Fault, HTTPTestServer

MiB = 1 << 20


def test_kill_9_mid_download_then_resume(tmp_path: Path, store_root: Path) -> None:
    data = os.urandom(12 * MiB)
    sha = hashlib.sha256(data).hexdigest()
    src = tmp_path / "big.bin"
    src.write_bytes(data)
    with HTTPTestServer({"/m/weights.pth": src}) as server:
        server.faults.append(Fault("stall", after=9 * MiB, seconds=60))
        ref = f"url:{server.url}/m/weights.pth"
        proc = subprocess.Popen(
            [sys.executable, "-m", "modelhub", "pull", ref, "--sha256", sha],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env={**os.environ, "MODELHUB_CONNECTIONS": "1"},
        )
        tmp_root = store_root / ".modelhub" / "tmp"
        deadline = time.monotonic() + 60
        parts: list[Path] = []
        while time.monotonic() < deadline:
            parts = [p for p in tmp_root.rglob("*.part") if p.stat().st_size >= 4 * MiB]
            if parts:
                break
            time.sleep(0.05)
        assert parts, "the download never made progress"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        final = store_root / "pytorch" / "weights.pth"
        assert not final.exists(), "a partial file must never have its final name"
        assert not list((store_root / ".modelhub" / "manifests").rglob("*.json"))
        kept = parts[0].stat().st_size
        sent_before = server.bytes_sent

        again = subprocess.run(
            [sys.executable, "-m", "modelhub", "pull", ref, "--sha256", sha],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert again.returncode == 0, again.stderr
        assert final.read_bytes() == data
        ranged = [r for r in server.requests if r.headers.get("range", "").startswith("bytes=")]
        assert ranged, "the second run must resume with a Range request"
        assert int(ranged[-1].headers["range"].split("=")[1].split("-")[0]) == kept
        resent = server.bytes_sent - sent_before
        assert resent == len(data) - kept
        assert not [p for p in tmp_root.rglob("*") if p.is_file()]

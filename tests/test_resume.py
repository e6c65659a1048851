"""A pull killed with SIGKILL mid-download resumes in the next run; nothing half-written shows."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.support.httpserver import Fault, HTTPTestServer
from tests.support.shaper import LinkShaper

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
        host = "127.0.0.1_" + server.url.rsplit(":", 1)[1]  # url: files are filed by source
        final = store_root / "pytorch" / host / "m" / "weights.pth"
        assert not final.exists(), "a partial file must never have its final name"
        assert not list((store_root / ".modelhub" / "manifests").rglob("*.json"))
        kept = parts[0].stat().st_size
        sent_before, asked_before = server.bytes_sent, len(server.requests)

        again = subprocess.run(
            [sys.executable, "-m", "modelhub", "pull", ref, "--sha256", sha],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert again.returncode == 0, again.stderr
        assert final.read_bytes() == data
        second = [r for r in server.requests[asked_before:] if r.method == "GET"]
        assert second and second[0].headers.get("range", "").startswith("bytes="), (
            "the second run must resume with a Range request"
        )
        assert int(second[0].headers["range"].split("=")[1].split("-")[0]) == kept
        resent = server.bytes_sent - sent_before
        assert resent == len(data) - kept
        assert not [p for p in tmp_root.rglob("*") if p.is_file()]


def test_kill_9_while_one_chunk_stalls_keeps_the_chunks_after_it(
    tmp_path: Path, store_root: Path
) -> None:
    """Parallel path (a shaped link: 8 MiB/s per connection, 20 ms RTT): the first chunk after
    the probe stalls while the later ones arrive. Those are written where they belong and
    listed in the resume sidecar, so after a kill -9 the next process fetches only the gap and
    hashes the rest from the part file."""
    data = os.urandom(24 * MiB)
    sha = hashlib.sha256(data).hexdigest()
    src = tmp_path / "big.bin"
    src.write_bytes(data)
    with (
        HTTPTestServer({"/m/weights.pth": src}) as server,
        LinkShaper(server.url, rate=8 * MiB, rtt=0.020) as link,
    ):
        ref = f"url:{link.url}/m/weights.pth"
        env = {**os.environ, "MODELHUB_CONNECTIONS": "4"}
        proc = subprocess.Popen(
            [sys.executable, "-m", "modelhub", "pull", ref, "--sha256", sha],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
        )
        deadline = time.monotonic() + 60
        while not server.requests and time.monotonic() < deadline:
            time.sleep(0.01)
        # The probe (the first 8 MiB) is on its way: the next request, a chunk, stalls.
        server.faults.append(Fault("stall", after=MiB // 2, seconds=60))
        tmp_root = store_root / ".modelhub" / "tmp"
        spans: list[list[int]] = []
        while time.monotonic() < deadline and proc.poll() is None:
            for side in tmp_root.rglob("*.part.json"):
                try:
                    spans = json.loads(side.read_text()).get("ranges") or []
                except (OSError, ValueError):
                    continue
            if len(spans) == 2 and spans[-1][1] == len(data):
                break  # everything is written but the stalled chunk
            time.sleep(0.02)
        assert len(spans) == 2 and spans[-1][1] == len(data), (spans, proc.poll())
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        gap = spans[1][0] - spans[0][1]
        assert spans[0][0] == 0 and 0 < gap < len(data) // 2, spans
        sent_before, asked_before = server.bytes_sent, len(server.requests)

        again = subprocess.run(
            [sys.executable, "-m", "modelhub", "pull", ref, "--sha256", sha],
            capture_output=True,
            text=True,
            timeout=120,
            env=env,
        )
        assert again.returncode == 0, again.stderr
        host = "127.0.0.1_" + link.url.rsplit(":", 1)[1]
        assert (store_root / "pytorch" / host / "m" / "weights.pth").read_bytes() == data
        ranges = [r.headers.get("range") for r in server.requests[asked_before:]]
        assert ranges == [f"bytes={spans[0][1]}-{spans[1][0] - 1}"], ranges
        assert server.bytes_sent - sent_before == gap
        assert not [p for p in tmp_root.rglob("*") if p.is_file()]

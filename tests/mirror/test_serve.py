"""The server process: random port, URL on stdout only, access log on stderr, clean stop."""

from __future__ import annotations

import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from modelhub.mirror import serve
from modelhub.store import Manifest, Store


def test_process_serves_and_stops_cleanly(store: Store, populated: dict[str, Manifest]) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "modelhub", "serve", "--root", str(store.root), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:") and not url.endswith(":0")
        with urllib.request.urlopen(f"{url}/torch/models/tiny-weights.pth") as response:
            assert response.read() == (store.root / "pytorch/tiny-weights.pth").read_bytes()
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0
    assert out == ""  # nothing on stdout but the URL line read above
    assert '"GET /torch/models/tiny-weights.pth HTTP/1.1" 200' in err


def test_port_in_use_is_an_error(store: Store) -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        with pytest.raises(OSError):
            serve(store.root, port=port, ready=lambda url: None)


def test_root_path_lists_the_protocols(mirror: str) -> None:
    with urllib.request.urlopen(mirror + "/") as response:
        assert b"/hf" in response.read()


def test_empty_store_serves_nothing(tmp_path: Path) -> None:
    from modelhub.mirror import running

    with running(tmp_path / "empty") as url:
        with urllib.request.urlopen(f"{url}/onnx/ONNX_HUB_MANIFEST.json") as response:
            assert response.read() == b"[]"
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(f"{url}/hf/api/models/a/b")
        assert info.value.code == 404
        assert info.value.headers["X-Error-Code"] == "RepoNotFound"

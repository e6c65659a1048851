"""``modelhub view``: netron serves the model on 127.0.0.1 (no browser needed to prove it)."""

from __future__ import annotations

import os
import selectors
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from modelhub import viewer
from modelhub.cli.main import main
from modelhub.importer import import_path
from modelhub.refs import parse
from modelhub.store import Store
from tests.support.mirror_fixtures import make_hf_snapshot
from tests.support.onnx_models import make_mlp


def _get(url: str) -> tuple[int, bytes]:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return resp.status, resp.read()


def _import(store: Store, src: Path, ref: str) -> Path:
    mref = parse(ref)
    with store.lock(mref):
        manifest = import_path(store, src, mref)
    return store.abspath(manifest.primary_path)


def test_netron_serves_the_model(store_root: Path, tmp_path: Path) -> None:
    pytest.importorskip("netron")
    store = Store(store_root)
    model = _import(store, make_mlp(tmp_path / "viewme-13.onnx", seed=4), "onnx:viewme")
    path = viewer.artifact(store, store.require(parse("onnx:viewme")))
    assert path == model
    view = viewer.start(path, port=0, browse=False)
    try:
        assert view.url.startswith("http://127.0.0.1:")
        assert view.alive()
        status, page = _get(view.url + "/")
        assert status == 200
        # netron's page names the model file it will load, and serves it under /data/.
        assert b'<meta name="file" content="/data/viewme-13.onnx">' in page
        status, body = _get(view.model_url)
        assert status == 200 and body == model.read_bytes()
    finally:
        view.stop()
    view.wait()
    assert not view.alive()


def test_view_command_prints_the_url_and_serves(store_root: Path, tmp_path: Path) -> None:
    pytest.importorskip("netron")
    store = Store(store_root)
    model = _import(store, make_mlp(tmp_path / "cli-13.onnx", seed=5), "onnx:cli")
    proc = subprocess.Popen(
        [sys.executable, "-m", "modelhub", "view", "onnx:cli", "--no-browser"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ),
    )
    try:
        sel = selectors.DefaultSelector()
        assert proc.stdout is not None
        sel.register(proc.stdout, selectors.EVENT_READ)
        assert sel.select(timeout=60), "modelhub view printed no URL"
        url = proc.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:")
        status, page = _get(url)
        assert status == 200 and b"/data/cli-13.onnx" in page
        assert _get(f"{url}/data/cli-13.onnx")[1] == model.read_bytes()
    finally:
        proc.terminate()
        proc.wait(10)


def test_folder_models_open_their_weights_file(store_root: Path, tmp_path: Path) -> None:
    store = Store(store_root)
    make_hf_snapshot(tmp_path / "snap", seed=3)
    _import(store, tmp_path / "snap", "hf:org/viewed")
    manifest = store.require(parse("hf:org/viewed"))
    assert viewer.artifact(store, manifest).name == "model.safetensors"
    assert viewer.artifact(store, manifest, original=True).name == "model.safetensors"


def test_without_netron_view_is_a_usage_error(
    store_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    _import(Store(store_root), make_mlp(tmp_path / "n-13.onnx", seed=6), "onnx:n")
    monkeypatch.setitem(sys.modules, "netron", None)  # import netron -> ImportError
    assert main(["view", "onnx:n", "--no-browser"]) == 2
    assert "pip install 'modelhub[view]'" in capsys.readouterr().err
    # A model not in the store is pulled first (here: offline, so exit 6 before netron).
    monkeypatch.setenv("MODELHUB_OFFLINE", "1")
    assert main(["view", "onnx:not-pulled", "--no-browser"]) == 6

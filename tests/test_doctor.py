"""Issue 19, point 14: ``pull``/``sync --dry-run`` (what would be fetched, nothing written),
``modelhub completion bash|zsh`` generated from the parser, and ``modelhub doctor``."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from modelhub.cli.main import build_parser, main
from tests.support.httpserver import HTTPTestServer
from tests.support.privileges import without_dac_override


def _files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")) if root.exists() else []


# --- dry run ------------------------------------------------------------------------------------
def test_pull_dry_run_says_what_and_writes_nothing(zoo, store_root: Path, capsys) -> None:
    assert main(["pull", "onnx:tiny-mlp", "-q"]) == 0
    before = _files(store_root)
    served_before = len(zoo.server.requests)
    capsys.readouterr()
    assert main(["pull", "onnx:tiny-mlp", "onnx:other-mlp", "--dry-run"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"onnx:tiny-mlp: in store ({store_root / 'onnx' / 'tiny-mlp-13.onnx'})"
    size = len(zoo.files["other-mlp-13.onnx"])
    assert out[1].startswith("onnx:other-mlp: would fetch 1 file(s), ")
    assert f"from {zoo.url}/onnxmodelzoo/" in out[1]
    assert out[2].endswith("nothing written")
    assert _files(store_root) == before  # no model, no zoo index, no tmp folder
    fetched = [r.path for r in zoo.server.requests[served_before:]]
    assert not any(p.endswith("other-mlp-13.onnx") for p in fetched), fetched
    assert main(["pull", "onnx:other-mlp", "--dry-run", "--json"]) == 0
    [doc] = json.loads(capsys.readouterr().out)
    assert doc["fetch_bytes"] == size


def test_dry_run_of_a_url_asks_its_size(tmp_path: Path, store_root: Path, capsys) -> None:
    with HTTPTestServer({"/m/model.bin": b"x" * 4096}) as files:
        assert main(["pull", f"url:{files.url}/m/model.bin", "--dry-run"]) == 0
        methods = {r.method for r in files.requests}
    assert methods == {"HEAD"}
    line = capsys.readouterr().out.strip()
    assert "would fetch 1 file(s), 4.0 KiB from" in line
    assert _files(store_root) == []


def test_sync_dry_run(zoo, tmp_path: Path, store_root: Path, capsys) -> None:
    toml = tmp_path / "dev.toml"
    toml.write_text('[[model]]\nref = "onnx:tiny-mlp"\n\n[[model]]\nref = "onnx:nope"\n')
    assert main(["sync", str(toml), "--dry-run"]) == 3
    captured = capsys.readouterr()
    assert "onnx:tiny-mlp: would fetch 1 file(s)" in captured.out
    assert "onnx:nope" in captured.err and len(captured.err.strip().splitlines()) == 1
    assert not (tmp_path / "dev.lock").exists()
    assert not list(store_root.glob("onnx/*"))


# --- completion ---------------------------------------------------------------------------------
def _complete(script: str, *words: str) -> list[str]:
    line = " ".join(words)
    code = (
        f"{script}\nCOMP_WORDS=({line}); COMP_CWORD={len(words) - 1}; "
        '_modelhub; printf "%s\\n" "${COMPREPLY[@]}"'
    )
    proc = subprocess.run(["bash", "-c", code], capture_output=True, text=True, check=True)
    return proc.stdout.split()


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_bash_completion_comes_from_the_parser(capsys) -> None:
    assert main(["completion", "bash"]) == 0
    script = capsys.readouterr().out
    subcommands = build_parser()._modelhub_subparsers  # type: ignore[attr-defined]
    assert set(_complete(script, "modelhub", "''")) >= set(subcommands)
    assert "pull" in _complete(script, "modelhub", "pu")
    assert set(_complete(script, "modelhub", "-q", "pull", "--st")) == {"--stage", "--storage"}
    assert "onnx" in _complete(script, "modelhub", "pull", "--stage", "''")
    assert _complete(script, "modelhub", "completion", "z") == ["zsh"]
    assert "--dry-run" in _complete(script, "modelhub", "sync", "--dr")
    assert main(["completion", "zsh"]) == 0
    zsh = capsys.readouterr().out
    assert "bashcompinit" in zsh and "complete -o default" in zsh


# --- doctor -------------------------------------------------------------------------------------
def _doctor(capsys, code: int = 0) -> dict[str, dict]:
    capsys.readouterr()
    assert main(["doctor", "--json"]) == code
    doc = json.loads(capsys.readouterr().out)
    assert doc["ok"] is (code == 0)
    return {c["name"]: c for c in doc["checks"]}


def test_doctor_reports_store_link_mode_extras_caches(
    store_root: Path, tmp_path: Path, monkeypatch, capsys
) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.setenv("MODELHUB_LINK_MODE", "hardlink")
    checks = _doctor(capsys)
    assert checks["store"]["value"] == str(store_root)
    assert checks["writable"]["ok"] and checks["writable"]["value"] == "yes"
    assert "GiB" in checks["free disk"]["value"] or "MiB" in checks["free disk"]["value"]
    assert checks["link mode"]["value"].startswith("hardlink")
    assert checks["extra [onnx]"]["ok"]
    assert checks["huggingface_hub cache"]["value"].startswith(str(tmp_path / "hf-cache"))
    assert str(tmp_path / "kagglehub-cache") in checks["kagglehub cache"]["value"]
    assert "torch.hub checkpoints" in checks
    assert checks["offline"]["value"].startswith("no")
    assert "not set" in checks["mirror"]["value"]
    assert list((store_root / ".modelhub" / "tmp").iterdir()) == []  # the probe is gone
    monkeypatch.setenv("MODELHUB_OFFLINE", "1")
    assert "MODELHUB_OFFLINE=1" in _doctor(capsys)["offline"]["value"]


def test_doctor_mirror_reachable_or_not(capsys, monkeypatch) -> None:
    with HTTPTestServer({"/healthz": b"ok"}) as mirror:
        monkeypatch.setenv("MODELHUB_MIRROR", mirror.url)
        check = _doctor(capsys)["mirror"]
        assert check["ok"] and "reachable (HTTP 200)" in check["value"]
    check = _doctor(capsys, code=1)["mirror"]  # the server is gone
    assert (
        not check["ok"] and "unreachable" in check["value"] and "MODELHUB_MIRROR" in check["hint"]
    )
    assert main(["doctor"]) == 1
    assert "FAIL" in capsys.readouterr().out


def test_doctor_read_only_store(tmp_path: Path) -> None:
    """doctor says a store it cannot write is not writable (exit 1, a hint naming
    MODELHUB_PATH). As root it runs without CAP_DAC_OVERRIDE (setpriv), so that the permission
    bits hold for it too."""
    prefix = without_dac_override()
    root = tmp_path / "ro"
    root.mkdir()
    root.chmod(0o555)
    try:
        proc = subprocess.run(
            [*prefix, sys.executable, "-m", "modelhub", "doctor", "--json"],
            capture_output=True,
            text=True,
            env={**os.environ, "MODELHUB_PATH": str(root)},
            timeout=120,
        )
    finally:
        root.chmod(0o755)
    assert proc.returncode == 1, proc.stderr
    doc = json.loads(proc.stdout)
    checks = {c["name"]: c for c in doc["checks"]}
    assert doc["ok"] is False
    assert not checks["writable"]["ok"] and "MODELHUB_PATH" in checks["writable"]["hint"]
    assert checks["store"]["value"] == str(root)
    assert list(root.iterdir()) == []  # the probe left nothing (it could not write one)

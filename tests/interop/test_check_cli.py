"""``modelhub check --importer dl4j`` from the command line: the store pulled through the mirror,
the real Java harness, the result in the manifest; and one line when there is no JVM."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from modelhub.cli.main import main


def _cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_no_jvm_is_one_line_naming_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], zoo
) -> None:
    assert _cli(capsys, "pull", "onnx:tiny-mlp")[0] == 0
    empty = tmp_path / "empty-path"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    code, out, err = _cli(capsys, "check", "onnx:tiny-mlp", "--importer", "dl4j")
    assert code == 1 and out == ""
    [line] = err.strip().splitlines()
    assert "needs a Java 17 JDK and Maven" in line and "java and mvn not found" in line


def test_check_takes_refs_or_all(capsys: pytest.CaptureFixture[str]) -> None:
    assert _cli(capsys, "check", "--importer", "dl4j")[0] == 2
    code, _, err = _cli(capsys, "check", "onnx:x", "--all", "--importer", "dl4j")
    assert code == 2 and "REF... or --all" in err


@pytest.mark.timeout(2400)
def test_check_records_the_dl4j_import_in_the_manifest(
    capsys: pytest.CaptureFixture[str], zoo
) -> None:
    """The zoo's tiny-mlp (onnx.helper: unnamed nodes, MatMul) is refused by DL4J 1.0.0-M2.1
    as it is; pulled --for dl4j, its rewritten copy imports and matches. Both are recorded."""
    for tool in ("java", "mvn"):
        assert shutil.which(tool), f"{tool} is not installed: the DL4J check needs it (CI has it)"
    assert _cli(capsys, "pull", "onnx:tiny-mlp", "--for", "dl4j")[0] == 0
    code, out, err = _cli(capsys, "check", "onnx:tiny-mlp", "--importer", "dl4j", "--json")
    results = {Path(r["path"]).name: r for r in json.loads(out)}
    assert set(results) == {"tiny-mlp-13.onnx", "tiny-mlp-13.dl4j.onnx"}
    assert all(r["format"] == "onnx" and Path(r["path"]).is_file() for r in results.values())
    # Any refused form makes the check exit 5; the refusal is the importer's own error.
    assert code == 5, err
    original, ready = results["tiny-mlp-13.onnx"], results["tiny-mlp-13.dl4j.onnx"]
    assert original["ok"] is False and original["max_abs_diff"] is None
    assert "the importer skipped the 3 of 3 nodes that have no name" in original["error"]
    assert ready["ok"], f"DL4J refused the rewritten tiny MLP: {ready['error']}"
    assert ready["max_abs_diff"] is not None and ready["max_abs_diff"] <= 1e-4
    doc = json.loads(_cli(capsys, "info", "onnx:tiny-mlp", "--json")[1])
    staged = {Path(s["path"]).name: s for s in doc["staged"]}
    dl4j = staged["tiny-mlp-13.dl4j.onnx"]["imports"]["dl4j"]
    assert dl4j["ok"] is True and dl4j["version"].startswith("1.0.0-M2")
    assert dl4j["max_abs_diff"] == ready["max_abs_diff"] and dl4j["checked_on"]
    refused = staged["tiny-mlp-13.onnx"]["imports"]["dl4j"]
    assert refused["ok"] is False and refused["error"] == original["error"]
    listed = json.loads(_cli(capsys, "list", "--json")[1])
    imports = {Path(s["path"]).name: s["imports"]["dl4j"]["ok"] for s in listed[0]["staged"]}
    assert imports == {"tiny-mlp-13.onnx": False, "tiny-mlp-13.dl4j.onnx": True}
    # The harness is built once per version of its sources: a second check reuses it.
    root = Path(os.environ["MODELHUB_PATH"]) / ".modelhub" / "cache" / "dl4j"
    [build] = list(root.iterdir())
    jar = build / "target" / "modelhub-dl4j-harness.jar"
    stamp = jar.stat().st_mtime_ns
    assert _cli(capsys, "check", "--all", "--importer", "dl4j")[0] == 5
    assert jar.stat().st_mtime_ns == stamp
    # A fixture changed since staging (other numbers, still a valid .npz) is not trusted: the
    # file is not sent to DL4J and its check fails, saying how to repair.
    import numpy as np

    fixture = Path(staged["tiny-mlp-13.dl4j.onnx"]["fixture"]["abspath"])
    with np.load(fixture) as arrays:
        changed = {k: arrays[k] + 1 for k in arrays.files}
    with open(fixture, "wb") as fh:
        np.savez(fh, **changed)
    code, out, _ = _cli(capsys, "check", "onnx:tiny-mlp", "--importer", "dl4j", "--json")
    results = {Path(r["path"]).name: r for r in json.loads(out)}
    damaged = results["tiny-mlp-13.dl4j.onnx"]
    assert code == 5 and damaged["ok"] is False and damaged["max_abs_diff"] is None
    assert "changed since staging" in damaged["error"] and "verify --repair" in damaged["error"]

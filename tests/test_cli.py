"""The command line, called with argv lists, and as a real process for exit codes and streams."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from modelhub.cli.main import main
from tests.support.onnx_models import make_mlp


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``python -m modelhub ARGS`` as a separate process with the test's environment."""
    return subprocess.run(
        [sys.executable, "-m", "modelhub", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=120,
    )


def test_pull_prints_path_on_stdout(zoo, store_root: Path, capsys) -> None:
    assert main(["pull", "onnx:tiny-mlp"]) == 0
    out, _ = capsys.readouterr()
    assert out.strip() == str(store_root / "onnx" / "tiny-mlp-13.onnx")


def test_pull_several_json(zoo, store_root: Path, capsys) -> None:
    assert main(["pull", "onnx:tiny-mlp", "onnx:other-mlp", "--jobs", "2", "--json"]) == 0
    docs = json.loads(capsys.readouterr().out)
    assert [d["ref"] for d in docs] == ["onnx:tiny-mlp", "onnx:other-mlp"]
    assert all(Path(d["path"]).is_file() for d in docs)


def test_info_list_verify_rm(zoo, store_root: Path, capsys) -> None:
    main(["pull", "onnx:tiny-mlp", "onnx:other-mlp"])
    capsys.readouterr()
    assert main(["info", "onnx:tiny-mlp", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["revision"] == zoo.sha("tiny-mlp-13.onnx")
    assert main(["info", "onnx:tiny-mlp"]) == 0
    assert "sha256:" + zoo.sha("tiny-mlp-13.onnx") in capsys.readouterr().out
    assert main(["list"]) == 0
    listing = capsys.readouterr().out
    assert "onnx:tiny-mlp" in listing and "onnx:other-mlp" in listing
    assert main(["list", "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)) == 2
    assert main(["verify"]) == 0
    assert capsys.readouterr().out.count("ok") == 2
    assert main(["rm", "onnx:other-mlp"]) == 0
    assert not (store_root / "onnx" / "other-mlp-13.onnx").exists()
    assert (store_root / "onnx" / "tiny-mlp-13.onnx").exists()


def test_verify_catches_corruption(zoo, store_root: Path) -> None:
    assert run("pull", "onnx:tiny-mlp").returncode == 0
    target = store_root / "onnx" / "tiny-mlp-13.onnx"
    data = bytearray(target.read_bytes())
    data[-1] ^= 0xFF
    target.write_bytes(bytes(data))
    proc = run("verify", "onnx:tiny-mlp")
    assert proc.returncode == 5
    assert "FAILED onnx:tiny-mlp" in proc.stdout
    assert "sha256" in proc.stderr


# With Keras installed a misspelt application is "not found" with a suggestion; without it the
# hub says what to install (usage error). Either way: one line, the contract's code.
_KERAS_CASE = (
    (3, "did you mean ResNet50")
    if importlib.util.find_spec("keras")
    else (2, "pip install 'modelhub[tensorflow]'")
)


def test_errors_are_one_line_with_exit_codes(zoo) -> None:
    cases = [
        (("pull", "onnx:../../etc/passwd"), 2, "invalid reference"),
        (("pull", "keras:resnet50"), *_KERAS_CASE),
        (("pull", "onnx:no-such-model"), 3, "no model 'no-such-model'"),
        (("path", "onnx:tiny-mlp"), 3, "not in the store"),
        (("info", "onnx:tiny-mlp"), 3, "not in the store"),
        (("pull", "onnx:other-mlp", "--offline"), 6, "offline"),
    ]
    for args, code, text in cases:
        proc = run(*args)
        assert proc.returncode == code, (args, proc.stderr)
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("modelhub: error:"), proc.stderr
        assert text in lines[0]
        assert "Traceback" not in proc.stderr
        assert proc.stdout == ""


def test_wrong_sha256_leaves_nothing(tmp_path: Path, store_root: Path) -> None:
    from tests.support.httpserver import HTTPTestServer

    data = make_mlp(tmp_path / "m.onnx").read_bytes()
    with HTTPTestServer({"/files/m.onnx": data}) as server:
        proc = run("pull", f"url:{server.url}/files/m.onnx", "--sha256", "ab" * 32)
        assert proc.returncode == 5, proc.stderr
        assert "sha256" in proc.stderr
        stored = (
            store_root / "onnx" / f"127.0.0.1_{server.url.rsplit(':', 1)[1]}" / "files" / "m.onnx"
        )
        assert not stored.exists()
        good = hashlib.sha256(data).hexdigest()
        proc = run("pull", f"url:{server.url}/files/m.onnx", "--sha256", good)
        assert proc.returncode == 0, proc.stderr
        assert Path(proc.stdout.strip()) == stored
        assert stored.read_bytes() == data


def test_url_pull_of_other_files_is_stored_unstaged(tmp_path: Path, store_root: Path) -> None:
    from tests.support.httpserver import HTTPTestServer

    with HTTPTestServer({"/w/weights.safetensors": b"\x00" * 100}) as server:
        proc = run("pull", f"url:{server.url}/w/weights.safetensors")
        assert proc.returncode == 0, proc.stderr
        host = f"127.0.0.1_{server.url.rsplit(':', 1)[1]}"
        assert (
            Path(proc.stdout.strip()) == store_root / "pytorch" / host / "w" / "weights.safetensors"
        )
        assert "modelhub: note:" in proc.stderr and "stored as it is" in proc.stderr
        proc = run("pull", f"url:{server.url}/w/weights.safetensors", "--stage", "onnx")
        assert proc.returncode == 2
        assert "staging needs torch:NAME or a TorchScript file" in proc.stderr


def test_cache_hit_imports_no_framework_and_makes_no_request(zoo, store_root: Path) -> None:
    assert run("pull", "onnx:tiny-mlp").returncode == 0
    before = len(zoo.server.requests)
    code = (
        "import sys; from modelhub.cli.main import main; rc = main(['pull', 'onnx:tiny-mlp']); "
        "rc2 = main(['path', 'onnx:tiny-mlp']); "
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in "
        "{'onnx', 'onnxruntime', 'numpy', 'torch', 'tensorflow', 'keras', 'huggingface_hub', "
        "'httpx', 'aiohttp', 'tqdm'}); print(rc, rc2, heavy, file=sys.stderr)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.stderr.strip().endswith("0 0 []"), proc.stderr
    assert len(zoo.server.requests) == before


def test_import_local_onnx(tmp_path: Path, store_root: Path) -> None:
    src = make_mlp(tmp_path / "mine.onnx", seed=9)
    proc = run("import", str(src), "--as", "onnx:mine")
    assert proc.returncode == 0, proc.stderr
    stored = store_root / "onnx" / "mine.onnx"
    assert Path(proc.stdout.strip()) == stored
    assert stored.read_bytes() == src.read_bytes()
    info = json.loads(run("info", "onnx:mine", "--json").stdout)
    assert info["staged"][0]["inputs"] == ["x"]
    assert run("import", str(tmp_path / "missing.onnx"), "--as", "onnx:x").returncode == 3


def test_usage_errors_exit_2() -> None:
    assert run("pull").returncode == 2
    assert run("frobnicate").returncode == 2
    assert run("pull", "onnx:x", "--stage", "tflite").returncode == 2


@pytest.mark.parametrize("args", [["--version"], ["--help"]])
def test_version_and_help(args: list[str]) -> None:
    proc = run(*args)
    assert proc.returncode == 0
    assert "modelhub" in proc.stdout

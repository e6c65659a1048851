"""The fault table's summary: the block printed at the end of a run, and the files it leaves.

A pytest plugin (the faults conftest imports its hooks; ``-p tests.faults.summary`` loads it
alone). Every ``test_fault[hub-fault]`` item is tagged with its cell (``fault_row``) when it is
collected, so every report of it (setup, call, teardown) names the cell, whatever phase ended it.
A cell is, from its reports:

    FAILED    any phase failed (an error in a fixture included)
    xfail     the row called ``pytest.xfail``: a known limit, shown and not counted as a case
    skipped   the row (or its setup) called ``pytest.skip``: it did not run, so it is a case
              that was not survived, never a known limit
    ok / exit N / killed   the row passed: its ``outcome`` property says how the first run ended

At the end of the run the block is printed and two files are written to ``$OUT_ENV`` (default
``.cache/`` in the repository):

    fault-table.json  this run's result: every cell, the skipped and failed ones, whether the
                      whole table ran (``.ci/run`` fails on a skip or a missing cell)
    fault-table.md    the printed block, fenced, only after a run that passed, ran every cell
                      and the hostile inputs (a run ``make test`` makes): ``make test`` then
                      writes it into README.md (``scripts/update_readme_table.py``)
"""

from __future__ import annotations

import json
import os
import textwrap
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.faults.hubs import FAULTS, HUBS, PATHS, REPO

OUT_ENV = "MODELHUB_FAULT_TABLE_DIR"
TABLE_FILE = "fault-table.md"
RESULT_FILE = "fault-table.json"
ROW_KEY = "fault_row"
HOSTILE = "tests/test_hostile"
FAULTS_DIR = "tests/faults/"
LEGEND = (
    "  (ok: survived in one run; exit N: the contract's code, nothing half-written, and the",
    "   next run recovered; killed: SIGKILL, then the next run recovered; xfail: a known limit,",
    "   not counted; skipped: did not run, counted as not survived; <fault>@shaped: the same",
    "   fault over tests/support/shaper.py's link, 8 MiB/s per connection and 20 ms RTT, where",
    "   modelhub's transfer goes parallel)",
)
# A cell of the shaped path is the row ``<fault>@shaped`` (the loopback path's rows keep their
# plain fault names): the grid shows both paths, one row per fault and path.
SHAPED = "@shaped"
ROWS = (*FAULTS, *(f"{f}{SHAPED}" for f in FAULTS))
RATIO_FAULTS = tuple(
    f"{f}{suffix}" for suffix in ("", SHAPED) for f in ("reset", "truncated", "kill_download")
)


def row_name(fault: str, path: str) -> str:
    """The grid row of ``fault`` on ``path`` ("loopback" or "shaped")."""
    return fault if path == PATHS[0] else f"{fault}@{path}"


def out_dir() -> Path:
    """Where the summary writes its files: ``$MODELHUB_FAULT_TABLE_DIR``, else ``.cache/``."""
    return Path(os.environ.get(OUT_ENV) or REPO / ".cache")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tag each ``test_fault[hub-fault]`` item with its cell, before any phase runs."""
    for item in items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        if getattr(item, "originalname", "") == "test_fault" and {"hub", "fault"} <= set(params):
            row = row_name(params["fault"], params.get("path", PATHS[0]))
            item.user_properties.append((ROW_KEY, f"{params['hub']}/{row}"))


# --- cells ---------------------------------------------------------------------------------------
@dataclass
class Cell:
    """One hub × fault case as this run ended it."""

    hub: str
    fault: str
    state: str = "passed"  # passed | xfail | skipped | FAILED
    outcome: str = "ok"  # the row's own account: ok | exit N: <error line> | killed
    reason: str = ""  # why it was skipped, or the known limit
    props: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        """What the grid shows for this cell."""
        if self.state == "passed":
            return self.outcome.split(":")[0]
        return self.state

    def number(self, key: str) -> int:
        """An integer property the row recorded (0 when absent)."""
        return int(self.props.get(key) or 0)


def _reason(report: pytest.TestReport) -> str:
    if hasattr(report, "wasxfail"):
        return str(report.wasxfail).removeprefix("reason: ")
    longrepr = report.longrepr
    text = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
    return text.removeprefix("Skipped: ")


def cells_of(reports: Iterable[pytest.TestReport]) -> dict[tuple[str, str], Cell]:
    """The fault table's cells, from every report of the run (any phase, any outcome)."""
    cells: dict[tuple[str, str], Cell] = {}
    for report in reports:
        props = dict(report.user_properties)
        if ROW_KEY not in props:
            continue
        hub, fault = str(props[ROW_KEY]).split("/")
        cell = cells.setdefault((hub, fault), Cell(hub, fault))
        cell.props.update(props)
        if report.failed:
            cell.state = "FAILED"
        elif report.skipped and cell.state != "FAILED":
            xfail = hasattr(report, "wasxfail")
            if xfail or cell.state != "xfail":
                cell.state, cell.reason = ("xfail" if xfail else "skipped"), _reason(report)
        if report.when == "call" and report.passed:
            cell.outcome = str(props.get("outcome", "ok"))
    return cells


def _all_reports(stats: dict[str, list[Any]]) -> list[pytest.TestReport]:
    return [
        r
        for key in ("passed", "failed", "error", "skipped", "xfailed", "xpassed")
        for r in stats.get(key, [])
        if isinstance(r, pytest.TestReport)
    ]


# --- the block -----------------------------------------------------------------------------------
def headline_and_grid(cells: dict[tuple[str, str], Cell]) -> list[str]:
    """The headline and the hub × fault grid of ``cells`` (the first lines of the block)."""
    states = [c.state for c in cells.values()]
    known, skipped, failed = (states.count(s) for s in ("xfail", "skipped", "FAILED"))
    cases = len(cells) - known
    hubs = sorted({hub for hub, _ in cells})
    faults = [f for f in ROWS if any(f == fault for _, fault in cells)]
    lines = [
        f"faults survived: {states.count('passed')}/{cases} hub x fault cases "
        f"({len(hubs)} hubs x {len(faults)} faults and links; {known} known limit(s) (xfail), "
        "not counted; "
        f"{skipped} skipped; {failed} failed)"
    ]
    if cells:
        width = max(len(f) for f in faults) + 2
        lines.append(" " * (width + 2) + "".join(f"{h:>9}" for h in hubs))
        for fault in faults:
            row = "".join(f"{_label(cells, h, fault):>9}" for h in hubs)
            lines.append(f"  {fault:<{width}}{row}")
    return lines


def _label(cells: dict[tuple[str, str], Cell], hub: str, fault: str) -> str:
    cell = cells.get((hub, fault))
    return cell.label if cell else "-"


def _wrapped(prefix: str, text: str) -> list[str]:
    return textwrap.wrap(
        f"{prefix}{text}", width=96, initial_indent="  ", subsequent_indent="      "
    )


def block(cells: dict[tuple[str, str], Cell], hostile: list[pytest.TestReport]) -> list[str]:
    """Every line of the summary that does not depend on ``-v``: what README.md shows."""
    lines = headline_and_grid(cells)
    lines += LEGEND
    for (hub, fault), cell in sorted(cells.items()):
        if cell.state in ("skipped", "xfail"):
            kind = "skipped" if cell.state == "skipped" else "known limit"
            lines += _wrapped(f"{kind} {hub}/{fault}: ", cell.reason)
        elif cell.state == "FAILED":
            lines.append(f"  FAILED {hub}/{fault}")
    hubs = sorted({hub for hub, _ in cells})
    ratio_rows = []
    for fault in RATIO_FAULTS:
        row = ""
        for hub in hubs:
            cell = cells.get((hub, fault))
            size = cell.number("file_size") if cell else 0
            ok = cell is not None and cell.state == "passed" and size
            row += f"{cell.number('bytes_fetched') / size:>8.2f}x" if ok else f"{'-':>9}"
        if row.strip("- "):
            ratio_rows.append(f"  {fault:<23}{row}")
    if ratio_rows:
        lines.append("bytes fetched / file size (resume, not restart: < 1.3x)")
        lines.append(" " * 25 + "".join(f"{h:>9}" for h in hubs))
        lines += ratio_rows
    if hostile:
        refused = sum(r.passed for r in hostile)
        lines.append(f"hostile inputs tried: {len(hostile)} ({refused} refused cleanly)")
    else:
        lines.append("hostile inputs: not run in this session (tests/test_hostile.py)")
    lost = sum(c.number("bytes_lost") for c in cells.values())
    unverifiable = sum(c.number("bytes_unverifiable") for c in cells.values())
    extra = f" (and {unverifiable} bytes accepted where upstream publishes no hash: xfail cells)"
    lines.append(f"bytes lost: {lost}" + (extra if unverifiable else ""))
    return lines


# --- the files -----------------------------------------------------------------------------------
def result(
    cells: dict[tuple[str, str], Cell], reports: list[pytest.TestReport], exitstatus: int
) -> dict[str, Any]:
    """This run's fault-table result, as ``fault-table.json`` holds it."""
    missing = [f"{h}/{f}" for h in HUBS for f in ROWS if (h, f) not in cells]
    others = [
        r
        for r in reports
        if r.nodeid.startswith(FAULTS_DIR) and ROW_KEY not in dict(r.user_properties)
    ]
    return {
        "complete": not missing,
        "exitstatus": int(exitstatus),
        "cells": {f"{h}/{f}": c.label for (h, f), c in sorted(cells.items())},
        "missing": missing,
        "skipped": {
            f"{h}/{f}": c.reason for (h, f), c in sorted(cells.items()) if c.state == "skipped"
        },
        "failed": sorted(f"{h}/{f}" for (h, f), c in cells.items() if c.state == "FAILED"),
        "known_limits": {
            f"{h}/{f}": c.reason for (h, f), c in sorted(cells.items()) if c.state == "xfail"
        },
        "skipped_tests": {
            r.nodeid: _reason(r) for r in others if r.skipped and not hasattr(r, "wasxfail")
        },
    }


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, exitstatus: int) -> None:
    """Print the block; write this run's result, and the block after a full, passing run."""
    reports = _all_reports(terminalreporter.stats)
    cells = cells_of(reports)
    hostile = [r for r in reports if r.when == "call" and r.nodeid.startswith(HOSTILE)]
    if not cells and not hostile:
        return
    lines = block(cells, hostile)
    tw = terminalreporter
    tw.section("modelhub fault table")
    for line in lines:
        tw.line(line)
    if tw.verbosity > 0:  # pytest -v: the error line each failing first run printed
        for (hub, fault), cell in sorted(cells.items()):
            if ": " in cell.outcome:
                tw.line(f"  {hub}/{fault}: {cell.outcome}")
    if not cells:
        return
    found = result(cells, reports, exitstatus)
    _write(out_dir() / RESULT_FILE, json.dumps(found, indent=2, sort_keys=True) + "\n")
    if found["complete"] and hostile and exitstatus == 0:
        _write(out_dir() / TABLE_FILE, "```\n" + "\n".join(lines) + "\n```\n")
        tw.line(f"(written to {out_dir() / TABLE_FILE}; `make test` puts it into README.md)")

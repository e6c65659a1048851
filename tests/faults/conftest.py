"""Fixtures of the fault table: the seed store and mirror (once per session), a fault proxy per
test, and the summary printed at the end of the run (faults survived, hostile inputs tried,
bytes lost)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.faults.hubs import FAULTS, REPO, Scenario, SeedStore, environment, why_not
from tests.faults.proxy import FaultProxy


@pytest.fixture(scope="session")
def seed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeedStore]:
    """The seed store, served by one mirror (``modelhub serve``) for the whole session."""
    from modelhub.mirror.app import BackgroundMirror

    base = tmp_path_factory.mktemp("fault-seed")
    seeds = SeedStore(base / "store", base / "work")
    mirror = BackgroundMirror(seeds.store.root)
    seeds.mirror_url = mirror.start()
    try:
        yield seeds
    finally:
        mirror.stop()


@pytest.fixture
def proxy(seed: SeedStore) -> Iterator[FaultProxy]:
    """A fresh fault proxy in front of the session's mirror."""
    with FaultProxy(seed.mirror_url) as running:
        yield running


@dataclass
class Case:
    """One hub × fault case: the scenario, the proxy, a store and fresh SDK caches."""

    scenario: Scenario
    proxy: FaultProxy
    tmp: Path
    store: Path
    monkeypatch: pytest.MonkeyPatch
    capsys: pytest.CaptureFixture[str]
    extra_env: dict[str, str] = field(default_factory=dict)
    lost: int = 0  # bytes under final names that are not the served model's
    outcome: str = "ok"  # how the first run ended: "ok", or "exit N: <its error line>"
    unverified: int = 0  # bytes accepted with no upstream hash to check them against

    @property
    def env(self) -> dict[str, str]:
        """The environment of a modelhub process for this case."""
        env = environment(self.tmp, self.scenario, self.proxy.url, self.store)
        env.update(self.extra_env)
        return env

    def ref(self, staging: bool = False) -> str:
        """The reference pulled in this case."""
        return self.scenario.ref_for(self.proxy.url, staging)

    def apply_env(self) -> None:
        """Make this process's environment the case's (for in-process CLI calls)."""
        for key, value in self.env.items():
            if os.environ.get(key) != value:
                self.monkeypatch.setenv(key, value)

    def cli(self, *args: str) -> tuple[int, str, str]:
        """``modelhub ARGS`` in this process (``main(argv)``): (exit code, stdout, stderr)."""
        from modelhub.cli.main import main

        self.apply_env()
        self.capsys.readouterr()
        code = main(list(args))
        out, err = self.capsys.readouterr()
        return code, out, err

    def command(self, *args: str) -> list[str]:
        """The command line of a modelhub process (torch: the runner that registers the net)."""
        module = "tests.faults.runner" if self.scenario.hub == "torch" else "modelhub"
        return [sys.executable, "-m", module, *args]

    def spawn(self, *args: str, **env: str) -> subprocess.Popen[str]:
        """Start ``modelhub ARGS`` as its own process."""
        return subprocess.Popen(
            self.command(*args),
            cwd=REPO,
            env={**self.env, **env},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def run(self, *args: str, timeout: float = 180, **env: str) -> subprocess.CompletedProcess[str]:
        """Run ``modelhub ARGS`` as its own process to the end."""
        return subprocess.run(
            self.command(*args),
            cwd=REPO,
            env={**self.env, **env},
            capture_output=True,
            text=True,
            timeout=timeout,
        )


@pytest.fixture
def make_case(
    seed: SeedStore,
    proxy: FaultProxy,
    tmp_path: Path,
    store_root: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
):
    """``make_case(hub)`` → a :class:`Case` (skips with the reason when the hub cannot run)."""

    def make(hub: str, store: Path | None = None) -> Case:
        reason = why_not(hub)
        if reason:
            pytest.skip(reason)
        scenario = seed.scenario(hub)
        return Case(scenario, proxy, tmp_path, store or store_root, monkeypatch, capsys)

    return make


# --- the summary --------------------------------------------------------------------------------
def _props(report: pytest.TestReport) -> dict[str, object]:
    return dict(report.user_properties)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """One block: the fault table's size and outcome, the hostile inputs tried, bytes lost."""
    stats = terminalreporter.stats
    reports = [
        r
        for key in ("passed", "failed", "skipped", "xfailed", "xpassed")
        for r in stats.get(key, [])
        if isinstance(r, pytest.TestReport)
    ]
    rows = [r for r in reports if r.when == "call" and "fault_row" in _props(r)]
    xfailed = [r for r in rows if r.skipped]
    rows = [r for r in rows if not r.skipped] + xfailed
    skipped_rows = [
        r
        for r in reports
        if r.skipped and "tests/faults/test_fault_table.py::" in r.nodeid and r.when == "setup"
    ]
    hostile = [r for r in reports if r.when == "call" and r.nodeid.startswith("tests/test_hostile")]
    if not rows and not hostile:
        return
    survived = [r for r in rows if r.passed]
    limits = [r for r in rows if r.skipped]
    lost = sum(int(_props(r).get("bytes_lost", 0)) for r in rows)  # type: ignore[call-overload]
    hubs = sorted({str(_props(r)["fault_row"]).split("/")[0] for r in rows})
    tw = terminalreporter
    tw.section("modelhub fault table")
    tw.line(
        f"faults survived: {len(survived)}/{len(rows) - len(limits)} hub x fault cases "
        f"({', '.join(hubs) or '-'}; {len(limits)} known limit(s) (xfail), "
        f"{len(skipped_rows)} skipped)"
    )
    cells: dict[tuple[str, str], str] = {}
    for r in rows:
        hub, fault = str(_props(r)["fault_row"]).split("/")
        outcome = str(_props(r).get("outcome", "ok")).split(":")[0].replace("exit ", "exit ")
        cells[(hub, fault)] = outcome if r.passed or outcome == "xfail" else "FAILED"
    seen = {str(_props(r)["fault_row"]).split("/")[1] for r in rows}
    faults = [f for f in FAULTS if f in seen]
    if cells:
        width = max(len(f) for f in faults) + 2
        tw.line(" " * (width + 2) + "".join(f"{h:>9}" for h in hubs))
        for fault in faults:
            tw.line(
                f"  {fault:<{width}}" + "".join(f"{cells.get((h, fault), '-'):>9}" for h in hubs)
            )
    tw.line(
        "  (ok: survived in one run; exit N: the contract's code, nothing half-written, and the"
    )
    tw.line("   next run recovered; killed: SIGKILL, then the next run recovered)")
    for r in rows:
        if r.failed:
            tw.line(f"  FAILED {_props(r)['fault_row']}")
    if terminalreporter.verbosity > 0:  # pytest -v: the error line each failing run printed
        for r in rows:
            outcome = str(_props(r).get("outcome", "ok"))
            if ": " in outcome:
                tw.line(f"  {_props(r)['fault_row']}: {outcome}")
    ratios = []
    for r in rows:
        hub, fault = str(_props(r)["fault_row"]).split("/")
        size = int(_props(r).get("file_size") or 0)  # type: ignore[call-overload]
        if fault in ("reset", "truncated", "kill_download") and size:
            fetched = int(_props(r).get("bytes_fetched") or 0)  # type: ignore[call-overload]
            ratios.append(f"{hub}/{fault} {fetched / size:.2f}x")
    if ratios:
        tw.line("bytes fetched / file size (resume, not restart; < 1.3x): " + ", ".join(ratios))
    tw.line(
        f"hostile inputs tried: {len(hostile)} ({sum(r.passed for r in hostile)} refused cleanly)"
    )
    unverifiable = sum(int(_props(r).get("bytes_unverifiable", 0)) for r in rows)  # type: ignore[call-overload]
    tw.line(
        f"bytes lost: {lost}"
        + (
            f" (and {unverifiable} bytes accepted where upstream publishes no hash: xfail cells)"
            if unverifiable
            else ""
        )
    )

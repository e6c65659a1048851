"""Fixtures of the fault table: the seed store and mirror (once per session), a fault proxy per
test; and the summary printed at the end of the run (faults survived, hostile inputs tried,
bytes lost), whose hooks live in :mod:`tests.faults.summary`."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.faults.hubs import (
    REPO,
    SHAPED_RATE,
    SHAPED_RTT,
    Scenario,
    SeedStore,
    environment,
    why_not,
)
from tests.faults.proxy import FaultProxy
from tests.faults.summary import (  # the summary's hooks, registered with this conftest
    pytest_collection_modifyitems as pytest_collection_modifyitems,
)
from tests.faults.summary import pytest_terminal_summary as pytest_terminal_summary
from tests.support.shaper import LinkShaper


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
    path: str = "loopback"  # the link: "loopback", or "shaped" (the shaper before the proxy)
    front: str = ""  # the URL clients use: the shaper's on the shaped path, else the proxy's
    link: LinkShaper | None = None  # the shaper on the shaped path

    @property
    def url(self) -> str:
        """Where clients connect: the proxy, or the link shaper in front of it."""
        return self.front or self.proxy.url

    @property
    def env(self) -> dict[str, str]:
        """The environment of a modelhub process for this case."""
        env = environment(self.tmp, self.scenario, self.url, self.store)
        env.update(self.extra_env)
        return env

    def ref(self, staging: bool = False) -> str:
        """The reference pulled in this case."""
        return self.scenario.ref_for(self.url, staging)

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
) -> Iterator[object]:
    """``make_case(hub, path="loopback")`` → a :class:`Case` (skips with the reason when the
    hub cannot run); ``path="shaped"`` puts a link shaper in front of the fault proxy."""
    with contextlib.ExitStack() as stack:

        def make(hub: str, store: Path | None = None, path: str = "loopback") -> Case:
            reason = why_not(hub)
            if reason:
                pytest.skip(reason)
            front, link = "", None
            if path == "shaped":
                link = LinkShaper(proxy.url, rate=SHAPED_RATE, rtt=SHAPED_RTT)
                front = stack.enter_context(link).url
            scenario = seed.scenario(hub)
            bound = scenario.bound(front or proxy.url)
            case = Case(bound, proxy, tmp_path, store or store_root, monkeypatch, capsys)
            case.path, case.front, case.link = path, front, link
            return case

        yield make

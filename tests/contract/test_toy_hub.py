"""Adding a hub is one adapter class and one registry row: the toy hub, defined only in
``toy_hub.py`` (no edit anywhere else), gets the whole contract suite — pulls through the
mirror, the offline cache hit, import, ``outdated`` and ``sync`` — in a pytest run of its own
(the registry is process-wide, so the toy never leaks into the rest of the suite)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_a_toy_hub_gets_the_whole_contract_suite() -> None:
    from tests.contract import test_contract

    tests = [name for name in dir(test_contract) if name.startswith("test_")]
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-p",
            "tests.contract.toy_plugin",
            "tests/contract/test_contract.py",
            "-k",
            "toy",
        ],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=600,
    )
    summary = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else proc.stderr
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    passed = re.search(r"(\d+) passed", summary)
    assert passed and int(passed.group(1)) == len(tests), summary
    assert "skipped" not in summary and "deselected" in summary, summary

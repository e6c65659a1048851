"""The hub contract, by construction: every registered hub (``supported_hubs()``, i.e. every
registry row) gets the same suite — reference round trip, pull → path → info → verify → rm,
an offline cache hit that makes no request, import of what a pull left, ``outdated``, and
``sync`` with its lock. The fault table (tests/faults) runs every fault against every hub the
same way.

A hub's fixture is its scenario in ``tests/faults/hubs.py`` (``BUILDERS``: one small real model
built into a seed store that ``modelhub serve`` serves). A registered hub without one fails
here, naming what to add; it is never skipped.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from modelhub.hubs import supported_hubs
from modelhub.refs import parse
from tests.faults.hubs import BUILDERS, Scenario, SeedStore, environment, why_not
from tests.faults.proxy import FaultProxy

HUBS = supported_hubs()


class Cli:
    """modelhub's command line in this process, in a scenario's environment."""

    def __init__(
        self,
        scenario: Scenario,
        proxy: FaultProxy,
        tmp: Path,
        store: Path,
        monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        self.scenario, self.proxy, self.store = scenario.bound(proxy.url), proxy, store
        self.env = environment(tmp, scenario, proxy.url, store)
        self.monkeypatch, self.capsys = monkeypatch, capsys
        self.ref = scenario.ref_for(proxy.url)

    def __call__(self, *args: str, **env: str) -> tuple[int, str, str]:
        """``modelhub ARGS``: (exit code, stdout, stderr)."""
        from modelhub.cli.main import main

        for key, value in {**self.env, **env}.items():
            self.monkeypatch.setenv(key, value)
        self.capsys.readouterr()
        code = main(list(args))
        out, err = self.capsys.readouterr()
        return code, out, err

    def pull(self, *extra: str, **env: str) -> tuple[int, str, str]:
        """Pull the scenario's model with its cheapest options."""
        return self("pull", self.ref, *self.scenario.transport_args, *extra, **env)


def _scenario(seed: SeedStore, hub: str) -> Scenario:
    if hub not in BUILDERS:
        pytest.fail(
            f"the registered hub {hub!r} has no contract fixture: add a scenario builder for it "
            "to tests/faults/hubs.py BUILDERS (one small real model the mirror serves)"
        )
    reason = why_not(hub)
    if reason:
        pytest.fail(f"{hub}: cannot run its contract here: {reason}")
    return seed.scenario(hub)


@pytest.fixture(params=HUBS)
def cli(
    request: pytest.FixtureRequest,
    seed: SeedStore,
    proxy: FaultProxy,
    tmp_path: Path,
    store_root: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> Cli:
    """The command line for one registered hub's scenario, with an empty store."""
    scenario = _scenario(seed, request.param)
    return Cli(scenario, proxy, tmp_path, store_root, monkeypatch, capsys)


def _ok(result: tuple[int, str, str], what: str) -> str:
    code, out, err = result
    assert code == 0, f"{what}: exit {code}: {err.strip()}"
    return out


def test_reference_round_trip(cli: Cli) -> None:
    ref = parse(cli.ref)
    assert ref.hub == cli.scenario.hub
    assert parse(ref.canonical) == ref
    assert parse(ref.canonical).canonical == ref.canonical


def test_pull_path_info_verify_rm(cli: Cli) -> None:
    out = _ok(cli.pull(), "pull")
    primary = Path(out.strip().splitlines()[-1])
    assert primary.exists(), primary
    assert _ok(cli("path", cli.ref), "path").strip() == str(primary)
    doc = json.loads(_ok(cli("info", cli.ref, "--json"), "info"))
    assert doc["ref"] == parse(cli.ref).canonical and doc["hub"] == cli.scenario.hub
    stored = {f["path"]: (f["sha256"], f["size"]) for f in doc["files"]}
    assert stored == cli.scenario.files
    assert "ok" in _ok(cli("verify", cli.ref), "verify")
    _ok(cli("rm", cli.ref), "rm")
    assert not any((cli.store / rel).exists() for rel in cli.scenario.files)
    code, _, err = cli("path", cli.ref)
    assert code == 3, err


def test_offline_cache_hit_makes_no_request(cli: Cli) -> None:
    _ok(cli.pull(), "pull")
    before = len(cli.proxy.log)
    _ok(cli.pull(MODELHUB_OFFLINE="1"), "offline pull")
    _ok(cli.pull(), "second pull")
    assert cli.proxy.log[before:] == [], [e.path for e in cli.proxy.log[before:]]


def test_import_what_a_pull_left(cli: Cli, store_b: Path) -> None:
    out = _ok(cli.pull(), "pull")
    doc = json.loads(_ok(cli("info", cli.ref, "--json"), "info"))
    folder = doc["details"].get("folder")
    source = cli.store / (folder or doc["files"][0]["path"])
    assert source.exists(), out
    _ok(cli("import", str(source), "--as", cli.ref, MODELHUB_PATH=str(store_b)), "import")
    imported = json.loads(
        _ok(cli("info", cli.ref, "--json", MODELHUB_PATH=str(store_b)), "info (imported)")
    )
    assert {(f["path"], f["sha256"]) for f in imported["files"]} == {
        (f["path"], f["sha256"]) for f in doc["files"]
    }


def test_outdated_after_a_pull(cli: Cli) -> None:
    _ok(cli.pull(), "pull")
    code, out, err = cli("outdated", cli.ref, "--json")
    doc = json.loads(out)
    [status] = doc["models"]
    assert status["state"] in ("current", "unknown"), status
    assert code == 0, err


# pull options as model-set keys, and how each value is written in TOML
_TOML_KEYS = {
    "--stage": ("stage", json.dumps),
    "--sha256": ("sha256", json.dumps),
    "--input-shape": ("input_shape", json.dumps),
    "--alpha": ("alpha", str),
}


def _model_table(ref: str, args: list[str]) -> str:
    """One ``[[model]]`` table pulling ``ref`` as ``pull REF ARGS`` would."""
    lines = ["[[model]]", f"ref = {json.dumps(ref)}"]
    for flag, value in zip(args[::2], args[1::2], strict=True):
        if flag not in _TOML_KEYS:
            pytest.fail(f"{flag} has no key in a model set (add it to modelhub.modelset)")
        key, write = _TOML_KEYS[flag]
        lines.append(f"{key} = {write(value)}")
    return "\n".join(lines) + "\n"


def test_sync_writes_a_lock_and_installs_it_again(cli: Cli, tmp_path: Path, store_b: Path) -> None:
    toml = tmp_path / "modelhub.toml"
    toml.write_text(_model_table(cli.ref, cli.scenario.transport_args))
    _ok(cli("sync", str(toml), "--jobs", "1"), "sync")
    lock = json.loads((tmp_path / "modelhub.lock").read_text())
    assert [m["ref"] for m in lock["models"]] == [parse(cli.ref).canonical]
    _ok(cli("sync", str(toml), "--locked", MODELHUB_PATH=str(store_b)), "sync --locked")
    assert all((store_b / rel).is_file() for rel in cli.scenario.files)

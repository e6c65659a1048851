"""A user's first hour with the command line (issue 19, points 6-12): sync's lock per model
set, a documented "changes found" exit code, setup mistakes answered in one line, storage
per hub, errors that name the way out, and the options people expect."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from modelhub.cli.main import build_parser, main
from modelhub.errors import EXIT_CHANGES
from tests.support.httpserver import HTTPTestServer
from tests.support.onnx_models import make_mlp
from tests.support.privileges import chmod_tree, without_dac_override

README = Path(__file__).resolve().parents[1] / "README.md"


def run(*args: str, env: dict[str, str] | None = None, timeout: float = 120):
    """``python -m modelhub ARGS`` as its own process."""
    return subprocess.run(
        [sys.executable, "-m", "modelhub", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=timeout,
    )


def _one_error_line(stderr: str) -> str:
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    return lines[0]


def _toml(path: Path, *models: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f'[[model]]\nref = "{m}"\n\n' for m in models), encoding="utf-8")
    return path


# --- 6: a model set's lock is named after it ----------------------------------------------------
def test_each_model_set_has_its_own_lock(zoo, tmp_path: Path, capsys) -> None:
    dev = _toml(tmp_path / "p" / "dev.toml", "onnx:tiny-mlp")
    prod = _toml(tmp_path / "p" / "prod.toml", "onnx:other-mlp")
    assert main(["sync", str(dev)]) == 0
    assert main(["sync", str(prod)]) == 0
    assert (tmp_path / "p" / "dev.lock").is_file() and (tmp_path / "p" / "prod.lock").is_file()
    assert not (tmp_path / "p" / "modelhub.lock").exists()
    assert "tiny-mlp" in (tmp_path / "p" / "dev.lock").read_text()
    assert "other-mlp" not in (tmp_path / "p" / "dev.lock").read_text()
    assert main(["sync", str(dev), "--locked"]) == 0
    assert main(["sync", str(prod), "--locked"]) == 0
    default = _toml(tmp_path / "q" / "modelhub.toml", "onnx:tiny-mlp")
    assert main(["sync", str(default)]) == 0
    assert (tmp_path / "q" / "modelhub.lock").is_file()
    # --lock FILE overrides the name, for every mode.
    custom = tmp_path / "locks" / "pinned.json"
    custom.parent.mkdir()
    assert main(["sync", str(dev), "--lock", str(custom)]) == 0
    assert custom.is_file()
    assert main(["sync", str(dev), "--locked", "--lock", str(custom)]) == 0
    assert main(["sync", str(dev), "--check", "--lock", str(custom)]) == 0
    capsys.readouterr()
    assert main(["sync", str(dev), "--locked", "--lock", str(tmp_path / "none.lock")]) == 5
    assert "none.lock" in capsys.readouterr().err


def test_a_sync_whose_every_model_failed_writes_no_lock(zoo, tmp_path: Path) -> None:
    project = tmp_path / "project"
    toml = _toml(project / "dev.toml", "onnx:no-such-model", "onnx:nor-this-one")
    assert main(["sync", str(toml)]) == 3
    # No lock of any name (neither dev.lock nor the shared modelhub.lock of old), anywhere but
    # the store's own model locks.
    locks = [p for p in tmp_path.rglob("*.lock") if ".modelhub" not in p.parts]
    assert locks == []
    assert sorted(p.name for p in project.iterdir()) == ["dev.toml"]


@pytest.mark.parametrize(
    ("entry", "words"),
    [
        ('stage = "pb"', ["stage 'pb'", "none, onnx"]),
        ('storage = "compressed"', ["storage 'compressed'"]),
        ('storage = "zip"', ["storage 'zip'"]),
    ],
)
def test_model_set_mistakes_refused_before_any_download_with_their_line(
    zoo, tmp_path: Path, capsys, entry: str, words: list[str]
) -> None:
    toml = tmp_path / "dev.toml"
    toml.write_text(
        '# my models\n[[model]]\nref = "onnx:other-mlp"\n\n'
        f'[[model]]\nref = "onnx:tiny-mlp"\n{entry}\n',
        encoding="utf-8",
    )
    assert main(["sync", str(toml)]) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert f"{toml}:7:" in line, line
    for word in words:
        assert word in line
    assert zoo.server.requests == []  # nothing downloaded, not even the first model
    assert not (tmp_path / "dev.lock").exists()


def test_sync_of_a_folder_and_os_errors_are_one_line(tmp_path: Path) -> None:
    proc = run("sync", str(tmp_path))
    assert proc.returncode == 2
    line = _one_error_line(proc.stderr)
    assert "folder" in line and "modelhub.toml" in line
    bad = tmp_path / "bad.toml"
    bad.write_bytes(b"\xff\xfe\x00not utf-8")
    proc = run("sync", str(bad))
    assert proc.returncode == 2
    assert "bad.toml" in _one_error_line(proc.stderr)


# --- 7: "changes found" has its own exit code ---------------------------------------------------
def test_changes_found_has_its_own_documented_exit_code(tmp_path: Path, capsys) -> None:
    assert EXIT_CHANGES not in range(7)
    with HTTPTestServer({"/m/model.bin": b"first bytes" * 10}) as files:
        ref = f"url:{files.url}/m/model.bin"
        toml = _toml(tmp_path / "set.toml", ref)
        assert main(["sync", str(toml)]) == 0
        assert main(["outdated"]) == 0
        assert main(["sync", str(toml), "--check"]) == 0
        files.add("/m/model.bin", b"other bytes" * 10)
        assert main(["outdated"]) == EXIT_CHANGES
        assert main(["outdated", "--json"]) == EXIT_CHANGES
        assert main(["sync", str(toml), "--check"]) == EXIT_CHANGES
    capsys.readouterr()
    # A failure keeps its contract code, never the "changes" code.
    assert main(["sync", str(toml), "--check", "--lock", str(tmp_path / "no.lock")]) == 3
    readme = README.read_text(encoding="utf-8")
    assert f"| {EXIT_CHANGES} | changes found" in readme
    for name in ("outdated", "sync"):
        helptext = _subparser(name).format_help()
        assert f"exit {EXIT_CHANGES}" in " ".join(helptext.split()), name


def _subparser(name: str):
    parser = build_parser()
    return parser._modelhub_subparsers[name]  # type: ignore[attr-defined]


# --- 8: setup mistakes, one line each, exit 2 ---------------------------------------------------
@pytest.fixture
def busy_port() -> Iterator[int]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(1)
    try:
        yield sock.getsockname()[1]
    finally:
        sock.close()


def test_setup_mistakes_are_one_line_naming_the_setting(tmp_path: Path, busy_port: int) -> None:
    afile = tmp_path / "afile"
    afile.write_text("x")
    cases: list[tuple[list[str], dict[str, str], list[str]]] = [
        (["path", "onnx:mnist"], {"MODELHUB_PATH": str(afile)}, ["MODELHUB_PATH", "folder"]),
        (["list"], {"MODELHUB_PATH": str(afile)}, ["MODELHUB_PATH", "folder"]),
        (
            ["pull", "onnx:mnist"],
            {"MODELHUB_MIRROR": "localhost:8080"},
            ["MODELHUB_MIRROR", "http://"],
        ),
        (["pull", "onnx:mnist"], {"MODELHUB_LINK_MODE": "bogus"}, ["MODELHUB_LINK_MODE", "auto"]),
        (["pull", "onnx:mnist"], {"MODELHUB_TIMEOUT": "abc"}, ["MODELHUB_TIMEOUT", "seconds"]),
        (["serve", "--root", str(tmp_path / "missing")], {}, ["--root", "missing"]),
        (["serve", "--root", str(afile)], {}, ["--root", "folder"]),
        (["serve", "--port", str(busy_port)], {}, [str(busy_port), "--port 0"]),
    ]
    for args, env, words in cases:
        proc = run(*args, env=env, timeout=60)
        assert proc.returncode == 2, (args, env, proc.stderr)
        line = _one_error_line(proc.stderr)
        assert line.startswith("modelhub: error: "), line
        for word in words:
            assert word in line, (args, line)


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["serve", "--port", "99999"], ["serve --port", "'99999'", "0 for any free port"]),
        (["view", "onnx:x", "--port", "-1"], ["view --port", "'-1'", "give 1-65535"]),
        (["pull", "onnx:x", "--jobs", "0"], ["pull --jobs", "'0'", "give 1 or more"]),
        (["pull", "onnx:x", "--jobs", "-3"], ["pull --jobs", "'-3'", "give 1 or more"]),
        (["sync", "--jobs", "0"], ["sync --jobs", "give 1 or more"]),
        (["outdated", "--jobs", "-1"], ["outdated --jobs", "give 1 or more"]),
        (["pull", "onnx:x", "--stage", "pdf"], ["pull --stage", "'pdf'", "choose from", "onnx"]),
        (["pull", "onnx:x", "--alpha", "wide"], ["pull --alpha", "'wide'"]),
        (["pul", "onnx:x"], ["COMMAND", "'pul'", "choose from", "'pull'"]),
    ],
)
def test_bad_values_are_one_line_usage_errors(args: list[str], words: list[str], capsys) -> None:
    """A value an option refuses: one line naming the option and what to give (no usage
    block), exit 2."""
    with pytest.raises(SystemExit) as exc:
        main(args)
    assert exc.value.code == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1, err
    line = _one_error_line(err)
    assert line.startswith("modelhub: error: "), line
    for word in words:
        assert word in line, line
    # As its own process too (the console script's path).
    proc = run(*args, timeout=60)
    assert (proc.returncode, proc.stdout, proc.stderr) == (2, "", err)


def test_read_only_store_is_one_line(zoo, tmp_path: Path) -> None:
    """A store the user cannot write: one line naming MODELHUB_PATH, exit 2, for pull, import
    and rm alike, and nothing of it changed. As root the CLI runs without CAP_DAC_OVERRIDE
    (setpriv), so that the permission bits hold for it too."""
    prefix = without_dac_override()
    store = tmp_path / "ro-store"
    store.mkdir()
    env = {**os.environ, "MODELHUB_PATH": str(store)}
    assert run("pull", "onnx:tiny-mlp", env=env).returncode == 0
    src = make_mlp(tmp_path / "m.onnx", seed=4)
    before = sorted(p.relative_to(store).as_posix() for p in store.rglob("*"))
    chmod_tree(store, 0o555, 0o444)
    try:
        for args in (
            ["pull", "onnx:other-mlp"],
            ["import", str(src), "--as", "onnx:mine"],
            ["rm", "onnx:tiny-mlp"],
        ):
            proc = subprocess.run(
                [*prefix, sys.executable, "-m", "modelhub", *args],
                capture_output=True,
                text=True,
                env=env,
                timeout=120,
            )
            assert proc.returncode == 2, (args, proc.stderr)
            line = _one_error_line(proc.stderr)
            assert "MODELHUB_PATH" in line and str(store) in line, line
    finally:
        chmod_tree(store, 0o755, 0o644)
    assert sorted(p.relative_to(store).as_posix() for p in store.rglob("*")) == before
    assert run("path", "onnx:tiny-mlp", env=env).returncode == 0  # rm removed nothing


# --- 9: --storage compressed only where a hub has a compressed form ----------------------------
def test_storage_compressed_refused_where_there_is_no_compressed_form(
    zoo, store_root: Path, capsys
) -> None:
    assert main(["pull", "onnx:tiny-mlp", "--storage", "compressed"]) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert "--storage compressed" in line and "onnx:tiny-mlp" in line
    # A dry run refuses it as the pull does (never "would fetch").
    assert main(["pull", "onnx:tiny-mlp", "--storage", "compressed", "--dry-run"]) == 2
    assert _one_error_line(capsys.readouterr().err) == line
    assert zoo.server.requests == []
    helptext = " ".join(_subparser("pull").format_help().split())
    assert "tfhub: a SavedModel kept as its downloaded .tar.gz archive" in helptext


# --- 10: errors name the way out ----------------------------------------------------------------
def test_offline_errors_say_which_setting_is_on(zoo, capsys, monkeypatch) -> None:
    assert main(["pull", "onnx:tiny-mlp", "--offline"]) == 6
    assert "--offline" in _one_error_line(capsys.readouterr().err)
    monkeypatch.setenv("MODELHUB_OFFLINE", "1")
    assert main(["pull", "onnx:tiny-mlp"]) == 6
    assert "MODELHUB_OFFLINE" in _one_error_line(capsys.readouterr().err)


def test_unreachable_upstream_mentions_the_mirror(capsys, monkeypatch) -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now
    monkeypatch.setenv("MODELHUB_ONNX_URL", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("MODELHUB_RETRIES", "0")
    assert main(["pull", "onnx:tiny-mlp"]) == 6
    assert "MODELHUB_MIRROR" in _one_error_line(capsys.readouterr().err)


def test_sync_prints_each_failure_once_without_repeating_the_reference(
    zoo, tmp_path: Path, capsys, monkeypatch
) -> None:
    monkeypatch.setenv("MODELHUB_QUIET", "0")
    toml = _toml(tmp_path / "dev.toml", "onnx:tiny-mlp", "onnx:no-such-model")
    assert main(["sync", str(toml)]) == 3
    err = capsys.readouterr().err
    assert "onnx:no-such-model: onnx:no-such-model" not in err
    [error] = [ln for ln in err.splitlines() if ln.startswith("modelhub: error: ")]
    reason = error.split("onnx:no-such-model: ", 1)[1]
    assert len(reason) > 10
    assert sum(reason in ln for ln in err.splitlines()) == 1, err
    assert any("failed onnx:no-such-model" in ln for ln in err.splitlines())  # the progress


def test_pull_error_does_not_repeat_the_reference(zoo, capsys) -> None:
    assert main(["pull", "onnx:no-such-model"]) == 3
    line = _one_error_line(capsys.readouterr().err)
    assert line.count("onnx:no-such-model") <= 1, line


def test_torch_close_names_are_suggested(capsys) -> None:
    pytest.importorskip("torchvision")
    assert main(["pull", "torch:resnet-18", "--offline"]) == 3
    assert "resnet18" in _one_error_line(capsys.readouterr().err)


def test_rm_of_a_model_not_there_does_not_suggest_pull(capsys) -> None:
    assert main(["rm", "onnx:tiny-mlp"]) == 3
    line = _one_error_line(capsys.readouterr().err)
    assert "pull" not in line and "not in the store" in line


# --- 11: the options people expect ----------------------------------------------------------------
def test_quiet_and_verbose_after_the_subcommand(zoo, store_root: Path, tmp_path: Path) -> None:
    """``-q`` silences the chatter and ``-v`` adds the logs, before or after the subcommand
    (own processes: logging is configured once per process)."""
    chatty = {"MODELHUB_QUIET": "0"}
    toml = _toml(tmp_path / "set.toml", "onnx:tiny-mlp")
    loud = run("sync", str(toml), env=chatty)
    assert loud.returncode == 0, loud.stderr
    assert "onnx:tiny-mlp" in loud.stderr and "synced 1/1" in loud.stderr  # progress, summary
    for args in (
        ["sync", str(toml), "-q"],
        ["sync", "--quiet", str(toml)],
        ["-q", "sync", str(toml)],
    ):
        proc = run(*args, env=chatty)
        assert (proc.returncode, proc.stderr) == (0, ""), (args, proc.stderr)
        assert "onnx:tiny-mlp" in proc.stdout  # results still on stdout
    plain = run("pull", "onnx:other-mlp", env=chatty)
    assert plain.returncode == 0 and plain.stderr == "", plain.stderr
    for args in (["pull", "-v", "onnx:tiny-mlp"], ["pull", "onnx:tiny-mlp", "--verbose"]):
        proc = run(*args, env=chatty)
        assert proc.returncode == 0, proc.stderr
        logs = proc.stderr.splitlines()
        assert any(str(store_root) in ln and "link mode" in ln for ln in logs), logs
        assert any("onnx:tiny-mlp: pulling" in ln for ln in logs), logs
        assert all(ln.startswith("modelhub: ") for ln in logs), logs


def test_unknown_flag_prints_the_subcommands_usage(capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["pull", "onnx:x", "--bogus"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: modelhub pull"), err
    assert "--bogus" in err.splitlines()[-1]


def test_capital_v_prints_the_version(capsys) -> None:
    from modelhub import __version__

    with pytest.raises(SystemExit) as exc:
        main(["-V"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip() == f"modelhub {__version__}"


# --- 12: the README synopsis and --help cannot drift from the parser ----------------------------
def _synopsis() -> dict[str, str]:
    """The README's command synopsis: each ``modelhub COMMAND`` entry with its continuation
    lines."""
    text = README.read_text(encoding="utf-8")
    block = text.split("## Command line", 1)[1].split("```text\n", 1)[1].split("```", 1)[0]
    entries: dict[str, str] = {}
    current = None
    for line in block.splitlines():
        if line.startswith("modelhub "):
            current = line.split()[1]
            entries[current] = line
        elif current is not None:
            entries[current] += "\n" + line
    return entries


#: An option in the synopsis (``--stage``, ``-V``), not a hyphenated word (``re-hash``).
_OPTION = re.compile(r"(?<![\w-])(--?[A-Za-z][\w-]*)")
#: An option with the literal values it takes (``--stage auto|none|onnx``, ``--for dl4j``);
#: metavars are upper case (``--jobs N``), defaults start with a digit (``--port 8080``).
_CHOICES = re.compile(r"(--[\w-]+) ([a-z][a-z0-9]*(?:\|[a-z0-9]+)*)(?![\w.:/])")


def _option_strings(parser) -> set[str]:
    return {s for action in parser._actions for s in action.option_strings}


def test_readme_synopsis_lists_every_command_and_option() -> None:
    """The README synopsis and the parser agree both ways: every command, option and choice
    of the CLI is in the README, and every one the README shows is in the CLI."""
    entries = _synopsis()
    top = entries.pop("[-q|--quiet]")
    top_options = _option_strings(build_parser())
    for flag in ("--quiet", "--verbose", "--version", "-V", "-q", "-v"):
        assert flag in top and flag in top_options, flag
    assert set(_OPTION.findall(top)) <= top_options, "README top line: unknown option"
    missing, unknown = [], []
    subparsers = _subparser_map()
    for name, sub in subparsers.items():
        entry = entries.get(name, "")
        if not entry:
            missing.append(f"modelhub {name}")
            continue
        for action in sub._actions:
            longest = max(action.option_strings, key=len, default="")
            wanted = longest and action.dest not in ("help", "quiet", "verbose")
            if wanted and not re.search(rf"{re.escape(longest)}\b", entry):
                missing.append(f"modelhub {name} {longest}")
            for choice in action.choices or ():
                if not re.search(rf"(?<![\w-]){re.escape(str(choice))}(?![\w-])", entry):
                    missing.append(f"modelhub {name} {longest or action.dest} {choice}")
        # The other way: what the README shows, the CLI has.
        options = _option_strings(sub)
        unknown += [f"modelhub {name} {o}" for o in _OPTION.findall(entry) if o not in options]
        for option, values in _CHOICES.findall(entry):
            action = next((a for a in sub._actions if option in a.option_strings), None)
            offered = [str(c) for c in (action.choices or ())] if action else []
            unknown += [
                f"modelhub {name} {option} {v}" for v in values.split("|") if v not in offered
            ]
    assert not missing, "not in the README synopsis: " + ", ".join(missing)
    assert not unknown, "in the README synopsis, not in the CLI: " + ", ".join(unknown)
    assert sorted(entries) == sorted(subparsers), "README lists a command the CLI lacks"


def test_every_subcommand_help_has_the_grammar_examples_and_defaults() -> None:
    """Every subcommand that takes a REF explains the reference grammar in its --help, every
    subcommand shows two or three examples, and serve says its default port."""
    grammar = ("hf:ORG/NAME[@REV][:PATH]", "onnx:NAME[@OPSET]", "url:URL")
    takes_ref = []
    for name, sub in _subparser_map().items():
        helptext = sub.format_help()
        flat = " ".join(helptext.split())
        if any(action.metavar == "REF" for action in sub._actions):
            takes_ref.append(name)
            for part in grammar:
                assert part in flat, (name, part)
        examples = helptext.partition("\nexamples:\n")[2].splitlines()
        assert 2 <= sum("modelhub " in ln for ln in examples) <= 4, (name, examples)
    wanted = {"pull", "path", "info", "push", "verify", "rm", "import", "view", "outdated"}
    assert set(takes_ref) >= wanted | {"check"}
    serve = " ".join(_subparser("serve").format_help().split())
    assert "--port PORT port (default: 8080" in serve, serve


def test_every_option_has_a_help_line() -> None:
    bare = []
    for name, sub in _subparser_map().items():
        for action in sub._actions:
            if not action.help and action.dest != "help":
                bare.append(f"{name} {max(action.option_strings, key=len, default=action.dest)}")
    assert not bare, "options without help: " + ", ".join(bare)


def _subparser_map():
    return build_parser()._modelhub_subparsers  # type: ignore[attr-defined]


def test_outdated_offline_says_which_setting_is_on(capsys, monkeypatch) -> None:
    with HTTPTestServer({"/m/model.bin": b"some bytes" * 10}) as files:
        assert main(["pull", f"url:{files.url}/m/model.bin"]) == 0
    capsys.readouterr()
    monkeypatch.setenv("MODELHUB_OFFLINE", "1")
    assert main(["outdated"]) == 6
    err = capsys.readouterr().err
    assert "MODELHUB_OFFLINE=1 is set" in err, err

"""Every example in the README runs, against the mirror, with no internet (issue 16).

The examples are read from README.md (the blocks between ``<!-- examples:begin -->`` and
``<!-- examples:end -->``: the command line's "Examples:" and the Python API), not copied here,
so an example that is edited, added or stops working fails this test.

The world they run in (module fixture ``world``):

- a seed store holding a stand-in for every model the examples name, under the same reference:
  tiny real models built by fixtures (tests/support/readme_seed.py, ``STAND_INS``): ONNX MLPs
  as the ONNX zoo's MNIST and ResNet50 v1 (pulled from a stand-in zoo, so the mirror lists
  them with the zoo's entries and paths), a tiny BERT for the Hugging Face repo, a tiny
  SavedModel for the TF Hub handle, MobileNetV2's weights file built with Keras for
  ``keras:MobileNetV2`` (Keras publishes no hash for it), a small torch.hub repository for
  ``pytorch/vision`` at v0.10.0 (pulled from a stand-in GitHub), an ONNX file for ``url:``;
- ``modelhub serve`` of that store (BackgroundMirror), behind a recording proxy
  (tests/support/recorder.py), which is ``MODELHUB_MIRROR``;
- for each example a fresh store and fresh SDK caches; ``MODELHUB_OFFLINE`` is not set, but any
  request not for 127.0.0.1 goes to a proxy that refuses connections: no internet.

Each command runs exactly as written, in its own ``python -m modelhub`` process, after these
substitutions (readme_seed.substitute): ``https://example.org`` → ``{mirror}/omnihub/onnx``
(where the mirror serves the ``url:`` stand-in), ``<hex>`` → that file's sha256, and in the
Python block ``"tfhub:..."`` → the TF Hub handle of the command-line example. Any other
placeholder fails the test. A command must exit 0, print the path of what it produced (the
stand-in's expected store path), and leave a manifest whose files verify.

One model cannot be stood in for: torchvision names ResNet-18's weights after their sha256
(``resnet18-f37072fd.pth``) and modelhub checks the whole file against that prefix. Examples
pulling ``torch:resnet18`` are checked for exactly the request the real model needs of the
mirror (``GET /torch/models/resnet18-f37072fd.pth``) and for exit 3 with one line saying it is
not found. The same holds for the torch.hub example if it ever asks the entrypoint for its
pretrained weights (``--hub-arg pretrained=true``: torchvision's, under the same name); as
written, it builds the network the entrypoint builds, untrained, which the stand-in serves.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.readme_seed import (
    README,
    STAND_INS,
    Example,
    SeedContext,
    StandIn,
    environment,
    examples,
    modelhub_argv,
    references,
    run,
    stand_in_for,
    substitute,
)

pytestmark = pytest.mark.timeout(1200)

EXAMPLES = examples(README.read_text(encoding="utf-8"))
CLI = [e for e in EXAMPLES if e.kind == "cli"]
PYTHON = [e for e in EXAMPLES if e.kind == "python"]

# Runs the README's Python block one top-level statement at a time (a statement expected to
# fail does not stop the rest), then reports each statement's outcome and the names it bound.
DRIVER = r"""
import ast, json, sys
from pathlib import Path

code = sys.stdin.read()
ns = {"__name__": "__readme__"}
results = []
for node in ast.parse(code).body:
    text = ast.get_source_segment(code, node)
    try:
        exec(compile(ast.Module([node], []), "README.md", "exec"), ns)
        results.append({"statement": text, "error": None})
    except Exception as exc:
        results.append({
            "statement": text,
            "error": type(exc).__name__,
            "message": str(exc),
            "exit_code": getattr(exc, "exit_code", None),
        })
values = {}
for name, value in ns.items():
    if name.startswith("__") or name == "modelhub":
        continue
    values[name] = {
        "type": type(value).__name__,
        "path": str(value) if isinstance(value, Path) else None,
        "callable": callable(value),
        "runs": hasattr(value, "run"),
        "hub_url": getattr(value, "hub_url", None),
    }
print(json.dumps({"results": results, "values": values}))
"""


@dataclass
class World:
    """The seed store's mirror behind its recorder, and what the placeholders stand for."""

    mirror: str  # the recorder's URL: MODELHUB_MIRROR of every example
    recorder: object
    url_sha256: str


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """Build every stand-in into a seed store, serve it, and put a recorder in front."""
    from modelhub import Store
    from modelhub.mirror.app import BackgroundMirror
    from tests.support.httpserver import HTTPTestServer
    from tests.support.readme_seed import EXAMPLE_HOST
    from tests.support.recorder import Recorder

    base = tmp_path_factory.mktemp("readme")
    store = Store(base / "seed")
    ctx = SeedContext(store, base / "work")
    ctx.work.mkdir(parents=True)
    builders = []
    for stand_in in STAND_INS.values():
        if stand_in.build is not None and stand_in.build not in builders:
            builders.append(stand_in.build)
    for build in builders:
        build(ctx)
    if ctx.pulls:
        # Models `modelhub import` cannot make as a pull would: pulled from stand-in upstreams.
        with HTTPTestServer(ctx.upstream) as upstream:
            env = environment(base / "seeding", store.root, upstream.url)
            for tail in ctx.pulls:
                proc = run(modelhub_argv(["modelhub", "pull", *tail]), env)
                assert proc.returncode == 0, f"seeding `pull {shlex.join(tail)}`: {proc.stderr}"
    with BackgroundMirror(store.root) as mirror_url, Recorder(mirror_url) as recorder:
        yield World(recorder.url, recorder, ctx.sha256[f"url:{EXAMPLE_HOST}/model.onnx"])


def _stand_ins(example: Example) -> list[tuple[str, StandIn]]:
    refs = references(substitute(example, None, "0" * 64))
    missing = [ref for ref in refs if stand_in_for(ref) is None]
    assert not missing, (
        f"README.md:{example.line}: no stand-in for {', '.join(missing)}: add one to "
        "tests/support/readme_seed.py (STAND_INS: a tiny real model of that kind under that "
        "reference, or `unmatchable` when the hub pins content no stand-in can match)"
    )
    return [(ref, s) for ref in refs if (s := stand_in_for(ref)) is not None]


def _requests(world: World) -> list[tuple[str, str]]:
    rec = world.recorder
    rec.wait_idle()  # type: ignore[attr-defined]
    return [(r.method, r.path) for r in rec.log]  # type: ignore[attr-defined]


def _one_line_not_found(proc: subprocess.CompletedProcess[str], command: str) -> None:
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 3, f"{command}: exit {proc.returncode}\n{proc.stderr}"
    assert len(lines) == 1 and lines[0].startswith("modelhub: error:"), proc.stderr
    assert "not found" in lines[0], lines[0]


# --- the examples are there ----------------------------------------------------------------------
def test_the_readme_has_examples_between_markers() -> None:
    assert len(CLI) >= 5, f"found only {len(CLI)} command examples between the markers"
    assert len(PYTHON) >= 1, "found no Python example between the markers"
    named = {ref for e in EXAMPLES for ref in references(e.text)}
    assert len(named) >= 5, named


def test_the_parser_reads_what_a_shell_would() -> None:
    text = "\n".join(
        [
            "<!-- examples:begin -->",
            "```bash",
            "modelhub pull onnx:mnist   # a comment",
            "modelhub pull hf:a/b \\",
            "    --stage onnx",
            "echo not modelhub",
            "```",
            "```python",
            "import modelhub",
            "```",
            "<!-- examples:end -->",
            "```bash",
            "modelhub pull outside:markers",
            "```",
        ]
    )
    assert stand_in_for("onnx:squeezenet") is None  # an example naming it would fail
    found = examples(text)
    assert [(e.kind, e.text, e.line) for e in found] == [
        ("cli", "modelhub pull onnx:mnist", 3),
        ("cli", "modelhub pull hf:a/b --stage onnx", 4),
        ("python", "import modelhub", 9),
    ]
    with pytest.raises(ValueError, match="no complete"):
        examples("```bash\nmodelhub pull onnx:mnist\n```\n")
    bad = Example("cli", "modelhub pull url:https://h.example/<file> --sha256 <hex>", 1)
    with pytest.raises(ValueError, match="no substitution for <file>"):
        substitute(bad, "http://127.0.0.1:1", "0" * 64)


# --- the command line ----------------------------------------------------------------------------
@pytest.mark.parametrize("example", CLI, ids=[e.id for e in CLI])
def test_readme_command_runs(example: Example, world: World, tmp_path: Path) -> None:
    from modelhub import Store, parse

    pairs = _stand_ins(example)
    assert pairs, f"README.md:{example.line}: {example.text!r} names no model"
    command = substitute(example, world.mirror, world.url_sha256)
    words = shlex.split(command)
    store = tmp_path / "store"
    world.recorder.clear()  # type: ignore[attr-defined]
    proc = run(modelhub_argv(words), environment(tmp_path, store, world.mirror))
    requests = _requests(world)
    pinned = [(s, path) for _, s in pairs if (path := s.pinned(example.text))]
    if pinned:
        # No stand-in can carry the content the hub pins (see StandIn.why): the command must
        # ask the mirror for exactly the real file, once and last, and say it is not there.
        _one_line_not_found(proc, command)
        stand_in, path = pinned[0]
        if stand_in.build is None:
            assert requests == [("GET", path)], requests
        else:
            assert requests.count(("GET", path)) == 1 and requests[-1] == ("GET", path)
        return
    assert proc.returncode == 0, f"`{command}` exited {proc.returncode}:\n{proc.stderr}"
    printed = [Path(line) for line in proc.stdout.strip().splitlines()]
    produced = [store / str(s.produced(world.mirror)) for _, s in pairs if s.produces]
    assert printed == produced, f"`{command}` printed {proc.stdout!r}"
    substituted = references(command)
    for ref, (_, stand_in) in zip(substituted, pairs, strict=True):
        manifest = Store(store).manifest(parse(ref))
        assert manifest is not None, f"{ref}: no manifest in the store"
        assert Store(store).verify(manifest) == [], f"{ref}: the store does not verify"
        assert store / manifest.primary_path == store / str(stand_in.produced(world.mirror))
        for rel in stand_in.extra:
            assert (store / rel).is_file(), f"{ref}: {rel} is missing"
        for rel in stand_in.cached:  # where the README says the original lands (SDK caches)
            assert (tmp_path / rel).exists(), f"{ref}: {rel} is missing from the SDK's cache"
    assert requests, "the command made no request to the mirror"


# --- the Python API ------------------------------------------------------------------------------
@pytest.mark.parametrize("example", PYTHON, ids=[e.id for e in PYTHON])
def test_readme_python_block_runs(example: Example, world: World, tmp_path: Path) -> None:
    assert _stand_ins(example), f"README.md:{example.line}: the Python block names no model"
    code = substitute(example, world.mirror, world.url_sha256)
    store = tmp_path / "store"
    world.recorder.clear()  # type: ignore[attr-defined]
    proc = subprocess.run(
        [sys.executable, "-c", DRIVER],
        input=code,
        env=environment(tmp_path, store, world.mirror),
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    requests = _requests(world)
    for result in report["results"]:
        statement = result["statement"]
        refs = [stand_in_for(r) for r in references(statement)]
        if any(s is not None and s.pinned(statement) for s in refs):
            assert result["exit_code"] == 3 and "not found" in result["message"], result
        else:
            assert result["error"] is None, f"README.md: `{statement}` raised: {result}"
    # Exactly one request for each statement naming a model no stand-in can be, and only those.
    pinned = {("GET", s.unmatchable) for s in STAND_INS.values() if s.unmatchable}
    asked = [r for r in requests if r in pinned]
    wanted = [
        ("GET", path)
        for r in report["results"]
        for ref in references(r["statement"])
        if (s := stand_in_for(ref)) is not None and (path := s.pinned(r["statement"]))
    ]
    assert asked == wanted, requests
    for name, value in report["values"].items():
        if value["path"] is not None:
            path = Path(value["path"])
            assert path.exists() and path.is_relative_to(store), f"{name} = {path}"
        if value["hub_url"] is not None:
            assert value["hub_url"].startswith(world.mirror), f"{name}.hub_url = {value}"
    loads = [r for r in report["results"] if "modelhub.load(" in r["statement"]]
    for result in loads:
        if result["error"] is None:
            name = result["statement"].split("=", 1)[0].strip()
            value = report["values"][name]
            assert value["callable"] or value["runs"], f"{name} cannot be run: {value}"

"""The package's shape, checked from its source: layers, no import circles, hub names in their
own rooms, every error in errors.py, modules of a readable size.

The layering (each module may import its own layer and those below it)::

    cli            modelhub.cli.*, modelhub (the package), modelhub.__main__
    api            sync, outdated, importer, mirror.*, seed, viewer, modelset, lockfile, ...
    pipeline       pipeline, stager
    hubs           hubs.*
    staging        staging.*
    frameworks     frameworks.*  (framework knowledge adapters and conversions share)
    io             store.*, transfer, _http, http_session, download_job, parallel_path,
                   connections, sink,
                   progress, upstream, offload,
                   workers, lockfile, remote.*
    base           errors, refgrammar, registry, refs, config, _frameworks

Imports inside ``if TYPE_CHECKING:`` blocks and inside functions count: an arrow is an arrow.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from modelhub import registry

SRC = Path(__file__).resolve().parents[1] / "src" / "modelhub"
MAX_LINES = 600

LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("base", ("errors", "refgrammar", "registry", "refs", "config", "_frameworks")),
    (
        "io",
        (
            "store",
            "transfer",
            "_http",
            "http_session",
            "download_job",
            "parallel_path",
            "connections",
            "sink",
            "progress",
            "upstream",
            "offload",
            "workers",
            "lockfile",
            "remote",
        ),
    ),
    ("frameworks", ("frameworks",)),
    ("staging", ("staging",)),
    ("hubs", ("hubs",)),
    ("pipeline", ("pipeline", "stager")),
    (
        "api",
        (
            "sync",
            "sync_order",
            "outdated",
            "importer",
            "mirror",
            "seed",
            "viewer",
            "modelset",
            "checks",
            "interop",
            "dryrun",
            "doctor",
        ),
    ),
    ("cli", ("cli", "__main__", "")),
]


def _modules() -> dict[str, Path]:
    found = {}
    for path in SRC.rglob("*.py"):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


MODULES = _modules()


def _layer(module: str) -> int:
    top = module.split(".")[0]
    for index, (_, names) in enumerate(LAYERS):
        if top in names:
            return index
    raise AssertionError(f"modelhub.{module} is in no layer of tests/test_architecture.py")


def _imports(module: str, path: Path) -> set[str]:
    """Every modelhub module ``module`` imports (relative and absolute, anywhere in it)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    if module == "":
        package = []
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                target = ".".join([*base, node.module] if node.module else base)
            elif (node.module or "").split(".")[0] == "modelhub":
                target = ".".join((node.module or "").split(".")[1:])
            else:
                continue
            for alias in node.names:
                sub = f"{target}.{alias.name}" if target else alias.name
                found.add(sub if sub in MODULES else target)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "modelhub":
                    found.add(".".join(alias.name.split(".")[1:]))
    return {m for m in found if m in MODULES and m != module}


GRAPH = {module: _imports(module, path) for module, path in MODULES.items()}


def _name(module: str) -> str:
    return f"modelhub.{module}" if module else "modelhub"


def test_every_module_has_a_layer() -> None:
    for module in MODULES:
        _layer(module)


def test_no_import_runs_back_up() -> None:
    upward = [
        f"{_name(a)} ({LAYERS[_layer(a)][0]}) imports {_name(b)} ({LAYERS[_layer(b)][0]})"
        for a, targets in GRAPH.items()
        for b in targets
        # A package's __init__ may re-export its own submodules.
        if _layer(b) > _layer(a) and not b.startswith(f"{a}.")
    ]
    assert not upward, "imports that run back up:\n" + "\n".join(sorted(upward))


def test_no_import_circles() -> None:
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in GRAPH[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for module in GRAPH:
        if module not in index:
            visit(module)
    # A package __init__ that re-exports its submodules and a submodule importing a sibling
    # through the package are one circle in the graph; none is allowed.
    assert not circles, "import circles:\n" + "\n".join(
        " <-> ".join(_name(m) for m in c) for c in circles
    )


def _owner_files(row: registry.HubRow) -> set[str]:
    """The modules that may name ``row``'s hub: its adapter module and the modules beside it
    sharing its name, its mirror routes module, and the registry (its rows)."""
    adapter = row.adapter.partition(":")[0].removeprefix("modelhub.")
    owned = {adapter} | {m for m in MODULES if m.split(".")[0] == "registry"}
    stem = adapter.rsplit(".", 1)[-1]
    owned |= {m for m in MODULES if m.startswith(f"hubs.{stem}_")}
    if row.mirror_routes:
        owned.add(row.mirror_routes.partition(":")[0].removeprefix("modelhub."))
    return owned


def _hub_compares(tree: ast.AST, names: set[str]) -> list[tuple[int, str]]:
    """Places that compare a ``hub`` value with a hub's name (``ref.hub == "hf"``, ``hub in
    ("tfhub", "kaggle")``) or key a table by hubs' names."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            sides = [node.left, *node.comparators]
            about_hub = any(
                (isinstance(s, ast.Attribute) and s.attr == "hub")
                or (isinstance(s, ast.Name) and s.id == "hub")
                for s in sides
            )
            if about_hub:
                for side in sides:
                    consts = side.elts if isinstance(side, ast.Tuple | ast.Set) else [side]
                    for c in consts:
                        if isinstance(c, ast.Constant) and c.value in names:
                            found.append((node.lineno, c.value))
        elif isinstance(node, ast.Dict):
            keys = [k for k in node.keys if isinstance(k, ast.Constant) and k.value in names]
            # A table per hub (weights, URLs, folders); one or two such keys are package
            # versions or JSON fields ({"url": ...}, {"torch": ..., "onnx": ...}).
            if len({k.value for k in keys}) >= 3:
                found += [(k.lineno, k.value) for k in keys]
    return found


# Hub names that mean nothing else in the code; the others ("onnx", "torch", "keras", "url")
# are also formats, packages or keys, so only their use as a hub (compared with ``.hub``, or
# as a dict key) is checked.
UNAMBIGUOUS = {"hf", "tfhub", "kaggle", "github"}


def test_hub_names_live_in_their_own_rooms() -> None:
    rows = registry.rows()
    names = {r.name for r in rows}
    owners: dict[str, set[str]] = {r.name: _owner_files(r) for r in rows}
    owners["github"] = owners.get("torch", set())
    wrong = []
    for module, path in MODULES.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        hits = [
            (node.lineno, node.value)
            for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and node.value in UNAMBIGUOUS
        ]
        hits += _hub_compares(tree, names)
        for line, hub in hits:
            if module not in owners.get(hub, set()):
                wrong.append(f"{path.relative_to(SRC.parent)}:{line}: {hub!r}")
    assert not wrong, "hub names outside their adapter, routes and registry row:\n" + "\n".join(
        sorted(set(wrong))
    )


def test_every_error_is_defined_in_errors_py() -> None:
    import modelhub.errors as errors

    ours = {n for n, v in vars(errors).items() if isinstance(v, type)}
    elsewhere = []
    for module, path in MODULES.items():
        if module == "errors":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef):
                bases = {b.id for b in node.bases if isinstance(b, ast.Name)}
                bases |= {b.attr for b in node.bases if isinstance(b, ast.Attribute)}
                if bases & ours:
                    elsewhere.append(f"{_name(module)}.{node.name}")
    assert not elsewhere, "errors defined outside modelhub/errors.py: " + ", ".join(elsewhere)


@pytest.mark.parametrize("module", sorted(MODULES), ids=lambda m: _name(m))
def test_module_size(module: str) -> None:
    lines = MODULES[module].read_text(encoding="utf-8").count("\n")
    assert lines <= MAX_LINES, f"{_name(module)} has {lines} lines (> {MAX_LINES}): split it"

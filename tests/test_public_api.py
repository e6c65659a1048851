"""What ``import modelhub`` offers (issue 19, point 16): ``dir(modelhub)`` shows the public
names and nothing else, each of them resolves, and the README says what ``modelhub.load()``
returns for every hub."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from modelhub import registry

README = Path(__file__).resolve().parents[1] / "README.md"


def test_dir_shows_the_public_names_only() -> None:
    # A fresh interpreter, after the imports a program makes (the CLI, the pipeline): the
    # submodules they leave as attributes of the package stay out of dir().
    code = (
        "import modelhub, modelhub.cli.main, modelhub.pipeline, modelhub.config\n"
        "print(' '.join(dir(modelhub)))\n"
        "print(' '.join(modelhub.__all__))\n"
        "print(all(getattr(modelhub, n) is not None for n in modelhub.__all__))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    shown, public, resolved = proc.stdout.splitlines()
    assert shown.split() == sorted(public.split())
    for private in ("cli", "config", "pipeline", "store", "TYPE_CHECKING", "_LAZY", "annotations"):
        assert private not in shown.split()
    for name in ("pull", "load", "path", "get_hub", "Model", "ModelhubError", "__version__"):
        assert name in shown.split()
    assert resolved == "True"


def _load_section() -> str:
    text = README.read_text(encoding="utf-8")
    return text.split("### What `modelhub.load()` returns", 1)[1].split("\n## ", 1)[0]


def test_readme_says_what_load_returns_for_every_hub() -> None:
    section = _load_section()
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    hubs = {line.split("`")[1].split(":")[0] for line in rows}
    assert hubs == {r.name for r in registry.rows()} - {"github"}, section
    for kind in ("onnxruntime.InferenceSession", "keras", "pathlib.Path", "FrozenGraph"):
        assert kind in section

"""Permission bits that hold in tests run as root: a child process started without
CAP_DAC_OVERRIDE (``setpriv``) is refused a read-only folder as any user is."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest


def without_dac_override() -> list[str]:
    """The command prefix that runs a process without CAP_DAC_OVERRIDE and
    CAP_DAC_READ_SEARCH when this one is root (none otherwise); skips the test when root has
    no ``setpriv``."""
    if os.geteuid() != 0:
        return []
    if shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv: permission bits do not apply")
    drop = "-dac_override,-dac_read_search"
    return ["setpriv", f"--bounding-set={drop}", f"--inh-caps={drop}", "--"]


def chmod_tree(root: Path, folders: int, files: int) -> None:
    """Set the mode of ``root`` and every folder (``folders``) and file (``files``) under it."""
    for path in [root, *root.rglob("*")]:
        if not path.is_symlink():
            path.chmod(folders if path.is_dir() else files)

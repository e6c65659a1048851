"""Progress bars of modelhub's own downloads: tqdm on stderr, shown as ``settings().progress``
decides (asked explicitly, or on a terminal unless quiet)."""

from __future__ import annotations

import sys
from typing import Any

from ._http import redact
from .config import settings


def make_bar(progress: bool | None, desc: str | None, url: str, initial: int) -> Any:
    """A tqdm bar on stderr (bytes), or None: shown when asked, or on a TTY unless quiet."""
    if not settings().progress(progress):
        return None
    from tqdm import tqdm  # lazy: only needed when a bar is shown; plain text bar on stderr

    name = desc or redact(url).rstrip("/").rsplit("/", 1)[-1]
    return tqdm(
        total=None,
        initial=initial,
        unit="B",
        unit_scale=True,
        unit_divisor=1024,
        desc=name,
        file=sys.stderr,
        leave=True,
        dynamic_ncols=True,
    )

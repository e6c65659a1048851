"""Fixtures of the hub contract suite. The seed store (the fault table's scenarios, one small real
model per hub, served by one mirror) and the proxy in front of it are tests/conftest.py's, shared
with the fault table."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def store_b(tmp_path: Path) -> Path:
    """A second, empty store."""
    return tmp_path / "store-b"

"""Fixtures of the hub contract suite: one seed store (the fault table's scenarios, one small
real model per hub) served by one mirror for the session, and a recording proxy per test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.faults.hubs import SeedStore
from tests.faults.proxy import FaultProxy


@pytest.fixture(scope="session")
def contract_seed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeedStore]:
    """The seed store, served by one mirror (``modelhub serve``) for the whole session."""
    from modelhub.mirror.app import BackgroundMirror

    base = tmp_path_factory.mktemp("contract-seed")
    seeds = SeedStore(base / "store", base / "work")
    mirror = BackgroundMirror(seeds.store.root)
    seeds.mirror_url = mirror.start()
    try:
        yield seeds
    finally:
        mirror.stop()


@pytest.fixture
def proxy(contract_seed: SeedStore) -> Iterator[FaultProxy]:
    """A proxy in front of the session's mirror that logs every exchange (no fault set)."""
    with FaultProxy(contract_seed.mirror_url) as running:
        yield running


@pytest.fixture
def store_b(tmp_path: Path) -> Path:
    """A second, empty store."""
    return tmp_path / "store-b"

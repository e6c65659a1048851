"""pytest plugin (``-p tests.contract.toy_plugin``): registers the toy hub before collection,
so that the contract suite, parametrized over ``supported_hubs()``, includes it."""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    from tests.contract.toy_hub import install

    install()

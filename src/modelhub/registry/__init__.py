"""The hub registry: one row per hub (:mod:`.builtin`), and everything else about hubs derived from
the rows (:mod:`.core`). Importing this package registers every built-in hub."""

from __future__ import annotations

from . import builtin  # noqa: F401  (registers the built-in hubs)
from .core import (
    EXTRAS_BY_MODULE,
    FRAMEWORK_BY_SUFFIX,
    OTHER_FRAMEWORK,
    Endpoint,
    HubRow,
    endpoints,
    framework_folders,
    framework_for_filename,
    hub_names,
    parse,
    parse_web,
    register,
    row,
    rows,
    unregister,
    with_revision,
)

__all__ = [
    "EXTRAS_BY_MODULE",
    "FRAMEWORK_BY_SUFFIX",
    "OTHER_FRAMEWORK",
    "Endpoint",
    "HubRow",
    "endpoints",
    "framework_folders",
    "framework_for_filename",
    "hub_names",
    "parse",
    "parse_web",
    "register",
    "row",
    "rows",
    "unregister",
    "with_revision",
]

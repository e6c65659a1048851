"""The model set: a TOML file (``modelhub.toml``) declaring models to install, one ``[[model]]``
table per model::

    [[model]]
    ref = "onnx:mnist"              # required
    stage = "onnx"                  # optional: as ``pull --stage`` (default auto)
    storage = "uncompressed"        # optional
    revision = "v1.0"               # optional: as ``pull --revision``
    include = ["*.safetensors"]     # optional (hf:)
    exclude = ["*.bin"]             # optional (hf:)
    sha256 = "..."                  # optional (url:)
    # also task, signature, input_shape, for ("dl4j") (strings), alpha (number), trust and
    # all_files (bool), and args = {...} (a torch.hub entrypoint's keyword arguments), as the
    # pull options

Reading only: :mod:`modelhub.sync` installs a set, :mod:`modelhub.lockfile` pins it.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import registry
from .config import STAGES, STORAGES
from .errors import ModelhubError, NotFoundError, UsageError
from .hubs import adapter_class
from .pipeline import as_ref
from .refs import ModelRef

DEFAULT_FILE = "modelhub.toml"

_STR_OPTIONS = ("task", "signature", "input_shape", "for")
_KEYS = frozenset(
    {
        "ref",
        "stage",
        "storage",
        "revision",
        "include",
        "exclude",
        "sha256",
        "trust",
        "alpha",
        "all_files",
        "args",
        *_STR_OPTIONS,
    }
)
_HEX = frozenset("0123456789abcdef")
_TABLE = re.compile(r"^\s*\[\[\s*model\s*\]\]")
_KEY = re.compile(r"^\s*([A-Za-z0-9_-]+)\s*=")


class _Where:
    """Where a ``[[model]]`` table is in the file, for messages: ``FILE:LINE: model #N``, the
    line being that of the key at fault when it can be found (tomllib gives no positions)."""

    def __init__(self, path: Path, index: int, start: int | None, keys: dict[str, int]) -> None:
        self.path, self.index, self.start, self.keys = path, index, start, keys

    def at(self, key: str | None = None) -> str:
        """``FILE:LINE: model #N`` (the line of ``key`` when it is known)."""
        line = self.keys.get(key, self.start) if key else self.start
        head = f"{self.path}:{line}" if line else str(self.path)
        return f"{head}: model #{self.index + 1}"

    def __str__(self) -> str:
        return self.at()


def _positions(text: str) -> list[tuple[int, dict[str, int]]]:
    """For each ``[[model]]`` header: its line and the lines of the keys below it (1-based)."""
    found: list[tuple[int, dict[str, int]]] = []
    for number, line in enumerate(text.splitlines(), 1):
        if _TABLE.match(line):
            found.append((number, {}))
        elif found and line.lstrip().startswith("["):
            found.append((0, {}))  # another table: keys below it are not the model's
        elif found and found[-1][0] and (key := _KEY.match(line)):
            found[-1][1].setdefault(key.group(1), number)
    return [f for f in found if f[0]]


@dataclass(frozen=True)
class ModelSpec:
    """One ``[[model]]`` table: the reference (revision applied) and its pull settings."""

    ref: ModelRef
    stage: str = "auto"
    storage: str = "uncompressed"
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    sha256: str | None = None
    options: tuple[tuple[str, Any], ...] = ()

    @property
    def name(self) -> str:
        """The canonical reference: the key of the model in the store and in the lock."""
        return self.ref.canonical

    def request(self) -> dict[str, Any]:
        """The settings the lock records, so that an edited TOML entry is seen as new."""
        doc: dict[str, Any] = {
            "stage": self.stage,
            "storage": self.storage,
            "include": list(self.include),
            "exclude": list(self.exclude),
        }
        if self.sha256:
            doc["sha256"] = self.sha256
        doc.update(dict(self.options))
        return doc

    def pull_options(self) -> dict[str, Any]:
        """The ``options`` argument of :func:`modelhub.pipeline.pull`."""
        options: dict[str, Any] = dict(self.options)
        if self.include:
            options["include"] = list(self.include)
        if self.exclude:
            options["exclude"] = list(self.exclude)
        return options


def _globs(value: Any, where: _Where, key: str) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise UsageError(f"{where.at(key)}: {key} must be a string or a list of strings")
    return tuple(value)


def _hub_can(mref: ModelRef, stage: str, storage: str, where: _Where) -> None:
    """Refuse what the model's hub cannot do (a stage it does not produce, a storage form it
    does not have), so that a sync stops before its first download."""
    try:
        hub = adapter_class(mref.hub)
    except ModelhubError as exc:
        raise UsageError(f"{where.at('ref')}: {exc}") from None
    if stage != "auto" and stage not in hub.stages:
        raise UsageError(
            f"{where.at('stage')} ({mref.canonical}): stage {stage!r} is not one this hub "
            f"produces ({', '.join(hub.stages)})"
        )
    if storage not in registry.row(mref.hub).storages:
        raise UsageError(
            f"{where.at('storage')} ({mref.canonical}): storage {storage!r}: this hub has no "
            f"{storage} form; remove the line"
        )


def _spec(table: Any, where: _Where) -> ModelSpec:
    if not isinstance(table, dict):
        raise UsageError(f"{where}: each [[model]] must be a table")
    unknown = sorted(set(table) - _KEYS)
    if unknown:
        raise UsageError(
            f"{where.at(unknown[0])}: unknown key(s) {', '.join(unknown)}; "
            f"known: {', '.join(sorted(_KEYS))}"
        )
    ref = table.get("ref")
    if not isinstance(ref, str) or not ref.strip():
        raise UsageError(f"{where}: 'ref' (a model reference string) is required")
    for key in ("stage", "storage", "revision", "sha256", *_STR_OPTIONS):
        if key in table and not isinstance(table[key], str):
            raise UsageError(f"{where.at(key)}: {key} must be a string")
    stage = table.get("stage", "auto")
    if stage not in STAGES:
        raise UsageError(f"{where.at('stage')}: stage {stage!r} is not one of {', '.join(STAGES)}")
    storage = table.get("storage", "uncompressed")
    if storage not in STORAGES:
        raise UsageError(
            f"{where.at('storage')}: storage {storage!r} is not one of {', '.join(STORAGES)}"
        )
    sha256 = table.get("sha256")
    if sha256 is not None:
        sha256 = sha256.strip().lower()
        if len(sha256) != 64 or not set(sha256) <= _HEX:
            raise UsageError(f"{where.at('sha256')}: sha256 needs 64 hex digits")
    for flag in ("trust", "all_files"):
        if flag in table and not isinstance(table[flag], bool):
            raise UsageError(f"{where.at(flag)}: {flag} must be true or false")
    if "args" in table and not (
        isinstance(table["args"], dict) and all(str(k).isidentifier() for k in table["args"])
    ):
        raise UsageError(
            f"{where.at('args')}: args must be a table of keyword arguments, args = {{...}}"
        )
    alpha = table.get("alpha")
    if alpha is not None and (isinstance(alpha, bool) or not isinstance(alpha, int | float)):
        raise UsageError(f"{where.at('alpha')}: alpha must be a number")
    options = [(k, table[k]) for k in (*_STR_OPTIONS, "alpha", "trust", "all_files") if k in table]
    if "args" in table:
        options.append(("hub_args", dict(table["args"])))
    try:
        mref = as_ref(ref.strip(), table.get("revision"))
    except ModelhubError as exc:
        raise UsageError(f"{where.at('ref')}: {exc}") from None
    _hub_can(mref, stage, storage, where)
    return ModelSpec(
        ref=mref,
        stage=stage,
        storage=storage,
        include=_globs(table.get("include", []), where, "include"),
        exclude=_globs(table.get("exclude", []), where, "exclude"),
        sha256=sha256,
        options=tuple(sorted(options)),
    )


def load_specs(path: Path | str) -> list[ModelSpec]:
    """Read the model set at ``path``; return its models in file order.

    Raises NotFoundError (no file, exit 3) and UsageError (a folder, not TOML, unknown keys,
    bad values, a stage or storage the model's hub does not have, the same model twice; exit
    2), each message naming the file and line.
    """
    path = Path(path)
    if path.is_dir():
        raise UsageError(
            f"{path} is a folder; give the model-set file (e.g. {path / DEFAULT_FILE})"
        )
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise NotFoundError(f"no model set at {path} (write [[model]] tables with a ref)") from None
    except OSError as exc:
        raise ModelhubError(f"cannot read the model set {path}: {exc.strerror or exc}") from None
    try:
        text = raw.decode("utf-8")
        doc = tomllib.loads(text)
    except UnicodeDecodeError:
        raise UsageError(f"{path}: not a TOML file (not UTF-8 text)") from None
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{path}: not valid TOML: {exc}") from None
    extra = sorted(set(doc) - {"model"})
    if extra:
        raise UsageError(f"{path}: unknown top-level key(s) {', '.join(extra)}; use [[model]]")
    tables = doc.get("model", [])
    if not isinstance(tables, list):
        raise UsageError(f"{path}: 'model' must be an array of tables ([[model]])")
    positions = _positions(text)
    if len(positions) != len(tables):  # inline arrays: no line to point at
        positions = [(0, {}) for _ in tables]
    wheres = [_Where(path, i, *positions[i]) for i in range(len(tables))]
    specs = [_spec(t, w) for t, w in zip(tables, wheres, strict=True)]
    seen: dict[str, int] = {}
    for i, spec in enumerate(specs):
        if spec.name in seen:
            raise UsageError(f"{wheres[i]} ({spec.name}) repeats model #{seen[spec.name] + 1}")
        seen[spec.name] = i
    return specs

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

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import STAGES, STORAGES
from .errors import ModelhubError, NotFoundError, UsageError
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


def _globs(value: Any, where: str, key: str) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise UsageError(f"{where}: {key} must be a string or a list of strings")
    return tuple(value)


def _spec(table: Any, where: str) -> ModelSpec:
    if not isinstance(table, dict):
        raise UsageError(f"{where}: each [[model]] must be a table")
    unknown = sorted(set(table) - _KEYS)
    if unknown:
        raise UsageError(
            f"{where}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(_KEYS))}"
        )
    ref = table.get("ref")
    if not isinstance(ref, str) or not ref.strip():
        raise UsageError(f"{where}: 'ref' (a model reference string) is required")
    for key in ("stage", "storage", "revision", "sha256", *_STR_OPTIONS):
        if key in table and not isinstance(table[key], str):
            raise UsageError(f"{where}: {key} must be a string")
    stage = table.get("stage", "auto")
    if stage not in STAGES:
        raise UsageError(f"{where}: stage {stage!r} is not one of {', '.join(STAGES)}")
    storage = table.get("storage", "uncompressed")
    if storage not in STORAGES:
        raise UsageError(f"{where}: storage {storage!r} is not one of {', '.join(STORAGES)}")
    sha256 = table.get("sha256")
    if sha256 is not None:
        sha256 = sha256.strip().lower()
        if len(sha256) != 64 or not set(sha256) <= _HEX:
            raise UsageError(f"{where}: sha256 needs 64 hex digits")
    for flag in ("trust", "all_files"):
        if flag in table and not isinstance(table[flag], bool):
            raise UsageError(f"{where}: {flag} must be true or false")
    if "args" in table and not (
        isinstance(table["args"], dict) and all(str(k).isidentifier() for k in table["args"])
    ):
        raise UsageError(f"{where}: args must be a table of keyword arguments, args = {{...}}")
    alpha = table.get("alpha")
    if alpha is not None and (isinstance(alpha, bool) or not isinstance(alpha, int | float)):
        raise UsageError(f"{where}: alpha must be a number")
    options = [(k, table[k]) for k in (*_STR_OPTIONS, "alpha", "trust", "all_files") if k in table]
    if "args" in table:
        options.append(("hub_args", dict(table["args"])))
    try:
        mref = as_ref(ref.strip(), table.get("revision"))
    except ModelhubError as exc:
        raise UsageError(f"{where}: {exc}") from None
    return ModelSpec(
        ref=mref,
        stage=stage,
        storage=storage,
        include=_globs(table.get("include", []), where, "include"),
        exclude=_globs(table.get("exclude", []), where, "exclude"),
        sha256=sha256,
        options=tuple(sorted(options)),
    )


def load_specs(path: Path) -> list[ModelSpec]:
    """Read the model set at ``path``; return its models in file order.

    Raises NotFoundError (no file, exit 3) and UsageError (not TOML, unknown keys, bad values,
    the same model twice; exit 2).
    """
    try:
        with open(path, "rb") as fh:
            doc = tomllib.load(fh)
    except FileNotFoundError:
        raise NotFoundError(f"no model set at {path} (write [[model]] tables with a ref)") from None
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{path}: not valid TOML: {exc}") from None
    extra = sorted(set(doc) - {"model"})
    if extra:
        raise UsageError(f"{path}: unknown top-level key(s) {', '.join(extra)}; use [[model]]")
    tables = doc.get("model", [])
    if not isinstance(tables, list):
        raise UsageError(f"{path}: 'model' must be an array of tables ([[model]])")
    specs = [_spec(t, f"{path}: model #{i + 1}") for i, t in enumerate(tables)]
    seen: dict[str, int] = {}
    for i, spec in enumerate(specs):
        if spec.name in seen:
            raise UsageError(
                f"{path}: model #{i + 1} ({spec.name}) repeats model #{seen[spec.name] + 1}"
            )
        seen[spec.name] = i
    return specs

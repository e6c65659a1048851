"""Stage ``keras`` (and ``h5``) for a KerasHub preset folder: build, save whole, prove parity.

A KerasHub preset is a folder: ``config.json`` (the backbone, a serialized Keras object),
``metadata.json``, ``model.weights.h5`` (or ``model.weights.json`` and its shards) and, for a
task, ``task.json`` (+ ``task.weights.h5``), ``preprocessor.json``, ``tokenizer.json`` and
``assets/``. :func:`stage_preset` builds it with ``keras_hub`` (the task class ``task.json``
names when there is one, else ``keras_hub.models.Backbone.from_preset``), saves the model as one
``.keras`` file beside the folder (``<folder>.keras``) and, where Keras allows, as legacy HDF5
(``<folder>.h5``), reloads each saved file and compares it with the preset-built model on
seeded inputs. Nothing is published unless every staged file is within the tolerance.

Errors (one line each): a folder that is no preset → UnsupportedError (exit 2); an unreadable
``config.json``, a damaged weights file, or files keras_hub cannot assemble → IntegrityError
(exit 5); a parity failure → ParityError (exit 5); a model class this keras_hub does not know →
UnsupportedError. Stateless and idempotent; ``keras_hub`` is imported lazily.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import (
    IntegrityError,
    StagingError,
    UnsupportedError,
    UsageError,
)
from ..frameworks.keras_files import first_line, import_keras, is_hdf5, quiet_keras, versions
from .parity import DEFAULT_TOLERANCE, compare, write_fixture

if TYPE_CHECKING:
    from ..refs import ModelRef
    from ..store import StagedEntry, Store

CONFIG_FILE = "config.json"
TASK_FILE = "task.json"
METADATA_FILE = "metadata.json"
WEIGHTS_FILE = "model.weights.h5"
SHARDED_WEIGHTS_FILE = "model.weights.json"
TASK_WEIGHTS_FILE = "task.weights.h5"
FORMATS = ("keras", "h5")
PARITY_BATCH = 2
SEQUENCE_LENGTH = 8
IMAGE_SIZE = 64
OTHER_DIM = 8
SEED = 0
_KERAS_HUB_PREFIX = "keras_hub>"


# --- the preset's files -----------------------------------------------------------------------
def is_preset(folder: Path) -> bool:
    """True when ``folder`` looks like a KerasHub preset (a ``config.json`` and Keras weights
    or a ``task.json``): the adapter's test before :func:`stage_preset`."""
    return (folder / CONFIG_FILE).is_file() and any(
        (folder / name).is_file() for name in (WEIGHTS_FILE, SHARDED_WEIGHTS_FILE, TASK_FILE)
    )


def _json(folder: Path, name: str, label: str) -> dict[str, Any]:
    path = folder / name
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise IntegrityError(
            f"{label}/{name} is not readable JSON ({first_line(exc)}): "
            "the preset is damaged; pull it again with --force"
        ) from None
    if not isinstance(data, dict):
        raise IntegrityError(f"{label}/{name} is not a JSON object: the preset is damaged")
    return data


def _check_weights(folder: Path, name: str, label: str) -> None:
    """``name`` must be a readable HDF5 file whose datasets h5py can all describe."""
    import h5py

    path = folder / name
    if not is_hdf5(path):
        raise IntegrityError(
            f"{label}/{name} is not an HDF5 file: the preset's weights are damaged"
        )
    try:
        with h5py.File(path, "r") as h5:
            h5.visititems(lambda _n, obj: (obj.shape, obj.dtype) if hasattr(obj, "dtype") else None)
    except (OSError, ValueError, RuntimeError, KeyError) as exc:
        raise IntegrityError(
            f"{label}/{name} cannot be read ({first_line(exc)}): the preset's weights "
            "are damaged or truncated; pull it again with --force"
        ) from None


def read_preset(folder: Path, label: str | None = None) -> dict[str, Any]:
    """Check the files of the preset in ``folder`` before anything is built; return its
    ``config``, ``task`` (``task.json`` or None) and ``metadata`` (or ``{}``).

    Raises UnsupportedError when ``folder`` holds no ``config.json``, IntegrityError when a
    config is not JSON, names no Keras class, or a weights file is not readable HDF5.
    ``label`` names the folder in messages (default: its name).
    """
    label = label or folder.name
    if not (folder / CONFIG_FILE).is_file():
        raise UnsupportedError(
            f"{label} is not a KerasHub preset (no {CONFIG_FILE}): its files are kept "
            "as they are, nothing is staged"
        )
    config = _json(folder, CONFIG_FILE, label)
    task = _json(folder, TASK_FILE, label) if (folder / TASK_FILE).is_file() else None
    metadata = _json(folder, METADATA_FILE, label) if (folder / METADATA_FILE).is_file() else {}
    if "registered_name" in config:
        for doc, name in ((config, CONFIG_FILE), (task, TASK_FILE)):
            if doc is not None and not isinstance(doc.get("config"), dict):
                raise IntegrityError(f"{label}/{name} has no Keras object config")
        if (folder / WEIGHTS_FILE).is_file():
            _check_weights(folder, WEIGHTS_FILE, label)
        elif (folder / SHARDED_WEIGHTS_FILE).is_file():
            index = _json(folder, SHARDED_WEIGHTS_FILE, label)
            shards = index.get("weight_map")
            names = set()
            for value in (shards or {}).values() if isinstance(shards, dict) else ():
                names.update(value if isinstance(value, list) else [value])
            if not names:
                raise IntegrityError(f"{label}/{SHARDED_WEIGHTS_FILE} lists no shards")
            for shard in sorted(names):
                if not isinstance(shard, str) or "/" in shard or shard.startswith("."):
                    raise IntegrityError(f"{label}: unsafe weights shard name {shard!r}")
                if not (folder / shard).is_file():
                    raise IntegrityError(f"{label}: weights shard {shard} is missing")
                _check_weights(folder, shard, label)
        else:
            raise IntegrityError(
                f"{label} has no {WEIGHTS_FILE}: the preset is incomplete; "
                "pull it again with --force"
            )
        if task is not None and (folder / TASK_WEIGHTS_FILE).is_file():
            _check_weights(folder, TASK_WEIGHTS_FILE, label)
    elif not ({"model_type", "architecture"} & set(config)):
        raise IntegrityError(
            f"{label}/{CONFIG_FILE} names no model class (no registered_name): "
            "not a KerasHub preset"
        )
    return {"config": config, "task": task, "metadata": metadata}


# --- building ---------------------------------------------------------------------------------
def import_keras_hub() -> Any:
    """Import ``keras_hub`` (after Keras, quietly); UsageError naming the extra when missing."""
    import importlib.util

    import_keras()
    if importlib.util.find_spec("keras_hub") is None:
        raise UsageError(
            "staging a KerasHub preset needs keras_hub: pip install 'modelhub[tensorflow]'"
        )
    with quiet_keras():
        import keras_hub

    return keras_hub


def _reason(exc: BaseException) -> str:
    """The first line of ``exc``, with the next one when the first only announces it."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    if not lines:
        return type(exc).__name__
    text = lines[0]
    if text.endswith(":") and len(lines) > 1:
        text = f"{text} {lines[1]}"
    return text[:300]


def _registered(keras: Any, name: str, what: str, label: str) -> Any:
    if name in ("Functional", "Sequential"):
        return keras.Model
    cls = keras.saving.get_registered_object(name)
    if cls is None:
        import keras_hub

        raise UnsupportedError(
            f"{label}/{what} names the class {name!r}, which keras_hub "
            f"{keras_hub.__version__} does not know (a newer keras-hub may)"
        )
    return cls


def build_preset(
    folder: Path, preset: Mapping[str, Any], label: str | None = None
) -> tuple[Any, str]:
    """Build the preset in ``folder`` with keras_hub; return (model, how it was built).

    The task ``task.json`` names (with its preprocessor), else the backbone. Raises
    UnsupportedError for a class keras_hub does not know, IntegrityError when keras_hub cannot
    assemble the files (weights that do not fit, missing assets), StagingError otherwise.
    ``label`` names the folder in messages (default: its name).
    """
    label = label or folder.name
    keras_hub = import_keras_hub()
    keras = import_keras()
    config = preset["config"]
    task = preset.get("task")
    if "registered_name" in config:
        _registered(keras, str(config["registered_name"]), CONFIG_FILE, label)
    builder: Any = keras_hub.models.Backbone
    if task is not None and isinstance(task.get("registered_name"), str):
        cls = _registered(keras, task["registered_name"], TASK_FILE, label)
        if isinstance(cls, type) and issubclass(cls, keras_hub.models.Task):
            builder = cls
    how = f"keras_hub.models.{builder.__name__}.from_preset"
    with quiet_keras():
        try:
            model = builder.from_preset(str(folder))
        except ImportError as exc:
            raise StagingError(f"{label}: {how} needs {first_line(exc)}") from None
        except (ValueError, OSError, KeyError, TypeError, IndexError) as exc:
            raise IntegrityError(
                f"{label}: keras_hub cannot build the preset from its files "
                f"({_reason(exc)}); pull it again with --force"
            ) from None
        except Exception as exc:
            raise StagingError(f"{label}: {how} failed: {first_line(exc)}") from None
    return model, how


# --- seeded inputs and runs -------------------------------------------------------------------
def _ports(model: Any) -> list[tuple[str, Any]]:
    """(name, KerasTensor) of the model's inputs, in the order the model's call takes them."""
    structure = model.input
    if isinstance(structure, dict):
        return [(str(k), v) for k, v in structure.items()]
    tensors = structure if isinstance(structure, list | tuple) else [structure]
    names = []
    for i, tensor in enumerate(tensors):
        name = getattr(tensor, "name", None) or f"input_{i}"
        names.append((str(name), tensor))
    return names


def seeded_inputs(model: Any, seed: int = SEED) -> dict[str, Any]:
    """Seeded inputs for a KerasHub model, keyed by input name: batch 2; token ids below the
    vocabulary size; masks all ones but for the second half of the last row; sequences of 8
    (at most the model's ``max_sequence_length``); images 64x64 unless the model fixes them."""
    import numpy as np

    backbone = getattr(model, "backbone", model)
    vocab = int(getattr(backbone, "vocabulary_size", 0) or 10)
    seq = SEQUENCE_LENGTH
    longest = getattr(backbone, "max_sequence_length", None)
    if isinstance(longest, int) and longest > 0:
        seq = min(seq, longest)
    rng = np.random.default_rng(seed)
    feeds: dict[str, Any] = {}
    for name, tensor in _ports(model):
        shape = list(tensor.shape)
        dtype = np.dtype(str(tensor.dtype))
        image = dtype.kind == "f" and len(shape) == 4
        dims = [PARITY_BATCH]
        for d in shape[1:]:
            if d is not None:
                dims.append(int(d))
            elif image and len(dims) < 3:
                dims.append(IMAGE_SIZE)
            elif dtype.kind in "iub" and len(dims) == 1:
                dims.append(seq)
            else:
                dims.append(OTHER_DIM)
        lowered = name.lower()
        if "mask" in lowered and dtype.kind in "iub":
            value = np.ones(dims, dtype=dtype)
            if len(dims) >= 2 and dims[1] > 1:
                value[-1, dims[1] // 2 :] = 0
        elif ("segment" in lowered or "type" in lowered) and dtype.kind in "iu":
            value = np.zeros(dims, dtype=dtype)
        elif dtype.kind in "iu":
            value = rng.integers(0, max(vocab, 1), size=dims).astype(dtype)
        elif dtype.kind == "b":
            value = rng.integers(0, 2, size=dims).astype(bool)
        elif dtype.kind == "f":
            value = rng.standard_normal(dims).astype(dtype)
        else:
            raise StagingError(f"cannot make a seeded input {name!r} of type {dtype}")
        feeds[name] = value
    return feeds


def run(model: Any, feeds: Mapping[str, Any]) -> tuple[list[str], list[Any]]:
    """Run ``model`` in inference mode on ``feeds``; return (output names, numpy outputs)."""
    keras = import_keras()
    from keras import tree

    names = [name for name, _ in _ports(model)]
    args: Any = dict(feeds) if isinstance(model.input, dict) else [feeds[n] for n in names]
    if isinstance(args, list) and len(args) == 1:
        args = args[0]
    with quiet_keras():
        out = model(args, training=False)
    if isinstance(out, dict):
        keys = sorted(out)
        return [str(k) for k in keys], [keras.ops.convert_to_numpy(out[k]) for k in keys]
    flat = [keras.ops.convert_to_numpy(t) for t in tree.flatten(out)]
    declared = list(getattr(model, "output_names", None) or [])
    if len(declared) != len(flat):
        declared = [f"output_{i}" for i in range(len(flat))]
    return [str(n) for n in declared], flat


# --- saving -----------------------------------------------------------------------------------
def _short_names() -> dict[str, Any]:
    """keras_hub's registered classes under their bare class names (the legacy HDF5 loader
    looks classes up by ``class_name`` alone)."""
    keras = import_keras()
    return {
        key[len(_KERAS_HUB_PREFIX) :]: value
        for key, value in keras.saving.get_custom_objects().items()
        if key.startswith(_KERAS_HUB_PREFIX)
    }


def _save_and_reload(model: Any, tmp: Path, fmt: str) -> Any:
    """Save ``model`` to ``tmp`` as ``fmt`` and load it back (``safe_mode`` on)."""
    keras = import_keras()

    with quiet_keras():
        model.save(str(tmp))
        if fmt == "h5":
            with keras.saving.custom_object_scope(_short_names()):
                return keras.models.load_model(str(tmp), compile=False)
        return keras.models.load_model(str(tmp), compile=False)


def _tmp(store: Store, stem: str, suffix: str) -> Path:
    return store.tmp_dir / f".{stem}.{os.getpid()}.{os.urandom(4).hex()}{suffix}"


def _store_rel(store: Store, folder: Path) -> str:
    from ..store import layout

    try:
        rel = folder.resolve().relative_to(store.root.resolve()).as_posix()
    except ValueError:
        raise UsageError(f"{folder} is not inside the store {store.root}") from None
    layout.check_relative(rel)
    return rel


def _formats(options: Mapping[str, Any] | None) -> tuple[str, ...]:
    raw = (options or {}).get("formats") or FORMATS
    wanted = (raw,) if isinstance(raw, str) else tuple(raw)
    bad = [f for f in wanted if f not in FORMATS]
    if bad or "keras" not in wanted:
        raise UsageError(
            f"a KerasHub preset stages to keras (and h5), not {bad[0] if bad else wanted!r}"
        )
    return wanted


def stage_preset(
    store: Store,
    ref: ModelRef,
    folder: Path,
    options: Mapping[str, Any] | None = None,
) -> list[StagedEntry]:
    """Stage the KerasHub preset in ``folder`` (a version folder inside ``store``).

    Builds it with keras_hub (:func:`build_preset`), saves it as ``<folder>.keras`` and, unless
    ``options["formats"]`` leaves it out or Keras cannot round-trip the model through HDF5, as
    ``<folder>.h5``; each saved file is reloaded and checked against the preset-built model
    on seeded inputs (``options["tolerance"]``, default 1e-4). Returns the staged entries,
    ``.keras`` first, each with its parity fixture published beside it. When no ``.h5`` was
    staged, the ``.keras`` entry's ``details["h5"]`` says why.

    Raises ParityError (exit 5; nothing published) above the tolerance, and the errors of
    :func:`read_preset` and :func:`build_preset`.
    """
    wanted = _formats(options)
    try:
        tolerance = float((options or {}).get("tolerance", DEFAULT_TOLERANCE))
    except (TypeError, ValueError):
        raise UsageError(
            f"tolerance {options and options.get('tolerance')!r} is not a number"
        ) from None
    rel_folder = _store_rel(store, folder)
    preset = read_preset(folder, rel_folder)
    model, how = build_preset(folder, preset, rel_folder)
    try:
        feeds = seeded_inputs(model)
        names_out, reference = run(model, feeds)
    except StagingError:
        raise
    except Exception as exc:
        raise StagingError(
            f"{ref}: the preset-built model does not run on seeded inputs: {first_line(exc)}"
        ) from None
    names_in = list(feeds)
    details: dict[str, Any] = {
        "preset": rel_folder,
        "built_with": how,
        "class": type(model).__name__,
        "task": preset.get("task") is not None,
        "input_shapes": {n: list(v.shape) for n, v in feeds.items()},
        "seed": SEED,
    }
    meta = preset.get("metadata") or {}
    keep = ("keras_version", "keras_hub_version", "parameter_count", "tasks")
    if any(k in meta for k in keep):
        details["preset_metadata"] = {k: meta[k] for k in keep if k in meta}
    stem = Path(rel_folder).name
    checked: list[tuple[str, Path, dict[str, Any]]] = []
    try:
        for fmt in wanted:
            tmp = _tmp(store, stem, "." + fmt)
            try:
                reloaded = _save_and_reload(model, tmp, fmt)
            except Exception as exc:
                tmp.unlink(missing_ok=True)
                if fmt == "keras":
                    raise StagingError(
                        f"{ref}: saving as .keras failed: {first_line(exc)}"
                    ) from None
                details["h5"] = f"not staged: Keras cannot round-trip it as HDF5: {first_line(exc)}"
                continue
            checked.append((fmt, tmp, {}))
            try:
                _, actual = run(reloaded, feeds)
            except Exception as exc:
                raise StagingError(
                    f"{ref}: the reloaded .{fmt} does not run: {first_line(exc)}"
                ) from None
            parity = compare(
                reference,
                actual,
                what=f"reloaded .{fmt} vs the preset",
                tolerance=tolerance,
                names=names_out,
            )
            checked[-1] = (fmt, tmp, parity)
        if "h5" not in wanted:
            details["h5"] = "not asked for"
        return _publish_all(
            store, ref, rel_folder, checked, names_in, names_out, details, feeds, reference
        )
    finally:
        for _, tmp, _ in checked:
            tmp.unlink(missing_ok=True)


def _publish_all(
    store: Store,
    ref: ModelRef,
    rel_folder: str,
    checked: Sequence[tuple[str, Path, dict[str, Any]]],
    names_in: list[str],
    names_out: list[str],
    details: dict[str, Any],
    feeds: Mapping[str, Any],
    reference: Sequence[Any],
) -> list[StagedEntry]:
    from ..store import StagedEntry
    from ..store.files import sha256_file

    import_keras_hub()
    import keras_hub

    found = {**versions(), "keras-hub": keras_hub.__version__}
    entries = []
    for fmt, tmp, parity in checked:
        rel = f"{rel_folder}.{fmt}"
        sha, size = sha256_file(tmp)
        store.publish(tmp, rel, ref, sha, size)
        fixture = write_fixture(store, ref, rel, list(feeds.values()), reference)
        extra = dict(details)
        if fmt == "h5":
            extra.pop("h5", None)
            extra["loading"] = (
                "keras.models.load_model under a custom_object_scope of keras_hub's classes "
                "(the HDF5 names them without their package); no tokenizer assets"
            )
        converter = details["built_with"] + (
            "+keras.Model.save (legacy HDF5)" if fmt == "h5" else "+keras.Model.save"
        )
        entries.append(
            StagedEntry(
                path=rel,
                format=fmt,
                sha256=sha,
                size=size,
                converter=converter,
                versions=found,
                inputs=list(names_in),
                outputs=list(names_out),
                parity=parity,
                details=extra,
                fixture=fixture,
            )
        )
    return entries


__all__ = [
    "FORMATS",
    "build_preset",
    "is_preset",
    "read_preset",
    "run",
    "seeded_inputs",
    "stage_preset",
]

"""``keras:NAME[/notop]`` — Keras Applications with the ImageNet weights they were published with.

Follows Keras 3.15.1: each application in ``keras/src/applications/`` passes its weights file
(name, origin, hash, ``cache_subdir="models"``) to ``get_file`` in
``keras/src/utils/file_utils.py``, which looks in ``<KERAS_HOME or ~/.keras>/models/<fname>``
(validating a cached file against the hash when one is given) and otherwise makes one plain GET
of the origin, redirects followed, written straight into that path. modelhub makes the same GET
(the origin moved onto ``MODELHUB_KERAS_URL`` or the mirror's ``/keras``) and fills the same
cache path, so ``get_file`` finds modelhub's download and modelhub finds ``get_file``'s.

- resolve: the application comes from ``keras.applications`` itself, and so does the weights
  file it expects — name, origin URL, hash and cache folder, learnt from the application for
  exactly these options (:func:`~modelhub.frameworks.keras_apps.discover_weights`); never a
  hand-written table. The origin is moved onto ``MODELHUB_KERAS_URL`` (or the mirror's
  ``/keras``).
- fetch: a file already in the Keras cache (``$KERAS_HOME/models``, else ``~/.keras/models``)
  with the hash Keras expects is linked into the store with no network. Otherwise the transfer
  engine downloads it into the store's tmp folder, where it is checked (Keras' md5 or sha256,
  and that it is HDF5) before it gets its final name ``keras/<file>``; it is then placed in the
  Keras cache atomically.
- stage: the application built with ``weights="imagenet"`` (Keras' own ``get_file`` now finds
  the file in its cache), saved as a full model ``keras/<name>.h5`` and ``.keras`` (``h5``, the
  default) or frozen to ``keras/<name>.pb`` (``pb``), each proven against the built model.

Options (``--input-shape H,W,C``, ``--alpha``) are passed to the application; they choose the
weights file (e.g. MobileNetV2's ``_0.35_96``), so they are recorded in the manifest and
staging later builds the same model.
"""

from __future__ import annotations

import hashlib
import os
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import settings
from ..errors import HashMismatchError, IntegrityError, OfflineError, UsageError
from ..frameworks.keras_apps import (  # Keras loads inside their functions, not at import
    WeightsFile,
    hash_algorithm,
    parse_shape,
)
from ..frameworks.keras_files import is_hdf5
from ..refs import ModelRef
from ..refs import parse as parse_ref
from ..store import FileEntry, Manifest, StagedEntry, layout
from ..store.files import place_file, sha256_file
from .base import ModelHub, Plan, RemoteFile, StageRequest

#: Options passed through to the application (``--input-shape``, ``--alpha``).
APP_OPTIONS = ("input_shape", "alpha")


def keras_home() -> Path:
    """Keras' cache root, from the environment now: ``$KERAS_HOME``, else ``~/.keras``.

    Like Keras, ``/tmp/.keras`` when the home folder is not writable.
    """
    env = os.environ.get("KERAS_HOME", "").strip()
    if env:
        return Path(env).expanduser()
    home = Path(os.path.expanduser("~"))
    return home / ".keras" if os.access(home, os.W_OK) else Path("/tmp/.keras")


@dataclass(frozen=True)
class WeightsRemoteFile(RemoteFile):
    """A weights file plus the hash Keras publishes for it (md5 or sha256, or none)."""

    file_hash: str | None = None


def file_digest(path: Path, algorithm: str) -> str:
    """Hex digest of ``path`` with ``algorithm`` (``md5`` or ``sha256``)."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as fh:
        while block := fh.read(4 * 2**20):
            digest.update(block)
    return digest.hexdigest()


def check_weights(path: Path, file_hash: str | None, sha256: str, shown: str) -> None:
    """Raise unless ``path`` is the file Keras expects: its hash (when Keras publishes one)
    and, in any case, an HDF5 file.

    Raises HashMismatchError or IntegrityError (exit 5).
    """
    if file_hash:
        algorithm = hash_algorithm(file_hash)
        actual = sha256 if algorithm == "sha256" else file_digest(path, algorithm)
        if actual != file_hash.lower():
            raise HashMismatchError(
                f"{shown}: {algorithm} {actual[:12]}… is not the {file_hash[:12]}… Keras expects; "
                "the file was not kept"
            )
    if not is_hdf5(path):
        raise IntegrityError(f"{shown} is not an HDF5 weights file; the file was not kept")


def app_kwargs(ref: ModelRef, options: Mapping[str, Any]) -> dict[str, Any]:
    """The application's keyword arguments for ``ref`` and ``options`` (JSON-friendly).

    ``notop`` → ``include_top=False``; ``input_shape`` (H,W,C) and ``alpha`` when given.
    Raises UsageError for malformed values.
    """
    kwargs: dict[str, Any] = {"include_top": ref.variant != "notop"}
    if options.get("input_shape"):
        kwargs["input_shape"] = parse_shape(options["input_shape"])
    if options.get("alpha") is not None:
        try:
            kwargs["alpha"] = float(options["alpha"])
        except (TypeError, ValueError):
            raise UsageError(f"--alpha {options['alpha']!r} is not a number") from None
    return kwargs


def build_kwargs(kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """``app_kwargs`` as the application takes them (shapes as tuples)."""
    return {k: tuple(v) if isinstance(v, list) else v for k, v in kwargs.items()}


class KerasHub(ModelHub):
    """Keras Applications (``keras:ResNet50``, ``keras:MobileNetV2/notop``)."""

    name = "keras"
    default_stage = "h5"
    stages = ("none", "h5", "keras", "pb")

    @classmethod
    def sdk_caches(cls) -> dict[str, str]:
        """Keras's downloads (``KERAS_HOME``), for ``modelhub doctor``."""
        return {"keras cache": str(keras_home().absolute())}

    def weights_url(self, origin: str) -> str:
        """``origin`` moved onto this hub's base URL (only origins on the upstream host)."""
        upstream = self.row.endpoints[0].upstream
        if not origin.startswith(upstream + "/"):
            return origin
        return f"{self.hub_url}{urllib.parse.urlsplit(origin).path}"

    def resolve(
        self,
        ref: ModelRef,
        *,
        offline: bool = False,
        options: Mapping[str, Any] | None = None,
        force: bool = False,
    ) -> Plan:
        """The weights file the application expects, from the application itself (no I/O)."""
        from ..frameworks.keras_apps import discover_weights
        from ..frameworks.keras_files import versions

        kwargs = app_kwargs(ref, options or {})
        weights = discover_weights(ref.name, build_kwargs(kwargs))
        fname = layout.safe_filename(weights.fname)
        subdir = layout.safe_filename(weights.cache_subdir)
        url = self.weights_url(weights.origin)
        file_hash = weights.file_hash
        sha256 = file_hash if file_hash and hash_algorithm(file_hash) == "sha256" else None
        return Plan(
            ref=ref,
            revision=None,  # the file's sha256, once fetched
            files=[WeightsRemoteFile(url, layout.file_path(ref, fname), sha256, None, file_hash)],
            source=[url],
            sdk_cache=str(keras_home() / subdir / fname),
            details={
                "application": ref.name,
                "app_kwargs": kwargs,
                "weights_file": fname,
                "upstream_url": weights.origin,
                "file_hash": file_hash,
                "hash_algorithm": weights.hash_algorithm,
                "cache_subdir": subdir,
                "keras": versions()["keras"],
            },
        )

    def satisfies(self, manifest: Manifest, fmt: str, options: Mapping[str, Any]) -> bool:
        """False when ``options`` ask for another ``--input-shape``/``--alpha`` than the
        stored model was pulled with (they select another weights file); True otherwise."""
        pulled = manifest.details.get("app_kwargs")
        if pulled is None or not any(options.get(k) is not None for k in APP_OPTIONS):
            return True
        asked = app_kwargs(parse_ref(manifest.ref), options)
        return all(asked[k] == pulled.get(k) for k in APP_OPTIONS if k in asked)

    @staticmethod
    def _check_download(part: Path, rf: RemoteFile, sha256: str, size: int) -> None:
        """The base checks, then Keras' own hash and the HDF5 signature, before publication."""
        ModelHub._check_download(part, rf, sha256, size)
        check_weights(part, getattr(rf, "file_hash", None), sha256, rf.url)

    def fetch(
        self,
        plan: Plan,
        *,
        progress: bool | None = None,
        offline: bool = False,
        force: bool = False,
    ) -> list[FileEntry]:
        """Reuse the Keras cache (or the store), else download, verify and fill the cache.

        ``force`` downloads again (the cached file may be stale) and replaces the cached one.
        """
        rf = plan.files[0]
        file_hash = plan.details.get("file_hash")
        cached = Path(str(plan.sdk_cache))
        stored = self.store.abspath(rf.rel)
        if force and offline:
            raise OfflineError(f"offline: --force needs the network for {plan.ref}")
        reusable = [] if force else [(cached, "keras-cache"), (stored, "store")]
        for candidate, where in reusable:
            sha = self._valid(candidate, file_hash)
            if sha is None:
                continue
            if where == "keras-cache":
                entry, how = self.store.link_in(cached, rf.rel, plan.ref, sha)
                plan.details["link_mode"] = how
            else:
                entry = FileEntry(rf.rel, sha, stored.stat().st_size)
                place_in_cache(stored, cached)
            plan.details["cache_hit"] = where == "keras-cache"
            plan.details["reused"] = where
            return [entry]
        if offline:
            raise OfflineError(f"offline: {plan.ref} needs {cached.name}, not in {cached.parent}")
        entry = self._fetch_one(plan.ref, rf, progress, offline, record=plan.details)
        place_in_cache(self.store.abspath(entry.path), cached)
        plan.details["cache_hit"] = False
        return [entry]

    @staticmethod
    def _valid(path: Path, file_hash: str | None) -> str | None:
        """sha256 of ``path`` when it is a usable copy of the weights file, else None."""
        if not path.is_file() or path.is_symlink():
            return None
        sha, _ = sha256_file(path)
        try:
            check_weights(path, file_hash, sha, str(path))
        except IntegrityError:
            return None
        return sha

    def stage(self, ref: ModelRef, manifest: Manifest, request: StageRequest) -> list[StagedEntry]:
        """``h5`` (with ``.keras``), ``keras`` or ``pb`` of the application with its weights."""
        if request.fmt not in ("h5", "keras", "pb"):
            return super().stage(ref, manifest, request)
        from ..frameworks.keras_apps import build_application, discover_weights
        from ..staging.keras_h5 import APP_UNKNOWN_DIM, stage_model

        details = manifest.details
        kwargs = details.get("app_kwargs")
        if kwargs is None or "weights_file" not in details:
            # Imported with `modelhub import`: learn the file from the application now.
            kwargs = app_kwargs(ref, request.options)
            found = discover_weights(ref.name, build_kwargs(kwargs))
            weights = WeightsFile(
                layout.safe_filename(found.fname),
                found.origin,
                found.file_hash,
                layout.safe_filename(found.cache_subdir),
            )
        else:
            self._check_options(ref, kwargs, request.options)
            weights = WeightsFile(
                str(details["weights_file"]),
                str(details.get("upstream_url", "")),
                details.get("file_hash"),
                str(details.get("cache_subdir", "models")),
            )
        home = self._ensure_cached(ref, manifest, weights)
        model = build_application(ref.name, build_kwargs(kwargs), weights, home)
        stem = ref.name.lower() + ("_notop" if ref.variant == "notop" else "")
        info = {"application": ref.name, "app_kwargs": kwargs, "weights_file": weights.fname}
        # h5, the default, also gives the .keras file (Keras 3's native format).
        formats = ["h5", "keras"] if request.fmt == "h5" else [request.fmt]
        return stage_model(self.store, ref, model, stem, formats, info, fill=APP_UNKNOWN_DIM)

    def import_kind(self, src: Path, ref: ModelRef) -> str:
        """A weights file (``.h5``/``.hdf5``) or a saved model (``.keras``)."""
        if src.is_file() and src.name.lower().endswith((".h5", ".hdf5", ".keras")):
            return "keras-file"
        return super().import_kind(src, ref)

    @staticmethod
    def _check_options(
        ref: ModelRef, pulled: Mapping[str, Any], options: Mapping[str, Any]
    ) -> None:
        if not any(options.get(k) is not None for k in APP_OPTIONS):
            return
        asked = app_kwargs(ref, options)
        for key in APP_OPTIONS:
            if key in asked and asked[key] != pulled.get(key):
                raise UsageError(
                    f"{ref} was pulled with {key}={pulled.get(key)!r}; pull it again with "
                    f"--force to use {key}={asked[key]!r}"
                )

    def _ensure_cached(self, ref: ModelRef, manifest: Manifest, weights: WeightsFile) -> Path:
        """Make sure the Keras cache holds the verified original; return the cache root."""
        original = manifest.files[0]
        if Path(original.path).name != weights.fname:
            raise UsageError(
                f"{ref} holds {Path(original.path).name}, but the application with these "
                f"options loads {weights.fname}"
            )
        home = keras_home()
        cached = home / weights.cache_subdir / weights.fname
        if manifest.sdk_cache:
            cached = Path(manifest.sdk_cache)
            home = cached.parent.parent
        stored = self.store.abspath(original.path)
        if cached.is_file() and _same_file(cached, stored):
            return home
        if cached.is_file() and sha256_file(cached)[0] == original.sha256:
            return home
        sha, _ = sha256_file(stored)
        if sha != original.sha256:
            raise HashMismatchError(
                f"{original.path} no longer matches its manifest; pull {ref} again with --force"
            )
        place_in_cache(stored, cached)
        return home


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def place_in_cache(src: Path, cached: Path) -> None:
    """Put the verified ``src`` at ``cached`` in the Keras cache atomically (by link mode)."""
    place_file(src, cached, settings().link_mode)

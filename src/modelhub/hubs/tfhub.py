"""``tfhub:HANDLE`` — TensorFlow Hub models (``https://tfhub.dev/...``) in their three forms.

- SavedModels (most handles): as tensorflow_hub 0.16.1 fetches them
  (``compressed_module_resolver.py``: the handle plus ``?tf-hub-format=compressed``, a tar(.gz)
  streamed into its cache; ``resolver.py``: the cache layout), through the shared machinery of
  :mod:`.savedmodel` into the same cache; staged to a frozen ``.pb``.
- TFLite (handles with a ``lite-model`` segment, and Kaggle handles whose framework is
  ``tfLite``): tensorflow_hub never asks for them; tfhub.dev served the ``.tflite`` file at the
  handle with ``?lite-format=tflite`` (Kaggle Models answers the same query). One file,
  ``<model folder>/model.tflite``; staged ``tflite``: validated in the LiteRT interpreter
  (:mod:`modelhub.staging.tflite_check`).
- TF.js (``tfjs-model`` handles, Kaggle ``tfJs``): as TensorFlow.js loads a hub model
  (tfjs-converter ``src/executor/graph_model.ts``, ``fromTFHub``: ``{handle}/model.json`` with
  ``?tfjs-format=file``; tfjs-core ``src/io/http.ts``: each weights path of its
  ``weightsManifest`` next to it, with the same query): files only, no staging (the manifest's
  ``note`` says so).

tfhub.dev now redirects every migrated handle to Kaggle Models (the query kept, plus
``tfhub-redirect=true``); a handle never migrated redirects to a Kaggle web page (200, HTML),
which is reported as *not found* with the handle named, never saved or extracted.
"""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..errors import IntegrityError, InvalidReferenceError, UnsupportedError
from ..refs import ModelRef
from ..store import FileEntry, Manifest, StagedEntry, layout
from ..upstream import Memo, Recorded, UpstreamStatus, check_http
from .base import Plan, StageRequest
from .savedmodel import HandleFile, SavedModelArchiveHub, read_head, tree_digest

SAVEDMODEL, TFLITE, TFJS = "savedmodel", "tflite", "tfjs"
LITE_QUERY = "lite-format=tflite"
TFJS_QUERY = "tfjs-format=file"
TFLITE_FILE = "model.tflite"
TFJS_MODEL = "model.json"
TFJS_NOTE = (
    "TF.js model: files only (model.json and its weight shards), not converted or validated; "
    "load it with TensorFlow.js"
)
# Kaggle framework slugs (camelCase in URLs) of the two non-SavedModel forms.
_KAGGLE_FORMS = {"tflite": TFLITE, "tfjs": TFJS}


def handle_form(handle: str) -> str:
    """Which form a handle names: ``tflite``, ``tfjs`` or ``savedmodel``.

    tfhub.dev's own handles say it in a segment (``.../lite-model/...``, ``.../tfjs-model/...``);
    Kaggle handles by their framework: ``OWNER/MODEL/FRAMEWORK/VARIATION[/VERSION]`` or the
    long ``.../frameworks/FRAMEWORK/variations/...``.
    """
    segs = [s.lower() for s in handle.strip("/").split("/")]
    if "lite-model" in segs:
        return TFLITE
    if "tfjs-model" in segs:
        return TFJS
    framework = None
    if "frameworks" in segs[:-1]:
        framework = segs[segs.index("frameworks") + 1]
    elif len(segs) in (4, 5) and (len(segs) == 4 or segs[4].isdigit()):
        framework = segs[2]
    return _KAGGLE_FORMS.get(framework or "", SAVEDMODEL)


def tfjs_weight_paths(model_json: Path, shown: str) -> list[str]:
    """The weight files a TF.js ``model.json`` names (``weightsManifest[].paths``), checked to be
    relative paths inside the model folder. Raises IntegrityError for anything else."""
    try:
        doc = json.loads(model_json.read_bytes())
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise IntegrityError(f"{shown} is not a TF.js model.json (not JSON)") from None
    groups = doc.get("weightsManifest") if isinstance(doc, dict) else None
    if not isinstance(groups, list) or not ("modelTopology" in doc or "format" in doc or groups):
        raise IntegrityError(f"{shown} is not a TF.js model.json (no weightsManifest)")
    paths: list[str] = []
    for group in groups:
        names = group.get("paths") if isinstance(group, dict) else None
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise IntegrityError(f"{shown}: a weightsManifest group has no list of paths")
        for name in names:
            try:
                layout.check_relative(name)
                layout.safe_filename(name.rsplit("/", 1)[-1])
            except InvalidReferenceError:
                raise IntegrityError(f"{shown} names an unsafe weights path {name!r}") from None
            if name not in paths and name != TFJS_MODEL:
                paths.append(name)
    return paths


class TFHubHub(SavedModelArchiveHub):
    """TensorFlow Hub handles (``tfhub:google/imagenet/.../5``, ``https://tfhub.dev/...``)."""

    name = "tfhub"
    stages = ("none", "pb", TFLITE)

    def handle_url(self, ref: ModelRef) -> str:
        """``{base}/{handle}``: the URL tensorflow_hub is given (its cache key)."""
        return f"{self.hub_url}/{ref.name}"

    def page_message(self, ref: ModelRef, url: str) -> str:
        """tfhub.dev's answer for a handle that was never migrated to Kaggle Models."""
        return (
            f"{ref} not found: {url} answered with a web page, not a model (tfhub.dev handles "
            "never migrated to Kaggle Models were removed); find the model on "
            "https://www.kaggle.com/models"
        )

    def auto_stage(self, ref: ModelRef) -> str:
        """``pb`` for a SavedModel, ``tflite`` (validate) for TFLite, ``none`` for TF.js."""
        return {SAVEDMODEL: "pb", TFLITE: TFLITE, TFJS: "none"}[handle_form(ref.name)]

    def resolve(
        self,
        ref: ModelRef,
        *,
        offline: bool = False,
        options: Mapping[str, Any] | None = None,
        force: bool = False,
    ) -> Plan:
        """The archive (SavedModel), the ``.tflite`` file, or ``model.json`` (TF.js; its shards
        are learnt from it while fetching)."""
        form = handle_form(ref.name)
        if form == SAVEDMODEL:
            return super().resolve(ref, offline=offline, options=options, force=force)
        if (options or {}).get("storage") == "compressed":
            raise UnsupportedError(
                f"{ref} is a {'TFLite file' if form == TFLITE else 'TF.js model'}: "
                "--storage compressed applies to SavedModels only"
            )
        handle = self.handle_url(ref)
        folder = layout.model_dir(ref)
        if form == TFLITE:
            url, rel = f"{handle}?{LITE_QUERY}", f"{folder}/{TFLITE_FILE}"
        else:
            url, rel = f"{handle}/{TFJS_MODEL}?{TFJS_QUERY}", f"{folder}/{TFJS_MODEL}"
        details: dict[str, Any] = {"handle": handle, "folder": folder, "form": form}
        if form == TFJS:
            details["note"] = TFJS_NOTE
        last = ref.name.rsplit("/", 1)[-1]
        if last.isdigit():
            details["version"] = last
        return Plan(
            ref=ref,
            revision=None,
            files=[HandleFile(url, rel, expect=form, missing=self.page_message(ref, url))],
            source=[handle],
            details=details,
        )

    def fetch(
        self,
        plan: Plan,
        *,
        progress: bool | None = None,
        offline: bool = False,
        force: bool = False,
    ) -> list[FileEntry]:
        """SavedModels through tensorflow_hub's cache; a TFLite file, or a TF.js model.json
        and then the weight files it names, straight into the store."""
        form = plan.details.get("form", SAVEDMODEL)
        if form == SAVEDMODEL:
            return super().fetch(plan, progress=progress, offline=offline, force=force)
        first = self._fetch_one(plan.ref, plan.files[0], progress, offline, record=plan.details)
        entries = [first]
        try:
            if form == TFLITE:
                from ..staging.tflite_check import is_tflite

                if not is_tflite(read_head(self.store.abspath(first.path), 8)):
                    raise IntegrityError(
                        f"{plan.files[0].url} is not a TFLite model (no TFL3 flatbuffer "
                        "identifier); nothing was kept"
                    )
            else:
                entries += self._fetch_shards(plan, first, progress, offline)
        except BaseException:
            # A model is whole or absent: nothing published here stays without its manifest.
            for entry in entries:
                self.store.abspath(entry.path).unlink(missing_ok=True)
            raise
        plan.revision = tree_digest(entries, plan.details["folder"] + "/")
        return entries

    def _fetch_shards(
        self, plan: Plan, model_json: FileEntry, progress: bool | None, offline: bool
    ) -> list[FileEntry]:
        handle, folder = plan.details["handle"], plan.details["folder"]
        paths = tfjs_weight_paths(self.store.abspath(model_json.path), plan.files[0].url)
        out = []
        for path in paths:
            url = f"{handle}/{urllib.parse.quote(path)}?{TFJS_QUERY}"
            missing = getattr(plan.files[0], "missing", "")
            shard = HandleFile(url, f"{folder}/{path}", expect="file", missing=missing)
            out.append(self._fetch_one(plan.ref, shard, progress, offline, record=plan.details))
        return out

    def check_upstream(self, recorded: Recorded, memo: Memo) -> UpstreamStatus:
        """HEAD what a pull fetches first: the archive, the ``.tflite`` file or ``model.json``."""
        form = handle_form(recorded.ref.name)
        if form == SAVEDMODEL:
            return super().check_upstream(recorded, memo)
        handle = self.handle_url(recorded.ref)
        if form == TFLITE:
            url, name = f"{handle}?{LITE_QUERY}", TFLITE_FILE
        else:
            url, name = f"{handle}/{TFJS_MODEL}?{TFJS_QUERY}", TFJS_MODEL
        sha = next((sha for path, sha in recorded.files if path.endswith("/" + name)), None)
        return check_http(recorded, url, "HEAD", sha)

    def import_kind(self, src: Path, ref: ModelRef) -> str:
        """A SavedModel folder or archive; a ``.tflite`` file; a TF.js folder (``model.json``)."""
        if src.is_file() and src.name.lower().endswith(".tflite"):
            return "plain-file"
        if src.is_dir() and (src / TFJS_MODEL).is_file() and not (src / "saved_model.pb").exists():
            return "snapshot"
        return super().import_kind(src, ref)

    def stage(self, ref: ModelRef, manifest: Manifest, request: StageRequest) -> list[StagedEntry]:
        """``pb`` for a SavedModel; ``tflite``: validate the ``.tflite`` file in LiteRT."""
        form = handle_form(ref.name)
        tflite = [f for f in manifest.files if f.path.lower().endswith(".tflite")]
        if request.fmt == TFLITE:
            if not tflite:
                raise UnsupportedError(f"{ref} holds no .tflite file to validate")
            from ..staging.tflite_check import validate_entry

            f = tflite[0]
            return [validate_entry(self.store.abspath(f.path), f.path, f.sha256, f.size)]
        if request.fmt == "pb" and (form != SAVEDMODEL or tflite):
            kind = "a TFLite model" if form == TFLITE or tflite else "a TF.js model"
            raise UnsupportedError(f"{ref} is {kind}, not a SavedModel: it cannot be frozen to pb")
        return super().stage(ref, manifest, request)

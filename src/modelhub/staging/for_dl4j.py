"""``--for dl4j`` in a staging: the forms Deeplearning4j 1.0.0-M2.1 imports, beside the staging's.

``pull --for dl4j`` (``options["for"] == "dl4j"``) runs :func:`dl4j_forms` on what a hub's
staging returned: every staged ONNX file gets its rewrite ``<stem>.dl4j.onnx``
(:mod:`modelhub.staging.onnx_dl4j`), every Keras ``.h5`` its Keras 2 twin ``<stem>.dl4j.h5``
(:func:`modelhub.staging.keras_h5.dl4j_h5_entry`); ``pb`` imports as it is. Every hub's ONNX
and ``.h5`` staging goes through here, so a new hub gets them too. :func:`has_dl4j_forms` tells
the pipeline whether a stored manifest already has them.

A staging's own file that is already in the form DL4J imports (torch and Hugging Face ONNX
exports are rewritten by default when parity holds; Keras ``.h5`` is written in the Keras 2
layout by default: ``details["dl4j_ready"]``) gets no copy: it is its own DL4J form.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ..errors import StagingError
from .onnx_dl4j import (
    DL4J_FORMATS,
    ERROR_KEY,
    FOR_DL4J,
    dl4j_onnx_entry,
    is_dl4j_form,
    is_dl4j_ready,
)

if TYPE_CHECKING:
    from ..refs import ModelRef
    from ..store import Manifest, StagedEntry, Store


def wants_dl4j(options: Mapping[str, Any]) -> bool:
    """Whether a pull's ``options`` ask for DL4J-ready forms."""
    return options.get("for") == FOR_DL4J


def has_dl4j_forms(manifest: Manifest, fmt: str) -> bool:
    """Whether every staged ``fmt`` entry of ``manifest`` has its DL4J-ready copy, or a
    recorded reason why it has none (so a pull ``--for dl4j`` need not stage again)."""
    if fmt not in DL4J_FORMATS:
        return True
    made = {str(s.details.get("source")) for s in manifest.staged if is_dl4j_form(s)}
    return all(
        s.path in made or ERROR_KEY in s.details
        for s in manifest.staged
        if s.format == fmt and not is_dl4j_ready(s)
    )


def dl4j_forms(store: Store, ref: ModelRef, staged: Sequence[StagedEntry]) -> list[StagedEntry]:
    """``staged`` with a DL4J-ready copy after each staged ONNX (and Keras ``.h5``) entry.

    An entry whose copy cannot be made (StagingError: no fixture, a layer tf_keras lacks...)
    keeps the one-line reason as ``details["dl4j_error"]`` and the staging goes on; a copy
    whose numbers differ from the source's raises ParityError (nothing of it is published).
    The first entry stays first (it is the model's primary path).
    """
    out: list[StagedEntry] = []
    for entry in staged:
        out.append(entry)
        if entry.format not in DL4J_FORMATS or is_dl4j_ready(entry) or ERROR_KEY in entry.details:
            continue
        try:
            if entry.format == "onnx":
                out.append(dl4j_onnx_entry(store, ref, entry))
            else:
                from .keras_h5 import dl4j_h5_entry

                out.append(dl4j_h5_entry(store, ref, entry))
        except StagingError as exc:
            out[-1] = dataclasses.replace(entry, details={**entry.details, ERROR_KEY: str(exc)})
    return out


__all__ = ["dl4j_forms", "has_dl4j_forms", "wants_dl4j"]

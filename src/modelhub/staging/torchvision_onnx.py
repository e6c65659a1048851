"""Stage ``onnx`` for torchvision: build the model with its verified weights, export, check parity.

The weights are loaded by torchvision itself from torch's cache (where the hub placed the
verified file), with ``TORCH_FORCE_WEIGHTS_ONLY_LOAD=1`` so that even torch.hub's loader opens the
pickle with ``weights_only=True``. The model is exported with a dynamic batch axis and checked
against the torch module in eval mode on seeded inputs of two batch sizes.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from typing import Any

from .._frameworks import torch_import_guard
from ..errors import IntegrityError, StagingError
from ..refs import ModelRef
from ..store import Manifest, StagedEntry, Store, layout
from ..store.files import sha256_file
from .torch_onnx import DEFAULT_OPSET, export_module, quiet_stdout, scratch_path

torch_import_guard()  # before any torch import in this module (see _frameworks)


@contextlib.contextmanager
def weights_only_loads(torch_home: str | None = None) -> Iterator[None]:
    """Force every ``torch.load`` in the block to ``weights_only=True`` (and pin TORCH_HOME)."""
    saved = {k: os.environ.get(k) for k in ("TORCH_FORCE_WEIGHTS_ONLY_LOAD", "TORCH_HOME")}
    os.environ["TORCH_FORCE_WEIGHTS_ONLY_LOAD"] = "1"
    if torch_home:
        os.environ["TORCH_HOME"] = torch_home
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def build_torchvision(ref: ModelRef) -> Any:
    """The torchvision model of ``ref`` with its weights, loaded offline from torch's cache."""
    import pickle

    import torchvision.models as tvm

    from ..hubs.torch_hub import TorchHub, torch_home

    weights = TorchHub.weights_for(ref)
    builder = tvm.get_model_builder(ref.name)
    with weights_only_loads(str(torch_home())), quiet_stdout():
        try:
            return builder(weights=weights, progress=False)
        except pickle.UnpicklingError as exc:
            first = str(exc).strip().splitlines()[0]
            raise IntegrityError(
                f"{ref}: the weights pickle is not plain data, refused: {first}"
            ) from None


def build_torch_hub(ref: ModelRef, manifest: Manifest) -> Any:
    """Run the (trusted) entrypoint from torch.hub's local cache of the repository."""
    import torch

    repo_dir = manifest.sdk_cache
    if not repo_dir:
        raise StagingError(f"{ref}: the manifest does not name torch.hub's repository folder")
    with weights_only_loads(), quiet_stdout():
        try:
            return torch.hub.load(repo_dir, str(ref.entry), source="local")  # type: ignore[no-untyped-call]
        except Exception as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise StagingError(f"{ref}: the entrypoint failed: {first}") from None


def export_torch_hub(
    store: Store, ref: ModelRef, manifest: Manifest, options: Mapping[str, Any]
) -> StagedEntry:
    """Export a torch.hub entrypoint's model to ``pytorch/hub/OWNER/REPO/ENTRY.onnx``."""
    model = build_torch_hub(ref, manifest)
    return export_loaded(
        store,
        ref,
        manifest,
        options,
        model,
        str(ref.entry),
        "torch.hub+torch.onnx.export",
        {"repo": ref.name},
    )


def export_torchvision(
    store: Store, ref: ModelRef, manifest: Manifest, options: Mapping[str, Any]
) -> StagedEntry:
    """Export ``ref`` to ``pytorch/<name>.onnx``; return the staged entry with parity."""
    import torchvision

    model = build_torchvision(ref)
    stem = ref.name if ref.revision is None else f"{ref.name}_{ref.revision}"
    return export_loaded(
        store,
        ref,
        manifest,
        options,
        model,
        stem,
        "torchvision+torch.onnx.export",
        {"weights": manifest.revision, "torchvision": torchvision.__version__},
    )


def export_loaded(
    store: Store,
    ref: ModelRef,
    manifest: Manifest,
    options: Mapping[str, Any],
    model: Any,
    stem: str,
    converter: str,
    extra: dict[str, str],
) -> StagedEntry:
    """Export an already built torch ``model`` as ``ref``'s staged ONNX (dynamic batch, parity)."""
    import torch

    from ..hubs.torch_hub import input_shape

    model.eval()
    shape = (
        input_shape(options, None)
        if options.get("input_shape")
        else tuple(manifest.details.get("input_shape") or (1, 3, 224, 224))
    )
    gen = torch.Generator().manual_seed(0)
    example = {"input": torch.randn((2, *shape[1:]), generator=gen)}
    # Parity on fresh values at another batch size (1: the cheapest that is not the traced 2).
    check = {"input": torch.randn((1, *shape[1:]), generator=gen)}
    tmp = scratch_path(store.tmp_dir, stem)
    opset = int(options.get("opset") or DEFAULT_OPSET)
    exported = export_module(
        model,
        example,
        ["output"],
        tmp,
        dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}},
        check_inputs=[check],
        opset=opset,
        what=f"{ref} → ONNX",
    )
    sha, size = sha256_file(exported.path)
    rel = layout.staged_path(ref, stem, "onnx")
    store.publish(exported.path, rel, ref, sha, size)
    versions = {**exported.versions}
    if "torchvision" in extra:
        versions["torchvision"] = extra.pop("torchvision")
    return StagedEntry(
        path=rel,
        format="onnx",
        sha256=sha,
        size=size,
        converter=converter,
        versions=versions,
        inputs=exported.inputs,
        outputs=exported.outputs,
        parity=exported.parity,
        details={
            "opset": exported.opset,
            "input_shape": list(shape),
            "dynamic_axes": {"input": ["batch"], "output": ["batch"]},
            **extra,
        },
    )

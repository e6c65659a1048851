"""Stage ``onnx`` for torchvision and torch.hub: build the model, export, check parity.

torchvision: torchvision's own builder makes the model and loads the weights from the store's
file (pulled, verified, or imported), opened with ``weights_only=True``. torch.hub: the trusted
entrypoint runs from torch.hub's folder of the repository with the recorded keyword arguments,
its own loads left as its authors wrote them, and :func:`watch_weights` notes whether it loaded
any weights. The model
is exported with a dynamic batch axis and checked against the torch module in eval mode on
seeded inputs of two batch sizes.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
import threading
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._frameworks import torch_import_guard
from ..config import settings
from ..errors import IntegrityError, ModelNotFoundError, NetworkError, StagingError
from ..refs import ModelRef
from ..store import Manifest, StagedEntry, Store, layout
from ..store.files import sha256_file
from .parity import write_fixture
from .torch_onnx import (
    DEFAULT_OPSET,
    export_module,
    flat_outputs,
    flattened,
    quiet_stdout,
    scratch_path,
)

torch_import_guard()  # before any torch import in this module (see _frameworks)


def build_torchvision(ref: ModelRef, weights_file: Path) -> Any:
    """The torchvision model of ``ref`` built by torchvision's own builder with the weights of
    ``weights_file`` (the store's copy, pulled or imported), opened ``weights_only``.

    The builder is given its weights enum member (some builders adapt the architecture to it:
    ``num_classes``, inception's ``transform_input``), and the one call through which it loads
    them, ``load_state_dict_from_url`` in torchvision's ``_api``, reads ``weights_file`` instead
    of torch's cache or the network: an imported file under another name is staged as it is,
    and staging never downloads (offline or not).
    """
    import pickle

    import torch
    import torchvision.models as tvm
    import torchvision.models._api as tv_api

    from ..frameworks.torch_env import weights_for

    weights = weights_for(ref)
    builder = tvm.get_model_builder(ref.name)

    def from_store(url: str, *args: Any, **kwargs: Any) -> Any:
        return torch.load(weights_file, map_location="cpu", weights_only=True)

    original = tv_api.load_state_dict_from_url
    with _TV_LOAD_LOCK, quiet_stdout():
        tv_api.load_state_dict_from_url = from_store
        try:
            return builder(weights=weights, progress=False)
        except pickle.UnpicklingError as exc:
            first = str(exc).strip().splitlines()[0]
            raise IntegrityError(
                f"{ref}: the weights pickle is not plain data, refused: {first}"
            ) from None
        except RuntimeError as exc:  # load_state_dict: missing/unexpected keys, shapes
            first = str(exc).strip().splitlines()[0]
            raise StagingError(
                f"{ref}: {weights_file.name} does not hold {ref.name}'s weights: {first}"
            ) from None
        finally:
            tv_api.load_state_dict_from_url = original


# torchvision's loader is swapped process-wide while a builder runs (sync stages in threads).
_TV_LOAD_LOCK = threading.Lock()


@dataclass
class WeightsSeen:
    """What an entrypoint loaded while it ran: keys matched by ``load_state_dict`` calls,
    TorchScript archives opened, and where the weights came from (files and URLs)."""

    matched_keys: int = 0
    scripted: int = 0
    sources: list[str] = field(default_factory=list)
    #: upstream base URL → the base URL in force (a mirror), for the entrypoint's downloads.
    redirects: dict[str, str] = field(default_factory=dict)

    @property
    def loaded(self) -> bool:
        """Whether any weights reached a module."""
        return self.matched_keys > 0 or self.scripted > 0

    def source(self, what: Any) -> None:
        """Note where a load read from (a path or URL; streams are not named)."""
        if isinstance(what, str | os.PathLike) and len(self.sources) < 20:
            text = os.fspath(what)
            if isinstance(text, str) and text not in self.sources:
                self.sources.append(text)

    def moved(self, url: str) -> str:
        """``url`` on the base URL in force when it names an upstream that was moved."""
        for upstream, base in self.redirects.items():
            if url.startswith(f"{upstream}/"):
                return base + url[len(upstream) :]
        return url


_watch_lock = threading.Lock()
_watch_local = threading.local()
_watch_users = 0
_watch_saved: list[tuple[Any, str, Any]] = []


def _current() -> WeightsSeen | None:
    return getattr(_watch_local, "seen", None)


def _wrapped_load_state_dict(original: Any) -> Any:
    def load_state_dict(module: Any, state_dict: Any, *args: Any, **kwargs: Any) -> Any:
        result = original(module, state_dict, *args, **kwargs)
        seen = _current()
        if seen is not None:
            try:
                unexpected = len(getattr(result, "unexpected_keys", ()) or ())
                seen.matched_keys += max(0, len(state_dict) - unexpected)
            except TypeError:
                pass
        return result

    return load_state_dict


def _wrapped_download(original: Any) -> Any:
    def download_url_to_file(*args: Any, **kwargs: Any) -> Any:
        seen = _current()
        if seen is not None:
            if args and isinstance(args[0], str):
                args = (seen.moved(args[0]), *args[1:])
            elif isinstance(kwargs.get("url"), str):
                kwargs["url"] = seen.moved(kwargs["url"])
            seen.source(args[0] if args else kwargs.get("url"))
        return original(*args, **kwargs)

    return download_url_to_file


def _wrapped_source(original: Any, param: str, scripted: bool = False) -> Any:
    def load(*args: Any, **kwargs: Any) -> Any:
        seen = _current()
        if seen is not None:
            seen.source(args[0] if args else kwargs.get(param))
        result = original(*args, **kwargs)
        if seen is not None and scripted:
            seen.scripted += 1
        return result

    return load


@contextlib.contextmanager
def watch_weights(redirects: Mapping[str, str] | None = None) -> Iterator[WeightsSeen]:
    """Record the weights code in this thread loads inside the block; its torch.hub downloads
    from an upstream in ``redirects`` go to the base URL given there (the mirror in force).

    Every route an entrypoint takes to pretrained weights ends in ``Module.load_state_dict``
    (wrapped at the class, so names bound by ``from torch.hub import ...`` before the block do
    not escape it) or in ``torch.jit.load``; ``torch.load``, ``load_state_dict_from_url`` and
    ``download_url_to_file`` are wrapped to learn the sources (every torch.hub download, also
    the ones torchvision starts, goes through ``download_url_to_file``). The wrappers stay
    installed while any thread watches and only record for threads that do.
    """
    global _watch_users
    import torch
    import torch.hub

    with _watch_lock:
        if _watch_users == 0:
            targets: list[tuple[Any, str, Any]] = [
                (torch.nn.Module, "load_state_dict", _wrapped_load_state_dict),
                (torch, "load", lambda f: _wrapped_source(f, "f")),
                (torch.jit, "load", lambda f: _wrapped_source(f, "f", scripted=True)),
                (torch.hub, "load_state_dict_from_url", lambda f: _wrapped_source(f, "url")),
                (torch.hub, "download_url_to_file", _wrapped_download),
            ]
            for owner, name, wrap in targets:
                original = getattr(owner, name)
                _watch_saved.append((owner, name, original))
                setattr(owner, name, wrap(original))
        _watch_users += 1
    seen = WeightsSeen(redirects=dict(redirects or {}))
    outer = _current()
    _watch_local.seen = seen
    try:
        yield seen
    finally:
        _watch_local.seen = outer
        with _watch_lock:
            _watch_users -= 1
            if _watch_users == 0:
                while _watch_saved:
                    owner, name, original = _watch_saved.pop()
                    setattr(owner, name, original)


def build_torch_hub(
    ref: ModelRef, manifest: Manifest, redirects: Mapping[str, str] | None = None
) -> tuple[Any, WeightsSeen]:
    """Run the (trusted) entrypoint from torch.hub's local cache of the repository, with the
    manifest's ``args``; return the model and the weights it loaded.

    The user chose to run this repository's code, so its own loads are not forced to
    ``weights_only`` (checkpoints that pickle training arguments load as the authors meant).
    Its torch.hub downloads follow ``redirects`` (see :func:`watch_weights`). Raises
    ModelNotFoundError (exit 3) / NetworkError (exit 6) when one of them is not found / cannot
    connect, StagingError for anything else the entrypoint raises.
    """
    import urllib.error

    import torch

    repo_dir = manifest.sdk_cache
    if not repo_dir:
        raise StagingError(f"{ref}: the manifest does not name torch.hub's repository folder")
    args = dict(manifest.details.get("args") or {})
    chatter = io.StringIO()  # torch.hub's "Downloading: ...", the repo's own prints
    try:
        with (
            watch_weights(redirects) as seen,
            contextlib.redirect_stdout(chatter),
            contextlib.redirect_stderr(chatter),
            warnings.catch_warnings(),
        ):
            warnings.simplefilter("ignore")
            model = torch.hub.load(repo_dir, str(ref.entry), source="local", **args)  # type: ignore[no-untyped-call]
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            raise ModelNotFoundError(
                f"{ref}: the entrypoint's download {exc.url} was not found (HTTP 404)"
            ) from None
        raise StagingError(f"{ref}: the entrypoint's download {exc.url}: {exc}") from None
    except urllib.error.URLError as exc:
        raise NetworkError(f"{ref}: the entrypoint could not download: {exc.reason}") from None
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise StagingError(f"{ref}: the entrypoint failed: {first}") from None
    finally:
        if settings().debug:  # the CLI's stderr is one line per error otherwise
            sys.stderr.write(chatter.getvalue())
    return model, seen


def export_torch_hub(
    store: Store,
    ref: ModelRef,
    manifest: Manifest,
    options: Mapping[str, Any],
    redirects: Mapping[str, str] | None = None,
) -> StagedEntry:
    """Export a torch.hub entrypoint's model to ``pytorch/hub/OWNER/REPO/ENTRY.onnx``; the
    staged entry says which ``args`` ran and whether weights were loaded (``weights``:
    ``"loaded"`` with ``weight_sources``, or ``"none"`` with a ``note``)."""
    model, seen = build_torch_hub(ref, manifest, redirects)
    args = dict(manifest.details.get("args") or {})
    extra: dict[str, Any] = {"repo": ref.name, "args": args}
    if seen.loaded:
        extra.update(weights="loaded", weight_sources=list(seen.sources))
    else:
        extra.update(
            weights="none",
            note=(
                "the entrypoint loaded no weights: the network is untrained (random "
                "initialisation); pass what its hubconf.py takes, e.g. --hub-arg "
                "pretrained=true or --hub-arg weights=DEFAULT"
            ),
        )
    return export_loaded(
        store,
        ref,
        manifest,
        options,
        model,
        str(ref.entry),
        "torch.hub+torch.onnx.export",
        extra,
    )


def export_torchvision(
    store: Store, ref: ModelRef, manifest: Manifest, options: Mapping[str, Any]
) -> StagedEntry:
    """Export ``ref`` to ``pytorch/<name>.onnx``; return the staged entry with parity."""
    import torchvision

    from ..frameworks.torch_env import input_shape, weights_for

    model = build_torchvision(ref, store.abspath(manifest.files[0].path))
    if not options.get("input_shape") and not manifest.details.get("input_shape"):
        # An imported file carries no plan: the input its weights were made for, as a pull
        # records it.
        shape = input_shape({}, weights_for(ref))
        options = {**options, "input_shape": ",".join(str(d) for d in shape)}
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
    extra: dict[str, Any],
) -> StagedEntry:
    """Export an already built torch ``model`` as ``ref``'s staged ONNX (dynamic batch, parity)."""
    import torch

    from ..frameworks.torch_env import input_shape

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
    # Every tensor the module returns is an output (a tuple, list or dict of them included);
    # an output axis whose size follows the batch from 2 to 1 is dynamic.
    with torch.inference_mode():
        traced = flat_outputs(model(example["input"]))
        raw = model(check["input"])
        checked = flat_outputs(raw)
    if not traced:
        raise StagingError(f"{ref}: the model returns no tensor ({type(model).__name__})")
    names = [n for n, _ in traced]
    axes = {"input": {0: "batch"}}
    for (name, a), (_, b) in zip(traced, checked, strict=True):
        if a.dim() != b.dim():
            raise StagingError(f"{ref}: output {name} changes rank with the batch size")
        axes[name] = {
            i: "batch" if (x, y) == (2, 1) else f"{name}_{i}"
            for i, (x, y) in enumerate(zip(a.shape, b.shape, strict=True))
            if x != y
        }
    # A ScriptModule cannot be traced inside a wrapper: the exporter flattens its tuples itself.
    as_is = isinstance(raw, torch.Tensor) or isinstance(model, torch.jit.ScriptModule)
    tmp = scratch_path(store.tmp_dir, stem)
    opset = int(options.get("opset") or DEFAULT_OPSET)
    exported = export_module(
        model if as_is else flattened(model),
        example,
        names,
        tmp,
        dynamic_axes=axes,
        check_inputs=[check],
        expected=[tuple(t for _, t in checked)],
        opset=opset,
        what=f"{ref} → ONNX",
    )
    sha, size = sha256_file(exported.path)
    rel = layout.staged_path(ref, stem, "onnx")
    store.publish(exported.path, rel, ref, sha, size)
    fixture = write_fixture(store, ref, rel, *exported.fixture)
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
        fixture=fixture,
        details={
            "opset": exported.opset,
            "input_shape": list(shape),
            "dynamic_axes": {k: list(v.values()) for k, v in axes.items()},
            **exported.dl4j,
            **extra,
        },
    )

#!/usr/bin/env python3
"""Build a folder laid out like the ONNX Model Zoo from local ``.onnx`` files.

    python scripts/make_zoo.py --out ZOO  model_a.onnx  folder_of_models/  [--tag audio ...]

writes ``ZOO/ONNX_HUB_MANIFEST.json`` (the zoo's real schema, read with ``onnx``: opset, IR
version, input/output ports, sha256, size) and puts each model at ``ZOO/<prefix>/<file name>``
(a copy). Serve ``ZOO`` over HTTP and point
``MODELHUB_ONNX_URL`` at it. Each entry's ``model`` is the file stem (``silero_vad_half``).
Prints the manifest path on stdout.

Importable: ``build_zoo(files, out)`` returns the manifest as a list of dicts.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import os
import shutil
import sys
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

MANIFEST_NAME = "ONNX_HUB_MANIFEST.json"
DEFAULT_PREFIX = "models"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _onnx_release(ir_version: int, opset: int) -> str:
    """Return the oldest onnx release that writes ``ir_version`` and knows ``opset``."""
    import onnx.helper

    for release, ir, ai_onnx, *_ in onnx.helper.VERSION_TABLE:
        if ir == ir_version and ai_onnx >= opset:
            return str(release)
    import onnx

    return str(onnx.__version__)


def _ports(values: Iterable[Any], skip: set[str], unknown: Iterator[int]) -> list[dict[str, Any]]:
    """Describe graph inputs/outputs as the zoo does: ``{name, shape, type}``.

    A dimension with neither a value nor a name gets a fresh ``unk__N`` label, as in the zoo.
    """
    import onnx

    ports = []
    for value in values:
        if value.name in skip:  # IR<4 models list initializers among the inputs
            continue
        tensor = value.type.tensor_type
        shape: list[int | str] = []
        for dim in tensor.shape.dim:
            if dim.HasField("dim_value"):
                shape.append(int(dim.dim_value))
            else:
                shape.append(dim.dim_param or f"unk__{next(unknown)}")
        elem = onnx.TensorProto.DataType.Name(tensor.elem_type).lower()
        ports.append({"name": value.name, "shape": shape, "type": f"tensor({elem})"})
    return ports


def describe(path: Path, model_path: str, tags: Sequence[str] = ()) -> dict[str, Any]:
    """Return the manifest entry for the ONNX file at ``path`` served as ``model_path``."""
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # protobuf's DecodeError and friends share no useful base
        raise ValueError(f"{path}: not an ONNX model ({type(exc).__name__})") from exc
    opset = next((int(o.version) for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    initializers = {init.name for init in model.graph.initializer}
    unknown = itertools.count()
    return {
        "model": path.stem,
        "model_path": model_path,
        "onnx_version": _onnx_release(int(model.ir_version), opset),
        "opset_version": opset,
        "metadata": {
            "model_sha": _sha256(path),
            "model_bytes": path.stat().st_size,
            "tags": list(tags),
            "io_ports": {
                "inputs": _ports(model.graph.input, initializers, unknown),
                "outputs": _ports(model.graph.output, set(), unknown),
            },
        },
    }


def _place(src: Path, dest: Path) -> None:
    """Copy ``src`` to ``dest`` (never a link: a test may corrupt the zoo copy on purpose)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.exists() and dest.resolve() == src.resolve():
        return
    shutil.copyfile(src, dest)


def collect(sources: Iterable[Path]) -> list[Path]:
    """Expand folders into their ``*.onnx`` files; keep files as given; sorted, unique."""
    found: dict[str, Path] = {}
    for source in sources:
        files = sorted(source.glob("*.onnx")) if source.is_dir() else [source]
        for file in files:
            if not file.is_file():
                raise FileNotFoundError(f"no such ONNX file: {file}")
            if file.name in found and found[file.name].resolve() != file.resolve():
                raise ValueError(f"two different files named {file.name}")
            found[file.name] = file
    return [found[name] for name in sorted(found)]


def build_zoo(
    files: Iterable[Path], out: Path, prefix: str = DEFAULT_PREFIX, tags: Sequence[str] = ()
) -> list[dict[str, Any]]:
    """Lay ``files`` out under ``out/prefix`` and write ``out/ONNX_HUB_MANIFEST.json``.

    Returns the manifest entries. Raises ``FileNotFoundError`` for a missing file and
    ``ValueError`` for a name clash or a file that is not an ONNX model.
    """
    prefix = prefix.strip("/")
    manifest = []
    for file in collect(files):
        model_path = f"{prefix}/{file.name}" if prefix else file.name
        entry = describe(file, model_path, tags)
        _place(file, out / model_path)
        manifest.append(entry)
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / f".{MANIFEST_NAME}.tmp"
    tmp.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, out / MANIFEST_NAME)
    return manifest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Build an ONNX Model Zoo folder and manifest.")
    parser.add_argument("sources", nargs="+", type=Path, help=".onnx files or folders of them")
    parser.add_argument("--out", type=Path, required=True, help="the zoo folder to write")
    parser.add_argument(
        "--prefix",
        default=DEFAULT_PREFIX,
        help=f"folder for the models inside the zoo (default: {DEFAULT_PREFIX})",
    )
    parser.add_argument("--tag", action="append", default=[], help="tag for every entry")
    args = parser.parse_args(argv)
    try:
        manifest = build_zoo(args.sources, args.out, args.prefix, args.tag)
    except ImportError as exc:
        print(f"make_zoo: error: {exc} (install modelhub[onnx])", file=sys.stderr)
        return 1
    except (OSError, ValueError) as exc:
        print(f"make_zoo: error: {exc}", file=sys.stderr)
        return 1
    if not manifest:
        print("make_zoo: error: no .onnx files found", file=sys.stderr)
        return 1
    print(args.out / MANIFEST_NAME)
    return 0


if __name__ == "__main__":
    sys.exit(main())

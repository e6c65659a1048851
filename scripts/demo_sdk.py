#!/usr/bin/env python3
"""The hubs' own SDKs against a running ``modelhub serve`` (a part of the demo).

    python scripts/demo_sdk.py MIRROR_URL SEED_STORE

Each client that is installed fetches a model from the mirror exactly as it would from its
upstream hub, into a private temporary cache; every file it gets is compared byte for byte
with the seed store's copy. A client whose package is not installed is skipped with a note.

- ``huggingface_hub.snapshot_download(repo, endpoint=MIRROR/hf)`` (always installed: modelhub
  depends on it)
- ``torch.hub.load_state_dict_from_url(MIRROR/torch/models/pnet.pt, weights_only=True)``
- ``keras.utils.get_file(origin=MIRROR/keras/tensorflow/keras-applications/..., file_hash=...)``

One line per client on stdout (what an SDK prints itself is kept aside: its stderr is shown
only if it fails); exit status 1 if an installed client failed.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

HF_REPO = "snakers4/silero-vad"
TORCH_FILE = "pnet.pt"
KERAS_FILE, KERAS_FAMILY = "emotion_model.hdf5", "fer"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def same(got: Path, seed: Path) -> None:
    """Raise unless ``got`` has exactly the bytes of the seed store's ``seed``."""
    if sha256_file(got) != sha256_file(seed):
        raise AssertionError(f"{got.name} differs from the seed store's {seed}")


def client_hf(mirror: str, seed: Path, cache: Path) -> str:
    import huggingface_hub

    seed_dir = seed / "huggingface" / HF_REPO
    if not seed_dir.is_dir():
        return "skipped (no hf: model in the seed store)"
    folder = Path(
        huggingface_hub.snapshot_download(HF_REPO, endpoint=f"{mirror}/hf", cache_dir=cache)
    )
    got = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    want = sorted(p.relative_to(seed_dir).as_posix() for p in seed_dir.rglob("*") if p.is_file())
    if got != want:
        raise AssertionError(f"snapshot has {got}, the seed store {want}")
    for rel in got:
        same(folder / rel, seed_dir / rel)
    return (
        f"huggingface_hub {huggingface_hub.__version__}: snapshot_download({HF_REPO!r}, "
        f"endpoint=MIRROR/hf) -> {len(got)} files, commit {folder.name[:12]}, byte-identical"
    )


def client_torch(mirror: str, seed: Path, cache: Path) -> str:
    import torch

    seed_file = seed / "pytorch" / TORCH_FILE
    if not seed_file.is_file():
        return f"skipped (no {TORCH_FILE} in the seed store)"
    state = torch.hub.load_state_dict_from_url(
        f"{mirror}/torch/models/{TORCH_FILE}",
        model_dir=str(cache),
        map_location="cpu",
        progress=False,
        weights_only=True,
    )
    same(cache / TORCH_FILE, seed_file)
    params = sum(int(t.numel()) for t in state.values())
    return (
        f"torch {torch.__version__}: hub.load_state_dict_from_url(MIRROR/torch/models/"
        f"{TORCH_FILE}) -> {len(state)} tensors, {params:,} parameters, byte-identical"
    )


def client_keras(mirror: str, seed: Path, cache: Path) -> str:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras

    # No progress bar on stdout (Keras 3 then logs through absl, i.e. stderr).
    getattr(keras.utils, "disable_interactive_logging", lambda: None)()

    seed_file = seed / "keras" / KERAS_FILE
    if not seed_file.is_file():
        return f"skipped (no {KERAS_FILE} in the seed store)"
    got = keras.utils.get_file(
        fname=KERAS_FILE,
        origin=f"{mirror}/keras/tensorflow/keras-applications/{KERAS_FAMILY}/{KERAS_FILE}",
        file_hash=sha256_file(seed_file),
        cache_dir=str(cache),
        cache_subdir="models",
    )
    same(Path(got), seed_file)
    return (
        f"keras {keras.__version__}: utils.get_file(origin=MIRROR/keras/tensorflow/"
        f"keras-applications/{KERAS_FAMILY}/{KERAS_FILE}, file_hash=sha256) -> verified, "
        "byte-identical"
    )


CLIENTS: tuple[tuple[str, Callable[[str, Path, Path], str]], ...] = (
    ("huggingface_hub", client_hf),
    ("torch", client_torch),
    ("keras", client_keras),
)


@contextlib.contextmanager
def stderr_to(path: Path) -> Iterator[None]:
    """Send file descriptor 2 (C++ logs of TF, torch's messages) to ``path`` for a while."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with path.open("wb") as sink:
            os.dup2(sink.fileno(), 2)
            try:
                yield
            finally:
                sys.stderr.flush()
                os.dup2(saved, 2)
    finally:
        os.close(saved)


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__.split("\n\n")[1].strip(), file=sys.stderr)
        return 2
    mirror, seed = argv[0].rstrip("/"), Path(argv[1])
    failed = 0
    for label, client in CLIENTS:
        with tempfile.TemporaryDirectory(prefix=f"modelhub-demo-{label}-") as tmp:
            log = Path(tmp) / "stderr.log"
            cache = Path(tmp) / "cache"
            cache.mkdir()
            try:
                with stderr_to(log), contextlib.redirect_stdout(io.StringIO()):
                    line = client(mirror, seed, cache)
            except ImportError as exc:  # not installed (or unusable here): not the mirror's fault
                line = f"{label}: not installed ({exc.name or exc}), skipped"
            except Exception as exc:
                line = f"{label}: FAILED: {type(exc).__name__}: {' '.join(str(exc).split())}"
                failed += 1
                # What the SDK said on stderr, for the diagnosis.
                tail = log.read_text(errors="replace").strip().splitlines()[-10:]
                print("\n".join(tail), file=sys.stderr)
        print(line, flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

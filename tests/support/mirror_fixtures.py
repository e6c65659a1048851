"""Tiny real inputs for mirror and import tests: HF snapshot folders, SavedModel-shaped folders,
tar archives (benign and hostile), and raw HTTP requests that no client library normalises."""

from __future__ import annotations

import hashlib
import io
import json
import socket
import tarfile
from pathlib import Path


def sha256(data: bytes) -> str:
    """Hex sha256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def make_hf_snapshot(folder: Path, *, seed: int = 0, extra_files: int = 0) -> dict[str, bytes]:
    """Write a small Hugging Face repo snapshot; return {repo path: bytes}.

    A config, a tokenizer file, a binary "weights" file with seeded bytes, a file in a
    sub-folder, plus ``extra_files`` numbered files (to make tree pages).
    """
    import random

    rng = random.Random(seed)
    files = {
        "config.json": json.dumps({"model_type": "tiny", "seed": seed}).encode(),
        "tokenizer.json": json.dumps({"vocab": ["a", "b", str(seed)]}).encode(),
        "model.safetensors": bytes(rng.getrandbits(8) for _ in range(70_000)),
        "sub/dir/readme.txt": f"nested file {seed}\n".encode(),
    }
    for i in range(extra_files):
        files[f"extra/file-{i:02d}.txt"] = f"extra {i} {seed}\n".encode()
    for rel, data in files.items():
        path = folder / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return files


def make_savedmodel_folder(folder: Path, *, seed: int = 0) -> dict[str, bytes]:
    """Write a folder shaped like a SavedModel (bytes only; no TensorFlow needed)."""
    import random

    rng = random.Random(seed)
    files = {
        "saved_model.pb": b"\x08\x01" + bytes(rng.getrandbits(8) for _ in range(3000)),
        "variables/variables.index": bytes(rng.getrandbits(8) for _ in range(200)),
        "variables/variables.data-00000-of-00001": bytes(rng.getrandbits(8) for _ in range(50_000)),
        "fingerprint.pb": bytes(rng.getrandbits(8) for _ in range(40)),
    }
    for rel, data in files.items():
        path = folder / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return files


def make_tar(
    path: Path, members: list[tuple[str, bytes | None, str | None]], *, gz: bool = True
) -> Path:
    """Write a tar(.gz) of (name, data, link target) members; data None = folder, link = symlink.

    A link target starting with 'hard:' makes a hard link instead.
    """
    mode = "w:gz" if gz else "w"
    with tarfile.open(path, mode) as tar:
        for name, data, link in members:
            info = tarfile.TarInfo(name)
            if link is not None:
                if link.startswith("hard:"):
                    info.type, info.linkname = tarfile.LNKTYPE, link[5:]
                else:
                    info.type, info.linkname = tarfile.SYMTYPE, link
                tar.addfile(info)
            elif data is None:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return path


def raw_request(
    url: str, target: str, method: str = "GET", headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    """Send ``method target`` verbatim (no client normalises it); return status, headers, body."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    lines = [f"{method} {target} HTTP/1.1", f"Host: {parts.netloc}", "Connection: close"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    data = b"".join(chunks)
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    found = {}
    for line in header_lines:
        key, _, value = line.partition(":")
        found[key.strip().lower()] = value.strip()
    if found.get("transfer-encoding") == "chunked":
        body = _dechunk(body)
    return int(status_line.split()[1]), found, body


def _dechunk(body: bytes) -> bytes:
    out = bytearray()
    while body:
        size_line, _, body = body.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            break
        out += body[:size]
        body = body[size + 2 :]
    return bytes(out)

"""Tiny real Hugging Face repos for hf: tests, and a gated/private Hub stand-in.

Models are built from configs (random weights, seeded) and saved with ``save_pretrained`` as
safetensors, a few hundred KiB each; building needs torch + transformers (imported lazily).
``GatedHub`` is a real HTTP server on 127.0.0.1 answering as the Hub does for gated and private
repos, and relaying to a mirror once the right token is sent. Needs no torch.
"""

from __future__ import annotations

import http.client
import http.server
import json
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

VOCAB = 99
MAX_POSITIONS = 64

# name → (transformers model class, config class, config kwargs)
ARCHITECTURES: dict[str, tuple[str, str, dict[str, Any]]] = {
    "bert": (
        "BertModel",
        "BertConfig",
        dict(
            vocab_size=VOCAB,
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=37,
            max_position_embeddings=MAX_POSITIONS,
            type_vocab_size=2,
        ),
    ),
    "bert-classifier": (
        "BertForSequenceClassification",
        "BertConfig",
        dict(
            vocab_size=VOCAB,
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=37,
            max_position_embeddings=MAX_POSITIONS,
            type_vocab_size=2,
            num_labels=3,
        ),
    ),
    "gpt2": (
        "GPT2Model",
        "GPT2Config",
        dict(
            vocab_size=VOCAB,
            n_embd=32,
            n_layer=2,
            n_head=2,
            n_positions=MAX_POSITIONS,
            bos_token_id=VOCAB - 1,
            eos_token_id=VOCAB - 1,
        ),
    ),
    "distilbert": (
        "DistilBertModel",
        "DistilBertConfig",
        dict(
            vocab_size=VOCAB,
            dim=32,
            n_layers=2,
            n_heads=2,
            hidden_dim=37,
            max_position_embeddings=MAX_POSITIONS,
        ),
    ),
}


def make_transformers_model(kind: str, folder: Path, *, seed: int = 0) -> Path:
    """Save a tiny randomly initialised ``kind`` (see ARCHITECTURES) to ``folder``; return it.

    ``save_pretrained`` with safetensors: ``config.json`` + ``model.safetensors``.
    """
    import torch
    import transformers
    from transformers.utils import logging as tf_logging

    model_cls, config_cls, kwargs = ARCHITECTURES[kind]
    torch.manual_seed(seed)
    config = getattr(transformers, config_cls)(**kwargs)
    model = getattr(transformers, model_cls)(config).eval()
    folder.mkdir(parents=True, exist_ok=True)
    bars = tf_logging.is_progress_bar_enabled()
    tf_logging.disable_progress_bar()
    try:
        model.save_pretrained(str(folder), safe_serialization=True)
    finally:
        if bars:
            tf_logging.enable_progress_bar()
    return folder


# --------------------------------------------------------------------------- gated / private


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    owner: GatedHub


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._serve()

    def do_HEAD(self) -> None:
        self._serve()

    def _reply(self, status: int, headers: dict[str, str], body: bytes = b"") -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body and self.command != "HEAD":
            self.wfile.write(body)

    def _serve(self) -> None:
        owner = self.server.owner
        auth = self.headers.get("Authorization")
        owner.requests.append((self.command, self.path, auth))
        refusal = owner.refusal(self.path, auth)
        if refusal is not None:
            status, code, message = refusal
            body = json.dumps({"error": message}).encode()
            headers = {
                "Content-Type": "application/json",
                "X-Error-Code": code,
                "X-Error-Message": message,
            }
            self._reply(status, headers, body)
            return
        self._relay()

    def _relay(self) -> None:
        upstream = urlsplit(self.server.owner.upstream)
        conn = http.client.HTTPConnection(upstream.hostname, upstream.port, timeout=30)
        headers = {k: v for k, v in self.headers.items() if k.lower() in ("range", "accept")}
        try:
            conn.request(self.command, upstream.path + self.path, headers=headers)
            response = conn.getresponse()
            body = response.read()
            kept = {
                k: v
                for k, v in response.getheaders()
                if k.lower() not in ("content-length", "transfer-encoding", "connection", "date")
            }
            if self.command == "HEAD":
                # Forward the real size of the entity, not of the (empty) HEAD body.
                length = response.getheader("Content-Length") or "0"
                self.send_response(response.status)
                for name, value in kept.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", length)
                self.end_headers()
                return
            self._reply(response.status, kept, body)
        finally:
            conn.close()


class GatedHub:
    """A Hub stand-in on 127.0.0.1 for repos that need a token; everything else relays.

    ``mode`` ``"gated"``: metadata is public (``/api/...`` relays) but file downloads answer
    401 ``X-Error-Code: GatedRepo`` without a token, 403 with a token not granted access, as
    huggingface.co does. ``mode`` ``"private"``: every request answers 401 ``RepoNotFound``
    without a token (the Hub cannot tell private from missing) and 404 with a wrong one. The
    right token (``Bearer <token>``) relays every request to ``upstream`` (a mirror's /hf URL).
    ``requests`` records (method, path, Authorization header).
    """

    def __init__(self, upstream: str, token: str, mode: str = "gated") -> None:
        if mode not in ("gated", "private"):
            raise ValueError(mode)
        self.upstream = upstream.rstrip("/")
        self.token = token
        self.mode = mode
        self.requests: list[tuple[str, str, str | None]] = []
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.owner = self
        self._thread: threading.Thread | None = None
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def refusal(self, path: str, auth: str | None) -> tuple[int, str, str] | None:
        """(status, X-Error-Code, message) when the request must be refused, else None."""
        if auth == f"Bearer {self.token}":
            return None
        if self.mode == "private":
            if auth is None:
                return 401, "RepoNotFound", "Invalid username or password."
            return 404, "RepoNotFound", "Repository not found"
        if path.startswith("/api/"):
            return None
        message = "Access to this model is restricted. You must have access to it."
        return (401 if auth is None else 403), "GatedRepo", message

    def start(self) -> str:
        """Serve in a daemon thread; return the base URL."""
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self.url

    def stop(self) -> None:
        """Stop serving."""
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> GatedHub:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def tree_bytes(folder: Path, keep: Callable[[str], bool] | None = None) -> dict[str, bytes]:
    """{relative posix path: bytes} of every file under ``folder`` (symlinks followed)."""
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and (keep is None or keep(p.relative_to(folder).as_posix()))
    }

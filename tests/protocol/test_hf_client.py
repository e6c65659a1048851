"""Protocol proof for ``hf:``: huggingface_hub's own ``snapshot_download`` / ``hf_hub_download``
and modelhub, each against the same recording proxy (tests/support/recorder.py) in front of
``modelhub serve``, ask for the same resources (method, path and query, as many times, the same
redirects followed), and each finds in the HF cache what the other downloaded with no request.

Needs only huggingface_hub (``make test-hf-floor`` runs it on the lowest version pyproject
allows). The Hub stand-in is the mirror: it answers a legacy one-part id (``gpt2``) under the
id the Hub gives it today (``openai-community/gpt2``), as the Hub's model info does.
"""

from __future__ import annotations

import dataclasses
import hashlib
import http.client
import http.server
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

huggingface_hub = pytest.importorskip("huggingface_hub")

import modelhub  # noqa: E402
from modelhub.importer import import_path  # noqa: E402
from modelhub.mirror.app import BackgroundMirror  # noqa: E402
from tests.support.hf_models import tree_bytes  # noqa: E402
from tests.support.httpserver import HTTPTestServer, ThreadedServer  # noqa: E402
from tests.support.mirror_fixtures import make_hf_snapshot  # noqa: E402
from tests.support.recorder import Recorder  # noqa: E402

REPO = "proto-org/tiny-model"
HEAVY = "proto-org/many-formats"
LEGACY, CANONICAL = "gpt2", "openai-community/gpt2"
# Weight copies from_pretrained does not read beside safetensors: a default pull skips them.
HEAVY_SKIPPED = [
    "flax_model.msgpack",
    "model.Q4_K_M.gguf",
    "onnx/model.onnx",
    "original/consolidated.00.pth",
    "pytorch_model.bin",
    "tf_model.h5",
]


def _write(folder: Path, files: dict[str, bytes]) -> dict[str, bytes]:
    for rel, data in files.items():
        path = folder / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return files


def _heavy_files(folder: Path) -> dict[str, bytes]:
    rng = random.Random(7)

    def blob(n: int) -> bytes:
        return bytes(rng.getrandbits(8) for _ in range(n))

    files = {
        "config.json": b'{"model_type": "tiny"}',
        "tokenizer.json": b'{"vocab": ["a"]}',
        "README.md": b"# many formats\n",
        "model.safetensors": blob(30_000),
        **{name: blob(9_000 + 1000 * i) for i, name in enumerate(HEAVY_SKIPPED)},
    }
    return _write(folder, files)


@dataclass
class Hub:
    """The mirror behind a recorder, and the files it serves."""

    rec: Recorder
    tmp: Path
    files: dict[str, bytes]
    heavy: dict[str, bytes]
    legacy: dict[str, bytes]

    @property
    def endpoint(self) -> str:
        return f"{self.rec.url}/hf"

    def asked(self, action: Callable[[], Any]) -> list[tuple[str, str]]:
        """Every (method, target) that ``action`` sent, sorted (repeats kept)."""
        self.rec.wait_idle()
        self.rec.clear()
        action()
        self.rec.wait_idle()
        return sorted(r.resource for r in self.rec.log)

    def sdk(self, name: str, call: str, *args: Any, **kwargs: Any) -> Any:
        """``huggingface_hub.<call>`` with this hub's endpoint, into the cache ``name``."""
        fn = getattr(huggingface_hub, call)
        return fn(*args, endpoint=self.endpoint, cache_dir=self.tmp / name, **kwargs)

    def pull(
        self, monkeypatch: pytest.MonkeyPatch, cache: str, ref: str, **kwargs: Any
    ) -> modelhub.Model:
        """``modelhub.pull(ref)`` into a store of its own, with the HF cache ``cache``."""
        monkeypatch.setenv("HF_HUB_CACHE", str(self.tmp / cache))
        store = modelhub.Store(self.tmp / f"store-{hashlib.sha1(ref.encode()).hexdigest()[:8]}")
        return modelhub.pull(ref, store=store, **kwargs)


@pytest.fixture
def hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Hub]:
    """REPO (main and branch v1), HEAVY (every weight format) and the legacy ``gpt2``, served."""
    src = tmp_path / "src"
    files = make_hf_snapshot(src / "main", seed=1, extra_files=2)
    make_hf_snapshot(src / "v1", seed=2)
    heavy = _heavy_files(src / "heavy")
    legacy = make_hf_snapshot(src / "legacy", seed=3)
    seed = modelhub.Store(tmp_path / "seed")
    import_path(seed, src / "main", modelhub.parse(f"hf:{REPO}"))
    import_path(seed, src / "v1", modelhub.parse(f"hf:{REPO}@v1"))
    import_path(seed, src / "heavy", modelhub.parse(f"hf:{HEAVY}"))
    old = modelhub.parse(f"hf:{LEGACY}")
    manifest = import_path(seed, src / "legacy", old)
    # As the Hub answers a legacy id today: under the organisation it moved to.
    details = {**manifest.details, "repo_id": CANONICAL}
    seed.write_manifest(dataclasses.replace(manifest, details=details), old)
    for name in ("HF_HUB_DISABLE_TELEMETRY", "HF_HUB_DISABLE_PROGRESS_BARS"):
        monkeypatch.setenv(name, "1")
    with BackgroundMirror(seed.root) as url, Recorder(url) as rec:
        monkeypatch.setenv("MODELHUB_HF_URL", f"{rec.url}/hf")
        yield Hub(rec, tmp_path, files, heavy, legacy)


# --------------------------------------------------------------------------- same requests


def test_a_snapshot_is_asked_for_as_snapshot_download_asks(
    hub: Hub, monkeypatch: pytest.MonkeyPatch
) -> None:
    sdk = hub.asked(lambda: hub.sdk("sdk", "snapshot_download", REPO))
    ours = hub.asked(lambda: hub.pull(monkeypatch, "ours", f"hf:{REPO}"))
    assert ours == sdk
    paths = [target.split("?")[0] for _, target in sdk]
    assert f"/hf/api/models/{REPO}/revision/main" in paths
    assert sum("/resolve/" in p for p in paths) == 2 * len(hub.files)  # HEAD + GET each

    sdk_v1 = hub.asked(lambda: hub.sdk("sdk-v1", "snapshot_download", REPO, revision="v1"))
    ours_v1 = hub.asked(lambda: hub.pull(monkeypatch, "ours-v1", f"hf:{REPO}@v1"))
    assert ours_v1 == sdk_v1 and ours_v1 != sdk


def test_a_file_and_a_folder_are_asked_for_as_the_sdk_asks(
    hub: Hub, monkeypatch: pytest.MonkeyPatch
) -> None:
    sdk = hub.asked(lambda: hub.sdk("sdk-file", "hf_hub_download", REPO, "sub/dir/readme.txt"))
    url = f"https://huggingface.co/{REPO}/blob/main/sub/dir/readme.txt"
    model = None

    def ours() -> None:
        nonlocal model
        model = hub.pull(monkeypatch, "ours-file", url)

    assert hub.asked(ours) == sdk
    assert sdk == [
        ("GET", f"/hf/{REPO}/resolve/main/sub/dir/readme.txt"),
        ("HEAD", f"/hf/{REPO}/resolve/main/sub/dir/readme.txt"),
    ]
    assert model is not None and model.path.read_bytes() == hub.files["sub/dir/readme.txt"]

    sdk_dir = hub.asked(
        lambda: hub.sdk("sdk-dir", "snapshot_download", REPO, allow_patterns=["extra/"])
    )
    tree = f"https://huggingface.co/{REPO}/tree/main/extra"
    assert hub.asked(lambda: hub.pull(monkeypatch, "ours-dir", tree)) == sdk_dir
    assert sum("/resolve/" in t for _, t in sdk_dir) == 2 * 2  # the two files of extra/


def test_the_default_selection_asks_what_ignore_patterns_would(
    hub: Hub, monkeypatch: pytest.MonkeyPatch
) -> None:
    ref = f"hf:{HEAVY}"
    model = None

    def ours() -> None:
        nonlocal model
        model = hub.pull(monkeypatch, "ours", ref)

    asked = hub.asked(ours)
    sdk = hub.asked(
        lambda: hub.sdk("sdk", "snapshot_download", HEAVY, ignore_patterns=HEAVY_SKIPPED)
    )
    assert asked == sdk
    assert model is not None
    selection = model.manifest.details["selection"]
    assert selection["skipped"] == HEAVY_SKIPPED
    assert selection["skipped_bytes"] == sum(len(hub.heavy[n]) for n in HEAVY_SKIPPED)
    # --all-files: exactly the SDK's plain snapshot_download.
    everything = hub.asked(lambda: hub.pull(monkeypatch, "all", ref, options={"all_files": True}))
    assert everything == hub.asked(lambda: hub.sdk("sdk-all", "snapshot_download", HEAVY))


def test_a_legacy_id_is_asked_for_as_given(hub: Hub, monkeypatch: pytest.MonkeyPatch) -> None:
    sdk = hub.asked(lambda: hub.sdk("sdk", "snapshot_download", LEGACY))
    model = None

    def ours() -> None:
        nonlocal model
        model = hub.pull(monkeypatch, "ours", f"hf:{LEGACY}")

    assert hub.asked(ours) == sdk
    assert ("GET", f"/hf/api/models/{LEGACY}/revision/main") in sdk
    assert model is not None
    assert model.manifest.ref == f"hf:{LEGACY}"
    assert model.manifest.details["repo_id"] == CANONICAL
    # The SDK's folder for the id as given: `from_pretrained("gpt2")` finds it there.
    assert Path(model.manifest.sdk_cache).parents[1].name == "models--gpt2"


# --------------------------------------------------------------------------- one cache, both ways


def _no_request(hub: Hub, action: Callable[[], Any]) -> Any:
    result = None

    def run() -> None:
        nonlocal result
        result = action()

    assert hub.asked(run) == []
    return result


def test_the_sdk_finds_what_modelhub_pulled_with_no_request(
    hub: Hub, monkeypatch: pytest.MonkeyPatch
) -> None:
    from huggingface_hub import try_to_load_from_cache

    cache = hub.tmp / "shared"
    hub.pull(monkeypatch, "shared", f"hf:{REPO}")
    hub.pull(monkeypatch, "shared", f"hf:{REPO}@v1")
    hub.pull(monkeypatch, "shared", f"hf:{LEGACY}")
    for repo, rev, want in ((REPO, "main", hub.files), (LEGACY, "main", hub.legacy)):
        folder = _no_request(
            hub,
            lambda repo=repo, rev=rev: hub.sdk(
                "shared", "snapshot_download", repo, revision=rev, local_files_only=True
            ),
        )
        assert tree_bytes(Path(folder)) == want
        for name, data in want.items():
            found = try_to_load_from_cache(repo, name, cache_dir=cache, revision=rev)
            assert isinstance(found, str) and Path(found).read_bytes() == data
    v1 = hub.sdk("shared", "snapshot_download", REPO, revision="v1", local_files_only=True)
    assert tree_bytes(Path(v1))["config.json"] != hub.files["config.json"]

    # A selected pull holds what from_pretrained reads, and says the rest is missing.
    hub.pull(monkeypatch, "shared", f"hf:{HEAVY}")
    kept = [n for n in hub.heavy if n not in HEAVY_SKIPPED]
    folder = _no_request(
        hub,
        lambda: hub.sdk(
            "shared", "snapshot_download", HEAVY, allow_patterns=kept, local_files_only=True
        ),
    )
    assert set(tree_bytes(Path(folder))) == set(kept)
    with pytest.raises(huggingface_hub.errors.LocalEntryNotFoundError):
        hub.sdk("shared", "snapshot_download", HEAVY, local_files_only=True)
    assert try_to_load_from_cache(HEAVY, "pytorch_model.bin", cache_dir=cache) is None

    # A file pulled alone is where hf_hub_download looks.
    hub.pull(monkeypatch, "one-file", f"hf:{REPO}:tokenizer.json")
    path = _no_request(
        hub,
        lambda: hub.sdk(
            "one-file", "hf_hub_download", REPO, "tokenizer.json", local_files_only=True
        ),
    )
    assert Path(path).read_bytes() == hub.files["tokenizer.json"]


def test_modelhub_takes_what_the_sdk_downloaded_with_no_request(
    hub: Hub, monkeypatch: pytest.MonkeyPatch
) -> None:
    hub.sdk("sdk", "snapshot_download", REPO)
    hub.sdk("sdk", "snapshot_download", REPO, revision="v1")
    hub.sdk("sdk", "snapshot_download", LEGACY)
    hub.sdk("sdk", "snapshot_download", HEAVY)
    hub.sdk("sdk-file", "hf_hub_download", REPO, "config.json")
    for ref, want in (
        (f"hf:{REPO}", hub.files),
        (f"hf:{LEGACY}", hub.legacy),
        (f"hf:{HEAVY}", {n: d for n, d in hub.heavy.items() if n not in HEAVY_SKIPPED}),
        (f"hf:{REPO}:extra/", {n: d for n, d in hub.files.items() if n.startswith("extra/")}),
    ):
        model = _no_request(hub, lambda ref=ref: hub.pull(monkeypatch, "sdk", ref))
        assert model.manifest.details["cache_hit"] is True, ref
        repo = modelhub.parse(ref).name
        got = {
            f.path.removeprefix(f"huggingface/{repo}/"): path.read_bytes()
            for f, path in zip(model.manifest.files, model.files, strict=True)
        }
        assert got == want, ref
    v1 = _no_request(hub, lambda: hub.pull(monkeypatch, "sdk", f"hf:{REPO}@v1"))
    assert tree_bytes(v1.original)["config.json"] != hub.files["config.json"]
    one = _no_request(hub, lambda: hub.pull(monkeypatch, "sdk-file", f"hf:{REPO}:config.json"))
    assert one.path.read_bytes() == hub.files["config.json"]


# --------------------------------------------------------------------------- redirects


class _FrontServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    owner: CdnFront


class _FrontHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _FrontServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._serve()

    def do_HEAD(self) -> None:
        self._serve()

    def _serve(self) -> None:
        owner = self.server.owner
        status, headers, body = owner.relay(self.command, self.path, dict(self.headers.items()))
        path = self.path.split("?", 1)[0]
        if status == 200 and "/resolve/" in path and path.endswith(".safetensors"):
            # As the Hub answers an LFS file: 302 to signed storage, metadata in X-Linked-*.
            sha = headers["x-linked-etag"].strip('"')
            status, body = 302, b""
            headers = {
                "location": f"{owner.storage.url}/blobs/{sha}?signature=s3cr3t",
                **{k: v for k, v in headers.items() if k.startswith("x-")},
            }
        self.send_response(status)
        for name, value in headers.items():
            if name not in ("content-length", "transfer-encoding", "connection", "date"):
                self.send_header(name, value)
        length = headers.get("content-length") if self.command == "HEAD" else None
        self.send_header("Content-Length", length or str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)


class CdnFront(ThreadedServer):
    """A Hub front on 127.0.0.1: relays to a mirror, but answers every ``.safetensors``
    resolve with a 302 to ``storage`` (another port: another origin), as huggingface.co sends
    LFS files to its storage bridge."""

    _thread_name = "cdn-front"

    def __init__(self, upstream: str, storage: HTTPTestServer) -> None:
        self.upstream, self.storage = upstream, storage
        self._listen(_FrontServer, _FrontHandler)

    def relay(
        self, method: str, target: str, headers: dict[str, str]
    ) -> tuple[int, dict[str, str], bytes]:
        from urllib.parse import urlsplit

        up = urlsplit(self.upstream)
        skip = {"host", "connection", "keep-alive", "accept-encoding"}
        conn = http.client.HTTPConnection(up.hostname, up.port, timeout=30)
        try:
            kept = {k: v for k, v in headers.items() if k.lower() not in skip}
            conn.request(method, target, headers=kept)
            response = conn.getresponse()
            body = response.read()
            return response.status, {k.lower(): v for k, v in response.getheaders()}, body
        finally:
            conn.close()


def test_a_redirect_to_storage_is_followed_as_the_sdk_follows_it_without_the_token(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """HEAD stops at the 302 to another origin (another port of 127.0.0.1 is one: 2.2+), the
    GET goes to the signed URL without the token; modelhub (through the SDK) does the same."""
    files = make_hf_snapshot(tmp_path / "src", seed=9)
    seed = modelhub.Store(tmp_path / "seed")
    import_path(seed, tmp_path / "src", modelhub.parse(f"hf:{REPO}"))
    data = files["model.safetensors"]
    sha = hashlib.sha256(data).hexdigest()
    secret = "hf_redirectToken42"
    monkeypatch.setenv("HF_TOKEN", secret)
    for name in ("HF_HUB_DISABLE_TELEMETRY", "HF_HUB_DISABLE_PROGRESS_BARS"):
        monkeypatch.setenv(name, "1")
    with (
        BackgroundMirror(seed.root) as url,
        HTTPTestServer({f"/blobs/{sha}": data}) as storage,
        CdnFront(url, storage) as front,
        Recorder(front.url) as rec,
    ):
        monkeypatch.setenv("MODELHUB_HF_URL", f"{rec.url}/hf")
        hub = Hub(rec, tmp_path, files, {}, {})
        sdk = hub.asked(lambda: hub.sdk("sdk", "snapshot_download", REPO))
        at_storage = [(r.method, r.path) for r in storage.requests]
        model = None

        def ours() -> None:
            nonlocal model
            model = hub.pull(monkeypatch, "ours", f"hf:{REPO}")

        assert hub.asked(ours) == sdk
        again = [(r.method, r.path) for r in storage.requests[len(at_storage) :]]
        assert again == at_storage  # the same, once more

    target = f"/hf/{REPO}/resolve/{seed.manifest(modelhub.parse(f'hf:{REPO}')).revision}"
    heads = [r for r in rec.log if r.method == "HEAD" and r.path.startswith(target)]
    redirected = [r for r in heads if r.path.endswith("model.safetensors")]
    assert [r.status for r in redirected] == [302]
    assert all(r.authorization for r in heads)  # the token goes to the Hub...
    assert ("GET", f"{target}/model.safetensors") not in sdk
    assert at_storage == [("GET", f"/blobs/{sha}?signature=s3cr3t")]
    for request in storage.requests:  # ... never to the storage's origin
        assert "authorization" not in request.headers
    assert model is not None
    blob = next(f for f in model.manifest.files if f.path.endswith("model.safetensors"))
    assert (blob.sha256, blob.size) == (sha, len(data))
    assert tree_bytes(model.original) == files

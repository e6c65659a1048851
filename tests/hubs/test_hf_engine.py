"""hf: large files through modelhub's transfer engine, into the Hugging Face cache as the SDK
lays it out (src/modelhub/hubs/hf_engine.py).

A repo with a 40 MiB LFS file, served by ``modelhub serve`` behind the fault proxy (and, for
the parallel path, behind the link shaper): the engine fetches the large file (ranged, resumable,
sha256 checked against the LFS oid), the SDK the small ones; then huggingface_hub's own
``snapshot_download`` / ``hf_hub_download`` with ``local_files_only=True`` find everything with
zero requests, and the cache is the one the SDK writes itself, entry for entry. A file reference
(``hf:ORG/NAME:PATH``) of the large file is the engine's too, after the SDK's one ``HEAD``; a
small one is the SDK's alone, request for request. Needs only huggingface_hub (``make
test-hf-floor`` runs it on the floor version).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

huggingface_hub = pytest.importorskip("huggingface_hub")

import modelhub  # noqa: E402
from modelhub.errors import HashMismatchError  # noqa: E402
from modelhub.importer import import_path  # noqa: E402
from modelhub.mirror.app import BackgroundMirror  # noqa: E402
from tests.faults.proxy import FaultProxy  # noqa: E402
from tests.support.recorder import Recorder  # noqa: E402
from tests.support.shaper import LinkShaper  # noqa: E402

MiB = 1 << 20
REPO = "engine-org/big-model"
REF = f"hf:{REPO}"
BIG = "model.safetensors"
TARGET = f"/hf/{REPO}/resolve/*/{BIG}"
REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Hub:
    """The mirror, the fault proxy in front of it, the served files, the HF cache."""

    mirror: BackgroundMirror
    proxy: FaultProxy
    files: dict[str, bytes]
    cache: Path
    tmp: Path

    @property
    def big_sha(self) -> str:
        return hashlib.sha256(self.files[BIG]).hexdigest()

    def storage(self, cache: Path | None = None) -> Path:
        return (cache or self.cache) / ("models--" + REPO.replace("/", "--"))


@pytest.fixture
def hub(tmp_path: Path, store_root: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Hub]:
    rng = random.Random(20)
    files = {
        "config.json": json.dumps({"model_type": "engine", "hidden": 8}).encode(),
        "tokenizer.json": json.dumps({"vocab": ["a", "b"]}).encode(),
        BIG: rng.randbytes(40 * MiB),
    }
    folder = tmp_path / "src"
    for rel, data in files.items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_bytes(data)
    seed = modelhub.Store(tmp_path / "seed")
    import_path(seed, folder, modelhub.parse(REF))
    cache = tmp_path / "hf-cache"
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    monkeypatch.setenv("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    mirror = BackgroundMirror(seed.root)
    url = mirror.start()
    proxy = FaultProxy(url)
    proxy.start()
    monkeypatch.setenv("MODELHUB_MIRROR", proxy.url)
    try:
        yield Hub(mirror, proxy, files, cache, tmp_path)
    finally:
        proxy.stop()
        mirror.stop()


def _layout(root: Path) -> dict[str, tuple[str, str, int]]:
    """Every entry under ``root``: (kind, link target or sha256 of the bytes, permission bits)."""
    found = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        mode = stat.S_IMODE(path.lstat().st_mode)
        if path.is_symlink():
            found[rel] = ("link", os.readlink(path), 0)
        elif path.is_dir():
            found[rel] = ("dir", "", mode)
        else:
            found[rel] = ("file", hashlib.sha256(path.read_bytes()).hexdigest(), mode)
    return found


def _commit(hub: Hub) -> str:
    return (hub.storage() / "refs" / "main").read_text()


# --------------------------------------------------------------------------- the cache layout


def test_engine_writes_the_cache_the_sdk_writes_and_reads_with_no_request(hub: Hub) -> None:
    manifest = modelhub.pull(REF, stage="none").manifest
    gets = hub.proxy.exchanges(TARGET, "GET")
    assert gets and all(e.status in (200, 206) for e in gets)
    assert not hub.proxy.exchanges(TARGET, "HEAD"), "the engine needs no HEAD: the listing has it"
    assert hub.proxy.sent(TARGET) == len(hub.files[BIG])
    # The small files are the SDK's (HEAD then GET, as snapshot_download asks).
    assert hub.proxy.exchanges(f"/hf/{REPO}/resolve/*/config.json", "HEAD")

    commit = _commit(hub)
    storage = hub.storage()
    pointer = storage / "snapshots" / commit / BIG
    assert os.readlink(pointer) == f"../../blobs/{hub.big_sha}"
    assert (storage / "blobs" / hub.big_sha).read_bytes() == hub.files[BIG]
    assert (hub.cache / ".locks" / storage.name / f"{hub.big_sha}.lock").exists()
    assert not list(hub.cache.rglob("*.incomplete*")), "no part file or sidecar left"
    by_path = {f.path.rsplit("/", 1)[-1]: f for f in manifest.files}
    assert by_path[BIG].sha256 == hub.big_sha

    # The SDK, into a cache of its own, from the same server: the same entries, byte for byte.
    own = hub.tmp / "sdk-cache"
    huggingface_hub.snapshot_download(REPO, cache_dir=own, endpoint=f"{hub.proxy.url}/hf")
    assert _layout(hub.cache) == _layout(own)

    # And the SDK reads modelhub's cache with zero requests.
    with Recorder(hub.proxy.url) as rec:
        endpoint = f"{rec.url}/hf"
        folder = huggingface_hub.snapshot_download(
            REPO, cache_dir=hub.cache, endpoint=endpoint, local_files_only=True
        )
        path = huggingface_hub.hf_hub_download(
            REPO, BIG, cache_dir=hub.cache, endpoint=endpoint, local_files_only=True
        )
        assert rec.resources() == []
    assert Path(folder) == storage / "snapshots" / commit
    assert Path(path) == pointer
    assert {p.name for p in Path(folder).iterdir()} == set(hub.files)


def test_a_shaped_link_goes_parallel_and_force_fetches_the_file_once(
    hub: Hub,
) -> None:
    with LinkShaper(hub.proxy.url, rate=8 * MiB, rtt=0.02) as link:
        os.environ["MODELHUB_MIRROR"] = link.url  # restored by the fixture's monkeypatch
        modelhub.pull(REF, stage="none")
        gets = hub.proxy.exchanges(TARGET, "GET")
        assert len(gets) >= 2 and all(e.headers.get("range") for e in gets[1:]), [
            (e.status, e.headers.get("range")) for e in gets
        ]
        assert hub.proxy.sent(TARGET) == len(hub.files[BIG])
        modelhub.pull(REF, stage="none", force=True)
        assert hub.proxy.sent(TARGET) == 2 * len(hub.files[BIG]), "--force fetches it again"
    blob = hub.storage() / "blobs" / hub.big_sha
    assert blob.read_bytes() == hub.files[BIG]


# --------------------------------------------------------------------------- integrity


def test_a_wrong_body_is_refused_with_nothing_in_the_cache(hub: Hub) -> None:
    hub.proxy.add("wrong_bytes", TARGET)
    with pytest.raises(HashMismatchError, match="sha256"):
        modelhub.pull(REF, stage="none")
    storage = hub.storage()
    assert not list(storage.glob("blobs/*")), "no blob, no part file, no sidecar"
    assert not list(storage.glob("snapshots/*/*"))
    assert not (storage / "refs" / "main").exists()
    assert not list(hub.cache.rglob("*.incomplete*"))
    # The proxy's fault was taken by the first pull: the next one gets the right bytes.
    modelhub.pull(REF, stage="none")
    assert (storage / "blobs" / hub.big_sha).read_bytes() == hub.files[BIG]


def test_the_cli_exits_5_on_a_wrong_body(hub: Hub) -> None:
    hub.proxy.add("wrong_bytes", TARGET)
    proc = subprocess.run(
        [sys.executable, "-m", "modelhub", "pull", REF, "--stage", "none"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 5, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "sha256" in lines[0], proc.stderr
    assert not list(hub.storage().glob("blobs/*"))


# --------------------------------------------------------------------------- resume


@pytest.mark.parametrize("ref", [REF, f"{REF}:{BIG}"], ids=["snapshot", "file"])
def test_kill_9_mid_download_then_a_rerun_resumes(hub: Hub, ref: str) -> None:
    size = len(hub.files[BIG])
    hub.proxy.add("stall", TARGET, after=size // 2, seconds=120)
    cmd = [sys.executable, "-m", "modelhub", "pull", ref, "--stage", "none"]
    env = {**os.environ, "MODELHUB_CONNECTIONS": "1"}
    proc = subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, stderr=subprocess.PIPE, text=True)
    part = hub.storage() / "blobs" / f"{hub.big_sha}.incomplete"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        sent = hub.proxy.sent(TARGET) >= size // 2
        if sent and part.exists() and part.stat().st_size >= size // 4:
            break
        time.sleep(0.05)
    assert proc.poll() is None, f"the pull ended before it could be killed: {proc.stderr}"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert not (hub.storage() / "blobs" / hub.big_sha).exists()
    kept = part.stat().st_size
    hub.proxy.clear()
    rerun = time.monotonic()
    again = subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr
    gets = [e for e in hub.proxy.exchanges(TARGET, "GET") if e.started >= rerun]
    ranges = [e.headers.get("range", "") for e in gets]
    assert ranges[0].startswith("bytes="), ranges
    start = int(ranges[0].split("=")[1].split("-")[0])
    assert 0 < start <= kept, (start, kept)
    total = hub.proxy.sent(TARGET)  # both runs' (the proxy logs an exchange as it starts)
    assert total < 1.3 * size, f"fetched {total} bytes in all for a {size}-byte file"
    blob = hub.storage() / "blobs" / hub.big_sha
    assert hashlib.sha256(blob.read_bytes()).hexdigest() == hub.big_sha
    assert not list(hub.cache.rglob("*.incomplete*"))


# --------------------------------------------------------------------------- a file reference


def _asked(hub: Hub, since: int) -> list[tuple[str, str]]:
    """(method, path) of every request the proxy logged after the first ``since``."""
    return [(e.method, e.path) for e in hub.proxy.exchanges()[since:]]


def test_a_large_file_reference_goes_through_the_engine_into_the_sdks_cache(hub: Hub) -> None:
    # A 503 on the file's first GET: the engine retries it, huggingface_hub's GET would not.
    hub.proxy.add("status", TARGET, status=503)
    model = modelhub.pull(f"{REF}:{BIG}", stage="none")
    assert model.path.read_bytes() == hub.files[BIG]
    commit = _commit(hub)
    [entry] = model.manifest.files
    assert (entry.sha256, entry.size) == (hub.big_sha, len(hub.files[BIG]))
    # The SDK's one HEAD (of the revision asked for), then the engine's GETs (of the commit).
    asked = _asked(hub, 0)
    big = f"/hf/{REPO}/resolve/main/{BIG}"
    assert asked[0] == ("HEAD", big) and asked.count(("HEAD", big)) == 1, asked
    gets = hub.proxy.exchanges(TARGET, "GET")
    statuses = [e.status for e in gets]
    assert statuses[0] == 503 and set(statuses[1:]) <= {200, 206}, statuses
    assert {e.path for e in gets} == {f"/hf/{REPO}/resolve/{commit}/{BIG}"}
    assert len(asked) == 1 + len(gets)
    assert sum(e.sent for e in gets[1:]) == len(hub.files[BIG]), "each byte once"
    assert not list(hub.cache.rglob("*.incomplete*"))

    # huggingface_hub's own hf_hub_download, into a cache of its own: the same entries.
    own = hub.tmp / "sdk-cache"
    huggingface_hub.hf_hub_download(REPO, BIG, cache_dir=own, endpoint=f"{hub.proxy.url}/hf")
    assert _layout(hub.cache) == _layout(own)
    storage = hub.storage()
    assert {p.relative_to(storage).as_posix() for p in storage.rglob("*") if not p.is_dir()} == {
        f"blobs/{hub.big_sha}",
        f"snapshots/{commit}/{BIG}",
        "refs/main",
    }

    # And it finds modelhub's file with zero requests.
    with Recorder(hub.proxy.url) as rec:
        path = huggingface_hub.hf_hub_download(
            REPO, BIG, cache_dir=hub.cache, endpoint=f"{rec.url}/hf", local_files_only=True
        )
        assert rec.resources() == []
    assert Path(path) == storage / "snapshots" / commit / BIG
    assert os.readlink(path) == f"../../blobs/{hub.big_sha}"


def test_a_small_file_reference_is_the_sdks_alone_request_for_request(hub: Hub) -> None:
    name = "config.json"
    model = modelhub.pull(f"{REF}:{name}", stage="none")
    assert model.path.read_bytes() == hub.files[name]
    ours = _asked(hub, 0)
    resolve = f"/hf/{REPO}/resolve/main/{name}"
    assert ours == [("HEAD", resolve), ("GET", resolve)]
    since = len(hub.proxy.exchanges())
    own = hub.tmp / "sdk-cache"
    huggingface_hub.hf_hub_download(REPO, name, cache_dir=own, endpoint=f"{hub.proxy.url}/hf")
    assert _asked(hub, since) == ours
    assert _layout(hub.cache) == _layout(own)


def test_a_large_file_the_engine_declines_is_the_sdks_and_force_fetches_it_again(
    hub: Hub,
) -> None:
    hub.proxy.add("status", TARGET, status=403)  # the engine's GET: refused, once
    model = modelhub.pull(f"{REF}:{BIG}", stage="none")
    assert model.path.read_bytes() == hub.files[BIG]
    commit = _commit(hub)
    big, pinned = f"/hf/{REPO}/resolve/main/{BIG}", f"/hf/{REPO}/resolve/{commit}/{BIG}"
    # The SDK's HEAD, the engine's refused GET, then hf_hub_download as without the engine.
    assert _asked(hub, 0) == [("HEAD", big), ("GET", pinned), ("HEAD", big), ("GET", big)]
    since = len(hub.proxy.exchanges())
    modelhub.pull(f"{REF}:{BIG}", stage="none", force=True)
    again = hub.proxy.exchanges()[since:]
    assert (again[0].method, again[0].path) == ("HEAD", big)
    assert {(e.method, e.path) for e in again[1:]} == {("GET", pinned)}
    assert sum(e.sent for e in again) == len(hub.files[BIG]), "--force fetches it once more"
    assert (hub.storage() / "blobs" / hub.big_sha).read_bytes() == hub.files[BIG]

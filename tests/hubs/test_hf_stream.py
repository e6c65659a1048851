"""hf_stream: the sha256 of what huggingface_hub downloads, taken as the bytes stream through
its client, with the real SDK against `modelhub serve` (a fault proxy between them where a
test needs bytes to go wrong). A pull trusts a blob without reading it again only on
evidence: a whole ``200`` body of the listed size that hashed to the listed sha256, received
while its watch was open; everything else is read from disk.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import modelhub
from modelhub.errors import HashMismatchError
from modelhub.hubs.hf_stream import MIN_BYTES, Watch
from modelhub.importer import import_path
from modelhub.mirror.app import BackgroundMirror
from tests.faults.proxy import FaultProxy

huggingface_hub = pytest.importorskip("huggingface_hub")

REPO = "stream-org/weights"
WEIGHTS = "model.safetensors"


@dataclass
class Hub:
    proxy: FaultProxy
    endpoint: str
    cache: Path
    weights: bytes

    @property
    def sha(self) -> str:
        return hashlib.sha256(self.weights).hexdigest()

    def download(self) -> Path:
        """The SDK's own hf_hub_download of the weights; the blob it wrote."""
        path = huggingface_hub.hf_hub_download(
            REPO, WEIGHTS, endpoint=self.endpoint, cache_dir=str(self.cache)
        )
        return Path(path).resolve()


@pytest.fixture
def hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Hub]:
    """A repo with 3 MiB of weights (above MIN_BYTES) and a config, behind a fault proxy."""
    src = tmp_path / "src"
    src.mkdir()
    weights = os.urandom(3 * MIN_BYTES)
    (src / WEIGHTS).write_bytes(weights)
    (src / "config.json").write_text('{"model_type": "tiny"}')
    seed = modelhub.Store(tmp_path / "seed")
    import_path(seed, src, modelhub.parse(f"hf:{REPO}"))
    cache = tmp_path / "hf-cache"
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    with BackgroundMirror(seed.root) as mirror, FaultProxy(mirror) as proxy:
        monkeypatch.setenv("MODELHUB_HF_URL", f"{proxy.url}/hf")
        yield Hub(proxy, f"{proxy.url}/hf", cache, weights)


def test_a_whole_download_is_evidence_for_its_blob(hub: Hub) -> None:
    with Watch() as watch:
        blob = hub.download()
    assert blob.read_bytes() == hub.weights
    assert blob.name == hub.sha  # the SDK names LFS blobs by their sha256
    assert watch.received(hub.sha, len(hub.weights), blob.stat().st_mtime_ns)
    # Only what streamed in whole: not another size, not another digest.
    assert not watch.received(hub.sha, len(hub.weights) - 1, blob.stat().st_mtime_ns)
    assert not watch.received("0" * 64, len(hub.weights), blob.stat().st_mtime_ns)


def test_a_blob_older_than_the_watch_is_not_vouched_for(hub: Hub) -> None:
    """A blob already in a cache (another repo's copy of the same bytes, say) is read again."""
    blob = hub.download()
    time.sleep(0.05)
    with Watch() as watch:
        watch.seen.add((hub.sha, len(hub.weights)))  # as if the same bytes streamed meanwhile
        assert not watch.received(hub.sha, len(hub.weights), blob.stat().st_mtime_ns)


def test_downloads_outside_a_watch_are_not_recorded(hub: Hub) -> None:
    with Watch():
        pass
    blob = hub.download()
    with Watch() as later:
        assert later.seen == set()
        assert not later.received(hub.sha, len(hub.weights), blob.stat().st_mtime_ns)


def test_a_flipped_byte_is_no_evidence_and_the_pull_fails(hub: Hub) -> None:
    hub.proxy.add("wrong_bytes", f"*/resolve/*/{WEIGHTS}", times=-1)
    with Watch() as watch:
        blob = hub.download()  # the SDK checks the size only: it keeps the corrupt bytes
    assert blob.read_bytes() != hub.weights
    assert not watch.received(hub.sha, len(hub.weights), blob.stat().st_mtime_ns)
    for path in hub.cache.rglob("*"):  # a fresh cache for the pull
        if path.is_file() or path.is_symlink():
            path.unlink()
    with pytest.raises(HashMismatchError, match="sha256"):
        modelhub.pull(f"hf:{REPO}")


def test_a_body_cut_short_is_no_evidence(hub: Hub) -> None:
    """The SDK's first body stops after 1 MiB and it fetches the file again: only the second,
    whole body counts."""
    hub.proxy.add("truncate", f"*/resolve/*/{WEIGHTS}", after=MIN_BYTES + 5)
    with Watch() as watch:
        model = modelhub.pull(f"hf:{REPO}")
    gets = hub.proxy.exchanges(f"*/resolve/*/{WEIGHTS}", "GET")
    assert [e.sent for e in gets] == [MIN_BYTES + 5, len(hub.weights)]
    assert watch.seen == {(hub.sha, len(hub.weights))}
    entry = next(f for f in model.manifest.files if f.path.endswith(WEIGHTS))
    assert entry.sha256 == hub.sha
    assert modelhub.Store().verify(model.manifest) == []


def test_a_range_request_is_no_evidence(hub: Hub) -> None:
    """A body asked for with ``Range`` (how a download resumes) is part of a file at most."""
    from huggingface_hub import get_session

    url = f"{hub.endpoint}/{REPO}/resolve/main/{WEIGHTS}"
    whole = f"bytes=0-{len(hub.weights) - 1}"
    with Watch() as watch:
        with get_session().stream("GET", url, headers={"Range": whole}) as response:
            assert response.status_code in (200, 206)
            assert b"".join(response.iter_bytes()) == hub.weights
        assert watch.seen == set()
        with get_session().stream("GET", url) as response:
            assert b"".join(response.iter_bytes()) == hub.weights
        assert watch.seen == {(hub.sha, len(hub.weights))}


def test_a_pull_takes_the_streamed_sha256_instead_of_reading_the_blob(
    hub: Hub, monkeypatch: pytest.MonkeyPatch
) -> None:
    from modelhub.hubs import hf

    read: list[str] = []

    def recording(path: Path, *args: object, **kwargs: object) -> tuple[str, int]:
        read.append(Path(path).name)
        return real(path, *args, **kwargs)

    real = hf.sha256_file
    monkeypatch.setattr(hf, "sha256_file", recording)
    model = modelhub.pull(f"hf:{REPO}")
    entry = next(f for f in model.manifest.files if f.path.endswith(WEIGHTS))
    assert entry.sha256 == hub.sha and entry.size == len(hub.weights)
    assert modelhub.Store().verify(model.manifest) == []
    assert hub.sha not in read, "the weights' blob was read again after streaming in whole"
    (get,) = hub.proxy.exchanges(f"*/resolve/*/{WEIGHTS}", "GET")
    assert get.status == 200 and get.sent == len(hub.weights)

"""modelhub.transfer against a real HTTP/1.1 server on 127.0.0.1 (no mocks, real files)."""

from __future__ import annotations

import hashlib
import json
import mmap
import os
import queue
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from modelhub import download_job, transfer
from modelhub._http import parse_url, redirect_target, same_origin
from modelhub.connections import POOL
from modelhub.errors import (
    AuthError,
    HashMismatchError,
    HTTPStatusError,
    InsecureRedirectError,
    ModelhubError,
    ModelNotFoundError,
    NetworkError,
    OfflineError,
    SizeMismatchError,
    TransferTimeoutError,
)
from modelhub.sink import Sink
from modelhub.transfer import download_file, fetch, parse_retry_after
from tests.support.httpserver import Fault, HTTPTestServer

MiB = 2**20
TOKEN = "hf_SECRET_token_value"


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("MODELHUB_OFFLINE", raising=False)
    monkeypatch.delenv("MODELHUB_CONNECTIONS", raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("MODELHUB_RETRIES", "5")
    monkeypatch.setenv("MODELHUB_TIMEOUT", "10")


@pytest.fixture(scope="module")
def data() -> bytes:
    return os.urandom(3 * MiB + 12345)


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A 40 MiB file on disk (served by sendfile), with its sha256."""
    path = tmp_path_factory.mktemp("big") / "big.bin"
    h = hashlib.sha256()
    with open(path, "wb") as f:
        for _ in range(40):
            block = os.urandom(MiB)
            h.update(block)
            f.write(block)
    return path, h.hexdigest()


@pytest.fixture(scope="module")
def huge(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """Past the O_DIRECT threshold (64 MiB), with an odd tail."""
    path = tmp_path_factory.mktemp("huge") / "huge.bin"
    path.write_bytes(os.urandom(64 * MiB + 4097))
    return path, sha(path.read_bytes())


@pytest.fixture
def server(data: bytes) -> Iterator[HTTPTestServer]:
    with HTTPTestServer({"/m/model.bin": data}) as srv:
        yield srv


def sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def sidecar(part: Path) -> Path:
    return part.with_name(part.name + ".json")


def gets(server: HTTPTestServer) -> list[dict[str, str]]:
    return [r.headers for r in server.requests if r.method == "GET"]


# --- plain paths ---------------------------------------------------------------------------------
def test_plain_download_hashes_inline(server: HTTPTestServer, data: bytes, tmp_path: Path) -> None:
    part = tmp_path / "tmp" / "x.part"
    d = download_file(f"{server.url}/m/model.bin", part, expected_sha256=sha(data), connections=1)
    assert part.read_bytes() == data
    assert (d.sha256, d.size, d.resumed_from, d.connections) == (sha(data), len(data), 0, 1)
    assert d.bytes_fetched == len(data)
    assert d.etag == f'"{sha(data)}"' and d.last_modified
    assert d.url == f"{server.url}/m/model.bin"
    assert not sidecar(part).exists()
    assert len(gets(server)) == 1 and "range" not in gets(server)[0]


@pytest.mark.parametrize("prefix", [0, 1000])
def test_sink_takes_a_whole_file_in_one_buffer_without_threads(tmp_path: Path, prefix: int) -> None:
    content = os.urandom(5000)
    part = tmp_path / "x.part"
    part.write_bytes(content[:prefix])  # a resumed prefix is hashed before what follows it
    fd = os.open(part, os.O_WRONLY)
    try:
        sink = Sink(fd, part, prefix, None)
        released: queue.Queue[mmap.mmap] = queue.Queue()
        buf = mmap.mmap(-1, 8192)
        buf[: len(content) - prefix] = content[prefix:]
        sink.submit(buf, len(content) - prefix, released, last=True)
        assert sink.threads == [] and released.get_nowait() is buf
        assert sink.finish() == (sha(content), len(content))
    finally:
        os.close(fd)
    assert part.read_bytes() == content


def test_sink_pipelines_a_file_of_several_buffers(tmp_path: Path) -> None:
    pieces = [os.urandom(3000), os.urandom(2000)]
    part = tmp_path / "x.part"
    fd = os.open(part, os.O_WRONLY | os.O_CREAT)
    try:
        sink = Sink(fd, part, 0, None)
        released: queue.Queue[mmap.mmap] = queue.Queue()
        for i, piece in enumerate(pieces):
            buf = mmap.mmap(-1, 4096)
            buf[: len(piece)] = piece
            sink.submit(buf, len(piece), released, last=i == len(pieces) - 1)
        assert [t.name for t in sink.threads] == ["modelhub-hash", "modelhub-write"]
        assert sink.finish() == (sha(b"".join(pieces)), 5000)
    finally:
        os.close(fd)
    assert part.read_bytes() == b"".join(pieces)


def test_small_file_with_default_connections(server: HTTPTestServer, data: bytes, tmp_path: Path):
    part = tmp_path / "x.part"
    d = download_file(f"{server.url}/m/model.bin", part)  # probes with a bounded range
    assert d.sha256 == sha(data) and part.read_bytes() == data and d.connections == 1
    assert d.bytes_fetched == len(data)


def test_medium_file_probe_then_rest(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Above the probe; on loopback one connection fetches the rest in well under MIN_GAIN.
    content = os.urandom(12 * MiB + 3)
    with HTTPTestServer({"/f.bin": content}) as srv:
        d = download_file(f"{srv.url}/f.bin", tmp_path / "f.part", progress=True, desc="f.bin")
        ranges = [h["range"] for h in gets(srv)]
        assert srv.connections == 1, "the probe's keep-alive connection is reused"
    assert d.sha256 == sha(content) and d.connections == 1 and d.bytes_fetched == len(content)
    probe = download_job.PROBE_SIZE
    assert ranges == [f"bytes=0-{probe - 1}", f"bytes={probe}-"]
    err = capsys.readouterr().err
    assert "f.bin" in err and "100%" in err


def test_empty_file(tmp_path: Path) -> None:
    with HTTPTestServer({"/empty": b""}) as srv:
        d = download_file(f"{srv.url}/empty", tmp_path / "e.part", expected_size=0)
    assert (d.size, d.sha256) == (0, sha(b""))


def test_fetch_small_resource(server: HTTPTestServer) -> None:
    server.add("/api/info.json", b'{"ok": true}', headers={"Content-Type": "application/json"})
    r = fetch(f"{server.url}/api/info.json")
    assert (r.status, json.loads(r.body)) == (200, {"ok": True})
    assert r.headers["content-type"] == "application/json" and "etag" in r.headers
    head = fetch(f"{server.url}/api/info.json", method="HEAD")
    assert head.body == b"" and head.headers["content-length"] == "12"
    missing = fetch(f"{server.url}/nope", allow_not_found=True)
    assert missing.status == 404
    with pytest.raises(ModelhubError, match="larger than"):
        fetch(f"{server.url}/m/model.bin", max_bytes=1000)
    assert len({r.path for r in server.requests}) == 3
    assert server.connections == 1, "fetches reuse one keep-alive connection"


def test_fetch_follows_redirects_and_retries(server: HTTPTestServer) -> None:
    server.add("/real.json", b"{}")
    server.redirect("/alias.json", "/real.json", status=301)
    server.faults.append(Fault("status", status=502, times=2, path="/real.json"))
    r = fetch(f"{server.url}/alias.json")
    assert r.body == b"{}" and r.url == f"{server.url}/real.json"
    first = fetch(f"{server.url}/alias.json", follow_redirects=False)
    assert first.status == 301 and first.headers["location"] == "/real.json"


# --- integrity -----------------------------------------------------------------------------------
def test_expected_sha_mismatch_removes_part(server: HTTPTestServer, tmp_path: Path) -> None:
    part = tmp_path / "x.part"
    with pytest.raises(HashMismatchError) as info:
        download_file(f"{server.url}/m/model.bin?sig=abc", part, expected_sha256="0" * 64)
    msg = str(info.value)
    assert "0000000000" in msg and "/m/model.bin" in msg and "sig=abc" not in msg
    assert "\n" not in msg
    assert not part.exists() and not sidecar(part).exists()


def test_wrong_bytes_with_expected_sha(server: HTTPTestServer, data: bytes, tmp_path: Path):
    server.faults.append(Fault("wrong_bytes"))
    part = tmp_path / "x.part"
    with pytest.raises(HashMismatchError):
        download_file(f"{server.url}/m/model.bin", part, expected_sha256=sha(data))
    assert not part.exists() and not sidecar(part).exists()


def test_expected_size_mismatch(server: HTTPTestServer, data: bytes, tmp_path: Path) -> None:
    part = tmp_path / "x.part"
    with pytest.raises(SizeMismatchError, match="expected"):
        download_file(f"{server.url}/m/model.bin", part, expected_size=len(data) + 1)
    assert not part.exists() and not sidecar(part).exists()


def test_truncate_is_resumed_never_a_wrong_file(
    server: HTTPTestServer, data: bytes, tmp_path: Path
) -> None:
    server.faults.append(Fault("truncate", after=MiB + 7))
    part = tmp_path / "x.part"
    d = download_file(f"{server.url}/m/model.bin", part, connections=1)
    assert d.sha256 == sha(data) and part.read_bytes() == data
    assert gets(server)[-1]["range"] == f"bytes={MiB + 7}-"


def test_truncate_forever_gives_up_keeping_the_prefix(
    server: HTTPTestServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("MODELHUB_RETRIES", "1")
    server.faults.append(Fault("truncate", after=100, times=-1))
    part = tmp_path / "x.part"
    with pytest.raises(NetworkError, match="closed at byte 200 of"):
        download_file(f"{server.url}/m/model.bin", part, connections=1)
    assert part.stat().st_size == 200 and sidecar(part).exists()  # a later call resumes


def test_body_shorter_than_expected_size(tmp_path: Path) -> None:
    # No Content-Length (close-delimited): only the expected size can tell it is short.
    with HTTPTestServer() as srv:
        srv.add("/f", b"x" * 1000, headers={"Content-Length": "", "Connection": "close"})
        with pytest.raises(SizeMismatchError):
            download_file(f"{srv.url}/f", tmp_path / "f.part", expected_size=1001, connections=1)
    assert not (tmp_path / "f.part").exists()


# --- resume within the call ----------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["drop", "truncate"])
def test_drop_mid_body_resumes_from_received_bytes(
    server: HTTPTestServer, data: bytes, tmp_path: Path, kind: str
) -> None:
    server.faults.append(Fault(kind, after=2 * MiB))
    part = tmp_path / "x.part"
    d = download_file(f"{server.url}/m/model.bin", part, expected_sha256=sha(data), connections=1)
    assert d.sha256 == sha(data)
    assert d.bytes_fetched < 1.3 * len(data)
    ranges = [h.get("range") for h in gets(server)]
    assert ranges[0] is None and ranges[-1] is not None
    assert int(ranges[-1].split("=")[1].rstrip("-")) >= MiB  # resumed, not restarted
    assert gets(server)[-1]["if-range"] == f'"{sha(data)}"'


def test_connection_reset_mid_body(server: HTTPTestServer, data: bytes, tmp_path: Path) -> None:
    server.faults.append(Fault("reset", after=2 * MiB))
    d = download_file(f"{server.url}/m/model.bin", tmp_path / "x.part", connections=1)
    assert d.sha256 == sha(data) and d.bytes_fetched < 1.3 * len(data)


def test_503_burst_then_success(server: HTTPTestServer, data: bytes, tmp_path: Path) -> None:
    server.faults.append(Fault("status", status=503, times=3))
    d = download_file(f"{server.url}/m/model.bin", tmp_path / "x.part", connections=1)
    assert d.sha256 == sha(data) and len(gets(server)) == 4


def test_429_retry_after_is_honoured(server: HTTPTestServer, data: bytes, tmp_path: Path) -> None:
    server.faults.append(Fault("status", status=429, retry_after="1"))
    start = time.monotonic()
    d = download_file(f"{server.url}/m/model.bin", tmp_path / "x.part")
    assert time.monotonic() - start >= 0.95
    assert d.sha256 == sha(data)


def test_retries_exhausted_is_network_error(
    server: HTTPTestServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("MODELHUB_RETRIES", "1")
    server.faults.append(Fault("status", status=500, times=-1))
    with pytest.raises(NetworkError, match="HTTP 500"):
        download_file(f"{server.url}/m/model.bin", tmp_path / "x.part")
    assert len(server.requests) == 2


def test_stall_times_out(
    server: HTTPTestServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("MODELHUB_TIMEOUT", "1")
    monkeypatch.setenv("MODELHUB_RETRIES", "1")
    server.faults.append(Fault("stall", after=1000, times=-1, seconds=30))
    start = time.monotonic()
    with pytest.raises(TransferTimeoutError, match="timed out"):
        download_file(f"{server.url}/m/model.bin", tmp_path / "x.part", connections=1)
    assert time.monotonic() - start < 8


# --- resume across processes --------------------------------------------------------------------
def _leave_part(part: Path, content: bytes, url: str, etag: str, size: int) -> None:
    """What an interrupted earlier process leaves behind."""
    part.write_bytes(content)
    meta = {"url": url, "etag": etag, "last_modified": None, "size": size}
    sidecar(part).write_text(json.dumps(meta))


def test_resume_across_processes(server: HTTPTestServer, data: bytes, tmp_path: Path) -> None:
    url = f"{server.url}/m/model.bin"
    part = tmp_path / "x.part"
    n = 1_234_567
    _leave_part(part, data[:n], url, f'"{sha(data)}"', len(data))
    d = download_file(url, part, expected_sha256=sha(data))
    assert (d.resumed_from, d.sha256, d.bytes_fetched) == (n, sha(data), len(data) - n)
    assert part.read_bytes() == data and not sidecar(part).exists()
    first = gets(server)[0]
    assert first["range"].startswith(f"bytes={n}-") and first["if-range"] == f'"{sha(data)}"'


def test_resume_of_a_complete_part_checks_the_validator(
    server: HTTPTestServer, data: bytes, tmp_path: Path
) -> None:
    url = f"{server.url}/m/model.bin"
    part = tmp_path / "x.part"
    _leave_part(part, data, url, f'"{sha(data)}"', len(data))
    d = download_file(url, part, connections=1)
    assert (d.sha256, d.bytes_fetched, d.resumed_from) == (sha(data), 1, len(data) - 1)


def test_stale_validator_restarts_from_zero(
    server: HTTPTestServer, data: bytes, tmp_path: Path
) -> None:
    url = f"{server.url}/m/model.bin"
    part = tmp_path / "x.part"
    _leave_part(part, b"old version bytes" * 1000, url, '"an-old-etag"', len(data))
    d = download_file(url, part, expected_sha256=sha(data))
    assert (d.resumed_from, d.sha256) == (0, sha(data))
    assert part.read_bytes() == data
    assert gets(server)[0]["if-range"] == '"an-old-etag"'  # the server answered 200


def test_ignore_range_on_resume_restarts_cleanly(
    server: HTTPTestServer, data: bytes, tmp_path: Path
) -> None:
    url = f"{server.url}/m/model.bin"
    part = tmp_path / "x.part"
    _leave_part(part, data[: 2 * MiB], url, f'"{sha(data)}"', len(data))
    server.faults.append(Fault("ignore_range"))
    d = download_file(url, part, expected_sha256=sha(data), connections=1)
    assert (d.resumed_from, d.sha256, d.size) == (0, sha(data), len(data))
    assert part.read_bytes() == data


def test_stale_part_without_sidecar_restarts(
    server: HTTPTestServer, data: bytes, tmp_path: Path
) -> None:
    part = tmp_path / "x.part"
    part.write_bytes(b"garbage" * 100_000)
    d = download_file(f"{server.url}/m/model.bin", part, connections=1)
    assert (d.resumed_from, d.sha256) == (0, sha(data)) and part.read_bytes() == data
    assert "range" not in gets(server)[0]


def test_network_failure_keeps_part_for_resume(
    server: HTTPTestServer, data: bytes, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    url = f"{server.url}/m/model.bin"
    part = tmp_path / "x.part"
    monkeypatch.setenv("MODELHUB_RETRIES", "0")
    server.faults.append(Fault("drop", after=2 * MiB))
    with pytest.raises(NetworkError):
        download_file(url, part, connections=1)
    kept = part.stat().st_size
    assert 0 < kept <= 2 * MiB and sidecar(part).exists()
    monkeypatch.setenv("MODELHUB_RETRIES", "3")
    d = download_file(url, part, expected_sha256=sha(data), connections=1)
    assert d.resumed_from == kept and d.sha256 == sha(data)
    assert d.bytes_fetched == len(data) - kept


# --- parallel path -------------------------------------------------------------------------------
@pytest.fixture
def slow_link(monkeypatch: pytest.MonkeyPatch) -> None:
    """Loopback delivers the first chunk at GB/s, which keeps one connection; these tests are
    about the parallel path, so no first chunk counts as fast enough, and splitting always
    pays."""
    monkeypatch.setattr(download_job, "SINGLE_STREAM_RATE", float("inf"))
    monkeypatch.setattr(download_job, "MIN_GAIN", float("-inf"))  # latency too


def test_fast_first_chunk_keeps_one_connection(
    big: tuple[Path, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A link that outruns sha256 and the disk gains nothing from more connections: the probe's
    chunk is timed, and the rest follows on the same keep-alive connection. (The threshold is
    lowered so that a loaded test machine still counts as fast.)"""
    monkeypatch.setattr(download_job, "SINGLE_STREAM_RATE", 1 * MiB)
    path, digest = big
    with HTTPTestServer({"/big.bin": path}) as srv:
        d = download_file(f"{srv.url}/big.bin", tmp_path / "b.part", connections=4)
        ranges = [h["range"] for h in gets(srv)]
        probe = download_job.PROBE_SIZE
        assert ranges == [f"bytes=0-{probe - 1}", f"bytes={probe}-"]
        assert srv.connections == 1
    assert (d.sha256, d.connections, d.bytes_fetched) == (digest, 1, 40 * MiB)


@pytest.mark.usefixtures("slow_link")
def test_parallel_ranged_download(big: tuple[Path, str], tmp_path: Path) -> None:
    path, digest = big
    with HTTPTestServer({"/big.bin": path}) as srv:
        part = tmp_path / "big.part"
        d = download_file(f"{srv.url}/big.bin", part, expected_sha256=digest, connections=4)
        assert d.connections == 4 and d.sha256 == digest and d.size == 40 * MiB
        assert d.bytes_fetched == 40 * MiB and srv.bytes_sent == 40 * MiB
        ranges = [h["range"] for h in gets(srv)]
        assert len(ranges) >= 5 and all(r.startswith("bytes=") for r in ranges)
        assert 2 <= srv.connections <= 4, "one keep-alive connection per worker"
    assert part.stat().st_size == 40 * MiB and not sidecar(part).exists()


@pytest.mark.usefixtures("slow_link")
def test_parallel_download_leaves_its_connections_alive_in_the_pool(
    big: tuple[Path, str], tmp_path: Path
) -> None:
    """The cancel path shuts down only connections still being read: one a worker handed back
    to the shared pool may already carry another request (a CI run saw a second, aborted
    request reach a server), so every connection the server accepted is idle and usable."""
    path, digest = big
    with HTTPTestServer({"/big.bin": path}) as srv:
        d = download_file(f"{srv.url}/big.bin", tmp_path / "b.part", connections=4)
        assert d.connections == 4 and d.sha256 == digest
        target = parse_url(f"{srv.url}/big.bin")
        conns = [POOL.get(target, 5.0) for _ in range(srv.connections + 1)]
        try:
            reused = [c.reused for c in conns]
            assert reused == [True] * srv.connections + [False], (
                f"{srv.connections} connections accepted, {sum(reused)} idle in the pool; "
                f"requests: {[(h.get('range'), h.get('connection')) for h in gets(srv)]}"
            )
        finally:
            for c in conns:
                c.close()


def test_connections_are_reused_in_a_process_with_many_files_open(tmp_path: Path) -> None:
    """An idle connection's liveness check must work for any descriptor: ``select`` refuses
    those from 1024 up, and every pooled connection then counted as dead (a full test run, or
    a big sync, has that many files open). Run in a child with 1100 descriptors open."""
    import subprocess
    import sys

    code = f"""
import os, resource, sys
from pathlib import Path
sys.path.insert(0, {str(Path(__file__).resolve().parents[1])!r})
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
want = 2048 if hard == resource.RLIM_INFINITY else min(hard, 2048)
resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, want), hard))
held = [open(os.devnull) for _ in range(1100)]
from modelhub import download_job
from modelhub.connections import POOL
from modelhub.transfer import download_file
from tests.support.httpserver import HTTPTestServer
download_job.SINGLE_STREAM_RATE = float("inf")
download_job.MIN_GAIN = float("-inf")
big = Path({str(tmp_path)!r}) / "big.bin"
big.write_bytes(os.urandom(40 << 20))
with HTTPTestServer({{"/big.bin": big}}) as srv:
    d = download_file(srv.url + "/big.bin", big.with_suffix(".part"), connections=4)
    idle = [c for conns in POOL._idle.values() for c in conns]
    assert min(c.http.sock.fileno() for c in idle) >= 1024, "descriptors below 1024"
    gets = [r for r in srv.requests if r.method == "GET"]
    print(d.connections, srv.connections, len(gets), sum(not c.is_stale() for c in idle))
"""
    env = {**os.environ, "NO_PROXY": "127.0.0.1,localhost"}
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY"):
        env.pop(name, None)
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    workers, accepted, requests, alive = map(int, proc.stdout.split())
    # More requests than connections: a worker's next run went out on its pooled connection.
    assert workers == 4 and accepted == 4 and requests > accepted and alive == accepted


def test_the_pool_closes_connections_it_no_longer_needs(monkeypatch: pytest.MonkeyPatch) -> None:
    """Idle connections are not kept forever: beyond MAX_ORIGINS origins the least recently
    used one's are closed, and one idle longer than IDLE_MAX is closed instead of reused (a
    long sync or a mirror talks to many hosts; each idle socket holds a descriptor)."""
    from modelhub import connections

    monkeypatch.setattr(connections, "MAX_ORIGINS", 2)
    pool = connections.ConnectionPool()
    servers = [HTTPTestServer({"/x": b"x"}) for _ in range(3)]
    try:
        used = []
        for srv in servers:
            srv.start()
            target = parse_url(f"{srv.url}/x")
            conn = pool.get(target, 5.0)
            resp = conn.request("GET", target, {})
            assert resp.read() == b"x"
            pool.put(conn, resp)
            used.append((target, conn))
        assert pool.idle_count() == 2
        assert used[0][1].http.sock is None, "the least recently used origin's connection"
        assert all(conn.http.sock is not None for _, conn in used[1:])
        again = pool.get(used[2][0], 5.0)
        assert again is used[2][1] and again.reused
        again.close()
        monkeypatch.setattr(connections, "IDLE_MAX", 0.0)
        time.sleep(0.01)
        stale = pool.get(used[1][0], 5.0)
        assert stale is not used[1][1] and not stale.reused
        assert used[1][1].http.sock is None and pool.idle_count() == 0
        stale.close()
    finally:
        for srv in servers:
            srv.stop()


@pytest.mark.usefixtures("slow_link")
def test_parallel_survives_drops_and_5xx(big: tuple[Path, str], tmp_path: Path) -> None:
    path, digest = big
    with HTTPTestServer({"/big.bin": path}) as srv:
        srv.faults.append(Fault("status", status=503))
        srv.faults.append(Fault("drop", after=3 * MiB))
        srv.faults.append(Fault("status", status=503, times=2))
        srv.faults.append(Fault("drop", after=5 * MiB))
        d = download_file(f"{srv.url}/big.bin", tmp_path / "b.part", expected_sha256=digest)
    assert d.sha256 == digest and d.bytes_fetched < 1.3 * 40 * MiB


def test_no_range_support_falls_back_to_one_stream(big: tuple[Path, str], tmp_path: Path):
    path, digest = big
    with HTTPTestServer({"/big.bin": path}) as srv:
        srv.faults.append(Fault("ignore_range", times=-1))
        d = download_file(f"{srv.url}/big.bin", tmp_path / "b.part", connections=4)
        assert len(gets(srv)) == 1
    assert (d.sha256, d.connections, d.bytes_fetched) == (digest, 1, 40 * MiB)


@pytest.mark.parametrize("connections", [1, 4])
@pytest.mark.usefixtures("slow_link")
def test_large_file_direct_io_with_an_odd_drop(
    huge: tuple[Path, str], tmp_path: Path, connections: int
) -> None:
    # Large files bypass the page cache (O_DIRECT) where they can; a drop at an odd offset
    # makes later writes unaligned, which must fall back to buffered writes seamlessly.
    path, digest = huge
    with HTTPTestServer({"/huge.bin": path}) as srv:
        srv.faults.append(Fault("drop", after=10 * MiB + 123))
        part = tmp_path / "h.part"
        d = download_file(f"{srv.url}/huge.bin", part, connections=connections)
    assert d.sha256 == digest and d.size == 64 * MiB + 4097
    assert sha(part.read_bytes()) == digest


@pytest.mark.usefixtures("slow_link")
def test_parallel_resume_across_processes(big: tuple[Path, str], tmp_path: Path) -> None:
    path, digest = big
    content = path.read_bytes()
    with HTTPTestServer({"/big.bin": path}) as srv:
        url = f"{srv.url}/big.bin"
        part = tmp_path / "b.part"
        _leave_part(part, content[: 3 * MiB + 5], url, f'"{digest}"', len(content))
        d = download_file(url, part, expected_sha256=digest, connections=3)
    assert (d.resumed_from, d.sha256, d.connections) == (3 * MiB + 5, digest, 3)
    assert d.bytes_fetched == len(content) - d.resumed_from


# --- status mapping, tokens, redirects -----------------------------------------------------------
def test_404_is_model_not_found(server: HTTPTestServer, tmp_path: Path) -> None:
    part = tmp_path / "x.part"
    with pytest.raises(ModelNotFoundError) as info:
        download_file(f"{server.url}/missing.bin?token=abc", part, token=TOKEN)
    assert f"{server.url}/missing.bin" in str(info.value)
    assert "abc" not in str(info.value) and TOKEN not in str(info.value)
    assert not part.exists()
    with pytest.raises(ModelNotFoundError):
        fetch(f"{server.url}/missing.json")


@pytest.mark.parametrize("status", [401, 403])
def test_auth_errors(server: HTTPTestServer, tmp_path: Path, status: int) -> None:
    server.faults.append(Fault("status", status=status))
    with pytest.raises(AuthError) as info:
        download_file(f"{server.url}/m/model.bin", tmp_path / "x.part", token=TOKEN)
    assert TOKEN not in str(info.value) and "token was refused" in str(info.value)


def test_other_4xx_is_http_status_error(server: HTTPTestServer) -> None:
    server.faults.append(Fault("status", status=418))
    with pytest.raises(HTTPStatusError) as info:
        fetch(f"{server.url}/m/model.bin")
    assert info.value.status == 418


def test_token_only_to_original_host(data: bytes, tmp_path: Path) -> None:
    with HTTPTestServer() as origin, HTTPTestServer({"/cdn/model.bin": data}) as cdn:
        other = cdn.url.replace("127.0.0.1", "localhost")  # another host string: another origin
        origin.add("/m/model.bin", data)
        origin.redirect("/same", "/m/model.bin")
        origin.redirect("/away", f"{other}/cdn/model.bin", status=307)
        d = download_file(f"{origin.url}/same", tmp_path / "a.part", token=TOKEN)
        assert d.sha256 == sha(data)
        assert all(h["authorization"] == f"Bearer {TOKEN}" for h in gets(origin))
        d = download_file(
            f"{origin.url}/away", tmp_path / "b.part", token=TOKEN, headers={"X-Trace": "1"}
        )
        assert d.sha256 == sha(data) and d.url == f"{other}/cdn/model.bin"
        assert gets(origin)[-1]["authorization"] == f"Bearer {TOKEN}"
        assert cdn.requests and all("authorization" not in h for h in gets(cdn))
        assert all(h["x-trace"] == "1" for h in gets(cdn))


def test_redirect_policy() -> None:
    with pytest.raises(InsecureRedirectError) as info:
        redirect_target("https://hub.example/a?sig=1", "http://cdn.example/b", 302, "GET")
    assert "sig=1" not in str(info.value)
    assert redirect_target("https://h.example/a/b", "../c?x=1", 302, "GET") == (
        "https://h.example/c?x=1",
        "GET",
    )
    assert redirect_target("http://h/a", "https://h/a", 301, "GET") == ("https://h/a", "GET")
    assert redirect_target("http://h/a", "/b", 303, "HEAD") == ("http://h/b", "HEAD")
    assert redirect_target("http://h/a", "/b", 303, "POST") == ("http://h/b", "GET")
    assert redirect_target("http://h/a", "/b", 307, "POST") == ("http://h/b", "POST")
    assert same_origin("https://h.example/x", "https://H.example:443/y")
    assert not same_origin("https://h.example/x", "http://h.example/x")
    assert not same_origin("http://127.0.0.1:80/x", "http://localhost:80/x")
    assert not same_origin("http://h:8080/x", "http://h:8081/x")


def test_too_many_redirects(server: HTTPTestServer) -> None:
    server.redirect("/loop", "/loop")
    with pytest.raises(NetworkError, match="too many redirects"):
        fetch(f"{server.url}/loop")
    assert len(server.requests) == 11


# --- environment: offline, unreachable, proxies --------------------------------------------------
def test_offline_makes_no_request(
    server: HTTPTestServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("MODELHUB_OFFLINE", "1")
    with pytest.raises(OfflineError):
        download_file(f"{server.url}/m/model.bin", tmp_path / "x.part")
    with pytest.raises(OfflineError):
        fetch(f"{server.url}/m/model.bin")
    assert server.requests == [] and server.connections == 0
    assert not (tmp_path / "x.part").exists()


def test_connection_refused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    srv = HTTPTestServer()
    port = srv.port
    srv.stop()  # the port is now closed
    monkeypatch.setenv("MODELHUB_RETRIES", "1")
    with pytest.raises(NetworkError, match=f"cannot reach 127.0.0.1:{port}"):
        download_file(f"http://127.0.0.1:{port}/x", tmp_path / "x.part")


def test_proxy_and_no_proxy(
    server: HTTPTestServer, data: bytes, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("MODELHUB_RETRIES", "0")
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")  # nothing listens there
    d = download_file(f"{server.url}/m/model.bin", tmp_path / "a.part")  # NO_PROXY: direct
    assert d.sha256 == sha(data)
    with HTTPTestServer({"/m/model.bin": data}) as proxy:
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        monkeypatch.setenv("NO_PROXY", "")
        d = download_file("http://models.invalid/m/model.bin", tmp_path / "b.part", token=TOKEN)
        assert d.sha256 == sha(data)
        assert proxy.requests[0].path == "http://models.invalid/m/model.bin"
        assert proxy.requests[0].headers["host"] == "models.invalid"


def test_parse_retry_after() -> None:
    import email.utils

    assert parse_retry_after("3") == 3.0
    assert parse_retry_after(" 0 ") == 0.0
    assert parse_retry_after("3600") == 60.0
    future = email.utils.formatdate(time.time() + 10, usegmt=True)
    value = parse_retry_after(future)
    assert value is not None and 8 <= value <= 10.5
    assert parse_retry_after(email.utils.formatdate(0, usegmt=True)) == 0.0
    assert parse_retry_after("soon") is None and parse_retry_after("") is None


def test_transfer_public_api() -> None:
    assert set(transfer.__all__) == {
        "Download",
        "Response",
        "download_file",
        "fetch",
        "parse_retry_after",
    }


def test_capped_link_opens_more_connections_by_measurement(
    big: tuple[Path, str], tmp_path: Path
) -> None:
    """Through a link shaper (8 MiB/s per connection, 20 ms round trip, as a CDN over the
    internet) the probe finds one connection slow and the rest worth splitting: modelhub opens
    several connections (the ceiling, settings().connections, is not a target: growth stops
    when throughput does), and the bytes are still exactly the file's."""
    from tests.support.shaper import LinkShaper

    path, digest = big
    with (
        HTTPTestServer({"/big.bin": path}) as srv,
        LinkShaper(srv.url, rate=8 * MiB, rtt=0.020) as link,
    ):
        d = download_file(f"{link.url}/big.bin", tmp_path / "b.part", expected_sha256=digest)
        assert link.connections > 1 and srv.connections > 1
        ranges = [h["range"] for h in gets(srv)]
        assert ranges[0] == f"bytes=0-{download_job.PROBE_SIZE - 1}"
    assert d.sha256 == digest and 1 < d.connections <= 8
    assert d.bytes_fetched == 40 * MiB

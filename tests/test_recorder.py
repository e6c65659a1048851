"""The recording reverse proxy (tests/support/recorder.py) against real upstreams and clients.

Upstreams: :class:`HTTPTestServer` (files, ranges, redirects, faults), a small echo server for
request bodies, and a ``modelhub serve`` mirror. Clients: urllib, http.client, and
huggingface_hub's own downloader.
"""

from __future__ import annotations

import hashlib
import http.client
import http.server
import json
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.httpserver import DaemonHTTPServer, Fault, HTTPTestServer, ThreadedServer
from tests.support.recorder import REDACTED, Record, Recorder, diff, normalize

DATA = bytes(range(256)) * 4096  # 1 MiB
SPACED = b"spaced\n"
SECRET = "hf_not_a_real_token_but_secret"


class _EchoServer(DaemonHTTPServer):
    owner: EchoServer


class _EchoHandler(http.server.BaseHTTPRequestHandler):
    """Answers every request with JSON describing it; POST answers chunked, others sized."""

    protocol_version = "HTTP/1.1"
    server: _EchoServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            out = bytearray()
            while True:
                size = int(self.rfile.readline().split(b";")[0], 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return bytes(out)
                out += self.rfile.read(size)
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length", "0")))

    def _answer(self) -> None:
        body = self._body()
        seen = {
            "method": self.command,
            "target": self.path,
            "headers": [[k.lower(), v] for k, v in self.headers.items()],
            "body_sha256": hashlib.sha256(body).hexdigest(),
            "body_len": len(body),
        }
        self.server.owner.seen.append(seen)
        payload = json.dumps(seen).encode()
        self.send_response(201 if self.command == "POST" else 200)
        self.send_header("Content-Type", "application/json")
        if self.command == "POST":  # no length: chunked
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for i in range(0, len(payload), 7):
                piece = payload[i : i + 7]
                self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            self.wfile.write(b"0\r\n\r\n")
        else:
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

    do_POST = do_PUT = do_PATCH = do_DELETE = do_GET = _answer


class EchoServer(ThreadedServer):
    """Records and echoes every request (method, target, headers, body hash)."""

    _thread_name = "echo-server"

    def __init__(self) -> None:
        self.seen: list[dict[str, Any]] = []
        self._listen(_EchoServer, _EchoHandler)


@pytest.fixture
def upstream() -> Iterator[HTTPTestServer]:
    with HTTPTestServer({"/files/model.bin": DATA, "/files/a%20b.txt": SPACED}) as server:
        yield server


@pytest.fixture
def rec(upstream: HTTPTestServer) -> Iterator[Recorder]:
    with Recorder(upstream.url) as recorder:
        yield recorder


def _get(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, headers=headers or {})
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.status, {k.lower(): v for k, v in response.headers.items()}, response.read()


def test_get_is_forwarded_unchanged(upstream: HTTPTestServer, rec: Recorder) -> None:
    target = "/files/a%20b.txt?q=%2Fx&z=1&a="
    status, headers, body = _get(rec.url + target, {"X-Custom": "one", "Accept": "text/*"})
    assert (status, body) == (200, SPACED)
    assert headers["etag"] == f'"{hashlib.sha256(SPACED).hexdigest()}"'
    seen = upstream.requests[-1]
    assert seen.method == "GET" and seen.path == target  # byte for byte, escapes kept
    assert seen.headers["x-custom"] == "one" and seen.headers["accept"] == "text/*"
    assert seen.headers["host"] == f"127.0.0.1:{rec.port}"  # the client's Host, preserved
    assert "accept-encoding" in seen.headers  # urllib's own, not one added or dropped here
    assert rec.wait_idle()  # a record's body count is final once its relay has ended
    (record,) = rec.log
    assert record.resource == ("GET", target)
    assert (record.path, record.query) == ("/files/a%20b.txt", "q=%2Fx&z=1&a=")
    assert record.status == 200 and record.reason == "OK"
    assert record.user_agent is not None and record.user_agent.startswith("Python-urllib/")
    assert record.range is None and record.authorization is False
    assert record.body_bytes == 7 and record.complete and record.error is None
    assert record.headers["x-custom"] == "one"
    assert record.response_headers["content-length"] == "7"


def test_range_and_if_range_pass_through(upstream: HTTPTestServer, rec: Recorder) -> None:
    etag = f'"{hashlib.sha256(DATA).hexdigest()}"'
    status, headers, body = _get(
        rec.url + "/files/model.bin", {"Range": "bytes=100-199", "If-Range": etag}
    )
    assert (status, body) == (206, DATA[100:200])
    assert headers["content-range"] == f"bytes 100-199/{len(DATA)}"
    assert upstream.requests[-1].headers["range"] == "bytes=100-199"
    assert upstream.requests[-1].headers["if-range"] == etag
    assert rec.wait_idle()
    record = rec.log[-1]
    assert (record.status, record.range, record.body_bytes) == (206, "bytes=100-199", 100)


def test_unsatisfiable_range_is_passed_back(upstream: HTTPTestServer, rec: Recorder) -> None:
    with pytest.raises(urllib.error.HTTPError) as caught:
        _get(rec.url + "/files/model.bin", {"Range": f"bytes={len(DATA)}-"})
    assert caught.value.code == 416
    assert rec.log[-1].status == 416 and rec.log[-1].range == f"bytes={len(DATA)}-"


def test_head_and_keep_alive(upstream: HTTPTestServer, rec: Recorder) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", rec.port, timeout=10)
    try:
        for method in ("HEAD", "GET", "HEAD", "GET"):
            conn.request(method, "/files/model.bin")
            response = conn.getresponse()
            body = response.read()
            assert response.status == 200
            assert response.getheader("Content-Length") == str(len(DATA))
            assert body == (b"" if method == "HEAD" else DATA)
    finally:
        conn.close()
    assert rec.wait_idle()
    assert [r.method for r in rec.log] == ["HEAD", "GET", "HEAD", "GET"]
    assert [r.body_bytes for r in rec.log] == [0, len(DATA), 0, len(DATA)]
    assert all(r.complete for r in rec.log)
    assert upstream.connections == 1  # one client connection, one upstream connection


def test_redirects_are_returned_with_upstream_locations_rewritten(
    upstream: HTTPTestServer, rec: Recorder
) -> None:
    upstream.redirect("/abs", upstream.url + "/files/model.bin?from=abs", 302)
    upstream.redirect("/rel", "/files/a%20b.txt", 307)
    upstream.redirect("/away", "http://example.invalid/elsewhere", 301)
    conn = http.client.HTTPConnection("127.0.0.1", rec.port, timeout=10)
    try:
        answers = {}
        for path in ("/abs", "/rel", "/away"):
            conn.request("GET", path)
            response = conn.getresponse()
            response.read()
            answers[path] = (response.status, response.getheader("Location"))
    finally:
        conn.close()
    assert answers == {
        "/abs": (302, f"{rec.origin}/files/model.bin?from=abs"),
        "/rel": (307, "/files/a%20b.txt"),
        "/away": (301, "http://example.invalid/elsewhere"),
    }
    assert [(r.upstream_location, r.location) for r in rec.log] == [
        (upstream.url + "/files/model.bin?from=abs", f"{rec.origin}/files/model.bin?from=abs"),
        ("/files/a%20b.txt", "/files/a%20b.txt"),
        ("http://example.invalid/elsewhere", "http://example.invalid/elsewhere"),
    ]
    # The recorder followed nothing: the upstream saw only the three requests.
    assert [r.path for r in upstream.requests] == ["/abs", "/rel", "/away"]
    # A client that follows comes back through the recorder.
    rec.clear()
    status, _, body = _get(rec.url + "/abs")
    assert (status, body) == (200, DATA)
    assert [(r.method, r.target, r.status) for r in rec.log] == [
        ("GET", "/abs", 302),
        ("GET", "/files/model.bin?from=abs", 200),
    ]


def test_link_and_content_location_are_rewritten(upstream: HTTPTestServer, rec: Recorder) -> None:
    next_page = f"{upstream.url}/api/tree?cursor=5"
    upstream.add(
        "/api/tree",
        b"[]",
        headers={
            "Link": f'<{next_page}>; rel="next", <http://other.invalid/x>; rel="help"',
            "Content-Location": f"{upstream.url}/api/tree?cursor=0",
        },
    )
    _, headers, _ = _get(rec.url + "/api/tree")
    assert headers["link"] == (
        f'<{rec.origin}/api/tree?cursor=5>; rel="next", <http://other.invalid/x>; rel="help"'
    )
    assert headers["content-location"] == f"{rec.origin}/api/tree?cursor=0"


def test_path_prefix_and_host_rewrite() -> None:
    with (
        HTTPTestServer({"/hf/x": b"x"}) as upstream,
        Recorder(upstream.url + "/hf/", preserve_host=False) as rec,
    ):
        assert rec.url == f"{rec.origin}/hf"
        assert _get(rec.url + "/hf/x".removeprefix("/hf"))[2] == b"x"
        assert upstream.requests[-1].path == "/hf/x"
        assert upstream.requests[-1].headers["host"] == f"127.0.0.1:{upstream.port}"
    with pytest.raises(ValueError):
        Recorder("ftp://127.0.0.1/x")


def test_works_as_a_forward_proxy(
    upstream: HTTPTestServer, rec: Recorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Absolute-form targets (a client whose HTTP_PROXY is the recorder, e.g. kagglehub pinned
    to localhost:7777) are sent to the upstream as origin-form, the client's Host kept."""
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({"http": rec.origin}))
    with opener.open("http://localhost:7777/files/model.bin?v=1", timeout=10) as response:
        assert response.read() == DATA
    (record,) = rec.log
    assert record.target == "/files/model.bin?v=1"
    assert upstream.requests[-1].path == "/files/model.bin?v=1"
    assert upstream.requests[-1].headers["host"] == "localhost:7777"


def test_authorization_is_forwarded_never_logged(upstream: HTTPTestServer, rec: Recorder) -> None:
    headers = {"Authorization": f"Bearer {SECRET}", "X-Api-Key": SECRET, "Cookie": f"s={SECRET}"}
    _get(rec.url + "/files/a%20b.txt", headers)
    seen = upstream.requests[-1].headers
    assert seen["authorization"] == f"Bearer {SECRET}"
    assert seen["x-api-key"] == SECRET and seen["cookie"] == f"s={SECRET}"
    (record,) = rec.log
    assert record.authorization is True
    assert record.headers["authorization"] == REDACTED
    assert record.headers["x-api-key"] == REDACTED and record.headers["cookie"] == REDACTED
    assert SECRET not in repr(rec.log)


def test_request_bodies_and_chunked_responses() -> None:
    payload = bytes(range(256)) * 700  # ~175 KiB: several reads
    with EchoServer() as echo, Recorder(echo.url) as rec:
        conn = http.client.HTTPConnection("127.0.0.1", rec.port, timeout=10)
        try:
            conn.request("PUT", "/upload?id=1", body=payload, headers={"X-Test": "sized"})
            sized = conn.getresponse()
            sized_seen = json.loads(sized.read())
            conn.request(
                "POST",
                "/v1/models.ModelApiService/GetModelInstance",
                body=iter([b'{"ownerSlug": ', b'"google"}']),
                headers={"Content-Type": "application/json"},
                encode_chunked=True,
            )
            chunked = conn.getresponse()
            assert chunked.getheader("Transfer-Encoding") == "chunked"
            chunked_seen = json.loads(chunked.read())
        finally:
            conn.close()
        assert rec.wait_idle()
    assert (sized.status, chunked.status) == (200, 201)
    assert sized_seen["method"] == "PUT" and sized_seen["target"] == "/upload?id=1"
    assert sized_seen["body_sha256"] == hashlib.sha256(payload).hexdigest()
    assert ["x-test", "sized"] in sized_seen["headers"]
    assert chunked_seen["body_len"] == len(b'{"ownerSlug": "google"}')
    assert ["transfer-encoding", "chunked"] in chunked_seen["headers"]
    put, post = rec.log
    assert (put.method, put.request_body_bytes, put.status) == ("PUT", len(payload), 200)
    assert (post.method, post.request_body_bytes, post.status) == ("POST", 23, 201)
    assert post.response_headers["transfer-encoding"] == "chunked" and post.complete
    assert echo.seen[0]["body_len"] == len(payload)


def test_upstream_body_cut_short_reaches_the_client_short(
    upstream: HTTPTestServer, rec: Recorder
) -> None:
    upstream.faults.append(Fault("drop", after=300_000))
    with pytest.raises(http.client.IncompleteRead):
        _get(rec.url + "/files/model.bin")
    assert rec.wait_idle()
    (record,) = rec.log
    assert record.status == 200 and not record.complete
    assert record.body_bytes == 300_000 and "IncompleteRead" in (record.error or "")
    # The next request works (fresh upstream connection).
    assert _get(rec.url + "/files/model.bin")[2] == DATA


def test_unreachable_upstream_is_a_502() -> None:
    with HTTPTestServer() as gone:
        url = gone.url
    with Recorder(url) as rec, pytest.raises(urllib.error.HTTPError) as caught:
        _get(rec.url + "/x")
    assert caught.value.code == 502
    (record,) = rec.log
    assert record.status == 502 and "upstream unreachable" in (record.error or "")


def test_resources_clear_normalize_and_diff(upstream: HTTPTestServer, rec: Recorder) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", rec.port, timeout=10)
    try:
        for method, target in [
            ("HEAD", "/files/model.bin"),
            ("GET", "/files/model.bin"),
            ("GET", "/files/model.bin"),
            ("GET", "/files/a%20b.txt?b=2&a=1"),
        ]:
            conn.request(method, target)
            conn.getresponse().read()
    finally:
        conn.close()
    assert rec.resources() == [
        ("GET", "/files/a%20b.txt?b=2&a=1"),
        ("GET", "/files/model.bin"),
        ("HEAD", "/files/model.bin"),
    ]
    assert [r.method for r in rec.records(path="/files/model.bin")] == ["HEAD", "GET", "GET"]
    assert len(rec.records("GET")) == 3
    sdk_like = list(rec.log)
    rec.clear()
    assert rec.log == [] and rec.resources() == []
    assert normalize(sdk_like) == [
        ("GET", "/files/a%20b.txt?a=1&b=2"),
        ("GET", "/files/model.bin"),
    ]
    other = [
        ("GET", "/files/model.bin"),
        ("get", "/files/a%20b.txt?a=1&b=2&cache=123"),
        ("GET", "/telemetry/ping"),
    ]
    assert diff(sdk_like, other) == (
        [("GET", "/files/a%20b.txt?a=1&b=2")],
        [("GET", "/files/a%20b.txt?a=1&b=2&cache=123"), ("GET", "/telemetry/ping")],
    )
    assert diff(
        sdk_like,
        other,
        drop_query=["cache"],
        ignore=lambda method, path: path.startswith("/telemetry/"),
    ) == ([], [])
    # Escapes of unreserved characters are decoded, others upper-cased; fold can be turned off.
    assert normalize([("HEAD", "/a%7eb/%2f?x=True")], fold={}, lower_query_values=True) == [
        ("HEAD", "/a~b/%2F?x=true")
    ]


# --- huggingface_hub through the recorder --------------------------------------------------------


@pytest.fixture
def _quiet_hf(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    monkeypatch.setenv("HF_HUB_DISABLE_IMPLICIT_TOKEN", "1")


@pytest.mark.usefixtures("_quiet_hf")
def test_hf_downloader_follows_rewritten_redirects_through_the_recorder(
    tmp_path: Path, upstream: HTTPTestServer, rec: Recorder
) -> None:
    """huggingface_hub 2.4 follows a HEAD redirect only to the same origin: an un-rewritten
    ``Location`` naming the upstream would send its GET around the recorder."""
    hf = pytest.importorskip("huggingface_hub")
    commit = "0123456789abcdef0123456789abcdef01234567"
    upstream.add("/blobs/weights", DATA, headers={"X-Repo-Commit": commit})
    upstream.redirect("/org/tiny/resolve/main/weights.bin", upstream.url + "/blobs/weights")
    got = hf.hf_hub_download(
        "org/tiny", "weights.bin", endpoint=rec.url, cache_dir=tmp_path / "hf", token=False
    )
    assert Path(got).read_bytes() == DATA
    assert Path(got).resolve().name == hashlib.sha256(DATA).hexdigest()  # blob named by ETag
    assert [(r.method, r.target, r.status) for r in rec.log] == [
        ("HEAD", "/org/tiny/resolve/main/weights.bin", 302),
        ("HEAD", "/blobs/weights", 200),
        ("GET", "/blobs/weights", 200),
    ]
    assert all(r.user_agent and "hf_hub/" in r.user_agent for r in rec.log)
    assert rec.log[0].location == f"{rec.origin}/blobs/weights"
    # Every request the upstream saw came through the recorder.
    assert {r.headers["host"] for r in upstream.requests} == {f"127.0.0.1:{rec.port}"}
    assert rec.records("GET")[0].headers["accept-encoding"]  # what the SDK asked, unchanged


@pytest.mark.usefixtures("_quiet_hf")
def test_hf_snapshot_through_recorder_matches_the_mirror_log(
    tmp_path: Path, store_root: Path
) -> None:
    """snapshot_download against a ``modelhub serve`` mirror (5-entry tree pages, so the
    pagination ``Link`` is exercised): the recorder sees exactly what the mirror served, and
    normalised it is what a plain client fetching the same files asks."""
    hf = pytest.importorskip("huggingface_hub")
    from modelhub.importer import import_path
    from modelhub.mirror.app import BackgroundMirror
    from modelhub.refs import parse
    from modelhub.store import Store
    from tests.support.mirror_fixtures import make_hf_snapshot

    files = make_hf_snapshot(tmp_path / "snap", seed=7, extra_files=6)
    store = Store(store_root)
    ref = parse("hf:test-org/tiny-model")
    with store.lock(ref):
        manifest = import_path(store, tmp_path / "snap", ref)
    background = BackgroundMirror(store.root, tree_page_size=5, record=True)
    with background as mirror, Recorder(mirror) as rec:
        ep = f"{rec.url}/hf"
        folder = Path(
            hf.snapshot_download("test-org/tiny-model", endpoint=ep, cache_dir=tmp_path / "hf")
        )
        assert rec.wait_idle()
        sdk = list(rec.log)
        served = background.requests
        rec.clear()
        for name in files:
            _get(f"{ep}/test-org/tiny-model/resolve/{manifest.revision}/{name}")
        plain = list(rec.log)
    got = {
        p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()
    }
    assert got == files
    assert Counter(r.resource for r in sdk) == Counter(served)
    assert all(r.status == 200 and r.complete for r in sdk)
    api = [r.target for r in sdk if r.path.startswith("/hf/api/")]
    assert api[0] == "/hf/api/models/test-org/tiny-model/revision/main"
    tree = [t for t in api if "/tree/" in t]
    assert len(tree) == 3 and sum("cursor=" in t for t in tree) == 2  # 11 files, pages of 5
    resolve = [r for r in sdk if "/resolve/" in r.path]
    assert Counter(r.method for r in resolve) == {"HEAD": len(files), "GET": len(files)}
    assert diff(sdk, plain, ignore=lambda method, path: path.startswith("/hf/api/")) == ([], [])


def test_record_defaults() -> None:
    record = Record("GET", "/x?y=1", 200)
    assert record.resource == ("GET", "/x?y=1") and record.query == "y=1"
    assert not record.complete and record.headers == {}

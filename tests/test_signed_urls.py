"""Downloads that outlive the signed URL a redirect handed out (issue 16).

GitHub release assets, Hugging Face's storage bridge and presigned S3 / GCS URLs answer the
URL a user has with a ``302`` to a signed storage URL that expires (minutes to an hour; a slow
link outlives it). The storage host checks the signature when a request starts, so every range
asked after that is refused (403, or 400 on GCS). modelhub's engine asks the original URL again
(a fresh redirect: a fresh signature) and resumes from what it has; the token still goes only
to the original origin.

The servers are real (tests/support/signed.py: an origin on 127.0.0.1 answering ``302`` to
``/signed/...?expires=T&sig=...`` on another port), paced per response so that a download
outlives several signatures: below ``download_job.SINGLE_STREAM_RATE``, so the ranged probe
is slow and the parallel path starts, as on a real link. Each test checks that signatures did
expire during it (``storage.expired``), so none can pass without the situation it is about.
"""

from __future__ import annotations

import hashlib
import http.client
import os
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from modelhub import download_job
from modelhub.cli.main import main
from modelhub.errors import AuthError
from modelhub.transfer import download_file
from tests.support.httpserver import HTTPTestServer
from tests.support.signed import SignedURLs

MiB = 2**20
TOKEN = "hf_SIGNED_token_value"
RATE = 6 * MiB  # bytes/s per response: a probe of 8 MiB takes ~1.3 s
LIFETIME = 0.75  # seconds a signature lives: the probe's has expired before the next range


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("MODELHUB_CONNECTIONS", raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("MODELHUB_RETRIES", "3")
    monkeypatch.setenv("MODELHUB_TIMEOUT", "10")


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """48 MiB on disk: the 8 MiB probe, then 5 chunks over 4 connections (two rounds)."""
    path = tmp_path_factory.mktemp("signed") / "big.bin"
    data = os.urandom(48 * MiB)
    path.write_bytes(data)
    return path, hashlib.sha256(data).hexdigest()


def _get(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=10)
    try:
        conn.request(
            "GET", parts.path + (f"?{parts.query}" if parts.query else ""), None, headers or {}
        )
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


# --- the test server itself ----------------------------------------------------------------------
def test_signed_storage_checks_signature_and_expiry(tmp_path: Path) -> None:
    data = os.urandom(100_000)
    with SignedURLs({"/a/model.bin": data}, lifetime=60) as s:
        status, headers, _ = _get(s.url("/a/model.bin"))
        assert status == 302 and headers["location"].startswith(s.storage.url + "/signed/a/")
        signed = headers["location"]
        status, headers, body = _get(signed, {"Range": "bytes=10-19"})
        assert (status, body, headers["content-range"]) == (206, data[10:20], "bytes 10-19/100000")
        assert _get(signed.replace("sig=", "sig=0"))[0] == 403  # tampered
        expired = s.storage.sign("/a/model.bin", lifetime=-1)
        status, _, body = _get(expired)
        assert status == 403 and b"Request has expired" in body
        assert [h.expired for h in s.storage.hits] == [False, False, True]
        assert _get(s.storage.url + "/a/model.bin")[0] == 404  # never without a signature


def test_signed_storage_in_front_of_an_upstream(tmp_path: Path) -> None:
    """The form a fault proxy uses: signed URLs in front of another server (the mirror)."""
    data = os.urandom(3 * MiB + 7)
    with (
        HTTPTestServer({"/hf/m/resolve/main/w.bin": data}) as upstream,
        SignedURLs(upstream=upstream.url, lifetime=60, expired_status=400) as s,
    ):
        d = download_file(s.url("/hf/m/resolve/main/w.bin"), tmp_path / "w.part", connections=1)
        assert d.sha256 == hashlib.sha256(data).hexdigest()
        assert [r.path for r in upstream.requests] == ["/hf/m/resolve/main/w.bin"]
        assert _get(s.storage.sign("/hf/m/resolve/main/w.bin", lifetime=-1))[0] == 400


# --- the parallel path ---------------------------------------------------------------------------
@pytest.mark.parametrize("expired_status", [403, 400], ids=["403-s3-github-hub", "400-gcs"])
def test_parallel_download_outlives_several_signatures(
    big: tuple[Path, str], tmp_path: Path, expired_status: int
) -> None:
    path, digest = big
    size = path.stat().st_size
    assert RATE < download_job.SINGLE_STREAM_RATE  # the probe is slow: the parallel path starts
    with SignedURLs(
        {"/releases/big.bin": path},
        token=TOKEN,
        lifetime=LIFETIME,
        rate=RATE,
        expired_status=expired_status,
    ) as s:
        part = tmp_path / "big.part"
        d = download_file(s.url("/releases/big.bin"), part, token=TOKEN, connections=4)
        assert (d.sha256, d.size, d.connections) == (digest, size, 4)
        assert s.storage.expired, "no signature expired during the download: the test is moot"
        resolves = s.origin.gets("/releases/big.bin")
        assert len(resolves) >= 2, "an expired signature was not replaced by a fresh one"
        assert all(h.status in (206, 200) for h in s.storage.gets() if not h.expired)
        # The re-resolves cost a redirect each, never the bytes again.
        assert d.bytes_fetched < 1.3 * size and s.storage.bytes_sent < 1.3 * size
        # The credentials rule is unchanged: the token to the origin only, every time.
        assert all(h.headers.get("authorization") == f"Bearer {TOKEN}" for h in resolves)
        assert all("authorization" not in h.headers for h in s.storage.hits)
        assert d.url.startswith(s.storage.url + "/signed/releases/big.bin?")
    assert part.read_bytes() == path.read_bytes()


def test_single_stream_download_outlives_several_signatures(tmp_path: Path) -> None:
    """One connection whose link drops every 3 MiB: each resume goes back to the origin, so no
    range is ever asked with a signature older than the download's current piece."""
    data = os.urandom(12 * MiB + 99)
    with SignedURLs({"/m.bin": data}, lifetime=0.5, rate=RATE, cut_after=3 * MiB, token=TOKEN) as s:
        d = download_file(s.url("/m.bin"), tmp_path / "m.part", token=TOKEN, connections=1)
        assert d.sha256 == hashlib.sha256(data).hexdigest() and d.connections == 1
        gets = s.storage.gets()
        assert len(gets) >= 5, "the download was not cut into several responses"
        assert [h.headers.get("range") for h in gets[:2]] == [None, f"bytes={3 * MiB}-"]
        assert not s.storage.expired
        assert len(s.origin.gets()) == len(gets), "every resume asked the origin for a fresh URL"
        assert d.bytes_fetched == len(data) and s.storage.bytes_sent == len(data)


def test_url_pull_outlives_signed_urls(
    big: tuple[Path, str], store_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``modelhub pull url:`` of a release asset whose signed URLs expire mid-download."""
    path, digest = big
    with SignedURLs({"/o/r/releases/download/v1/big.bin": path}, lifetime=LIFETIME, rate=RATE) as s:
        ref = "url:" + s.url("/o/r/releases/download/v1/big.bin")
        assert main(["pull", ref, "--sha256", digest]) == 0
        assert s.storage.expired, "no signature expired during the pull: the test is moot"
    out = capsys.readouterr().out.strip()
    assert out.endswith("big.bin") and hashlib.sha256(Path(out).read_bytes()).hexdigest() == digest


# --- what stays an auth error --------------------------------------------------------------------
def test_403_on_the_original_url_is_still_an_auth_error(tmp_path: Path) -> None:
    with SignedURLs({"/m.bin": b"x" * 1000}, token=TOKEN) as s:
        with pytest.raises(AuthError, match=r"HTTP 401: .* \(no token was sent\)"):
            download_file(s.url("/m.bin"), tmp_path / "a.part")
        with pytest.raises(AuthError, match=r"HTTP 403: .* \(the token was refused\)"):
            download_file(s.url("/m.bin"), tmp_path / "b.part", token="hf_wrong")
        assert len(s.origin.hits) == 2 and not s.storage.hits
    assert not list(tmp_path.iterdir())


def test_origin_refusing_the_fresh_redirect_is_an_auth_error(
    big: tuple[Path, str], tmp_path: Path
) -> None:
    """The token was revoked mid-download: the re-resolve is refused, and that is final."""
    path, _ = big
    with SignedURLs(
        {"/big.bin": path}, token=TOKEN, origin_refuse_after=1, lifetime=LIFETIME, rate=RATE
    ) as s:
        with pytest.raises(AuthError, match=r"HTTP 403: access denied to http://127.*/big.bin \("):
            download_file(s.url("/big.bin"), tmp_path / "b.part", token=TOKEN, connections=4)
        assert s.storage.expired and 2 <= len(s.origin.gets()) <= 1 + 4
    assert not list(tmp_path.iterdir())


def test_storage_refusing_a_fresh_signature_is_an_auth_error(
    big: tuple[Path, str], tmp_path: Path
) -> None:
    """A 403 from storage on a URL the origin just signed is not an expiry: no loop."""
    path, _ = big
    with SignedURLs({"/big.bin": path}, lifetime=60, rate=4 * RATE, refuse_after=1) as s:
        with pytest.raises(AuthError, match=r"redirected to .*/signed/big.bin.*no token was sent"):
            download_file(s.url("/big.bin"), tmp_path / "b.part", connections=4)
        assert not s.storage.expired
        # The probe's resolve, then at most one fresh resolve per worker before giving up.
        assert 2 <= len(s.origin.gets()) <= 1 + 4
    assert not list(tmp_path.iterdir())


def test_storage_without_expiry_is_asked_once_per_chunk(
    big: tuple[Path, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While the signature is valid, chunks go straight to it: one redirect for the download."""
    monkeypatch.setattr(download_job, "SINGLE_STREAM_RATE", float("inf"))
    monkeypatch.setattr(download_job, "MIN_GAIN", float("-inf"))  # latency too
    path, digest = big
    with SignedURLs({"/big.bin": path}, lifetime=600) as s:
        d = download_file(s.url("/big.bin"), tmp_path / "b.part", connections=4)
        assert d.sha256 == digest and d.connections == 4
        # The probe, then one request per chunk (four connections: at least four chunks).
        assert len(s.origin.gets()) == 1 and len(s.storage.gets()) >= 5

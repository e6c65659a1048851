"""modelhub's transfer engine: the only module that speaks HTTP for modelhub's own downloads.

``fetch`` gets small resources (manifests, metadata) into memory; ``download_file`` streams a
file into a part file chosen by the store, hashing it inline, resuming within the call and across
processes, and pulling large files over several ranged connections. Redirects, token scoping,
retries and proxies are handled with the standard library only (plumbing in
:mod:`modelhub._http`, the request loop in :mod:`modelhub.http_session`, the download's state
machine in :mod:`modelhub.download_job`), so the behaviour is the same everywhere and fully
under our control.
"""

from __future__ import annotations

import http.client
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from modelhub._http import (
    MiB,
    Retryable,
    classify_os_error,
    parse_retry_after,
    parse_url,
    redact,
)
from modelhub.config import settings
from modelhub.connections import (
    POOL,
    header_dict,
)
from modelhub.download_job import Job
from modelhub.errors import (
    HashMismatchError,
    ModelhubError,
    NetworkError,
    SizeMismatchError,
)
from modelhub.http_session import Session
from modelhub.progress import make_bar
from modelhub.sink import Sink, remove_files

__all__ = ["Download", "Response", "download_file", "fetch", "parse_retry_after"]


@dataclass(frozen=True)
class Response:
    """A small HTTP response held in memory."""

    status: int
    headers: dict[str, str]  # lower-cased names
    body: bytes
    url: str  # final URL after redirects


@dataclass(frozen=True)
class Download:
    """What ``download_file`` did: the content's identity and how it was fetched."""

    sha256: str  # hex of the whole file
    size: int
    url: str  # final URL
    etag: str | None
    last_modified: str | None
    resumed_from: int  # bytes already present from an earlier process (0 if none)
    connections: int  # connections used for the body
    bytes_fetched: int  # body bytes actually received over the network in this call
    #: The base64 MD5 the server declared for the whole content (``x-goog-hash: md5=``, as
    #: Google Cloud Storage sends it, or ``Content-MD5`` on a 200), for the caller to check.
    content_md5: str | None = None
    #: The base64 MD5 of the bytes (``download_file(md5=True)``), hashed inline with the sha256.
    md5: str | None = None


def fetch(
    url: str,
    *,
    method: str = "GET",
    headers: Mapping[str, str] | None = None,
    token: str | None = None,
    max_bytes: int = 64 * 2**20,
    allow_not_found: bool = False,
    follow_redirects: bool = True,
    body: bytes | None = None,
) -> Response:
    """Fetch a small resource (JSON manifest, metadata) into memory.

    Follows redirects (token only to the original origin), retries transient failures and maps
    failure statuses to typed errors. ``allow_not_found=True`` returns a 404 Response instead of
    raising. A body larger than ``max_bytes`` raises :class:`ModelhubError`.
    ``follow_redirects=False`` returns the first 3xx response as is (e.g. to read its headers).
    ``body`` is sent with ``method`` (a JSON RPC: ``Content-Type: application/json``).
    """
    session = Session(url, headers, token, method=method, body=body)

    def attempt() -> Response:
        conn, resp, final = session.open(method.upper(), {}, follow=follow_redirects)
        session.check(conn, resp, final, allow_not_found)
        hdrs = header_dict(resp)
        if resp.length is not None and resp.length > max_bytes:
            resp.close()
            conn.close()
            raise ModelhubError(f"response larger than {max_bytes} bytes: {redact(final)}")
        parts: list[bytes] = []
        got = 0
        try:
            while True:
                data = resp.read(min(MiB, max_bytes + 1 - got))
                if not data:
                    break
                parts.append(data)
                got += len(data)
                if got > max_bytes:
                    conn.close()
                    raise ModelhubError(f"response larger than {max_bytes} bytes: {redact(final)}")
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            raise classify_os_error(exc, parse_url(final), connecting=False) from None
        if resp.length:  # the connection closed before Content-Length bytes arrived
            conn.close()
            raise Retryable(f"response truncated from {redact(final)}")
        POOL.put(conn, resp)
        return Response(resp.status, hdrs, b"".join(parts), final)

    return session.run(attempt)


def download_file(
    url: str,
    part_path: Path,
    *,
    expected_sha256: str | None = None,
    expected_size: int | None = None,
    token: str | None = None,
    headers: Mapping[str, str] | None = None,
    progress: bool | None = None,
    desc: str | None = None,
    connections: int | None = None,
    method: str = "GET",
    body: bytes | None = None,
    md5: bool = False,
) -> Download:
    """Download ``url`` into ``part_path`` (plus a resume sidecar), hashing sha256 inline
    (and MD5 with ``md5``: ``Download.md5``, to compare with a declared ``content_md5``).

    On success ``part_path`` holds the complete, fsynced content and the sidecar
    (``<part>.json``) is gone; the caller renames the part into place. A part + sidecar left by
    an interrupted process is resumed (``Range`` + ``If-Range``) when the validator still
    matches; otherwise the download restarts from 0. Large files (>= 32 MiB, ranges supported)
    are fetched over up to ``connections`` keep-alive connections (default:
    settings().connections) when the first 8 MiB arrive slower than SINGLE_STREAM_RATE;
    from 64 MiB on a local filesystem they are written with O_DIRECT (no page-cache copy).
    Ranges go to the URL the last response came from; when that is a redirect target that
    answers 400/403 (a signed storage URL the download outlived), the original URL is resolved
    again (a fresh redirect, the token still only to the original origin) and the download
    resumes from what it has.

    ``method``/``body``: the original request is an RPC (a JSON POST answered by a redirect to
    the bytes, as Kaggle's download RPC is); every resolution of the original URL sends it.

    Raises HashMismatchError / SizeMismatchError (part removed), AuthError, ModelNotFoundError,
    HTTPStatusError, OfflineError, TransferTimeoutError or NetworkError (part kept for resume).
    """
    session = Session(url, headers, token, method=method, body=body)
    part_path = Path(part_path)
    part_path.parent.mkdir(parents=True, exist_ok=True)
    nconn = settings().connections if connections is None else connections
    job = Job(session, part_path, expected_size, nconn, None)
    prefix = job.prepare_resume()
    if not job.done.copy():
        remove_files(job.sidecar)
    job.offset = prefix
    job.resumed_from = sum(b - a for a, b in job.done.copy())
    bar = job.bar = make_bar(progress, desc, url, prefix)
    fd = os.open(part_path, os.O_WRONLY | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
    try:
        os.ftruncate(fd, max((e for _, e in job.done.copy()), default=prefix))
        job.sink = Sink(fd, part_path, prefix, bar, md5=md5)
        job.sink.on_written = job.written
        try:
            job.transfer()
            digest, size = job.sink.finish()
        except BaseException:
            job.drop_response()
            job.sink.abort()
            raise
    except BaseException as exc:
        os.close(fd)
        if bar is not None:
            bar.close()
        # A network failure keeps the prefix + sidecar for a later resume; anything else means
        # the bytes are useless or wrong.
        if not isinstance(exc, (NetworkError, KeyboardInterrupt)):
            remove_files(part_path, job.sidecar)
        raise
    os.close(fd)
    if bar is not None:
        bar.close()
    for expected in (expected_size, job.size):
        if expected is not None and size != expected:
            remove_files(part_path, job.sidecar)
            raise SizeMismatchError(
                f"size mismatch for {redact(url)}: expected {expected} bytes, got {size}"
            )
    if expected_sha256 is not None and digest != expected_sha256.strip().lower():
        remove_files(part_path, job.sidecar)
        raise HashMismatchError(
            f"sha256 mismatch for {redact(url)}: expected {expected_sha256.strip()[:16]}..., "
            f"got {digest[:16]}..."
        )
    remove_files(job.sidecar)
    return Download(
        sha256=digest,
        size=size,
        url=job.final_url,
        etag=job.etag,
        last_modified=job.last_modified,
        resumed_from=job.resumed_from,
        connections=job.used_connections,
        bytes_fetched=job.fetched,
        content_md5=job.content_md5,
        md5=job.sink.md5_b64(),
    )

"""One logical HTTP transfer of modelhub's engine: the original URL and its token scope, the
request loop that follows redirects (credentials only to the original origin), the mapping of
failure statuses to typed errors, and the retry policy (backoff, ``Retry-After``, a budget
that progress refills). Used by :mod:`modelhub.transfer` and :mod:`modelhub.download_job`.
"""

from __future__ import annotations

import http.client
import threading
import time
from collections.abc import Callable, Mapping
from typing import TypeVar

from modelhub._http import (
    MAX_REDIRECTS,
    REDIRECT_STATUSES,
    USER_AGENT,
    MiB,
    Retryable,
    backoff_delay,
    parse_retry_after,
    parse_url,
    redact,
    redirect_target,
    same_origin,
)
from modelhub.config import settings
from modelhub.connections import POOL, Conn, drain_and_release
from modelhub.errors import (
    AuthError,
    HTTPStatusError,
    ModelhubError,
    ModelNotFoundError,
    NetworkError,
    OfflineError,
    TransferTimeoutError,
)

PROGRESS_RESET = 1 * MiB  # an attempt that moved this much does not count as a failure
# What storage hosts answer a signed URL whose expiry has passed: 403 (S3, Azure, GitHub's
# release assets, Hugging Face's storage bridge), 400 (GCS ``ExpiredToken``).
EXPIRED_SIGNATURE = frozenset({400, 403})
T = TypeVar("T")


class Session:
    """One logical transfer: the original URL, its token scope, timeout and retry budget."""

    def __init__(
        self,
        url: str,
        headers: Mapping[str, str] | None,
        token: str | None,
        *,
        method: str = "GET",
        body: bytes | None = None,
    ) -> None:
        cfg = settings()
        if cfg.offline:
            raise OfflineError(f"offline mode is on; not fetching {redact(url)}")
        parse_url(url)  # reject non-http(s) URLs before any I/O
        self.url = url
        self.token = token
        #: The original request's method and body (an RPC answered by a redirect to the
        #: bytes: a JSON POST whose 302 is followed with a GET). Every request to the original
        #: URL sends them, so a re-resolution after an expired redirect is the same request.
        self.method = method.upper()
        self.body = body
        self.extra = dict(headers or {})
        self.timeout = cfg.timeout
        self.retries = max(0, cfg.retries)

    def headers_for(self, url: str, extra: Mapping[str, str]) -> dict[str, str]:
        """Headers for a request to ``url``: credentials only to the original origin."""
        trusted = same_origin(self.url, url)
        out = {"User-Agent": USER_AGENT}
        for name, value in self.extra.items():
            if trusted or name.lower() not in ("authorization", "cookie", "proxy-authorization"):
                out[name] = value
        if self.token and trusted:
            out["Authorization"] = f"Bearer {self.token}"
        out.update(extra)
        return out

    def open(
        self,
        method: str,
        extra: Mapping[str, str],
        url: str | None = None,
        follow: bool = True,
    ) -> tuple[Conn, http.client.HTTPResponse, str]:
        """Send one request and follow redirects; return the first non-redirect response.

        A request to the original URL of a session with a body (an RPC) is sent as that
        session's method with its body, whatever ``method`` says."""
        body: bytes | None = None
        if url is None or url == self.url:
            url = self.url
            if self.body is not None and method != "HEAD":
                method, body = self.method, self.body
        for _ in range(MAX_REDIRECTS + 1):
            target = parse_url(url)
            headers = self.headers_for(url, extra)
            if body is not None:
                headers.setdefault("Content-Type", "application/json")
            conn = POOL.get(target, self.timeout)
            try:
                resp = conn.request(method, target, headers, body)
            except Retryable as exc:
                if not conn.reused or exc.timeout:
                    raise
                # An idle keep-alive connection the server had closed: one free retry.
                conn = POOL.fresh(target, self.timeout)
                resp = conn.request(method, target, headers, body)
            location = resp.getheader("Location")
            if not follow or resp.status not in REDIRECT_STATUSES or not location:
                return conn, resp, url
            drain_and_release(conn, resp)
            url, method = redirect_target(url, location, resp.status, method)
            if method in ("GET", "HEAD"):
                body = None  # 301/302/303 turned the POST into a GET: no body follows
        raise NetworkError(f"too many redirects (> {MAX_REDIRECTS}) from {redact(self.url)}")

    def open_again(
        self, extra: Mapping[str, str], target: str
    ) -> tuple[Conn, http.client.HTTPResponse, str]:
        """GET ``target``, where an earlier response of this transfer came from after redirects.

        Redirect targets are often signed URLs that expire (GitHub release assets after
        minutes, Hugging Face storage after about an hour), and storage hosts check the
        signature when a request starts: once a download outlives it, a 400/403 from
        ``target`` means "expired", not "denied". Then the original URL is resolved again (a
        fresh redirect, credentials only to the original origin as always) and the request is
        sent there; what that answers is final, so a refusal is still an error, never a loop.
        """
        conn, resp, final = self.open("GET", extra, url=target)
        if target == self.url or resp.status not in EXPIRED_SIGNATURE:
            return conn, resp, final
        drain_and_release(conn, resp)
        return self.open("GET", extra)

    def check(
        self,
        conn: Conn,
        resp: http.client.HTTPResponse,
        url: str,
        allow_not_found: bool = False,
    ) -> None:
        """Raise the typed error for a failure status (Retryable for the transient ones)."""
        status = resp.status
        if status < 300 or status == 304 or (status == 404 and allow_not_found):
            return
        if status in REDIRECT_STATUSES:
            return  # only seen when not following redirects
        retry_after = parse_retry_after(resp.getheader("Retry-After") or "")
        drain_and_release(conn, resp)
        where = redact(self.url)
        if url != self.url:
            where += f" (redirected to {redact(url)})"
        if status in (401, 403):
            sent = self.token is not None and same_origin(self.url, url)
            hint = "the token was refused" if sent else "no token was sent"
            raise AuthError(f"HTTP {status}: access denied to {where} ({hint})")
        if status in (404, 410):
            raise ModelNotFoundError(f"not found (HTTP {status}): {where}")
        if status in (408, 429) or status >= 500:
            raise Retryable(f"HTTP {status} from {where}", retry_after=retry_after)
        raise HTTPStatusError(f"HTTP {status} {resp.reason} from {where}", status)

    def final_error(self, exc: Retryable, attempts: int) -> ModelhubError:
        """The error to raise once retries are exhausted."""
        tail = f"{attempts} attempt{'s' if attempts != 1 else ''}"
        if exc.timeout:
            return TransferTimeoutError(
                f"{exc.reason} (timeout {self.timeout:g} s, {tail}): {redact(self.url)}"
            )
        if exc.unreachable:
            return NetworkError(f"{exc.reason} ({tail})")
        return NetworkError(f"{exc.reason} (gave up after {tail})")

    def run(
        self,
        attempt: Callable[[], T],
        progress: Callable[[], int] | None = None,
        stop: threading.Event | None = None,
    ) -> T:
        """Call ``attempt`` until it succeeds, backing off on Retryable failures.

        An attempt that moved the transfer forward (``progress``) resets the failure count, so
        a long download over a flaky link is not capped by the number of drops.
        """
        failures = attempts = 0
        while True:
            before = progress() if progress else 0
            attempts += 1
            try:
                return attempt()
            except Retryable as exc:
                moved = (progress() - before) if progress else 0
                failures = 1 if moved >= PROGRESS_RESET else failures + 1
                if failures > self.retries:
                    raise self.final_error(exc, attempts) from None
                delay = exc.retry_after if exc.retry_after is not None else backoff_delay(failures)
                if stop is not None:
                    if stop.wait(delay):
                        raise NetworkError("transfer cancelled") from None
                else:
                    time.sleep(delay)

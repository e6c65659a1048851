"""Plumbing for :mod:`modelhub.transfer`: URLs, the redirect and credentials policy, proxies,
retry classification and HTTP validators. Connections are :mod:`.connections`'s, the hash +
write pipeline that receives a download's bytes :mod:`.sink`'s.

Only the standard library is used (``http.client`` + ``ssl``), so every byte modelhub moves goes
through code we control: redirects, token scoping and retries are decided here, not by a library.
"""

from __future__ import annotations

import base64
import email.utils
import http.client
import os
import random
import re
import socket
import ssl
import time
from dataclasses import dataclass
from urllib.parse import unquote, urljoin, urlsplit

from modelhub.errors import InsecureRedirectError, NetworkError, UsageError

REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
MAX_REDIRECTS = 10
RETRY_AFTER_CAP = 60.0
BACKOFF_BASE = 0.2  # seconds; small so tests stay quick, doubled per failure
BACKOFF_CAP = 10.0
DRAIN_LIMIT = 64 * 1024  # read at most this much of an unwanted body to keep the connection
USER_AGENT = "modelhub/0.1 (python http.client)"
MiB = 2**20
BUF_SIZE = 4 * MiB  # prefix re-hash buffer
_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)", re.IGNORECASE)
_DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass(frozen=True)
class Target:
    """A parsed http(s) URL: where to connect and what to ask for."""

    scheme: str
    host: str
    port: int
    path: str  # path + query, never empty
    userinfo: str | None = None

    @property
    def origin(self) -> tuple[str, str, int]:
        """(scheme, host, port): the unit a token is scoped to."""
        return (self.scheme, self.host, self.port)

    @property
    def hostport(self) -> str:
        """``host:port`` as a user would type it (IPv6 in brackets)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def netloc(self) -> str:
        """Host (and port when not the scheme's default), for Host headers and absolute URIs."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if _DEFAULT_PORTS[self.scheme] == self.port else f"{host}:{self.port}"

    def absolute(self) -> str:
        """The URL without user info (the form sent to an http proxy)."""
        return f"{self.scheme}://{self.netloc}{self.path}"


def parse_url(url: str) -> Target:
    """Parse an http(s) URL; anything else is a usage error (never silently fetched)."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise UsageError(f"invalid URL: {redact(url)}") from exc
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.hostname:
        raise UsageError(f"not an http(s) URL: {redact(url)}")
    path = parts.path or "/"
    if parts.query:
        path = f"{path}?{parts.query}"
    userinfo = parts.netloc.rpartition("@")[0] or None
    return Target(scheme, parts.hostname.lower(), port or _DEFAULT_PORTS[scheme], path, userinfo)


def redact(url: str) -> str:
    """``url`` without user info, query or fragment: safe for messages (tokens live there)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return "<invalid URL>"
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{host}:{port}" if port else host
    return f"{parts.scheme}://{netloc}{parts.path}"


def same_origin(url_a: str, url_b: str) -> bool:
    """True when both URLs share scheme, host and port (the only case a token may follow)."""
    try:
        return parse_url(url_a).origin == parse_url(url_b).origin
    except UsageError:
        return False


def redirect_target(current_url: str, location: str, status: int, method: str) -> tuple[str, str]:
    """Decide where a redirect goes: ``(next_url, next_method)``.

    A relative ``Location`` is resolved against ``current_url``. A redirect from https to http is
    refused with :class:`InsecureRedirectError` (it would expose the request and the bytes).
    303 turns every method but HEAD into GET; 301/302 turn POST into GET (as browsers do).
    """
    nxt = urljoin(current_url, location.strip())
    cur_scheme = urlsplit(current_url).scheme.lower()
    new_scheme = urlsplit(nxt).scheme.lower()
    if new_scheme not in _DEFAULT_PORTS:
        raise NetworkError(f"redirect to an unsupported URL refused: {redact(nxt)}")
    if cur_scheme == "https" and new_scheme == "http":
        raise InsecureRedirectError(
            f"refused redirect from https to http: {redact(current_url)} -> {redact(nxt)}"
        )
    if (status == 303 and method != "HEAD") or (status in (301, 302) and method == "POST"):
        method = "GET"
    return nxt, method


def parse_retry_after(value: str) -> float | None:
    """Seconds to wait from a ``Retry-After`` value (delta-seconds or HTTP date), capped at 60 s.

    Returns None when the value is unusable; a date in the past gives 0.
    """
    value = value.strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when is None:
            return None
        seconds = when.timestamp() - time.time()
    if seconds != seconds:  # NaN
        return None
    return min(max(seconds, 0.0), RETRY_AFTER_CAP)


def backoff_delay(failures: int) -> float:
    """Exponential backoff with "equal jitter": half fixed, half random, so clients spread out."""
    delay = min(BACKOFF_CAP, BACKOFF_BASE * 2.0 ** max(failures - 1, 0))
    return delay / 2 + random.uniform(0, delay / 2)


class Retryable(Exception):
    """Internal: an attempt failed in a way worth retrying (never leaves transfer)."""

    def __init__(
        self,
        reason: str,
        *,
        retry_after: float | None = None,
        timeout: bool = False,
        unreachable: bool = False,
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after
        self.timeout = timeout
        self.unreachable = unreachable


def classify_os_error(exc: BaseException, target: Target, connecting: bool) -> Exception:
    """Map a socket/TLS/protocol exception to a Retryable (or a final NetworkError)."""
    where = target.hostport
    if isinstance(exc, ssl.SSLCertVerificationError):
        return NetworkError(
            f"TLS certificate verification failed for {where}: {exc.verify_message}"
        )
    if isinstance(exc, socket.gaierror):
        # Only "try again" is transient; an unknown name will not appear by retrying.
        if exc.errno == socket.EAI_AGAIN:
            return Retryable(f"cannot reach {where}: name resolution failed", unreachable=True)
        return NetworkError(f"cannot reach {where}: name resolution failed")
    if isinstance(exc, TimeoutError):
        what = "connecting" if connecting else "waiting for data"
        return Retryable(f"timed out {what} from {where}", timeout=True, unreachable=connecting)
    if connecting:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
        return Retryable(f"cannot reach {where}: {reason.lower()}", unreachable=True)
    return Retryable(f"connection to {where} failed: {type(exc).__name__}")


# --- proxies ----------------------------------------------------------------------------------
def proxy_for(target: Target) -> Target | None:
    """The proxy to use for ``target`` from HTTP(S)_PROXY / NO_PROXY (the usual conventions)."""
    if not any(name.lower().endswith("_proxy") for name in os.environ):
        return None  # the common case, without importing urllib.request (~3 ms)
    import urllib.request
    from urllib.request import proxy_bypass_environment  # type: ignore[attr-defined]

    proxies = urllib.request.getproxies_environment()
    proxy = proxies.get(target.scheme)
    if not proxy:
        return None
    if proxy_bypass_environment(target.hostport, proxies):
        return None
    if "://" not in proxy:
        proxy = f"http://{proxy}"
    try:
        return parse_url(proxy)
    except UsageError:
        return None


def _proxy_headers(proxy: Target) -> dict[str, str]:
    if not proxy.userinfo:
        return {}
    raw = unquote(proxy.userinfo).encode()
    return {"Proxy-Authorization": "Basic " + base64.b64encode(raw).decode("ascii")}


def parse_content_range(value: str | None) -> tuple[int, int, int | None] | None:
    """(first, last, total or None) from a ``Content-Range`` header, None if unusable."""
    m = _CONTENT_RANGE.search(value or "")
    if not m:
        return None
    total = None if m.group(3) == "*" else int(m.group(3))
    return int(m.group(1)), int(m.group(2)), total


def strong_etag(etag: str | None) -> str | None:
    """``etag`` if it is a strong validator, else None."""
    # Weak validators cannot be used with If-Range (RFC 9110 13.1.5).
    return etag if etag and not etag.startswith("W/") else None


def declared_md5(resp: http.client.HTTPResponse, *, whole: bool) -> str | None:
    """The base64 MD5 a response declares for the whole content: ``x-goog-hash: md5=...``
    (Google Cloud Storage sends the whole object's hashes, ranged responses too), else
    ``Content-MD5`` when the body is the whole content (``whole``)."""
    for value in resp.headers.get_all("x-goog-hash") or []:
        for item in value.split(","):
            name, sep, digest = item.strip().partition("=")
            if sep and name.strip().lower() == "md5" and digest.strip():
                return digest.strip()
    plain = resp.getheader("Content-MD5")
    return plain.strip() if whole and plain and plain.strip() else None

"""Who may read the mirror: bearer tokens, the public view, and the refusal of withheld models.

Policy (README, "Who may read the mirror"):

- a model whose manifest records a gated or private source, or an ``unknown`` one (a pull that
  asked the hub nothing: ``details["access"]``, :mod:`modelhub.hubs.access`), is served only
  to a client that sends ``Authorization: Bearer <token>`` with a token of ``--auth-tokens
  FILE``; without tokens nobody gets it. So is every file such a model owns, whatever other
  manifest lists it;
- with tokens, every other route wants a token too, unless ``--public`` is given (then public
  models are open to anyone and only the gated/private ones want a token);
- ``/healthz`` is always open.

A client without a good token gets the :data:`~.index.OPEN` view of the store (public models
only). When that view has no answer (404) but the full one would have (the request names a
withheld model), the answer is the hub's own 401 (no token) or 403 (a token this mirror does
not know) instead, never the bytes: the full view is asked under
:data:`~.http_files.PROBE`, where every byte-sending route answers an empty 200.

Tokens are kept as their sha256 only and compared in constant time; nothing here logs them.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from ..errors import UsageError
from ..hubs.access import RESTRICTED, access_of
from ..store import Store
from .http_files import PROBE
from .index import FULL, OPEN, VIEW, StoreIndex
from .routes import HubRoutes

#: Paths every client may read, token or not.
OPEN_PATHS = frozenset({"/healthz"})
REALM = 'Bearer realm="modelhub mirror"'


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


@dataclass(frozen=True)
class Access:
    """The mirror's read policy: the accepted tokens (as digests) and ``--public``."""

    digests: frozenset[bytes] = frozenset()
    public: bool = False

    @property
    def tokens_required(self) -> bool:
        """Whether every model (not only the gated/private ones) wants a token."""
        return bool(self.digests) and not self.public

    def accepts(self, token: str) -> bool:
        """Whether ``token`` is one of the mirror's tokens (constant-time per token)."""
        given = _digest(token)
        return any(hmac.compare_digest(given, known) for known in self.digests)


def load_tokens(path: Path, *, public: bool = False) -> Access:
    """The tokens of ``path`` (one per line; blank lines and ``#`` comments skipped)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(
            f"--auth-tokens {path}: no such file; write one token per line into it"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or "not UTF-8 text"
        raise UsageError(f"--auth-tokens {path}: cannot read it ({reason})") from None
    tokens = []
    for line in text.splitlines():
        token = line.strip()
        if not token or token.startswith("#"):
            continue
        if any(ch.isspace() for ch in token):
            raise UsageError(
                f"--auth-tokens {path}: a line holds more than one word; put one token per line"
            )
        tokens.append(token)
    if not tokens:
        raise UsageError(f"--auth-tokens {path}: no tokens in it; write one token per line")
    return Access(frozenset(_digest(t) for t in tokens), public)


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address or ``localhost``) is reachable from this machine only."""
    if host.strip("[]").lower() in ("localhost", "localhost.", "ip6-localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def withheld(root: Path) -> int:
    """How many models of the store at ``root`` came from a gated or private source or one of
    unknown access (served only with a token)."""
    return sum(1 for _, m in Store(root).manifests() if access_of(m) in RESTRICTED)


def bearer(request: web.Request) -> str | None:
    """The token of an ``Authorization: Bearer`` header, else None."""
    scheme, _, token = request.headers.get("Authorization", "").strip().partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


def _owner(hubs: Sequence[HubRoutes], path: str) -> HubRoutes | None:
    return next((h for h in hubs if h.owns(path)), None)


async def _deny(
    hubs: Sequence[HubRoutes], request: web.Request, status: int, withheld: bool
) -> web.StreamResponse:
    token_given = status == 403
    what = (
        "this model (from a gated or private source, or one whose access its pull could not "
        "learn: SDK cache or --offline)"
        if withheld
        else "this mirror"
    )
    message = (
        f"{what} is served only with a token of the mirror, and the token sent is not one"
        if token_given
        else f"{what} is served only with a token of the mirror: send Authorization: Bearer "
        "<token> (HF_TOKEN / KAGGLE_API_TOKEN for the hubs' own clients)"
    )
    hub = _owner(hubs, request.path)
    if hub is not None:
        response = await hub.denied(request, status, message, model=withheld)
    else:
        response = web.Response(status=status, text=message + "\n")
    response.headers.setdefault("WWW-Authenticate", REALM)
    return response


def middleware(access: Access, index: StoreIndex, hubs: Sequence[HubRoutes]) -> Middleware:
    """The access check in front of every route (see the module docstring)."""

    @web.middleware
    async def check(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path in OPEN_PATHS:
            return await handler(request)
        token = bearer(request)
        if token is not None and access.accepts(token):
            return await _with_view(FULL, handler, request)
        status = 401 if token is None else 403
        if access.tokens_required:
            return await _deny(hubs, request, status, withheld=False)
        response = await _with_view(OPEN, handler, request)
        if response.status != 404:
            return response
        reset = VIEW.set(OPEN)
        try:
            snap = await index.snapshot()
        finally:
            VIEW.reset(reset)
        if not snap.withheld:
            return response
        probing = PROBE.set(True)
        try:
            probe = await _with_view(FULL, handler, request)
        finally:
            PROBE.reset(probing)
        if probe.status < 400:
            return await _deny(hubs, request, status, withheld=True)
        return response

    return check


async def _with_view(view: str, handler: Handler, request: web.Request) -> web.StreamResponse:
    reset = VIEW.set(view)
    try:
        return await handler(request)
    finally:
        VIEW.reset(reset)

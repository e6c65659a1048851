"""What modelhub knows about a model's upstream, and the HTTP validators it compares.

:class:`Recorded` is a model as pulled (its manifest) or as locked; :class:`UpstreamStatus` is
one answer of ``modelhub outdated``. Each hub's adapter answers for its models
(``ModelHub.check_upstream``); plain HTTP resources are compared here (:func:`check_http`):
an ETag recorded at pull, else an ETag that *is* a sha256 (mirrors, many CDNs), else
``Repr-Digest`` / ``Digest: sha-256``, else Last-Modified.

States: ``current``, ``changed``, ``missing`` (the hub no longer has it), ``unknown`` (the hub
offers nothing to compare), ``unreachable`` (network, offline) or ``error`` (e.g. access
denied).
"""

from __future__ import annotations

import base64
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .errors import HTTPStatusError, ModelhubError
from .refs import ModelRef, parse
from .store import Manifest

if TYPE_CHECKING:
    from .lockfile import LockEntry

STATES = ("current", "changed", "missing", "unknown", "unreachable", "error")
_HEX = frozenset("0123456789abcdef")


@dataclass(frozen=True)
class Recorded:
    """What we know about a model as pulled (from its manifest) or as locked."""

    ref: ModelRef
    revision: str
    files: tuple[tuple[str, str], ...]  # (store-relative path, sha256)
    validators: Mapping[str, Mapping[str, str]] = field(default_factory=dict)

    @classmethod
    def from_manifest(cls, manifest: Manifest) -> Recorded:
        """From a manifest in the store."""
        raw = manifest.details.get("validators")
        return cls(
            parse(manifest.ref),
            manifest.revision,
            tuple((f.path, f.sha256) for f in manifest.files),
            _validators(raw),
        )

    @classmethod
    def from_lock(cls, entry: LockEntry) -> Recorded:
        """From an entry of ``modelhub.lock``."""
        return cls(
            parse(entry.ref),
            entry.revision,
            tuple((str(f["path"]), str(f["sha256"])) for f in entry.files),
            _validators(entry.upstream),
        )


def _validators(raw: Any) -> dict[str, dict[str, str]]:
    if not isinstance(raw, dict):
        return {}
    return {
        str(rel): {str(k): str(v) for k, v in vals.items() if isinstance(v, str)}
        for rel, vals in raw.items()
        if isinstance(vals, dict)
    }


@dataclass(frozen=True)
class UpstreamStatus:
    """The answer for one model."""

    ref: str
    hub: str
    state: str
    recorded: str | None
    current: str | None
    how: str
    message: str = ""
    error: ModelhubError | None = field(default=None, compare=False)

    @property
    def changed(self) -> bool:
        """True when upstream serves something else (or nothing) now."""
        return self.state in ("changed", "missing")

    def describe(self) -> str:
        """One short line: what changed, or why we cannot tell."""
        if self.state == "changed":
            return f"{self.how}: {_short(self.recorded)} → {_short(self.current)}"
        if self.state == "missing":
            return f"{self.how}: no longer there ({self.message})" if self.message else self.how
        if self.message:
            return f"{self.how}: {self.message}" if self.how else self.message
        return self.how

    def as_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {
            "ref": self.ref,
            "hub": self.hub,
            "state": self.state,
            "recorded": self.recorded,
            "current": self.current,
            "how": self.how,
            "message": self.message,
        }


def _short(value: str | None) -> str:
    if value is None:
        return "-"
    return value[:12] if len(value) == 64 or len(value) == 40 else value


class Memo:
    """Per-run cache of shared metadata (one zoo manifest per zoo URL, not one per model)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._locks: dict[str, threading.Lock] = {}
        self._values: dict[str, Any] = {}

    def get(self, key: str, make: Callable[[], Any]) -> Any:
        """The value for ``key``, made once per run by ``make``."""
        with self._lock:
            key_lock = self._locks.setdefault(key, threading.Lock())
        with key_lock:
            if key not in self._values:
                self._values[key] = make()
            return self._values[key]


def status(
    recorded: Recorded,
    state: str,
    current: str | None,
    how: str,
    message: str = "",
    error: ModelhubError | None = None,
    shown: str | None = None,
) -> UpstreamStatus:
    """The status of ``recorded`` in ``state``; ``shown`` replaces the recorded revision in it
    (e.g. the recorded ETag, when that is what was compared)."""
    return UpstreamStatus(
        ref=recorded.ref.canonical,
        hub=recorded.ref.hub,
        state=state,
        recorded=shown if shown is not None else recorded.revision,
        current=current,
        how=how,
        message=" ".join(message.split()),
        error=error,
    )


def compare(recorded: Recorded, current: str, how: str, shown: str | None = None) -> UpstreamStatus:
    """``current`` or ``changed``: ``current`` (upstream now) against ``shown`` (default: the
    recorded revision), compared as ``how`` says."""
    wanted = shown if shown is not None else recorded.revision
    state = "current" if current == wanted else "changed"
    return status(recorded, state, current, how, shown=wanted)


# --- HTTP validators ----------------------------------------------------------------------------
def _unquote(etag: str) -> str:
    tag = etag.strip()
    if tag.startswith("W/"):
        tag = tag[2:]
    return tag.strip('"')


def _digest_sha256(headers: Mapping[str, str]) -> str | None:
    """sha256 from ``Repr-Digest: sha-256=:B64:`` (RFC 9530) or ``Digest: SHA-256=B64``."""
    for name in ("repr-digest", "digest"):
        for item in headers.get(name, "").split(","):
            algo, _, value = item.strip().partition("=")
            if algo.strip().lower() == "sha-256" and value:
                try:
                    return base64.b64decode(value.strip().strip(":")).hex()
                except ValueError:
                    return None
    return None


def _head(url: str, method: str) -> dict[str, str]:
    from . import transfer

    try:
        return transfer.fetch(url, method=method, max_bytes=1 << 20).headers
    except HTTPStatusError as exc:
        if exc.status not in (405, 501):
            raise
    # No HEAD: one byte of a GET carries the same validators.
    return transfer.fetch(url, headers={"Range": "bytes=0-0"}, max_bytes=1 << 20).headers


def check_http(
    recorded: Recorded, url: str, method: str = "HEAD", content_sha256: str | None = None
) -> UpstreamStatus:
    """Compare ``url``'s validators now (a ``method`` request, or one byte of a GET where HEAD
    is refused) with ``recorded``'s; ``content_sha256`` is the file's sha256 when one file is
    compared. Raises the transfer's typed errors."""
    headers = _head(url, method)
    etag = headers.get("etag")
    modified = headers.get("last-modified")
    vals = next(iter(recorded.validators.values()), {}) if len(recorded.validators) == 1 else {}
    if etag and vals.get("etag"):
        return compare(recorded, _unquote(etag), "ETag", shown=_unquote(vals["etag"]))
    if etag and content_sha256 and _is_sha256(_unquote(etag)):
        return compare(recorded, _unquote(etag), "ETag (sha256)", shown=content_sha256)
    digest = _digest_sha256(headers)
    if digest and content_sha256:
        return compare(recorded, digest, "Digest sha-256", shown=content_sha256)
    if modified and vals.get("last_modified"):
        return compare(recorded, modified, "Last-Modified", shown=vals["last_modified"])
    why = (
        "no ETag or Last-Modified was recorded at pull time (pull it again to record one)"
        if etag or modified
        else "the server sends no ETag, Last-Modified or Digest"
    )
    return status(recorded, "unknown", _unquote(etag) if etag else modified, "HEAD", why)


def _is_sha256(text: str) -> bool:
    return len(text) == 64 and set(text.lower()) <= _HEX

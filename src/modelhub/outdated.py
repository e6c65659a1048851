"""``modelhub outdated``: has a hub changed a model since it was pulled (or locked)?

Only metadata is requested, never model bytes. What each hub can say:

=========  ==========================================================================  ==========
hub        request and comparison                                                      recorded
=========  ==========================================================================  ==========
onnx       GET the zoo's ONNX_HUB_MANIFEST.json (refreshing the store's cached copy);   revision
           the entry's ``model_sha``
hf         ``HfApi(endpoint).model_info(repo, revision=branch).sha`` (the commit)      revision
url        HEAD the URL: ETag vs the ETag recorded at pull, else an ETag that *is* a   validators
           sha256 (mirrors, many CDNs) vs the file's sha256, else ``Repr-Digest`` /    / sha256
           ``Digest: sha-256``, else Last-Modified
tfhub,     HEAD ``{handle}?tf-hub-format=compressed`` (the archive a pull fetches):    validators
kaggle     ETag / Last-Modified as for url. A pull answered from tensorflow_hub's
           cache recorded none: *unknown*
torch      torchvision: the file name of the weights enum member now (the installed    file name
           torchvision's registry; no request at all) vs the recorded file name;
           torch.hub repos: HEAD the zipball, as url
=========  ==========================================================================  ==========

Each check gives an :class:`UpstreamStatus` with ``state``: ``current``, ``changed``,
``missing`` (the hub no longer has it), ``unknown`` (the hub offers nothing to compare),
``unreachable`` (network, offline) or ``error`` (e.g. access denied).
"""

from __future__ import annotations

import base64
import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any

from .config import settings
from .errors import (
    EXIT_ERROR,
    EXIT_NETWORK,
    EXIT_OK,
    AuthError,
    HTTPStatusError,
    ModelhubError,
    ModelNotFoundError,
    NetworkError,
    OfflineError,
    UnsupportedError,
    UsageError,
    exit_code_for,
)
from .refs import ModelRef, parse
from .store import Manifest, Store

if TYPE_CHECKING:
    from .sync import LockEntry

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


class _Memo:
    """Per-run cache of shared metadata (one zoo manifest per zoo URL, not one per model)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._locks: dict[str, threading.Lock] = {}
        self._values: dict[str, Any] = {}

    def get(self, key: str, make: Any) -> Any:
        with self._lock:
            key_lock = self._locks.setdefault(key, threading.Lock())
        with key_lock:
            if key not in self._values:
                self._values[key] = make()
            return self._values[key]


def check(recorded: Recorded, store: Store, memo: _Memo | None = None) -> UpstreamStatus:
    """Ask ``recorded.ref``'s hub for its current revision (metadata only).

    Never raises for a failure of the hub or the network: it is the returned status.
    """
    ref = recorded.ref
    memo = memo or _Memo()
    try:
        if settings().offline:
            raise OfflineError("offline mode is on")
        if ref.hub == "onnx":
            return _check_onnx(recorded, store, memo)
        if ref.hub == "hf":
            return _check_hf(recorded, store)
        if ref.hub == "url":
            return _check_http(recorded, ref.name, "HEAD", recorded.files[0][1])
        if ref.hub in ("tfhub", "kaggle"):
            return _check_saved_model(recorded, store)
        if ref.hub == "torch":
            return _check_torch(recorded, store)
        raise UnsupportedError(f"{ref.hub}: models cannot be checked yet")
    except NetworkError as exc:
        return _status(recorded, "unreachable", None, "", str(exc), exc)
    except ModelNotFoundError as exc:
        return _status(recorded, "missing", None, "", str(exc), exc)
    except UnsupportedError as exc:
        return _status(recorded, "unknown", None, "", str(exc))
    except ModelhubError as exc:
        return _status(recorded, "error", None, "", str(exc), exc)
    except Exception as exc:  # an SDK's unexpected answer: one model's error, not the run's
        err = ModelhubError(f"{type(exc).__name__}: {exc}")
        return _status(recorded, "error", None, "", str(err), err)


def _status(
    recorded: Recorded,
    state: str,
    current: str | None,
    how: str,
    message: str = "",
    error: ModelhubError | None = None,
    shown: str | None = None,
) -> UpstreamStatus:
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


def _compare(
    recorded: Recorded, current: str, how: str, shown: str | None = None
) -> UpstreamStatus:
    wanted = shown if shown is not None else recorded.revision
    state = "current" if current == wanted else "changed"
    return _status(recorded, state, current, how, shown=wanted)


# --- hubs ---------------------------------------------------------------------------------------
def _check_onnx(recorded: Recorded, store: Store, memo: _Memo) -> UpstreamStatus:
    from .hubs.onnx_zoo import MANIFEST_NAME, OnnxZooHub, select

    hub = OnnxZooHub(store)
    url = f"{hub.hub_url}/{MANIFEST_NAME}"
    # One GET per zoo and run. It also refreshes the store's cached copy of the zoo manifest,
    # so that a pull that follows (sync --update, --locked) resolves against what we saw.
    entries = memo.get(url, lambda: hub.zoo_manifest(refresh=True))
    ref = recorded.ref
    entry = select(entries, ref.name, int(ref.revision) if ref.revision else None)
    how = "zoo manifest model_sha"
    if entry is None:
        return _status(recorded, "missing", None, how, f"not listed in {url}")
    return _compare(recorded, str(entry["metadata"]["model_sha"]), how)


def _check_hf(recorded: Recorded, store: Store) -> UpstreamStatus:
    from huggingface_hub import HfApi

    from .hubs.hf import HuggingFaceHub

    hub = HuggingFaceHub(store)
    ref = recorded.ref
    branch = ref.revision or "main"
    try:
        api = HfApi(endpoint=hub.hub_url, token=settings().hf_token or False)
        sha = api.model_info(ref.name, revision=branch).sha
    except Exception as exc:
        raise _hf_error(exc, ref, hub.hub_url) from None
    if not sha:
        return _status(recorded, "unknown", None, f"commit of {branch}", "the Hub sent no sha")
    return _compare(recorded, str(sha), f"commit of {branch}")


def _hf_error(exc: Exception, ref: ModelRef, endpoint: str) -> ModelhubError:
    """A huggingface_hub (or its HTTP client's) exception as modelhub's typed error."""
    from huggingface_hub import errors as hf_errors

    status = getattr(getattr(exc, "response", None), "status_code", None)
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    if isinstance(exc, hf_errors.GatedRepoError) or status in (401, 403):
        return AuthError(f"{ref}: {endpoint} denied access (HTTP {status}); set HF_TOKEN")
    if isinstance(exc, hf_errors.RevisionNotFoundError | hf_errors.RepositoryNotFoundError):
        return ModelNotFoundError(f"{ref}: {first}")
    if isinstance(exc, hf_errors.HfHubHTTPError) and status is not None:
        if status == 404:
            return ModelNotFoundError(f"{ref}: {first}")
        if status in (408, 429) or status >= 500:
            return NetworkError(f"{endpoint} answered HTTP {status} for {ref}")
        return HTTPStatusError(f"{ref}: {endpoint} answered HTTP {status}: {first}", status)
    # OSError, or the HTTP client's transport errors (connect, read, timeout).
    names = {c.__name__ for c in type(exc).__mro__}
    if isinstance(exc, OSError | hf_errors.OfflineModeIsEnabled) or names & {
        "TransportError",
        "TimeoutException",
    }:
        return NetworkError(f"cannot reach {endpoint} for {ref}: {type(exc).__name__}")
    return ModelhubError(f"{ref}: {type(exc).__name__}: {first}")


def _check_saved_model(recorded: Recorded, store: Store) -> UpstreamStatus:
    from .hubs import get_hub
    from .hubs.tfhub import COMPRESSED_QUERY, TFHubHub

    hub = get_hub(recorded.ref.hub, store)
    assert isinstance(hub, TFHubHub)
    url = f"{hub.handle_url(recorded.ref)}?{COMPRESSED_QUERY}"
    # A compressed pull keeps the archive itself: its sha256 is comparable to a sha256 ETag.
    archive = recorded.files[0][1] if len(recorded.files) == 1 else None
    return _check_http(recorded, url, "HEAD", archive)


def _check_torch(recorded: Recorded, store: Store) -> UpstreamStatus:
    ref = recorded.ref
    if ref.is_torch_hub:
        from .config import settings as cfg

        git_ref = ref.revision or "main"
        url = f"{cfg().hub_url('github')}/{ref.name}/zipball/{git_ref}"
        return _check_http(recorded, url, "HEAD", recorded.files[0][1])
    import urllib.parse

    from .hubs.torch_hub import TorchHub

    try:
        weights = TorchHub.weights_for(ref)
    except UsageError as exc:  # torchvision is not installed: its registry is the source
        raise UnsupportedError(str(exc)) from None
    current = PurePosixPath(urllib.parse.urlsplit(weights.url).path).name
    recorded_name = PurePosixPath(recorded.files[0][0]).name if recorded.files else ""
    how = f"torchvision {type(weights).__name__}.{weights.name} file"
    return _compare(recorded, current, how, shown=recorded_name)


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


def _check_http(
    recorded: Recorded, url: str, method: str, content_sha256: str | None
) -> UpstreamStatus:
    headers = _head(url, method)
    etag = headers.get("etag")
    modified = headers.get("last-modified")
    vals = next(iter(recorded.validators.values()), {}) if len(recorded.validators) == 1 else {}
    if etag and vals.get("etag"):
        return _compare(recorded, _unquote(etag), "ETag", shown=_unquote(vals["etag"]))
    if etag and content_sha256 and _is_sha256(_unquote(etag)):
        return _compare(recorded, _unquote(etag), "ETag (sha256)", shown=content_sha256)
    digest = _digest_sha256(headers)
    if digest and content_sha256:
        return _compare(recorded, digest, "Digest sha-256", shown=content_sha256)
    if modified and vals.get("last_modified"):
        return _compare(recorded, modified, "Last-Modified", shown=vals["last_modified"])
    why = (
        "no ETag or Last-Modified was recorded at pull time (pull it again to record one)"
        if etag or modified
        else "the server sends no ETag, Last-Modified or Digest"
    )
    return _status(recorded, "unknown", _unquote(etag) if etag else modified, "HEAD", why)


def _is_sha256(text: str) -> bool:
    return len(text) == 64 and set(text.lower()) <= _HEX


# --- many ---------------------------------------------------------------------------------------
def check_many(
    records: Sequence[Recorded], store: Store, *, jobs: int | None = None
) -> list[UpstreamStatus]:
    """Check every record (in parallel, ``jobs`` at once); results in the records' order."""
    if not records:
        return []
    memo = _Memo()
    workers = max(1, min(jobs or 8, len(records)))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(lambda r: check(r, store, memo), records))


def check_store(
    refs: Sequence[str] | None = None, *, store: Store | None = None, jobs: int | None = None
) -> list[UpstreamStatus]:
    """Check the models ``refs`` (default: every model in the store).

    Raises NotInStoreError (exit 3) for a named model that was never pulled.
    """
    from .pipeline import as_ref

    st = store if store is not None else Store()
    if refs:
        manifests = [st.require(as_ref(r)) for r in refs]
    else:
        manifests = sorted((m for _, m in st.manifests()), key=lambda m: m.ref)
    return check_many([Recorded.from_manifest(m) for m in manifests], st, jobs=jobs)


def exit_code(statuses: Sequence[UpstreamStatus]) -> int:
    """1 if any model changed (or is gone) upstream; else 6 if a hub was unreachable; else the
    code of another failure (e.g. 4, access denied); else 0 (``unknown`` counts as no change)."""
    if any(s.changed for s in statuses):
        return EXIT_ERROR
    if any(s.state == "unreachable" for s in statuses):
        return EXIT_NETWORK
    for s in statuses:
        if s.state == "error":
            return exit_code_for(s.error) if s.error is not None else EXIT_ERROR
    return EXIT_OK


__all__ = [
    "STATES",
    "Recorded",
    "UpstreamStatus",
    "check",
    "check_many",
    "check_store",
    "exit_code",
]

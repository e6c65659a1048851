"""huggingface_hub, as the ``hf:`` adapter drives it: its cache, its errors as modelhub's typed
errors (one mapping, for pulls and for ``outdated``), its global progress switch, and its
warm-up (``sync --jobs N`` runs it in a helper process).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..config import settings
from ..errors import (
    AuthError,
    HTTPStatusError,
    ModelhubError,
    ModelNotFoundError,
    NetworkError,
    OfflineError,
    UsageError,
)
from ..refs import ModelRef
from .hf_stream import hook_session

_HEX = frozenset("0123456789abcdef")
TOKEN_HINT = "set HF_TOKEN (or run `hf auth login`) with a token that has access"
# The SDK's cached tree listing (huggingface_hub._tree_cache), a documented on-disk format.
_TREE_FORMAT = 1


def _env_path(value: str) -> str:
    return os.path.expandvars(os.path.expanduser(value))


def hf_cache_dir() -> Path:
    """The Hugging Face hub cache, resolved from the environment now (the SDK reads it once, at
    import), with the SDK's precedence (``constants.py``): ``HF_HUB_CACHE``, else the legacy
    ``HUGGINGFACE_HUB_CACHE``, else ``$HF_HOME/hub``, else ``$XDG_CACHE_HOME/huggingface/hub``,
    else ``~/.cache/huggingface/hub``; ``~`` and ``$VARS`` expanded, a variable set to an empty
    value taken as it is, as the SDK takes it."""
    env = os.environ
    for name in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if env.get(name) is not None:
            return Path(_env_path(env[name]))
    home = env.get("HF_HOME")
    if home is None:
        home = os.path.join(env.get("XDG_CACHE_HOME", os.path.join("~", ".cache")), "huggingface")
    return Path(_env_path(home)) / "hub"


def repo_cache_dir(repo_id: str, cache: Path | None = None) -> Path:
    """``models--ORG--NAME`` in the HF cache: blobs/, snapshots/, refs/, trees/. A legacy
    one-part id has its own folder (``models--gpt2``), as the SDK names it."""
    return (cache or hf_cache_dir()) / ("models--" + repo_id.replace("/", "--"))


def cached_commit(repo_id: str, revision: str, cache: Path | None = None) -> str | None:
    """The commit ``revision`` points to in the cache (``refs/<revision>``, written by the SDK
    and by :func:`write_ref`); a commit hash is its own. None when the cache has no such ref."""
    if is_commit(revision):
        return revision
    path = repo_cache_dir(repo_id, cache) / "refs" / revision
    try:
        commit = path.read_text(encoding="utf-8").strip()
    except (OSError, ValueError):
        return None
    return commit if is_commit(commit) else None


def write_ref(repo_id: str, revision: str, commit: str, cache: Path | None = None) -> None:
    """Record that ``revision`` points to ``commit`` (``refs/<revision>``), atomically and only
    when it changed, as the SDK's ``snapshot_download`` does after resolving a branch or tag."""
    if revision == commit:
        return
    path = repo_cache_dir(repo_id, cache) / "refs" / revision
    with contextlib.suppress(OSError):
        if path.read_text(encoding="utf-8") == commit:
            return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.urandom(4).hex()}.tmp")
    try:
        tmp.write_text(commit, encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def cached_listing(repo_id: str, commit: str, cache: Path | None = None) -> dict[str, Any] | None:
    """The SDK's cached tree listing of ``commit``: {path: {size, blob_id, lfs_sha256?, ...}}.

    None when the commit was never listed online into this cache (or the file is unreadable or of
    another format version). No network.
    """
    path = repo_cache_dir(repo_id, cache) / "trees" / f"{commit}.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("format_version") != _TREE_FORMAT:
        return None
    files = data.get("files")
    return files if isinstance(files, dict) else None


def blob_bytes(snapshot: Path, names: list[str]) -> int:
    """Total size of the files ``names`` of a snapshot folder (missing ones count 0)."""
    total = 0
    for name in names:
        with contextlib.suppress(OSError):
            total += (snapshot / name).stat().st_size
    return total


def is_sha256(text: str) -> bool:
    """Whether ``text`` is 64 lower-case hex digits."""
    return len(text) == 64 and set(text) <= _HEX


def is_commit(text: str) -> bool:
    """Whether ``text`` is a full git commit id (40 lower-case hex digits)."""
    return len(text) == 40 and set(text) <= _HEX


def patterns(value: Any) -> list[str]:
    """``--include``/``--exclude`` as a list of globs (one string is one pattern)."""
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, list | tuple) and all(isinstance(p, str) for p in value):
        return list(value)
    raise UsageError(f"--include/--exclude take glob patterns, not {value!r}")


def _has_token() -> bool:
    if settings().hf_token:
        return True
    try:
        from huggingface_hub import get_token

        return bool(get_token())
    except Exception:
        return False


def _status(exc: Exception) -> int | None:
    return getattr(getattr(exc, "response", None), "status_code", None)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def map_error(exc: Exception, ref: ModelRef, endpoint: str, *, offline: bool) -> ModelhubError:
    """Turn a huggingface_hub exception into modelhub's typed error (one line, no token)."""
    from huggingface_hub import errors as hf_errors

    if type(exc) is ValueError and isinstance(exc.__cause__, Exception):
        # hf_hub_download(force_download=True) wraps the real failure in
        # "Force download failed due to the above error."
        return map_error(exc.__cause__, ref, endpoint, offline=offline)
    status = _status(exc)
    if isinstance(exc, hf_errors.GatedRepoError):
        if status == 403 or _has_token():
            return AuthError(
                f"{ref} is gated on {endpoint} and the token (HF_TOKEN) has no access: "
                "accept its terms on the Hub with that account"
            )
        return AuthError(
            f"{ref} is gated on {endpoint}: accept its terms on the Hub and {TOKEN_HINT}"
        )
    if isinstance(exc, hf_errors.RevisionNotFoundError):
        return ModelNotFoundError(
            f"{ref}: revision {ref.revision or 'main'!r} not found on {endpoint}"
        )
    if isinstance(exc, hf_errors.RepositoryNotFoundError):
        if status in (401, 403):
            # The Hub answers 401 for private, gated and missing repos alike without a token.
            if _has_token():
                return AuthError(f"{ref}: {endpoint} rejected the token (HF_TOKEN)")
            return AuthError(
                f"{ref} is private, gated or missing on {endpoint}: if it exists, {TOKEN_HINT}"
            )
        access = " (or the token in HF_TOKEN has no access to it)" if _has_token() else ""
        return ModelNotFoundError(f"no repository {ref.name!r} on {endpoint}{access}")
    if isinstance(exc, hf_errors.RemoteEntryNotFoundError):
        return ModelNotFoundError(f"{ref}: a file listed by {endpoint} is missing there")
    if isinstance(exc, hf_errors.OfflineModeIsEnabled | hf_errors.LocalEntryNotFoundError):
        cache = hf_cache_dir()
        if offline or isinstance(exc, hf_errors.OfflineModeIsEnabled):
            return OfflineError(f"offline: {ref} is not complete in the Hugging Face cache {cache}")
        cause = exc.__cause__
        if isinstance(cause, hf_errors.HfHubHTTPError):
            failed = f"{endpoint} answered HTTP {_status(cause)} for {ref}"
        else:
            why = f" ({type(cause).__name__})" if cause is not None else ""
            failed = f"cannot reach {endpoint} for {ref}{why}"
        return NetworkError(f"{failed}, and it is not complete in the Hugging Face cache {cache}")
    if isinstance(exc, hf_errors.HfHubHTTPError):
        if status in (401, 403):
            return AuthError(f"{ref}: access denied by {endpoint} (HTTP {status}); {TOKEN_HINT}")
        if status == 404:
            return ModelNotFoundError(f"{ref}: {endpoint} answered HTTP 404: {_first_line(exc)}")
        if status is not None and status < 500 and status not in (408, 429):
            return HTTPStatusError(
                f"{ref}: {endpoint} answered HTTP {status}: {_first_line(exc)}", status
            )
        return NetworkError(f"{ref}: {endpoint} answered HTTP {status}: {_first_line(exc)}")
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return ModelhubError(f"{ref}: no space left on device for the HF cache {hf_cache_dir()}")
    if isinstance(exc, OSError | ConnectionError | TimeoutError) or _is_transport_error(exc):
        return NetworkError(f"cannot reach {endpoint} for {ref}: {type(exc).__name__}")
    return ModelhubError(f"{ref}: {type(exc).__name__}: {_first_line(exc)}")


def _is_transport_error(exc: Exception) -> bool:
    """A connection-level failure of the SDK's HTTP client (``httpx2``, or ``httpx``)."""
    for module in ("httpx2", "httpx"):
        with contextlib.suppress(ImportError):
            transport = __import__(module).TransportError
            if isinstance(exc, transport):
                return True
    return False


_QUIET_LOCK = threading.Lock()
_quiet_calls = 0  # calls that silenced the SDK's bars and have not finished yet


@contextlib.contextmanager
def progress_bars(show: bool) -> Iterator[None]:
    """Silence the SDK's progress bars for one call when not ``show``; restore them after.

    The SDK's switch is global, and ``modelhub sync`` runs several calls at once: the first
    quiet call turns the bars off, the last one to finish turns them back on (unless they were
    off before, e.g. HF_HUB_DISABLE_PROGRESS_BARS).
    """
    global _quiet_calls
    from huggingface_hub.utils.tqdm import (
        are_progress_bars_disabled,
        disable_progress_bars,
        enable_progress_bars,
    )

    if show:
        yield
        return
    with _QUIET_LOCK:
        if _quiet_calls == 0 and are_progress_bars_disabled():
            owned = False  # off already, and not by us: leave the switch alone
        else:
            owned = True
            _quiet_calls += 1
            if _quiet_calls == 1:
                disable_progress_bars()
    try:
        yield
    finally:
        if owned:
            with _QUIET_LOCK:
                _quiet_calls -= 1
                if _quiet_calls == 0:
                    enable_progress_bars()


def warm_sdk() -> None:
    """Import what a snapshot download uses (~0.2 s) and create the SDK's HTTP client with
    modelhub's hook (its TLS context: ~20 ms): ``warm_up``, in process or in the helper."""
    import huggingface_hub
    import huggingface_hub.utils.tqdm

    huggingface_hub.snapshot_download  # noqa: B018  (a lazy attribute: imports the module)
    hook_session()

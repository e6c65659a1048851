"""Every environment variable modelhub reads, read in one place.

``settings()`` reads the environment at call time (not at import), so a test or a caller that
changes ``os.environ`` sees the change on the next call. The command line does not write the
environment: its options (``-q``, ``--remote``) are :func:`override` s that ``settings()``
applies on top of it, for the rest of the process.

The hubs' base URLs come from the registry's endpoints: ``MODELHUB_<KEY>_URL``, else the SDK's
own variable where it has one (``HF_ENDPOINT``), else ``$MODELHUB_MIRROR/<path>``, else upstream.
"""

from __future__ import annotations

import os

from .registry import endpoints

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: `modelhub path` imports this module
if TYPE_CHECKING:
    from pathlib import Path

    from .registry import Endpoint

LINK_MODES = ("auto", "reflink", "hardlink", "symlink", "copy")
#: ``--stage`` values (what each hub can do is its adapter's ``stages``).
STAGES = ("auto", "none", "onnx", "pb", "h5", "keras", "savedmodel", "tflite")
STORAGES = ("compressed", "uncompressed")

TRUE = frozenset({"1", "true", "yes", "on"})

# Settings the command line chose for this process (``-q``, ``--remote``): they win over the
# environment and are never written into it.
_OVERRIDES: dict[str, object] = {}


def flag(name: str) -> bool:
    """Whether the environment variable ``name`` is set to a true value (1, true, yes, on)."""
    return os.environ.get(name, "").strip().lower() in TRUE


def _bad(name: str, raw: str, wants: str, default: object) -> Exception:
    from .errors import UsageError

    return UsageError(f"{name}={raw!r} is not {wants}; set it to one, or unset it ({default})")


def _int(name: str, default: int, least: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = least - 1
    if value < least:
        raise _bad(name, raw, f"a whole number of at least {least}", f"default {default}")
    return value


def _float(name: str, default: float, wants: str) -> float:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value > 0 or value == float("inf"):
        raise _bad(name, raw, wants, f"default {default:g}")
    return value


def _url(name: str, raw: str) -> str:
    """``raw`` (the value of ``name``) when it is an http(s) URL; else a UsageError naming it."""
    if raw.lower().startswith(("http://", "https://")) and len(raw.split("://", 1)[1]) > 0:
        return raw
    from .errors import UsageError

    raise UsageError(
        f"{name}={raw!r} is not a URL: write it with its scheme, e.g. "
        f"{name}=http://{raw.split('://')[-1] or 'HOST:PORT'}"
    )


def store_root() -> str:
    """The store root from the environment: ``$MODELHUB_PATH``, else ``~/.modelhub``."""
    raw = os.environ.get("MODELHUB_PATH", "").strip()
    return os.path.abspath(os.path.expanduser(raw) if raw else os.path.expanduser("~/.modelhub"))


def checked_store_root() -> str:
    """:func:`store_root`, refused (UsageError, exit 2) when it names something that is not a
    folder (a file): ``list`` would call such a store empty and ``path`` fail obscurely."""
    root = store_root()
    if os.path.exists(root) and not os.path.isdir(root):
        from .errors import UsageError

        where = "MODELHUB_PATH" if os.environ.get("MODELHUB_PATH", "").strip() else "the store"
        raise UsageError(
            f"{where} ({root}) is a file, not a folder; set MODELHUB_PATH to a folder "
            "(it is created when missing)"
        )
    return root


def override(**values: object) -> None:
    """Set settings for the rest of this process over the environment (the command line's
    ``-q``/``--quiet`` → ``quiet=True``, ``--remote URL`` → ``remote=URL``)."""
    _OVERRIDES.update(values)


def overrides() -> dict[str, object]:
    """A copy of the overrides in force."""
    return dict(_OVERRIDES)


def clear_overrides() -> None:
    """Forget every :func:`override` (tests that call the command line in process)."""
    _OVERRIDES.clear()


class Settings:
    """A snapshot of modelhub's configuration (read-only)."""

    __slots__ = (
        "connections",
        "debug",
        "hf_token",
        "hub_urls",
        "link_mode",
        "mirror",
        "offline",
        "quiet",
        "remote",
        "retries",
        "store_root",
        "timeout",
        "trusted_repos",
    )

    def __init__(self, **values: object) -> None:
        for key in self.__slots__:
            object.__setattr__(self, key, values[key])

    def __setattr__(self, key: str, value: object) -> None:
        raise AttributeError("Settings are read-only")

    if TYPE_CHECKING:
        store_root: Path
        link_mode: str
        mirror: str | None
        hub_urls: dict[str, str]
        trusted_repos: frozenset[str]
        offline: bool
        debug: bool
        quiet: bool
        timeout: float
        retries: int
        connections: int
        hf_token: str | None
        remote: str | None

    def hub_url(self, key: str) -> str:
        """Return the base URL of endpoint ``key`` (a hub's name, or e.g. ``github``)."""
        return self.hub_urls[key]

    def progress(self, explicit: bool | None = None) -> bool:
        """Whether to show progress bars: ``explicit`` when given, else on a terminal's stderr
        unless quiet. The one place this is decided."""
        if explicit is not None:
            return explicit
        if self.quiet:
            return False
        import sys

        try:
            return sys.stderr is not None and sys.stderr.isatty()
        except (AttributeError, ValueError):
            return False


def _hub_url(key: str, mirror: str | None, known: dict[str, Endpoint]) -> str:
    endpoint = known[key]
    explicit = os.environ.get(endpoint.env, "").strip()
    if explicit:
        return _url(endpoint.env, explicit).rstrip("/")
    if endpoint.under is not None:
        base, path = endpoint.under
        return f"{_hub_url(base, mirror, known)}/{path.strip('/')}"
    if endpoint.sdk_env and os.environ.get(endpoint.sdk_env, "").strip():
        return os.environ[endpoint.sdk_env].strip().rstrip("/")
    if mirror:
        return f"{mirror}/{endpoint.mirror}"
    return endpoint.upstream


def settings() -> Settings:
    """Read the environment (and the command line's overrides); return the current settings."""
    from pathlib import Path

    mirror = os.environ.get("MODELHUB_MIRROR", "").strip().rstrip("/") or None
    if mirror:
        mirror = _url("MODELHUB_MIRROR", mirror)
    known = endpoints()
    link_mode = os.environ.get("MODELHUB_LINK_MODE", "auto").strip().lower() or "auto"
    if link_mode not in LINK_MODES:
        raise _bad("MODELHUB_LINK_MODE", link_mode, f"one of {', '.join(LINK_MODES)}", "auto")
    trusted = frozenset(
        r.strip() for r in os.environ.get("MODELHUB_TRUSTED_REPOS", "").split(",") if r.strip()
    )
    token = os.environ.get("HF_TOKEN") or os.environ.get("HUGGING_FACE_HUB_TOKEN") or None
    values: dict[str, object] = {
        "store_root": Path(checked_store_root()),
        "link_mode": link_mode,
        "mirror": mirror,
        "hub_urls": {key: _hub_url(key, mirror, known) for key in known},
        "trusted_repos": trusted,
        "offline": flag("MODELHUB_OFFLINE") or flag("HF_HUB_OFFLINE"),
        "debug": flag("MODELHUB_DEBUG"),
        "quiet": flag("MODELHUB_QUIET"),
        "timeout": _float("MODELHUB_TIMEOUT", 30.0, "a positive number of seconds"),
        "retries": _int("MODELHUB_RETRIES", 5, 0),
        "connections": _int("MODELHUB_CONNECTIONS", 8, 1),
        "hf_token": token,
        "remote": os.environ.get("MODELHUB_REMOTE", "").strip() or None,
    }
    values.update(_OVERRIDES)
    return Settings(**values)

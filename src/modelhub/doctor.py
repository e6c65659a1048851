"""``modelhub doctor``: what this machine gives modelhub, checked rather than assumed.

The store (its root, whether it can be written, free disk), the link mode that works there
(tried in the store's temporary folder, as a pull links files), the extras installed, the
mirror (reachable when ``MODELHUB_MIRROR`` is set), the offline switches, and the SDK cache
folders each hub adapter declares (:meth:`ModelHub.sdk_caches`), with whether they share the
store's filesystem (hard links) or not (copies).
"""

from __future__ import annotations

import os
import re
import shutil
import uuid
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from . import registry
from .config import settings, store_root
from .store import Store
from .store.files import link_or_copy

#: Extras that are sets of others or for development, not a capability.
_NOT_CAPABILITIES = frozenset({"all", "dev"})


@dataclass(frozen=True)
class Check:
    """One line of the report: what was checked, whether it is fine, what was found, and
    what to do when it is not."""

    name: str
    ok: bool
    value: str
    hint: str = ""

    def as_dict(self) -> dict[str, object]:
        """The check as ``doctor --json`` prints it."""
        return {"name": self.name, "ok": self.ok, "value": self.value, "hint": self.hint}


def _existing(path: Path) -> Path:
    """``path``, or its nearest existing parent."""
    while not path.exists() and path.parent != path:
        path = path.parent
    return path


def _human(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"  # pragma: no cover


def _store_checks(root: Path) -> tuple[list[Check], Path | None]:
    """The store root, writability and free disk; the store's tmp folder when writable."""
    checks = [Check("store", True, str(root))]
    if root.exists() and not root.is_dir():
        checks.append(
            Check("writable", False, "no", f"{root} is a file: set MODELHUB_PATH to a folder")
        )
        return checks, None
    tmp: Path | None = None
    try:
        tmp = Store(root).tmp_dir / f"doctor-{uuid.uuid4().hex[:8]}"
        tmp.mkdir()
        (tmp / "probe").write_bytes(b"modelhub doctor probe\n")
        checks.append(Check("writable", True, "yes"))
    except OSError as exc:
        checks.append(
            Check(
                "writable",
                False,
                f"no ({exc.strerror or exc})",
                "set MODELHUB_PATH to a folder you can write to",
            )
        )
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        tmp = None
    usage = shutil.disk_usage(_existing(root))
    low = usage.free < 2 * 2**30
    checks.append(
        Check(
            "free disk",
            not low,
            f"{_human(usage.free)} of {_human(usage.total)}",
            "less than 2 GiB free: models may not fit" if low else "",
        )
    )
    return checks, tmp


def _link_check(tmp: Path | None) -> Check:
    """The link mode a pull gets here: the configured one, tried in the store's tmp folder."""
    wanted = settings().link_mode
    if tmp is None:
        return Check("link mode", False, f"{wanted} (not tried: the store is not writable)")
    got = link_or_copy(tmp / "probe", tmp / "linked", wanted)
    ok = wanted in ("auto", got)
    hint = "" if ok else f"MODELHUB_LINK_MODE={wanted} cannot be done here: files are copied"
    saves = "" if got == "copy" else " (files shared, no extra disk)"
    return Check("link mode", ok, f"{got}{saves}; MODELHUB_LINK_MODE={wanted}", hint)


def _requirement_name(spec: str) -> str:
    match = re.match(r"[A-Za-z0-9_.\-]+", spec.strip())
    return match.group(0) if match else spec


def _extras() -> list[Check]:
    """Per extra of the installed distribution: its packages installed or which are missing."""
    try:
        dist = metadata.distribution("modelhub")
    except metadata.PackageNotFoundError:
        return [Check("extras", False, "modelhub's metadata is missing", "pip install -e .")]
    requires = dist.requires or []
    checks = []
    for extra in dist.metadata.get_all("Provides-Extra") or []:
        if extra in _NOT_CAPABILITIES:
            continue
        marker = re.compile(rf"""extra\s*==\s*["']{re.escape(extra)}["']""")
        names = [_requirement_name(r) for r in requires if marker.search(r)]
        missing = []
        for name in names:
            try:
                metadata.version(name)
            except metadata.PackageNotFoundError:
                missing.append(name)
        value = "installed" if not missing else f"missing {', '.join(missing)}"
        hint = f"pip install 'modelhub[{extra}]'" if missing else ""
        checks.append(Check(f"extra [{extra}]", not missing, value, hint))
    return checks


def _mirror() -> Check:
    """Whether ``MODELHUB_MIRROR`` answers (any HTTP status is an answer), in 5 s at most."""
    mirror = settings().mirror
    if not mirror:
        return Check("mirror", True, "MODELHUB_MIRROR not set: each hub is asked directly")
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(f"{mirror}/healthz", timeout=5) as resp:
            status = resp.status
    except urllib.error.HTTPError as exc:
        status = exc.code
    except (OSError, ValueError) as exc:
        why = getattr(exc, "reason", None) or exc
        return Check(
            "mirror",
            False,
            f"{mirror} unreachable ({why})",
            "start `modelhub serve` there, or unset MODELHUB_MIRROR",
        )
    return Check("mirror", True, f"{mirror} reachable (HTTP {status})")


def _offline() -> Check:
    on = [n for n in ("MODELHUB_OFFLINE", "HF_HUB_OFFLINE") if os.environ.get(n, "").strip()]
    if settings().offline:
        shown = ", ".join(f"{n}={os.environ[n]}" for n in on) or "on"
        return Check("offline", True, shown, "only what the store has: unset to download")
    return Check("offline", True, "no (MODELHUB_OFFLINE, HF_HUB_OFFLINE unset)")


def _caches(root: Path) -> list[Check]:
    """Each SDK cache the adapters declare, and whether the store can hard-link with it."""
    from .hubs import adapter_class

    device = os.stat(_existing(root)).st_dev
    seen: set[str] = set()
    checks = []
    for row in registry.rows():
        try:
            caches = adapter_class(row.name).sdk_caches()
        except Exception:  # an adapter that cannot load here: its extra says why
            continue
        for what, folder in caches.items():
            if folder in seen:
                continue
            seen.add(folder)
            path = Path(folder)
            state = "present" if path.is_dir() else "not created yet"
            same = os.stat(_existing(path)).st_dev == device
            shared = "same filesystem as the store: linked" if same else "other filesystem: copied"
            checks.append(Check(what, True, f"{folder} ({state}; {shared})"))
    return checks


def run() -> list[Check]:
    """Every check, in the order ``modelhub doctor`` prints them."""
    root = Path(store_root())
    checks, tmp = _store_checks(root)
    try:
        checks.append(_link_check(tmp))
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    checks += _extras()
    checks.append(_mirror())
    checks.append(_offline())
    checks += _caches(root)
    return checks


__all__ = ["Check", "run"]

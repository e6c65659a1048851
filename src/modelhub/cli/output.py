"""The one place the command line prints: results on stdout, messages and errors on stderr.

Whether progress shows is decided once, by ``settings()`` (``-q``/``MODELHUB_QUIET``, a
terminal on stderr); so are tracebacks (``MODELHUB_DEBUG``).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from ..config import settings
from ..errors import EXIT_ERROR, ModelhubError, exit_code_for

PROG = "modelhub"


def out(text: str) -> None:
    """A result line on stdout (flushed: scripts read it as it comes)."""
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def err(text: str) -> None:
    """A message line on stderr."""
    print(text, file=sys.stderr)


def note(ref: object, text: str) -> None:
    """``modelhub: note: REF: TEXT`` on stderr."""
    err(f"{PROG}: note: {ref}: {text}")


def quiet() -> bool:
    """Whether progress and chatter are off (``-q``, ``MODELHUB_QUIET``)."""
    return settings().quiet


def one_line(exc: BaseException) -> str:
    """``exc`` as one line (its type named when it is not one of modelhub's errors); with
    ``MODELHUB_DEBUG=1`` the traceback goes to stderr first."""
    from ..config import flag, overrides

    # Not settings(): the error being reported may be a bad setting that settings() refuses.
    if overrides().get("debug", flag("MODELHUB_DEBUG")):
        import traceback

        traceback.print_exception(exc, file=sys.stderr)
    message = " ".join(str(exc).split()) or type(exc).__name__
    return message if isinstance(exc, ModelhubError) else f"{type(exc).__name__}: {message}"


def _store_not_writable(exc: OSError) -> ModelhubError | None:
    """A write refused inside the store (read-only file system, no permission) as the setup
    mistake it is: one line naming MODELHUB_PATH, exit 2."""
    import errno

    from ..config import store_root
    from ..errors import UsageError

    if exc.errno not in (errno.EROFS, errno.EACCES, errno.EPERM) or not exc.filename:
        return None
    root = store_root()
    name = str(exc.filename)
    if name != root and not name.startswith(root.rstrip("/") + "/"):
        return None
    why = "is on a read-only file system" if exc.errno == errno.EROFS else "is not writable"
    return UsageError(
        f"the store at {root} {why} ({exc.strerror}: {name}); set MODELHUB_PATH to a folder "
        "you can write to"
    )


def way_out(exc: BaseException) -> str:
    """What to do about a network or offline error, appended to its line ("" for others)."""
    import os

    from ..config import flag, overrides
    from ..errors import InsecureRedirectError, NetworkError, OfflineError

    if isinstance(exc, OfflineError):
        if overrides().get("offline"):
            return "; --offline was given: run without it to download"
        for name in ("MODELHUB_OFFLINE", "HF_HUB_OFFLINE"):
            if flag(name):
                return f"; {name}={os.environ[name]} is set: unset it to download"
        return ""
    if isinstance(exc, NetworkError) and not isinstance(exc, InsecureRedirectError):
        mirror = os.environ.get("MODELHUB_MIRROR", "").strip()
        if mirror:
            return f"; is the mirror at MODELHUB_MIRROR={mirror} running?"
        return (
            "; if this machine cannot reach the hub, set MODELHUB_MIRROR to a `modelhub serve` "
            "that can (or use --offline for what the store has)"
        )
    return ""


def explain(exc: BaseException) -> BaseException:
    """``exc``, or the error a user should see instead (a store that cannot be written)."""
    if isinstance(exc, OSError) and not isinstance(exc, ModelhubError):
        return _store_not_writable(exc) or exc
    return exc


def _names(ref: object) -> set[str]:
    """The ways a message may name ``ref``: as given, and its canonical form (a hub URL or
    ``hf:ORG/NAME@main:FILE`` as given is ``hf:ORG/NAME...`` in the errors)."""
    from contextlib import suppress

    from ..errors import ModelhubError
    from ..refs import ModelRef, parse

    text = str(ref)
    names = {text}
    with suppress(ModelhubError):  # not a reference (a model set's entry name): as given only
        names.add((ref if isinstance(ref, ModelRef) else parse(text)).canonical)
    return names


def about(ref: object, message: str) -> str:
    """``REF: MESSAGE``, unless the message already names the reference, as given or in its
    canonical form (never twice)."""
    if any(name in message for name in _names(ref)):
        return message
    return f"{ref}: {message}"


def error_line(exc: BaseException, ref: object = None) -> tuple[str, int]:
    """``modelhub: error: [REF: ]MESSAGE[; what to do]`` for ``exc``, and its exit code."""
    exc = explain(exc)
    message = one_line(exc)
    if not isinstance(exc, ModelhubError):
        message += " (MODELHUB_DEBUG=1 shows the traceback)"
    if ref is not None:
        message = about(ref, message)
    return f"{PROG}: error: {message}{way_out(exc)}", exit_code_for(exc) or EXIT_ERROR


def report(exc: BaseException, ref: object = None) -> int:
    """Print ``exc`` as one error line on stderr (about ``ref`` when given); return its exit
    code."""
    line, code = error_line(exc, ref)
    err(line)
    return code


def human_size(n: int) -> str:
    """Bytes as a short human string (1024-based)."""
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"  # pragma: no cover


def table(rows: Sequence[Sequence[str]], right: Sequence[int] = ()) -> str:
    """``rows`` as aligned columns (columns ``right`` right-aligned)."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = []
    for row in rows:
        cells = [
            c.rjust(w) if i in right else c.ljust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)

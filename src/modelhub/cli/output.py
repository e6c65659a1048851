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
    if settings().debug:
        import traceback

        traceback.print_exception(exc, file=sys.stderr)
    message = " ".join(str(exc).split()) or type(exc).__name__
    return message if isinstance(exc, ModelhubError) else f"{type(exc).__name__}: {message}"


def report(exc: BaseException) -> int:
    """Print ``exc`` as one error line on stderr; return its exit code."""
    message = one_line(exc)
    if not isinstance(exc, ModelhubError):
        message += " (MODELHUB_DEBUG=1 shows the traceback)"
    err(f"{PROG}: error: {message}")
    return exit_code_for(exc) or EXIT_ERROR


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

"""The mirror's one URL-path guard: split a raw request path into decoded segments.

aiohttp matches routes on a partly decoded path and does not remove dot segments, so every
handler re-reads the raw request target through :func:`segments`. It refuses anything a file
path could be built from to leave its place: empty, ``.`` or ``..`` segments (also when
percent-encoded), backslashes, NUL and control characters, and bytes that are not UTF-8.
A segment that decodes to text containing ``/`` (``%2F``) is refused too, unless the caller
asks for it (Hugging Face clients quote revisions and tree paths with ``safe=""``).

Nothing here touches the filesystem: the mirror only ever looks decoded paths up in the index
of manifest-listed files, so these checks are a second line, not the only one.
"""

from __future__ import annotations

import urllib.parse

_FORBIDDEN = frozenset(chr(c) for c in range(0x20)) | {"\x7f", "\\"}


def _decode(raw: str) -> str | None:
    try:
        return urllib.parse.unquote(raw, encoding="utf-8", errors="strict")
    except UnicodeDecodeError:
        return None


def _safe(segment: str, *, allow_slash: bool) -> bool:
    if segment in ("", ".", "..") or any(c in _FORBIDDEN for c in segment):
        return False
    if "/" in segment:
        if not allow_slash:
            return False
        parts = segment.split("/")
        return all(p not in ("", ".", "..") for p in parts)
    return True


def raw_segments(raw_path: str) -> list[str] | None:
    """The still-encoded segments of a raw request target (query and fragment cut off).

    Returns None when the target is not an origin-form path (``/...``).
    """
    path = raw_path.split("?", 1)[0].split("#", 1)[0]
    if not path.startswith("/"):
        return None
    return path[1:].split("/")


def decode_segment(raw: str, *, allow_slash: bool = False) -> str | None:
    """Decode one raw segment; None when it is unsafe (see the module docstring)."""
    decoded = _decode(raw)
    if decoded is None or not _safe(decoded, allow_slash=allow_slash):
        return None
    return decoded


def segments(raw_path: str, prefix: int = 0) -> list[str] | None:
    """Decoded segments of ``raw_path`` after the first ``prefix`` ones; None when unsafe.

    No decoded segment contains ``/``; an empty path (after the prefix) is unsafe too.
    """
    raw = raw_segments(raw_path)
    if raw is None or len(raw) <= prefix:
        return None
    out = []
    for part in raw[prefix:]:
        decoded = decode_segment(part)
        if decoded is None:
            return None
        out.append(decoded)
    return out


def join_safe(parts: list[str]) -> str | None:
    """Join decoded segments (which may hold ``/``) into one relative path; None when unsafe."""
    joined = "/".join(parts)
    if not joined or not _safe(joined, allow_slash=True):
        return None
    return joined

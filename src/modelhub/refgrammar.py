"""The hub-neutral part of model references: :class:`ModelRef` and the checks every hub's grammar
is built from. Pure: no I/O, no hub names (each hub's grammar is its row in :mod:`.registry`).

Every name segment is checked against one conservative character set, so that no accepted
reference can name a path outside the store.
"""

from __future__ import annotations

from .errors import InvalidReferenceError

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: importing typing costs start-up time
if TYPE_CHECKING:
    from collections.abc import Callable

MAX_REF_LEN = 2048
MAX_SEGMENT_LEN = 128

# One name segment: starts with an alphanumeric, then alphanumerics, '_', '-', '.'; never '..'.
_ALNUM = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789")
_NAME_CHARS = _ALNUM | frozenset("_.-")
# Character sets, not regular expressions: compiling patterns costs start-up time that
# `modelhub path` cannot spare.
# Git-style revisions may contain '/', but no '..', no control characters, no spaces.
_REVISION_CHARS = _NAME_CHARS | frozenset("/")

#: hub name → its canonical printer; filled by :func:`modelhub.registry.register`.
CANONICAL: dict[str, Callable[[ModelRef], str]] = {}


def is_name(text: str) -> bool:
    """True for one safe name segment: ``[A-Za-z0-9][A-Za-z0-9_.-]*``."""
    return bool(text) and text[0] in _ALNUM and set(text) <= _NAME_CHARS


class ModelRef:
    """A validated model reference (immutable, hashable, compared by value).

    ``hub`` is a registered hub's name; ``name`` the hub-specific path ('org/name', a handle, a
    file stem, a builder name or a URL); ``revision`` the optional revision / opset / weights /
    ref; ``entry`` an entrypoint (torch.hub); ``variant`` a variant of the model (Keras
    ``notop``). What each field means for a hub is that hub's row in :mod:`.registry`.

    A plain class rather than a dataclass: ``modelhub path`` imports this module and must start
    in tens of milliseconds (``dataclasses`` costs ~10 ms of imports).
    """

    __slots__ = ("entry", "hub", "name", "revision", "variant")

    hub: str
    name: str
    revision: str | None
    entry: str | None
    variant: str | None

    def __init__(
        self,
        hub: str,
        name: str,
        revision: str | None = None,
        entry: str | None = None,
        variant: str | None = None,
    ) -> None:
        for key, value in (
            ("hub", hub),
            ("name", name),
            ("revision", revision),
            ("entry", entry),
            ("variant", variant),
        ):
            object.__setattr__(self, key, value)

    def __setattr__(self, key: str, value: object) -> None:
        raise AttributeError("ModelRef is immutable")

    def _key(self) -> tuple[str, str, str | None, str | None, str | None]:
        return (self.hub, self.name, self.revision, self.entry, self.variant)

    def __reduce__(
        self,
    ) -> tuple[type[ModelRef], tuple[str, str, str | None, str | None, str | None]]:
        return (ModelRef, self._key())  # pickling (worker processes): rebuilt through __init__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ModelRef) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        return f"ModelRef({self.canonical!r})"

    def __str__(self) -> str:
        return self.canonical

    @property
    def canonical(self) -> str:
        """The canonical string form; ``parse(ref.canonical) == ref``."""
        printer = CANONICAL.get(self.hub)
        if printer is not None:
            return printer(self)
        rev = f"@{self.revision}" if self.revision else ""
        return f"{self.hub}:{self.name}{rev}"


def fail(ref: str, why: str) -> InvalidReferenceError:
    """The error for reference text ``ref`` (shortened when long), saying ``why``."""
    shown = ref if len(ref) <= 120 else ref[:117] + "..."
    return InvalidReferenceError(f"invalid reference {shown!r}: {why}")


def segments(ref: str, text: str, what: str, count: int | tuple[int, int]) -> list[str]:
    """``text`` split at '/' into ``count`` (or a (low, high) range of) checked name segments."""
    lo, hi = (count, count) if isinstance(count, int) else count
    parts = text.split("/")
    if not lo <= len(parts) <= hi:
        want = str(lo) if lo == hi else f"{lo} to {hi}"
        raise fail(ref, f"{what} needs {want} '/'-separated parts, got {len(parts)}")
    for part in parts:
        check_segment(ref, part, what)
    return parts


def check_segment(ref: str, part: str, what: str) -> None:
    """Raise InvalidReferenceError unless ``part`` is one safe name segment."""
    if not part:
        raise fail(ref, f"empty part in {what}")
    if len(part) > MAX_SEGMENT_LEN:
        raise fail(ref, f"a part of {what} is longer than {MAX_SEGMENT_LEN} characters")
    if ".." in part or not is_name(part):
        raise fail(ref, f"{what} part {part!r} has characters outside [A-Za-z0-9_.-]")


def check_revision(ref: str, rev: str, what: str = "revision") -> str:
    """``rev`` when it is a safe git-style revision (may hold '/'); else InvalidReferenceError."""
    if not rev:
        raise fail(ref, f"empty {what}")
    if len(rev) > 255 or ".." in rev or "//" in rev or rev.endswith("/"):
        raise fail(ref, f"bad {what} {rev!r}")
    if rev[0] == "/" or not set(rev) <= _REVISION_CHARS:
        raise fail(ref, f"{what} {rev!r} has characters outside [A-Za-z0-9_.-/]")
    return rev


def split_at(text: str) -> tuple[str, str | None]:
    """``text`` split at its last '@': (head, tail or None)."""
    if "@" in text:
        head, _, tail = text.rpartition("@")
        return head, tail
    return text, None


def url_basename(url: str) -> str:
    """Return the decoded last path segment of ``url`` (the file name it would be stored as)."""
    import urllib.parse

    path = urllib.parse.urlsplit(url).path
    return urllib.parse.unquote(path.rsplit("/", 1)[-1])

"""Model references: parse, validate and print canonically. Pure: no I/O.

Grammar (see ARCHITECTURE.md)::

    hf:ORG/NAME[@REVISION]
    tfhub:HANDLE
    kaggle:OWNER/MODEL/FRAMEWORK/VARIATION[/VERSION]
    onnx:NAME[@OPSET]
    torch:NAME[@WEIGHTS]            torchvision builder + weights enum member
    torch:OWNER/REPO[:REF]/ENTRY    torch.hub GitHub entrypoint
    keras:NAME[/notop]
    url:URL

plus full hub URLs (huggingface.co, tfhub.dev, kaggle.com/models); any other http(s) URL is
``url:``. Every name segment is checked against one conservative character set, so that no
accepted reference can name a path outside the store.
"""

from __future__ import annotations

from .errors import InvalidReferenceError

HUBS = ("hf", "tfhub", "kaggle", "onnx", "torch", "keras", "url")

MAX_REF_LEN = 2048
MAX_SEGMENT_LEN = 128

# One name segment: starts with an alphanumeric, then alphanumerics, '_', '-', '.'; never '..'.
_ALNUM = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789")
_NAME_CHARS = _ALNUM | frozenset("_.-")
# Character sets, not regular expressions: compiling patterns costs start-up time that
# `modelhub path` cannot spare.
# Git-style revisions may contain '/', but no '..', no control characters, no spaces.
_REVISION_CHARS = _NAME_CHARS | frozenset("/")


def is_name(text: str) -> bool:
    """True for one safe name segment: ``[A-Za-z0-9][A-Za-z0-9_.-]*``."""
    return bool(text) and text[0] in _ALNUM and set(text) <= _NAME_CHARS


class ModelRef:
    """A validated model reference (immutable, hashable, compared by value).

    ``hub`` is one of ``HUBS``; ``name`` the hub-specific path ('org/name', a handle, a file
    stem, a builder name or a URL); ``revision`` the optional revision / opset / weights / ref.
    For torch.hub entrypoints ``entry`` holds the entry name and ``name`` is 'owner/repo'.
    ``variant`` is 'notop' for Keras applications without their classifier.

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
        if self.hub == "url":
            return f"url:{self.name}"
        if self.hub == "torch" and self.entry is not None:
            ref = f":{self.revision}" if self.revision else ""
            return f"torch:{self.name}{ref}/{self.entry}"
        if self.hub == "keras":
            return f"keras:{self.name}" + (f"/{self.variant}" if self.variant else "")
        if self.hub in ("tfhub", "kaggle"):
            return f"{self.hub}:{self.name}"
        rev = f"@{self.revision}" if self.revision else ""
        return f"{self.hub}:{self.name}{rev}"

    @property
    def is_torch_hub(self) -> bool:
        """True for ``torch:OWNER/REPO[:REF]/ENTRY`` (code from a GitHub repo)."""
        return self.hub == "torch" and self.entry is not None

    def with_revision(self, revision: str | None) -> ModelRef:
        """Return a copy with another revision (validated like a parsed one)."""
        return parse(ModelRef(self.hub, self.name, revision, self.entry, self.variant).canonical)


def _fail(ref: str, why: str) -> InvalidReferenceError:
    shown = ref if len(ref) <= 120 else ref[:117] + "..."
    return InvalidReferenceError(f"invalid reference {shown!r}: {why}")


def _segments(ref: str, text: str, what: str, count: int | tuple[int, int]) -> list[str]:
    lo, hi = (count, count) if isinstance(count, int) else count
    parts = text.split("/")
    if not lo <= len(parts) <= hi:
        want = str(lo) if lo == hi else f"{lo} to {hi}"
        raise _fail(ref, f"{what} needs {want} '/'-separated parts, got {len(parts)}")
    for part in parts:
        _check_segment(ref, part, what)
    return parts


def _check_segment(ref: str, part: str, what: str) -> None:
    if not part:
        raise _fail(ref, f"empty part in {what}")
    if len(part) > MAX_SEGMENT_LEN:
        raise _fail(ref, f"a part of {what} is longer than {MAX_SEGMENT_LEN} characters")
    if ".." in part or not is_name(part):
        raise _fail(ref, f"{what} part {part!r} has characters outside [A-Za-z0-9_.-]")


def _check_revision(ref: str, rev: str, what: str = "revision") -> str:
    if not rev:
        raise _fail(ref, f"empty {what}")
    if len(rev) > 255 or ".." in rev or "//" in rev or rev.endswith("/"):
        raise _fail(ref, f"bad {what} {rev!r}")
    if rev[0] == "/" or not set(rev) <= _REVISION_CHARS:
        raise _fail(ref, f"{what} {rev!r} has characters outside [A-Za-z0-9_.-/]")
    return rev


def _split_at(text: str) -> tuple[str, str | None]:
    if "@" in text:
        head, _, tail = text.rpartition("@")
        return head, tail
    return text, None


def _parse_hf(ref: str, body: str) -> ModelRef:
    repo, rev = _split_at(body)
    parts = repo.split("/")
    if len(parts) != 2:
        raise _fail(ref, "Hugging Face references are hf:ORG/NAME[@REVISION]")
    _segments(ref, repo, "repo id", 2)
    if rev is not None:
        _check_revision(ref, rev)
        if rev == "main":
            rev = None
    return ModelRef("hf", repo, rev)


def _parse_handle(ref: str, hub: str, body: str) -> ModelRef:
    if hub == "kaggle":
        parts = _segments(ref, body, "Kaggle handle", (4, 5))
        if len(parts) == 5 and not parts[4].isdigit():
            raise _fail(ref, "Kaggle version must be a number")
        return ModelRef("kaggle", "/".join(parts))
    _segments(ref, body, "TF Hub handle", (1, 12))
    return ModelRef("tfhub", body)


def _parse_onnx(ref: str, body: str) -> ModelRef:
    name, opset = _split_at(body)
    _check_segment(ref, name, "ONNX model name")
    if opset is not None and not opset.isdigit():
        raise _fail(ref, f"ONNX opset must be a number, got {opset!r}")
    return ModelRef("onnx", name, str(int(opset)) if opset is not None else None)


def _parse_torch(ref: str, body: str) -> ModelRef:
    if "/" not in body:
        name, weights = _split_at(body)
        _check_segment(ref, name, "torchvision model name")
        if weights is not None:
            _check_segment(ref, weights, "weights name")
            if weights == "DEFAULT":
                weights = None
        return ModelRef("torch", name, weights)
    parts = body.split("/")
    if len(parts) != 3:
        raise _fail(ref, "torch.hub references are torch:OWNER/REPO[:REF]/ENTRY")
    owner, repo, entry = parts
    git_ref: str | None = None
    if ":" in repo:
        repo, _, git_ref = repo.partition(":")
        _check_revision(ref, git_ref, "git ref")
    _check_segment(ref, owner, "GitHub owner")
    _check_segment(ref, repo, "GitHub repo")
    _check_segment(ref, entry, "entrypoint")
    return ModelRef("torch", f"{owner}/{repo}", git_ref, entry=entry)


def _parse_keras(ref: str, body: str) -> ModelRef:
    parts = body.split("/")
    if len(parts) > 2 or (len(parts) == 2 and parts[1] != "notop"):
        raise _fail(ref, "Keras references are keras:NAME or keras:NAME/notop")
    _check_segment(ref, parts[0], "Keras application name")
    return ModelRef("keras", parts[0], variant="notop" if len(parts) == 2 else None)


def url_basename(url: str) -> str:
    """Return the decoded last path segment of ``url`` (the file name it would be stored as)."""
    import urllib.parse

    path = urllib.parse.urlsplit(url).path
    return urllib.parse.unquote(path.rsplit("/", 1)[-1])


def _parse_url(ref: str, url: str) -> ModelRef:
    import urllib.parse

    if not url or any(not 0x21 <= ord(c) <= 0x7E for c in url):
        raise _fail(ref, "URL has spaces or control characters")
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise _fail(ref, "only http(s) URLs can be pulled")
    if not parts.hostname:
        raise _fail(ref, "URL has no host")
    name = url_basename(url)
    if not name:
        raise _fail(ref, "URL does not end in a file name")
    _check_segment(ref, name, "URL file name")
    # Drop the fragment: it never reaches the server and must not split one file into two refs.
    clean = urllib.parse.urlunsplit(parts._replace(fragment=""))
    return ModelRef("url", clean)


def _parse_hub_url(ref: str) -> ModelRef:
    import urllib.parse

    parts = urllib.parse.urlsplit(ref)
    host = (parts.hostname or "").lower()
    path = urllib.parse.unquote(parts.path).strip("/")
    if host in ("huggingface.co", "www.huggingface.co", "hf.co") and path:
        segs = path.split("/")
        if len(segs) >= 4 and segs[2] == "tree":
            return _parse_hf(ref, f"{segs[0]}/{segs[1]}@{'/'.join(segs[3:])}")
        if len(segs) == 2:
            return _parse_hf(ref, path)
    if host == "tfhub.dev" and path:
        return _parse_handle(ref, "tfhub", path)
    if host in ("www.kaggle.com", "kaggle.com") and path.startswith("models/"):
        return _parse_handle(ref, "kaggle", path[len("models/") :])
    return _parse_url(ref, ref)


def parse(ref: str) -> ModelRef:
    """Parse and validate ``ref``; return a :class:`ModelRef`.

    Raises :class:`InvalidReferenceError` (exit code 2) for anything outside the grammar or
    anything that could name a path outside the store.
    """
    if not isinstance(ref, str):
        raise InvalidReferenceError(f"a reference must be a string, not {type(ref).__name__}")
    if len(ref) > MAX_REF_LEN:
        raise _fail(ref, f"longer than {MAX_REF_LEN} characters")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in ref):
        raise _fail(ref, "control characters are not allowed")
    ref = ref.strip()
    if not ref:
        raise InvalidReferenceError("empty reference")
    lowered = ref.lower()
    if lowered.startswith(("http://", "https://")):
        return _parse_hub_url(ref)
    hub, sep, body = ref.partition(":")
    if not sep:
        raise _fail(ref, f"missing hub prefix; expected one of {', '.join(h + ':' for h in HUBS)}")
    hub = hub.lower()
    if hub not in HUBS:
        raise _fail(ref, f"unknown hub {hub!r}; expected one of {', '.join(HUBS)}")
    if not body:
        raise _fail(ref, "nothing after the hub prefix")
    if hub != "url" and ("\\" in body or "%" in body):
        raise _fail(ref, "backslashes and percent-encoding are not allowed")
    if hub != "url" and body.startswith("/"):
        raise _fail(ref, "absolute paths are not allowed")
    match hub:
        case "hf":
            return _parse_hf(ref, body)
        case "tfhub" | "kaggle":
            if body.lower().startswith(("http://", "https://")):
                return _parse_hub_url(body)
            return _parse_handle(ref, hub, body)
        case "onnx":
            return _parse_onnx(ref, body)
        case "torch":
            return _parse_torch(ref, body)
        case "keras":
            return _parse_keras(ref, body)
        case _:
            return _parse_url(ref, body)

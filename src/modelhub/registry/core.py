"""The hub registry: one row per hub, and everything else about hubs derived from the rows.

A row says what the rest of modelhub needs to know about a hub without importing it: its
name (the reference prefix), where its adapter class lives (imported on first use), its
endpoints (upstream URL, path under ``MODELHUB_MIRROR``, environment override), its reference
grammar (parser, canonical printer, pasted web URLs), where its models live in the store
(framework folder, model folder, whether a model is a folder), how costly a model is for
``sync``'s scheduling, and which mirror routes serve it. Per-hub *behaviour* (resolving,
fetching, staging, checking upstream, importing local files) is the adapter's
(:class:`modelhub.hubs.base.ModelHub`).

Standard library only: ``modelhub path`` parses a reference through this package and must
start in tens of milliseconds. This module is the machinery; the rows are in :mod:`.builtin`.
Adding a hub is one adapter module plus one :func:`register` call there (see CONTRIBUTING.md);
a test module can register a hub of its own the same way.
"""

from __future__ import annotations

from ..errors import InvalidReferenceError, UnsupportedError
from ..refgrammar import (
    CANONICAL,
    MAX_REF_LEN,
    ModelRef,
    fail,
)

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: importing typing costs start-up time
if TYPE_CHECKING:
    from collections.abc import Callable

    Parser = Callable[[str, str], ModelRef]
    WebParser = Callable[[str, str], "ModelRef | None"]


class Endpoint:
    """A base URL a hub talks to: ``MODELHUB_<KEY>_URL`` overrides it, else ``sdk_env`` (the
    SDK's own variable), else ``$MODELHUB_MIRROR/<mirror>``, else ``upstream``.

    ``under=(key, path)`` makes it a path below another endpoint, whatever that one resolves to
    (upstream, override or mirror): e.g. a hub whose files live in a Hugging Face repository
    follows the Hugging Face endpoint in force. ``upstream`` and ``mirror`` are then derived.
    """

    __slots__ = ("key", "mirror", "sdk_env", "under", "upstream")

    def __init__(
        self,
        key: str,
        upstream: str = "",
        mirror: str = "",
        sdk_env: str | None = None,
        under: tuple[str, str] | None = None,
    ) -> None:
        self.key, self.upstream, self.mirror, self.sdk_env = key, upstream, mirror, sdk_env
        self.under = under

    @property
    def env(self) -> str:
        """The environment variable that overrides this endpoint."""
        return f"MODELHUB_{self.key.upper().replace('-', '_')}_URL"


class HubRow:
    """Everything modelhub knows about one hub without importing its adapter.

    ``parse(text, body)`` parses the part after ``name:`` (``text`` is the whole reference, for
    messages); ``web(text, host_and_path)`` a pasted https URL of one of ``web_hosts`` (None:
    not this hub's page); ``canonical(ref)`` prints a reference back; ``framework(ref)`` is the
    store folder (``folders``: every folder it may
    return), ``model_dir(ref)`` the folder owning the model's files (relative to the
    root) and ``folder_shaped(ref)`` whether the model *is* that folder (a snapshot, a
    SavedModel) rather than files in a shared framework folder. ``weight`` is the relative
    cost of one model for ``sync``'s start order. ``mirror_routes`` names the mirror's routes
    class (``"module:Class"``); without one the mirror serves the hub's files plainly at
    ``/<mirror path>/<ref name>/<file>``. ``catch_all`` marks the hub that takes every other
    http(s) URL. ``compressed`` says what ``--storage compressed`` keeps on this hub (empty: the
    hub has no compressed form and refuses it).
    """

    __slots__ = (
        "adapter",
        "canonical",
        "catch_all",
        "compressed",
        "endpoints",
        "folder_shaped",
        "folders",
        "framework",
        "grammar",
        "import_help",
        "mirror_routes",
        "model_dir",
        "name",
        "parse",
        "web",
        "web_hosts",
        "weight",
    )

    def __init__(
        self,
        name: str,
        adapter: str,
        *,
        grammar: str,
        parse: Parser,
        framework: str | Callable[[ModelRef], str],
        folders: tuple[str, ...] = (),
        endpoints: tuple[Endpoint, ...] = (),
        canonical: Callable[[ModelRef], str] | None = None,
        web_hosts: tuple[str, ...] = (),
        web: WebParser | None = None,
        model_dir: Callable[[ModelRef], str] | None = None,
        folder_shaped: Callable[[ModelRef], bool] | None = None,
        weight: int = 2,
        import_help: str = "",
        mirror_routes: str | None = None,
        catch_all: bool = False,
        compressed: str = "",
    ) -> None:
        self.name, self.adapter, self.grammar, self.parse = name, adapter, grammar, parse
        if isinstance(framework, str):
            folder = framework
            self.framework: Callable[[ModelRef], str] = lambda ref: folder
            self.folders = (folder, *folders)
        else:
            self.framework, self.folders = framework, folders
        self.model_dir = model_dir or self.framework
        self.endpoints = endpoints
        self.canonical = canonical or default_canonical
        self.web_hosts, self.web = web_hosts, web
        self.folder_shaped = folder_shaped or (lambda ref: False)
        self.weight, self.import_help = weight, import_help
        self.mirror_routes, self.catch_all = mirror_routes, catch_all
        self.compressed = compressed

    def __repr__(self) -> str:
        return f"HubRow({self.name!r}, {self.adapter!r})"

    @property
    def storages(self) -> tuple[str, ...]:
        """``--storage`` values this hub honours (``compressed`` only where it has that form)."""
        return ("compressed", "uncompressed") if self.compressed else ("uncompressed",)

    @property
    def mirror(self) -> str | None:
        """The path under ``MODELHUB_MIRROR`` of this hub's first endpoint (None: no mirror)."""
        return self.endpoints[0].mirror if self.endpoints else None


def default_canonical(ref: ModelRef) -> str:
    """``hub:name[@revision]``: the canonical form of a reference unless its row prints it."""
    rev = f"@{ref.revision}" if ref.revision else ""
    return f"{ref.hub}:{ref.name}{rev}"


_ROWS: dict[str, HubRow] = {}


def register(row: HubRow) -> HubRow:
    """Add (or replace) ``row``; return it. Its printer becomes ``ModelRef.canonical``'s."""
    _ROWS[row.name] = row
    CANONICAL[row.name] = row.canonical
    return row


def unregister(name: str) -> None:
    """Remove the row ``name`` (a test's own hub, when the test is done)."""
    _ROWS.pop(name, None)
    CANONICAL.pop(name, None)


def rows() -> list[HubRow]:
    """Every registered row, in registration order."""
    return list(_ROWS.values())


def hub_names() -> tuple[str, ...]:
    """The registered hubs' names (the reference prefixes), in registration order."""
    return tuple(_ROWS)


def row(name: str) -> HubRow:
    """The row of hub ``name``. Raises UnsupportedError (exit 2) naming the known hubs."""
    found = _ROWS.get(name.lower().rstrip(":"))
    if found is None:
        raise UnsupportedError(f"unknown hub {name!r}; expected one of {', '.join(_ROWS)}")
    return found


def endpoints() -> dict[str, Endpoint]:
    """Every endpoint of every hub, by key."""
    return {e.key: e for r in _ROWS.values() for e in r.endpoints}


# --- parsing -----------------------------------------------------------------------------------
def parse(ref: str) -> ModelRef:
    """Parse and validate ``ref``; return a :class:`ModelRef`.

    Raises :class:`InvalidReferenceError` (exit code 2) for anything outside the grammar or
    anything that could name a path outside the store.
    """
    if not isinstance(ref, str):
        raise InvalidReferenceError(f"a reference must be a string, not {type(ref).__name__}")
    if len(ref) > MAX_REF_LEN:
        raise fail(ref, f"longer than {MAX_REF_LEN} characters")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in ref):
        raise fail(ref, "control characters are not allowed")
    ref = ref.strip()
    if not ref:
        raise InvalidReferenceError("empty reference")
    if ref.lower().startswith(("http://", "https://")):
        return parse_web(ref)
    hub, sep, body = ref.partition(":")
    prefixes = ", ".join(h + ":" for h in _ROWS)
    if not sep:
        raise fail(ref, f"missing hub prefix; expected one of {prefixes}")
    found = _ROWS.get(hub.lower())
    if found is None:
        raise fail(ref, f"unknown hub {hub.lower()!r}; expected one of {', '.join(_ROWS)}")
    if not body:
        raise fail(ref, "nothing after the hub prefix")
    if found.catch_all:
        return found.parse(ref, body)
    if "\\" in body or "%" in body:
        raise fail(ref, "backslashes and percent-encoding are not allowed")
    if body.lower().startswith(("http://", "https://")):
        pasted = parse_web(body)
        if pasted.hub != found.name:
            raise fail(ref, f"{body} is not a {found.name}: page")
        return pasted
    if body.startswith("/"):
        raise fail(ref, "absolute paths are not allowed")
    return found.parse(ref, body)


def parse_web(ref: str) -> ModelRef:
    """A pasted http(s) URL: the page of the hub that claims its host, else the catch-all."""
    import urllib.parse

    parts = urllib.parse.urlsplit(ref)
    host = (parts.hostname or "").lower()
    path = urllib.parse.unquote(parts.path).strip("/")
    for candidate in _ROWS.values():
        if host in candidate.web_hosts and path and candidate.web is not None:
            found = candidate.web(ref, path)
            if found is not None:
                return found
    for candidate in _ROWS.values():
        if candidate.catch_all:
            return candidate.parse(ref, ref)
    raise fail(ref, "no hub takes plain URLs")


def with_revision(ref: ModelRef, revision: str | None) -> ModelRef:
    """A copy of ``ref`` with another revision, validated like a parsed one."""
    return parse(ModelRef(ref.hub, ref.name, revision, ref.entry, ref.variant).canonical)


# --- store folders by file name (url:, import) ---------------------------------------------------
FRAMEWORK_BY_SUFFIX = {
    ".onnx": "onnx",
    ".ort": "onnx",
    ".pth": "pytorch",
    ".pt": "pytorch",
    ".bin": "pytorch",
    ".ckpt": "pytorch",
    ".jit": "pytorch",
    ".safetensors": "pytorch",
    ".h5": "keras",
    ".hdf5": "keras",
    ".keras": "keras",
    ".pb": "tensorflow",
    ".tflite": "tensorflow",
    ".tgz": "tensorflow",
    ".tar.gz": "tensorflow",
}
OTHER_FRAMEWORK = "other"


def framework_for_filename(name: str) -> str:
    """Return the store folder a file of this name belongs to (``other`` if unknown)."""
    lowered = name.lower()
    for suffix in sorted(FRAMEWORK_BY_SUFFIX, key=len, reverse=True):
        if lowered.endswith(suffix):
            return FRAMEWORK_BY_SUFFIX[suffix]
    return OTHER_FRAMEWORK


def framework_folders() -> frozenset[str]:
    """Every store folder a registered hub (or a file type) puts models in."""
    found = set(FRAMEWORK_BY_SUFFIX.values()) | {OTHER_FRAMEWORK}
    for r in _ROWS.values():
        found.update(r.folders)
    return frozenset(found)


# --- pip extras ----------------------------------------------------------------------------------
#: The extra (``pip install 'modelhub[EXTRA]'``) that brings each framework module a hub's
#: staging may import.
EXTRAS_BY_MODULE = {
    "onnx": "onnx",
    "onnxruntime": "onnx",
    "numpy": "onnx",
    "torch": "torch",
    "torchvision": "torch",
    "tensorflow": "tensorflow",
    "keras": "tensorflow",
    "h5py": "tensorflow",
    "transformers": "hf",
}

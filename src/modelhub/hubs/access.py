"""Who may read a model upstream, as a pull records it in ``details["access"]``.

``public``, ``gated`` (licence accepted with the puller's own account) or ``private`` when the
pull learned it from the hub; ``unknown`` when a hub that has gated or private models answered
nothing (a pull from the SDK's cache with no request, ``--offline``) and no earlier pull of the
same model in the store had learned it. A mirror serves every access but ``public`` only to
clients with one of its tokens (:data:`RESTRICTED`). A manifest that records nothing (a model
``modelhub import`` put there, from files the user chose) counts as ``public``; a recorded value
that is none of the four counts as ``unknown``.
"""

from __future__ import annotations

from collections.abc import Iterator, MutableMapping
from typing import Any

from ..errors import IntegrityError, InvalidReferenceError
from ..refs import ModelRef, parse
from ..store import Manifest, Store, layout

PUBLIC, GATED, PRIVATE, UNKNOWN = "public", "gated", "private", "unknown"
#: What a pull can learn from the hub.
KNOWN = frozenset({PUBLIC, GATED, PRIVATE})
#: Served by a mirror only with a token: the source needed credentials, or nobody knows.
RESTRICTED = frozenset({GATED, PRIVATE, UNKNOWN})
#: The more restrictive of two values wins when manifests of one model disagree.
_RANK = {PUBLIC: 0, UNKNOWN: 1, GATED: 2, PRIVATE: 3}


def access_of(manifest: Manifest) -> str:
    """``public``, ``gated``, ``private`` or ``unknown``: what ``manifest`` records (see the
    module docstring for a manifest that records nothing or something else)."""
    access = manifest.details.get("access")
    if access is None:
        return PUBLIC
    return access if access in KNOWN or access == UNKNOWN else UNKNOWN


def describe(manifest: Manifest) -> str:
    """The access of ``manifest`` as ``modelhub info`` prints it (what a mirror does with it)."""
    access = access_of(manifest)
    if "access" not in manifest.details:
        return f"{PUBLIC} (nothing recorded: an import); a mirror serves it to anyone it serves"
    if access == PUBLIC:
        return f"{PUBLIC}; a mirror serves it to anyone it serves"
    if access == UNKNOWN:
        return (
            f"{UNKNOWN} (the pull asked the hub nothing: SDK cache or --offline); a mirror "
            "serves it only with a token (pull it again online with --force to learn it)"
        )
    return f"{access}; a mirror serves it only with a token"


def stricter(a: str, b: str) -> str:
    """The more restrictive of two accesses (``public`` < ``unknown`` < ``gated`` <
    ``private``)."""
    return a if _RANK.get(a, 1) >= _RANK.get(b, 1) else b


def learned_before(store: Store, ref: ModelRef) -> str | None:
    """What earlier pulls in ``store`` learned of the model ``ref`` names (same hub and name,
    any revision or entry): the most restrictive learned value, else None."""
    found = None
    for manifest in _same_name(store, ref):
        try:
            other = parse(manifest.ref)
        except InvalidReferenceError:  # a hand-edited manifest: it says nothing of this one
            continue
        access = manifest.details.get("access")
        if other.name != ref.name or access not in KNOWN:
            continue
        if found is None or _RANK[access] > _RANK[found]:
            found = access
    return found


def _same_name(store: Store, ref: ModelRef) -> Iterator[Manifest]:
    """The manifests of ``ref``'s hub whose file name could be of a reference with ``ref``'s
    name (a manifest's name starts with its reference's, :func:`layout.ref_key`): a few files
    read, not the whole store, so that a pull from a cache stays cheap."""
    try:
        key = layout.ref_key(ModelRef(ref.hub, ref.name))
    except Exception:  # a hub whose canonical form wants more than a name: read them all
        key = ""
    prefix = key.rsplit("-", 1)[0]
    folder = store.root / layout.MANIFESTS / ref.hub
    try:
        paths = sorted(p for p in folder.glob("*.json") if p.name.startswith(prefix))
    except OSError:
        return
    for path in paths:
        try:
            yield Manifest.from_json(path.read_text(encoding="utf-8"))
        except (OSError, IntegrityError):
            continue


def settle(details: MutableMapping[str, Any], store: Store, ref: ModelRef) -> str:
    """Record in ``details`` the access of a pull of ``ref`` that may have learned nothing:
    what it learned, else what an earlier pull of the model learned, else ``unknown``."""
    access = details.get("access")
    if access not in KNOWN:
        access = learned_before(store, ref) or UNKNOWN
        details["access"] = access
    return str(access)

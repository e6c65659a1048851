"""The cache-hit fast path: ``modelhub path REF`` and ``modelhub pull REF`` of a present model.

Answered from the manifest with the standard library only, before argparse or the library
are imported; anything else (or anything unusual) returns None and takes the full path,
which also produces the errors.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence


def fast_path(argv: Sequence[str]) -> int | None:
    """Print the primary path and return 0, or return None to let the full CLI answer."""
    if len(argv) != 2 or argv[0] not in ("path", "pull") or argv[1].startswith("-"):
        return None
    from ..config import checked_store_root
    from ..errors import ModelhubError
    from ..refs import parse
    from ..store.lookup import auto_satisfied, doc_primary, read_doc

    try:
        ref = parse(argv[1])
        root = checked_store_root()
    except ModelhubError:
        return None
    doc = read_doc(root, ref)
    if doc is None or (argv[0] == "pull" and not auto_satisfied(doc)):
        return None
    target = doc_primary(root, doc)
    if target is None:
        return None
    sys.stdout.write(target + "\n")
    return 0

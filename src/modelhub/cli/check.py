"""``modelhub check``: import staged models into a model import framework and record it."""

from __future__ import annotations

import argparse
import json

from ..errors import EXIT_INTEGRITY, EXIT_OK, UsageError
from .options import ref_help
from .output import err, out, table


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``check`` on ``sub``."""
    p = sub.add_parser(
        "check",
        help="import staged models into DL4J/SameDiff and record the result",
        description="Import each staged artifact (.onnx, .pb, .h5) with Deeplearning4j's own "
        "importers, run it on its parity fixture and record the result in the manifest "
        "(needs Java 17 and Maven; exit 5 when an import fails or differs beyond tolerance).",
    )
    p.add_argument("refs", nargs="*", metavar="REF", help=ref_help("models to check (or --all)"))
    p.add_argument("--all", action="store_true", help="every model in the store with a staged file")
    p.add_argument(
        "--importer", required=True, choices=["dl4j"], help="the import framework (dl4j)"
    )
    p.add_argument("--json", action="store_true", help="print the results as JSON")


def cmd_check(args: argparse.Namespace) -> int:
    """``modelhub check REF... --importer dl4j``: 0 when every import matched, else 5."""
    from ..checks import dl4j
    from ..pipeline import as_ref
    from ..store import Store

    if bool(args.refs) == bool(args.all):
        raise UsageError("modelhub check takes REF... or --all (not both, not neither)")
    store = Store()
    refs = dl4j.all_refs(store) if args.all else [as_ref(r) for r in args.refs]
    results = dl4j.check(store, refs)
    if args.json:
        docs = [
            {
                "ref": r.ref,
                "path": str(store.abspath(r.path)),
                "format": r.format,
                "ok": r.ok,
                "max_abs_diff": r.max_abs_diff,
                "error": r.error,
            }
            for r in results
        ]
        out(json.dumps(docs, indent=2, sort_keys=True))
    elif results:
        rows = [("MODEL", "STAGED", "DL4J", "MAX |DIFF|", "ERROR")]
        for r in results:
            diff = f"{r.max_abs_diff:.1e}" if r.max_abs_diff is not None else "-"
            rows.append((r.ref, r.path, "ok" if r.ok else "FAILED", diff, r.error or ""))
        out(table(rows))
    if not results:
        err("modelhub: nothing to check: no staged .onnx, .pb or .h5 file")
    failed = [r for r in results if not r.ok]
    if failed:
        err(f"modelhub: {len(failed)} of {len(results)} staged file(s) failed the DL4J import")
    return EXIT_INTEGRITY if failed else EXIT_OK


__all__ = ["add_parsers", "cmd_check"]

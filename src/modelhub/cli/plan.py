"""``pull --dry-run`` and ``sync --dry-run``: say per model what a pull would fetch."""

from __future__ import annotations

import argparse
from typing import Any

from ..errors import EXIT_OK
from .jsonout import dumps, error_text
from .output import PROG, human_size, out, report


def _line(plan: Any) -> str:
    """``REF: in store (PATH)`` or ``REF: would fetch N file(s), X from URL``."""
    if plan.status == "in store":
        return f"{plan.ref}: in store ({plan.path})"
    fetch = plan.fetch
    if not fetch:
        return f"{plan.ref}: would fetch nothing (every file is in the store or the SDK's cache)"
    hosts = sorted({f.url.split("?", 1)[0].rsplit("/", 1)[0] for f in fetch})
    where = hosts[0] if len(hosts) == 1 else f"{hosts[0]} (+{len(hosts) - 1} more)"
    size = human_size(plan.fetch_bytes) + (
        f" + {plan.unknown_sizes} of unknown size" if plan.unknown_sizes else ""
    )
    kept = len(plan.files) - len(fetch)
    extra = f"; {kept} already here" if kept else ""
    stage = f"; then stage {plan.stage}" if plan.stage not in (None, "none") else ""
    return f"{plan.ref}: would fetch {len(fetch)} file(s), {size} from {where}{extra}{stage}"


def show(plans: list[Any], as_json: bool) -> int:
    """Print ``plans`` (text, or plan objects with ``as_json``); return the first error's code."""
    code = EXIT_OK
    docs = []
    for plan in plans:
        if plan.error is not None:
            code = code or report(plan.error, plan.ref)
            if as_json:
                docs.append(plan.as_dict(error_text(plan.error, plan.ref)))
            continue
        if as_json:
            docs.append(plan.as_dict())
        else:
            out(_line(plan))
    if as_json:
        out(dumps(docs))
    elif len(plans) > 1:
        total = sum(p.fetch_bytes for p in plans)
        count = sum(len(p.fetch) for p in plans)
        out(f"{PROG}: would fetch {count} file(s), {human_size(total)} in all; nothing written")
    return code


def pull_plans(args: argparse.Namespace, options: dict[str, Any]) -> int:
    """``modelhub pull REF... --dry-run``."""
    from ..dryrun import dry_run

    plans = [
        dry_run(
            ref,
            stage=args.stage,
            storage=args.storage,
            revision=args.revision,
            offline=True if args.offline else None,
            force=args.force,
            sha256=args.sha256,
            options=options,
        )
        for ref in args.refs
    ]
    return show(plans, args.json)


def sync_plans(args: argparse.Namespace) -> int:
    """``modelhub sync [FILE] --dry-run``: each model of the set, as ``sync`` would pull it."""
    from ..dryrun import dry_run
    from ..sync import load_specs

    plans = []
    for spec in load_specs(args.file):
        options: dict[str, Any] = dict(spec.options)
        if spec.include:
            options["include"] = list(spec.include)
        if spec.exclude:
            options["exclude"] = list(spec.exclude)
        plans.append(
            dry_run(
                spec.ref.canonical,
                stage=spec.stage,
                storage=spec.storage,
                offline=True if args.offline else None,
                sha256=spec.sha256,
                options=options,
            )
        )
    return show(plans, args.json)


__all__ = ["pull_plans", "show", "sync_plans"]

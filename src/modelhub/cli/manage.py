"""Sub-commands for sets of models and the store as a whole: sync, du, gc, view, outdated."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import threading
import time
from typing import TYPE_CHECKING, Any

from ..config import override
from ..errors import EXIT_CHANGES, EXIT_OK
from ..store import Store
from .jsonout import model_size, result_doc
from .options import jobs, port, ref_help
from .output import about, error_line, human_size, quiet, table, way_out
from .output import err as _err
from .output import out as _out

if TYPE_CHECKING:
    from ..outdated import UpstreamStatus
    from ..store.gc import GcPlan
    from ..sync import SyncEvent, SyncReport, SyncResult


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``sync``, ``du``, ``gc``, ``view`` and ``outdated`` on ``sub``."""
    p = sub.add_parser(
        "sync",
        help="pull a set of models (FILE.toml) and pin it in its lock (FILE.lock)",
        description="Pull the models a TOML file declares ([[model]] tables) and write its lock "
        "beside it, named after it (dev.toml -> dev.lock). Exit codes: the contract's; "
        f"--check exits {EXIT_CHANGES} when models changed upstream.",
    )
    p.add_argument(
        "file",
        nargs="?",
        default="modelhub.toml",
        metavar="FILE",
        help="the model set (default: modelhub.toml)",
    )
    mode = p.add_mutually_exclusive_group()
    mode.add_argument(
        "--locked", action="store_true", help="install exactly the lock (exit 5 on change)"
    )
    mode.add_argument("--update", action="store_true", help="re-resolve every model upstream")
    mode.add_argument(
        "--check",
        action="store_true",
        help=f"only ask upstream whether the lock is outdated (exit {EXIT_CHANGES} if so)",
    )
    p.add_argument(
        "--lock",
        metavar="LOCKFILE",
        help="the lock to read and write (default: FILE with .lock for .toml)",
    )
    p.add_argument("--jobs", "-j", type=jobs, help="models pulled in parallel")
    p.add_argument("--offline", action="store_true", help="never use the network")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="only say what each model would fetch, from where, how many bytes (nothing written)",
    )
    p.add_argument(
        "--remote",
        nargs="?",
        const="",
        metavar="URL",
        help="pull through, and publish every model to, the shared s3:// store "
        "(default: $MODELHUB_REMOTE)",
    )

    p = sub.add_parser("du", help="disk usage per framework and per model")
    p.add_argument("--json", action="store_true", help="print the usage as JSON")

    p = sub.add_parser("gc", help="remove temporary leftovers, orphaned files, unlocked models")
    p.add_argument("--dry-run", action="store_true", help="only print what would be removed")
    p.add_argument(
        "--keep-lock", metavar="FILE", help="also remove every model not in this lock file"
    )
    p.add_argument("--json", action="store_true", help="print the plan and result as JSON")

    p = sub.add_parser("view", help="open a model in the netron viewer (127.0.0.1)")
    p.add_argument("ref", metavar="REF", help=ref_help("the model (pulled first when missing)"))
    p.add_argument("--no-browser", action="store_true", help="only print the URL")
    p.add_argument("--port", type=port, default=0, help="port (default: any free port)")
    p.add_argument("--original", action="store_true", help="the original, not the staged file")

    p = sub.add_parser(
        "outdated",
        help="list pulled models that changed upstream",
        description="Ask each hub (metadata only) whether the models in the store changed "
        f"since they were pulled. Exit 0: nothing changed; exit {EXIT_CHANGES}: changes "
        "found; 6: a hub was unreachable; other codes: the contract's errors.",
    )
    p.add_argument(
        "refs", nargs="*", metavar="REF", help=ref_help("default: every model in the store")
    )
    p.add_argument("--jobs", "-j", type=jobs, help="hubs asked in parallel (default: 8)")
    p.add_argument("--json", action="store_true", help="print every model's state as JSON")


# --- sync ---------------------------------------------------------------------------------------
def _model_size(result: SyncResult) -> int:
    return model_size(result.manifest) if result.manifest is not None else 0


def _parity(result: SyncResult) -> str:
    manifest = result.manifest
    diffs = [
        float(s.parity["max_abs_diff"])
        for s in (manifest.staged if manifest else [])
        if s.parity and s.parity.get("max_abs_diff") is not None
    ]
    return f"{max(diffs):.1e}" if diffs else "-"


def _staged(result: SyncResult) -> str:
    manifest = result.manifest
    return ",".join(sorted({s.format for s in manifest.staged})) if manifest else ""


class _Progress:
    """Progress on stderr: one line per model as it finishes, and an overall bar that a
    terminal redraws in place (on a pipe: the per-model lines and a final count only)."""

    def __init__(self, total: int, enabled: bool) -> None:
        self.total, self.enabled = total, enabled
        self.tty = enabled and sys.stderr.isatty()
        self.started = time.monotonic()
        self.done = self.failed = 0
        self.running: dict[int, str] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None

    def _start_ticker(self) -> None:
        # With the first event, not before the sync: until then this process has no other
        # thread, so the sync can fork its helper process directly (modelhub.offload).
        if self.tty and self.total and self._ticker is None and not self._stop.is_set():
            self._ticker = threading.Thread(target=self._tick, daemon=True)
            self._ticker.start()

    def _tick(self) -> None:
        while not self._stop.wait(0.5):
            with self._lock:
                self._bar()

    def _bar(self) -> None:
        width = 24
        filled = int(width * self.done / self.total) if self.total else width
        names = ", ".join(list(self.running.values())[:2])
        extra = f" +{len(self.running) - 2}" if len(self.running) > 2 else ""
        line = (
            f"[{'#' * filled}{'.' * (width - filled)}] {self.done}/{self.total}"
            f"{f', {self.failed} failed' if self.failed else ''}"
            f"  {time.monotonic() - self.started:5.1f} s"
            f"{f'  {names}{extra}' if names else ''}"
        )
        columns = 120
        with contextlib.suppress(OSError):
            columns = os.get_terminal_size(sys.stderr.fileno()).columns
        if columns < 20:  # unknown (0) or absurd: do not cut the line to nothing
            columns = 120
        sys.stderr.write("\r\x1b[2K" + line[: columns - 1])
        sys.stderr.flush()

    def __call__(self, event: SyncEvent) -> None:
        if not self.enabled:
            return
        with self._lock:
            self._start_ticker()
            result = event.result
            name = result.spec.name
            if event.kind == "start":
                self.running[event.index] = name
            elif event.kind == "phase":
                self.running[event.index] = f"{name} ({event.phase})"
            elif event.kind == "done":
                self.running.pop(event.index, None)
                self.done += 1
                self.failed += result.failed
                if self.tty:
                    sys.stderr.write("\r\x1b[2K")
                sys.stderr.write(self._line(event) + "\n")
            if self.tty:
                self._bar()
            sys.stderr.flush()

    def _line(self, event: SyncEvent) -> str:
        result = event.result
        width = len(str(event.total))
        head = f"[{self.done:>{width}}/{event.total}] {result.status:<6} {result.spec.name}"
        if result.failed:  # the reason is printed once, with the errors after the table
            return f"{head}  (exit {result.exit_code}; the error follows the summary)"
        return f"{head}  {human_size(_model_size(result))}  {result.seconds:.2f} s"

    def close(self, report: SyncReport | None) -> None:
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join()
        if not self.enabled:
            return
        if self.tty:
            sys.stderr.write("\r\x1b[2K")
        if report is not None:
            ok = len(report.results) - len(report.failed)
            if report.mode == "locked":
                lock = "not written: --locked"
            elif report.results and not ok:
                lock = "not written: every model failed"
            else:
                lock = "written" if report.lock_written else "unchanged"
            sys.stderr.write(
                f"synced {ok}/{len(report.results)} models in {report.seconds:.1f} s"
                f"{f', {len(report.failed)} failed' if report.failed else ''}"
                f"; {report.lock_path} {lock}\n"
            )
        sys.stderr.flush()


def _result_doc(result: SyncResult, store: Store) -> dict[str, Any]:
    return result_doc(
        result.spec.name,
        store,
        result.manifest,
        status=result.status,
        error=result.error,
        exit_code=result.exit_code,
        seconds=result.seconds,
    )


def cmd_sync(args: argparse.Namespace) -> int:
    """``modelhub sync [FILE]``: pull the set, write the lock, print a summary table."""
    from .. import sync as syncmod

    if args.check:
        statuses = syncmod.check(args.file, jobs=args.jobs, lock=args.lock)
        return _print_statuses(statuses, args.json)
    if args.dry_run:
        from .plan import sync_plans

        return sync_plans(args)
    mode = "locked" if args.locked else "update" if args.update else "sync"
    shared = None
    if args.remote is not None:
        from ..remote import remote_store

        shared = remote_store(args.remote or None)
        override(remote=shared.url)  # every pull looks there before the hub
    specs = syncmod.load_specs(args.file)
    progress = _Progress(len(specs), enabled=not quiet())
    report = None
    try:
        report = syncmod.sync(
            args.file,
            mode=mode,
            jobs=args.jobs,
            offline=True if args.offline else None,
            on_event=progress,
            stage_in_processes=True,
            lock=args.lock,
        )
    finally:
        progress.close(report)
    if args.json:
        store = Store()
        _out(
            json.dumps(
                {
                    "file": str(report.path.absolute()),
                    "lock": str(report.lock_path.absolute()),
                    "lock_written": report.lock_written,
                    "mode": report.mode,
                    "seconds": round(report.seconds, 3),
                    "failed": len(report.failed),
                    "exit_code": report.exit_code,
                    "models": [_result_doc(r, store) for r in report.results],
                },
                indent=2,
                sort_keys=True,
            )
        )
    else:
        rows = [("MODEL", "STATUS", "REVISION", "SIZE", "STAGED", "PARITY", "TIME")]
        for r in report.results:
            revision = r.manifest.revision[:12] if r.manifest else "-"
            size = human_size(_model_size(r)) if r.manifest else "-"
            rows.append(
                (
                    r.spec.name,
                    r.status,
                    revision,
                    size,
                    _staged(r) or "-",
                    _parity(r),
                    f"{r.seconds:.2f} s",
                )
            )
        _out(table(rows, right=(3, 6)))
    for r in report.failed:
        assert r.error is not None
        _err(error_line(r.error, r.spec.name)[0])
    if shared is not None:
        store = Store()
        for r in report.results:
            if r.manifest is not None and not r.failed:
                with store.lock(r.spec.ref):
                    done = shared.publish_model(r.spec.ref, store)
                how = "published" if done.created else "present"
                _err(f"modelhub: {r.spec.name}: {how} on {shared.url}")
    return report.exit_code


# --- outdated -----------------------------------------------------------------------------------
def _print_statuses(statuses: list[UpstreamStatus], as_json: bool) -> int:
    from ..outdated import exit_code

    code = exit_code(statuses)
    if as_json:
        _out(
            json.dumps(
                {"exit_code": code, "models": [s.as_dict() for s in statuses]},
                indent=2,
                sort_keys=True,
            )
        )
        return code
    shown = [s for s in statuses if s.state != "current"]
    if shown:
        rows = [("MODEL", "STATE", "RECORDED", "UPSTREAM", "HOW")]
        for s in shown:
            rows.append((s.ref, s.state, _abbrev(s.recorded), _abbrev(s.current), s.how or "-"))
        _out(table(rows))
    for s in shown:
        if s.state in ("unreachable", "error", "unknown", "missing") and s.message:
            hint = way_out(s.error) if s.error is not None else ""
            _err(f"modelhub: {s.state}: {about(s.ref, s.message)}{hint}")
    changed = sum(s.changed for s in statuses)
    _err(
        f"{changed} of {len(statuses)} model(s) changed upstream"
        + (
            f", {sum(s.state == 'unreachable' for s in statuses)} unreachable"
            if any(s.state == "unreachable" for s in statuses)
            else ""
        )
    )
    return code


def _abbrev(value: str | None) -> str:
    if not value:
        return "-"
    return value[:12] if len(value) in (40, 64) else value


def cmd_outdated(args: argparse.Namespace) -> int:
    """``modelhub outdated [REF...]``: 10 (EXIT_CHANGES) if any changed upstream, else 6 if a
    hub is unreachable."""
    from ..outdated import check_store

    return _print_statuses(check_store(args.refs, jobs=args.jobs), args.json)


# --- du and gc ----------------------------------------------------------------------------------
def cmd_du(args: argparse.Namespace) -> int:
    """``modelhub du``: sizes per framework and per model (hard links counted once)."""
    from ..store import Store
    from ..store.usage import disk_usage

    usage = disk_usage(Store())
    if args.json:
        _out(json.dumps(usage.as_dict(), indent=2, sort_keys=True))
        return EXIT_OK
    rows: list[tuple[str, ...]] = [("FOLDER", "FILES", "SIZE")]
    rows += [(f.name, str(f.files), human_size(f.bytes)) for f in usage.folders]
    rows.append(("total", "", human_size(usage.total)))
    lines = [table(rows, right=(1, 2))]
    notes = ["hard links counted once"]
    if usage.linked_outside:
        notes.append(f"{human_size(usage.linked_outside)} of it also linked from SDK caches")
    lines.append(f"({'; '.join(notes)})")
    if usage.unowned_files:
        lines.append(
            f"unowned: {usage.unowned_files} file(s), {human_size(usage.unowned_bytes)} "
            "(modelhub gc removes them)"
        )
    if usage.models:
        rows = [("MODEL", "FRAMEWORK", "FILES", "SIZE", "STORED", "SHARED")]
        rows += [
            (
                m.ref,
                m.framework,
                str(m.files),
                human_size(m.size),
                human_size(m.stored),
                human_size(m.shared),
            )
            for m in usage.models
        ]
        lines += ["", table(rows, right=(2, 3, 4, 5))]
    _out("\n".join(lines))
    return EXIT_OK


def _plan_lines(plan: GcPlan, verb: str) -> list[str]:
    lines = []
    for item in plan.items:
        what = f"{item.path} ({item.ref})" if item.ref else item.path
        lines.append(f"{verb} {item.kind:<6} {human_size(item.bytes):>10}  {what}")
    return lines


def _gc_paths(store: Store, doc: dict[str, Any]) -> dict[str, Any]:
    """``doc`` (an item or a kept entry of ``gc --json``) with its ``path`` absolute, as every
    path in ``--json`` is; the store-relative one stays beside it as ``rel``."""
    rel = str(doc["path"])
    return {**doc, "path": str(store.root.absolute() / rel), "rel": rel}


def _gc_doc(store: Store, plan: GcPlan) -> dict[str, Any]:
    doc = plan.as_dict()
    doc["items"] = [_gc_paths(store, item) for item in doc["items"]]
    doc["kept"] = [_gc_paths(store, kept) for kept in doc["kept"]]
    return doc


def cmd_gc(args: argparse.Namespace) -> int:
    """``modelhub gc``: print what would be freed, then free it (unless ``--dry-run``)."""
    from ..errors import NotFoundError
    from ..store import Store
    from ..store.gc import plan_gc, run_gc
    from ..sync import read_lock

    store = Store()
    keep: set[str] | None = None
    if args.keep_lock:
        lock = read_lock(args.keep_lock)
        if lock is None:
            raise NotFoundError(f"no lock file at {args.keep_lock}")
        keep = set(lock)
    plan = plan_gc(store, keep)
    if args.json and args.dry_run:
        _out(json.dumps({"dry_run": True, **_gc_doc(store, plan)}, indent=2, sort_keys=True))
        return EXIT_OK
    if not args.json:
        verb = "would remove" if args.dry_run else "removing"
        for line in _plan_lines(plan, verb):
            _err(line)
        for rel, why in plan.kept:
            _err(f"keeping {rel}: {why}")
        total = f"{human_size(plan.bytes)} in {len(plan.items)} item(s)"
        _err(f"{'would free' if args.dry_run else 'freeing'} {total}")
    if args.dry_run:
        return EXIT_OK
    result = run_gc(store, plan)
    for item, why in result.skipped:
        _err(f"skipped {item.path}: {why}")
    if args.json:
        doc = {
            "dry_run": False,
            **_gc_doc(store, plan),
            "removed": [_gc_paths(store, i.as_dict()) for i in result.removed],
            "skipped": [{**_gc_paths(store, i.as_dict()), "why": why} for i, why in result.skipped],
            "freed": result.bytes,
        }
        _out(json.dumps(doc, indent=2, sort_keys=True))
    else:
        _out(f"freed {human_size(result.bytes)} ({len(result.removed)} item(s))")
    return EXIT_OK


# --- view ---------------------------------------------------------------------------------------
def cmd_view(args: argparse.Namespace) -> int:
    """``modelhub view REF``: serve the model with netron on 127.0.0.1; print the URL."""
    from .. import viewer
    from ..pipeline import as_ref, pull
    from ..store import Store

    store = Store()
    ref = as_ref(args.ref)
    manifest = store.manifest(ref)
    if manifest is None:
        manifest = pull(ref, store=store).manifest
    path = viewer.artifact(store, manifest, original=args.original)
    view = viewer.start(path, port=args.port, browse=not args.no_browser)
    _out(view.url)
    _err(f"modelhub: netron shows {path} at {view.url} (Ctrl-C to stop)")
    try:
        view.wait()
    except KeyboardInterrupt:
        view.stop()
    return EXIT_OK


__all__ = ["add_parsers", "cmd_du", "cmd_gc", "cmd_outdated", "cmd_sync", "cmd_view"]

"""One function per sub-command: call the library, print results on stdout."""

from __future__ import annotations

import argparse
import json
import logging
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from ..errors import EXIT_INTEGRITY, EXIT_OK
from ..store import Store
from .jsonout import dumps, error_text, model_doc, result_doc
from .output import err as _err
from .output import human_size, note, report
from .output import out as _out

log = logging.getLogger(__name__)


def _pull_options(args: argparse.Namespace) -> dict[str, Any]:
    options: dict[str, Any] = {}
    if args.include:
        options["include"] = list(args.include)
    if args.exclude:
        options["exclude"] = list(args.exclude)
    if args.task:
        options["task"] = args.task
    if args.signature:
        options["signature"] = args.signature
    if args.input_shape:
        options["input_shape"] = args.input_shape
    if args.alpha is not None:
        options["alpha"] = args.alpha
    if args.trust:
        options["trust"] = True
    if args.all_files:
        options["all_files"] = True
    if args.for_importer:
        options["for"] = args.for_importer
    if args.hub_arg:
        options["hub_args"] = parse_hub_args(args.hub_arg)
    return options


def parse_hub_args(items: list[str]) -> dict[str, Any]:
    """``KEY=VALUE`` pairs as keyword arguments: each VALUE a JSON literal (``true``, ``3``,
    ``"x"``, ``[1, 2]``), else the text as it is. Raises UsageError for a malformed pair."""
    from ..errors import UsageError

    found: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key.isidentifier():
            raise UsageError(f"--hub-arg {item!r} is not KEY=VALUE with KEY a Python name")
        try:
            found[key] = json.loads(value)
        except ValueError:
            found[key] = value
    return found


def _skipped_note(selection: object) -> str | None:
    """One line on what a pull's file selection (manifest ``selection``) left out, or None."""
    if not isinstance(selection, dict):
        return None
    skipped = selection.get("skipped")
    if not isinstance(skipped, list) or not skipped:
        return None
    size = selection.get("skipped_bytes")
    names = ", ".join(str(n) for n in skipped[:3]) + (", ..." if len(skipped) > 3 else "")
    saved = f"{human_size(size)} " if isinstance(size, int) and size > 0 else ""
    return (
        f"skipped {len(skipped)} file(s) in weight formats from_pretrained does not read "
        f"({names}): {saved}not downloaded; --all-files fetches them"
    )


def cmd_pull(args: argparse.Namespace) -> int:
    """``modelhub pull REF...``: print each primary path (or the manifests with --json)."""
    from ..pipeline import Model, pull

    if args.dry_run:
        from .plan import pull_plans

        return pull_plans(args, _pull_options(args))
    store = Store()
    refs: list[str] = list(args.refs)

    def one(ref: str) -> tuple[Model, float]:
        started = time.monotonic()
        log.info("%s: pulling (stage %s, storage %s)", ref, args.stage, args.storage)
        model = pull(
            ref,
            stage=args.stage,
            storage=args.storage,
            revision=args.revision,
            offline=True if args.offline else None,
            force=args.force,
            sha256=args.sha256,
            store=store,
            options=_pull_options(args),
            remote=args.remote,
        )
        seconds = time.monotonic() - started
        log.info("%s: %s in %.2f s", ref, model.path, seconds)
        return model, seconds

    jobs = args.jobs or min(4, len(refs))
    results: list[tuple[Model, float] | BaseException] = []
    if jobs <= 1 or len(refs) == 1:
        for ref in refs:
            try:
                results.append(one(ref))
            except Exception as exc:
                results.append(exc)
    else:
        from concurrent.futures import ThreadPoolExecutor  # only for several refs

        with ThreadPoolExecutor(max_workers=jobs) as pool:
            futures = [pool.submit(one, ref) for ref in refs]
            for fut in futures:
                try:
                    results.append(fut.result())
                except Exception as exc:
                    results.append(exc)
    code = EXIT_OK
    docs = []
    for ref, outcome in zip(refs, results, strict=True):
        if isinstance(outcome, BaseException):
            failure = report(outcome, ref if len(refs) > 1 else None)
            code = code or failure
            if args.json:
                docs.append(
                    result_doc(ref, store, None, status="failed", error=outcome, exit_code=failure)
                )
            continue
        result, seconds = outcome
        if args.json:
            docs.append(result_doc(ref, store, result.manifest, status="ok", seconds=seconds))
        else:
            _out(str(result.path))
        notes = [s.details.get("note") for s in result.manifest.staged]  # e.g. untrained
        if not result.manifest.staged:
            notes.append(result.manifest.details.get("note"))
        for text in filter(None, [*notes, *result.notes]):
            note(result.ref, str(text))
        skipped = _skipped_note(result.manifest.details.get("selection"))
        if skipped:
            note(result.ref, skipped)
    if args.json:
        _out(dumps(docs))
    if code and len(refs) > 1:
        _err(
            f"modelhub: {sum(isinstance(r, BaseException) for r in results)} of {len(refs)} "
            "models failed"
        )
    return code


def cmd_path(args: argparse.Namespace) -> int:
    """``modelhub path REF``: the primary artifact, from the store only."""
    from ..pipeline import path

    _out(str(path(args.ref)))
    return EXIT_OK


def cmd_info(args: argparse.Namespace) -> int:
    """``modelhub info REF``: the manifest (JSON with --json, a summary otherwise)."""
    from ..hubs.access import describe as describe_access
    from ..pipeline import as_ref

    store = Store()
    manifest = store.require(as_ref(args.ref))
    if args.json:
        _out(dumps(model_doc(store, manifest)))
        return EXIT_OK
    lines = [
        f"ref:        {manifest.ref}",
        f"hub:        {manifest.hub}",
        f"framework:  {manifest.framework}",
        f"revision:   {manifest.revision}",
        f"storage:    {manifest.storage}",
        f"created:    {manifest.created}",
        f"source:     {', '.join(manifest.source)}",
        f"sdk_cache:  {manifest.sdk_cache or '-'}",
        f"access:     {describe_access(manifest)}",
        "files:",
    ]
    lines += [f"  {f.path}  {human_size(f.size)}  sha256:{f.sha256}" for f in manifest.files]
    if manifest.details.get("note"):
        lines.append(f"note:       {manifest.details['note']}")
    if manifest.details.get("checked"):
        lines.append(f"checked:    {json.dumps(manifest.details['checked'], sort_keys=True)}")
    if manifest.staged:
        lines.append("staged:")
        for s in manifest.staged:
            parity = "-" if not s.parity else f"{s.parity.get('max_abs_diff')}"
            lines.append(
                f"  {s.path}  [{s.format}]  inputs={','.join(s.inputs)}  "
                f"outputs={','.join(s.outputs)}  parity={parity}"
            )
            if s.fixture:
                lines.append(f"    fixture: {s.fixture['path']}  sha256:{s.fixture['sha256']}")
            for importer, result in sorted(s.imports.items()):
                verdict = "ok" if result.get("ok") else f"FAILED: {result.get('error')}"
                lines.append(
                    f"    import {importer} {result.get('version', '')}: {verdict}  "
                    f"max |diff| {result.get('max_abs_diff')}"
                )
    _out("\n".join(lines))
    return EXIT_OK


def cmd_list(args: argparse.Namespace) -> int:
    """``modelhub list``: every model in the store (``--remote``: in the shared store)."""
    if args.remote is not None:
        return _list_remote(args)
    store = Store()
    manifests = [m for _, m in store.manifests()]
    if args.json:
        _out(dumps([model_doc(store, m) for m in manifests]))
        return EXIT_OK
    if not manifests:
        _err(f"the store at {store.root} is empty")
        return EXIT_OK
    rows = [("REF", "FRAMEWORK", "SIZE", "STAGED", "PATH")]
    for m in sorted(manifests, key=lambda m: m.ref):
        size = sum(f.size for f in m.files)
        staged = ",".join(sorted({s.format for s in m.staged})) or "-"
        rows.append((m.ref, m.framework, human_size(size), staged, m.primary_path))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        cells = [c.ljust(w) for c, w in zip(row, widths, strict=False)]
        _out("  ".join([*cells, row[-1]]))
    return EXIT_OK


def _list_remote(args: argparse.Namespace) -> int:
    from ..remote import remote_store

    shared = remote_store(args.remote)
    manifests = shared.list_models()
    if args.json:
        docs = [{**asdict(m), "url": f"{shared.url}/{m.primary_path}"} for m in manifests]
        _out(json.dumps(docs, indent=2, sort_keys=True))
        return EXIT_OK
    if not manifests:
        _err(f"the remote store at {shared.url} is empty")
    for m in manifests:
        size = human_size(sum(f.size for f in m.files))
        staged = ",".join(sorted({s.format for s in m.staged})) or "-"
        _out(f"{m.ref}  {m.framework}  {size}  {staged}  {shared.url}/{m.primary_path}")
    return EXIT_OK


def cmd_push(args: argparse.Namespace) -> int:
    """``modelhub push REF...``: publish models from the store to the shared store."""
    from ..pipeline import as_ref
    from ..remote import remote_store

    shared = remote_store(args.remote)
    store = Store()
    for text in args.refs:
        ref = as_ref(text)
        with store.lock(ref):
            done = shared.publish_model(ref, store)
        _out(shared.manifest_url(ref))
        how = f"published ({len(done.uploaded)} object(s) uploaded)" if done.created else "present"
        _err(f"modelhub: {ref}: {how} on {shared.url}")
    return EXIT_OK


def cmd_verify(args: argparse.Namespace) -> int:
    """``modelhub verify [REF...]``: re-hash files; exit 5 on any difference (``--json``: a
    result object per model, ``status`` ok, damaged, repaired or failed)."""
    from ..pipeline import as_ref

    store = Store()
    if args.refs:
        manifests = [store.require(as_ref(r)) for r in args.refs]
    else:
        manifests = [m for _, m in store.manifests()]
    code = EXIT_OK
    docs = []
    for manifest in manifests:
        started = time.monotonic()
        problems = store.verify(manifest, mark=True)  # the next pull fetches it again
        now, status, error, failure = manifest, "ok", None, EXIT_OK
        if problems:
            status, failure = "damaged", EXIT_INTEGRITY
            error = "; ".join(f"{manifest.ref}: {p}" for p in problems)
            for problem in problems:
                _err(f"modelhub: error: {manifest.ref}: {problem}")
        if problems and args.repair:
            from ..pipeline import repair

            try:
                now = repair(manifest.ref, store=store).manifest
                status, error, failure = "repaired", None, EXIT_OK
            except Exception as exc:
                failure = report(exc, manifest.ref)
                status, error = "failed", error_text(exc, manifest.ref)
        elif problems:
            note(
                manifest.ref,
                f"repair it with `modelhub verify --repair {manifest.ref}` "
                "(the next `modelhub pull` of it fetches it again too)",
            )
        code = code or failure
        seconds = time.monotonic() - started
        if args.json:
            docs.append(
                result_doc(
                    manifest.ref,
                    store,
                    now,
                    status=status,
                    error=error,
                    exit_code=failure,
                    seconds=seconds,
                )
            )
        else:
            shown = {"ok": "ok    ", "repaired": "repaired"}.get(status, "FAILED")
            _out(f"{shown} {manifest.ref}")
    if args.json:
        _out(dumps(docs))
    return code


def cmd_rm(args: argparse.Namespace) -> int:
    """``modelhub rm REF``: remove the model and the files only it owns.

    Refuses (exit 1) a model whose files other manifests list too, unless ``--force``.
    """
    from ..errors import NotInStoreError, StoreConflictError
    from ..pipeline import as_ref
    from ..store.usage import shared_files

    ref = as_ref(args.ref)
    store = Store()
    if store.manifest(ref) is None:
        raise NotInStoreError(
            f"{ref} is not in the store at {store.root}: nothing to remove "
            "(modelhub list shows what is there)"
        )
    with store.lock(ref):
        shared = shared_files(store, store.require(ref)) if not args.force else {}
        if shared:
            rel, refs = next(iter(shared.items()))
            raise StoreConflictError(
                f"{ref} shares {len(shared)} file(s) with other models (e.g. {rel} with "
                f"{', '.join(refs)}); use --force to remove it anyway (shared files stay)"
            )
        removed = store.remove(ref)
    for rel in removed:
        _out(str(store.root / rel))
    _err(f"removed {ref} ({len(removed)} path(s))")
    return EXIT_OK


def cmd_import(args: argparse.Namespace) -> int:
    """``modelhub import PATH --as REF``: local files into the store, as a pull would."""
    from ..importer import import_path
    from ..pipeline import as_ref

    ref = as_ref(args.ref)
    store = Store()
    src = Path(args.src)
    if not src.exists():
        from ..errors import NotFoundError

        raise NotFoundError(f"no such file or folder: {src}")
    with store.lock(ref):
        manifest = import_path(store, src, ref, force=args.force)
    _out(str(store.abspath(manifest.primary_path)))
    return EXIT_OK


def _serve_access(args: argparse.Namespace, root: Path) -> tuple[Any, list[str]]:
    """``serve``'s read policy from ``--auth-tokens``/``--public``/``--host``, and what to say
    once at start (reachable from the network; gated/private models nobody may read)."""
    from ..errors import UsageError
    from ..mirror.access import Access, is_loopback, load_tokens, withheld

    tokens = getattr(args, "auth_tokens", None)
    access = load_tokens(Path(tokens), public=args.public) if tokens else Access(public=args.public)
    local = is_loopback(args.host)
    if not local and not tokens and not args.public:
        raise UsageError(
            f"serve --host {args.host} would hand the store to anyone on the network; give "
            "--auth-tokens FILE (tokens that may read it), or --public to serve its public models "
            "to anyone"
        )
    notes = []
    if not local:
        who = (
            "anyone can read its public models, token holders the rest"
            if tokens and args.public
            else "only clients with a token of --auth-tokens can read it"
            if tokens
            else "anyone who can reach this machine can read its public models"
        )
        notes.append(f"--host {args.host}: the store is now reachable from the network ({who})")
    hidden = withheld(root)
    if hidden and not tokens:
        notes.append(
            f"{hidden} model(s) from gated or private sources (or of unknown access: "
            "`modelhub info` says which) are not served; give "
            "--auth-tokens FILE to serve them to token holders"
        )
    return access, notes


def cmd_serve(args: argparse.Namespace) -> int:
    """``modelhub serve``: the store as a mirror of every hub (blocks until interrupted)."""
    from ..mirror import serve

    if args.root and args.root.startswith("s3://"):
        from ..remote import remote_store

        store = Store()
        count = len(remote_store(args.root).mirror_into(store))
        _err(f"modelhub: {count} model(s) of {args.root} are in {store.root}")
        args.root = str(store.root)
    root = Path(args.root).expanduser().absolute() if args.root else Store().root
    if args.root and not root.is_dir():
        from ..errors import UsageError

        what = "is a file" if root.exists() else "is missing"
        raise UsageError(
            f"serve --root {args.root}: {root} {what}; give the folder of a store "
            "(one `modelhub pull` filled, MODELHUB_PATH's by default)"
        )

    access, notes = _serve_access(args, root)

    def ready(url: str) -> None:
        _err(f"modelhub: serving {root} at {url} (Ctrl-C to stop)")
        for said in notes:
            _err(f"modelhub: {said}")
        _out(url)

    try:
        serve(root, host=args.host, port=args.port, ready=ready, access=access)
    except OSError as exc:
        import errno
        import socket

        from ..errors import UsageError

        if exc.errno == errno.EADDRINUSE:
            raise UsageError(
                f"port {args.port} on {args.host} is in use; choose another with --port N, "
                "or --port 0 for any free port"
            ) from None
        if exc.errno == errno.EADDRNOTAVAIL or isinstance(exc, socket.gaierror):
            raise UsageError(
                f"cannot listen on --host {args.host}: {exc.strerror or exc}; give an address "
                "of this machine (127.0.0.1, 0.0.0.0 for every interface)"
            ) from None
        raise
    return EXIT_OK


__all__ = ["cmd_import", "cmd_info", "cmd_list", "cmd_path", "cmd_pull", "cmd_serve"]

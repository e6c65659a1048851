"""``modelhub`` command line: argument wiring and error-to-prose mapping only.

stdout carries results (paths, JSON); progress and messages go to stderr. Every error is one
line on stderr (a traceback only with ``MODELHUB_DEBUG=1``) and the contract's exit code.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence

from .. import config
from .._frameworks import leaving, own_process
from ..errors import EXIT_USAGE, ModelhubError
from .options import REF_HELP, add_common, add_examples, log_setup, port, ref_help, verbosity
from .output import PROG, report

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: importing typing costs start-up time

if TYPE_CHECKING:  # argparse is imported only when needed: a cache hit skips it
    import argparse


def _add_pull(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from ..config import STAGES, STORAGES
    from .options import jobs, storage_help

    p = sub.add_parser("pull", help="download (and stage) models into the store")
    p.add_argument("refs", nargs="+", metavar="REF", help=REF_HELP)
    p.add_argument(
        "--stage",
        default="auto",
        choices=list(STAGES),
        help="import-ready form to produce (default: the hub's own default)",
    )
    p.add_argument("--storage", default="uncompressed", choices=list(STORAGES), help=storage_help())
    p.add_argument("--revision", help="branch, tag, commit, opset or weights to pull")
    p.add_argument(
        "--sha256",
        metavar="HEX",
        help="expected sha256 of a single-file model (exit 5 on a mismatch, nothing kept); "
        "refused for a model that is a folder of files: pin those with a lock (sync)",
    )
    p.add_argument("--offline", action="store_true", help="never use the network")
    p.add_argument("--force", action="store_true", help="download again even if present")
    p.add_argument("--jobs", "-j", type=jobs, default=0, help="models pulled in parallel")
    p.add_argument("--json", action="store_true", help="print a result per REF as JSON")
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="only say what would be fetched, from where, how many bytes (metadata only; "
        "nothing written)",
    )
    p.add_argument(
        "--include",
        action="append",
        default=[],
        metavar="GLOB",
        help="only repository files matching GLOB (repeatable; hf:)",
    )
    p.add_argument(
        "--exclude",
        action="append",
        default=[],
        metavar="GLOB",
        help="skip repository files matching GLOB (repeatable; hf:)",
    )
    p.add_argument("--task", help="model head to export with --stage onnx (hf:)")
    p.add_argument("--signature", help="SavedModel signature to freeze (default serving_default)")
    p.add_argument(
        "--input-shape",
        metavar="SHAPE",
        help="example input shape: N,C,H,W for torch export, H,W,C for keras: applications",
    )
    p.add_argument("--alpha", type=float, help="width multiplier of a keras: MobileNet")
    p.add_argument(
        "--trust", action="store_true", help="allow running a torch.hub repository's hubconf.py"
    )
    p.add_argument("--remote", metavar="URL", help="shared s3:// store (default: $MODELHUB_REMOTE)")
    p.add_argument(
        "--for",
        dest="for_importer",
        choices=["dl4j"],
        help="also stage the forms this import framework reads (dl4j: Deeplearning4j/SameDiff)",
    )
    p.add_argument(
        "--all-files",
        action="store_true",
        help="every file of the repository, not only what from_pretrained reads (hf:)",
    )
    p.add_argument(
        "--hub-arg",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="keyword argument for a torch.hub entrypoint, VALUE a JSON literal "
        "(repeatable; e.g. --hub-arg pretrained=true)",
    )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``modelhub`` command."""

    from .. import __version__
    from .argparser import Parser

    parser: argparse.ArgumentParser = Parser(
        prog=PROG,
        description="Pull pretrained models from every model hub into one store, import-ready.",
    )
    parser.add_argument("-V", "--version", action="version", version=f"{PROG} {__version__}")
    add_common(parser, top=True)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _add_pull(sub)

    p = sub.add_parser("path", help="print the primary artifact path (no network)")
    p.add_argument("ref", metavar="REF", help=REF_HELP)

    p = sub.add_parser("info", help="show a model's manifest")
    p.add_argument("ref", metavar="REF", help=REF_HELP)
    p.add_argument("--json", action="store_true", help="print the manifest as JSON")

    p = sub.add_parser("list", help="list everything in the store")
    p.add_argument("--json", action="store_true", help="print the manifests as JSON")
    p.add_argument(
        "--remote", nargs="?", const="", metavar="URL", help="list the shared s3:// store instead"
    )

    p = sub.add_parser("push", help="publish models from the store to the shared s3:// store")
    p.add_argument(
        "refs", nargs="+", metavar="REF", help=ref_help("models in the store to publish")
    )
    p.add_argument(
        "--remote", metavar="URL", help="s3://BUCKET[/PREFIX] (default: $MODELHUB_REMOTE)"
    )

    p = sub.add_parser("verify", help="re-hash models against their manifests")
    p.add_argument(
        "refs", nargs="*", metavar="REF", help=ref_help("default: every model in the store")
    )
    p.add_argument(
        "--repair", action="store_true", help="fetch damaged models again at once (as pulled)"
    )
    p.add_argument("--json", action="store_true", help="print a result per model as JSON")

    p = sub.add_parser("rm", help="remove a model (and only it)")
    p.add_argument("ref", metavar="REF", help=ref_help("the model to remove"))
    p.add_argument(
        "--force", action="store_true", help="remove it even if another model shares its files"
    )

    p = sub.add_parser("import", help="put local files into the store as REF")
    p.add_argument("src", metavar="PATH", help="a file or folder (a snapshot, a SavedModel)")
    p.add_argument(
        "--as", dest="ref", required=True, metavar="REF", help=ref_help("what to file it as")
    )
    p.add_argument("--force", action="store_true", help="replace an existing entry")

    p = sub.add_parser("serve", help="serve the store as a mirror of every hub")
    p.add_argument("--root", help="store to serve: a folder or s3://... (default: $MODELHUB_PATH)")
    p.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default: 127.0.0.1, this machine only)",
    )
    p.add_argument(
        "--port", type=port, default=8080, help="port (default: 8080; 0 = any free port)"
    )
    p.add_argument(
        "--auth-tokens",
        metavar="FILE",
        help="tokens that may read the mirror, one per line: clients send "
        "Authorization: Bearer TOKEN (HF_TOKEN / KAGGLE_API_TOKEN); gated and private models "
        "are served only with one",
    )
    p.add_argument(
        "--public",
        action="store_true",
        help="public models to anyone, even with --auth-tokens; needed for a --host other "
        "than 127.0.0.1 without --auth-tokens",
    )

    from . import check, diag, manage

    manage.add_parsers(sub)
    check.add_parsers(sub)
    diag.add_parsers(sub)
    sub.choices["completion"].set_defaults(build_parser=build_parser)  # the script's source
    for name, subparser in sub.choices.items():
        add_common(subparser, top=False)
        add_examples(subparser, name)
    parser._modelhub_subparsers = sub.choices  # type: ignore[attr-defined]
    return parser


def _parse(parser: argparse.ArgumentParser, args_list: list[str]) -> argparse.Namespace:
    """Parse ``args_list``; an unknown option is reported with its subcommand's usage."""
    args, extra = parser.parse_known_args(args_list)
    if extra:
        subparsers = getattr(parser, "_modelhub_subparsers", {})
        target = subparsers.get(getattr(args, "command", None), parser)
        target.error(f"unrecognized arguments: {' '.join(extra)}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line with ``argv``; return the exit code."""
    if argv is None:  # the program itself (console script, python -m), not a caller's call
        own_process()
    args_list = sys.argv[1:] if argv is None else list(argv)
    from .fast import fast_path

    code = fast_path(args_list)
    if code is not None:
        return code
    parser = build_parser()
    args = _parse(parser, args_list)
    saved = config.overrides()
    if args.quiet:
        config.override(quiet=True)
    if getattr(args, "offline", False):
        config.override(offline=True)  # errors then say it was --offline
    verbosity(args.verbose)
    from . import check, commands, diag, manage

    name = f"cmd_{args.command}"
    handler: Callable[[argparse.Namespace], int] = next(
        getattr(module, name) for module in (commands, manage, check, diag) if hasattr(module, name)
    )
    try:
        config.settings()  # a bad setting is refused before anything runs
        if args.verbose:
            log_setup()
        return handler(args)
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except ModelhubError as exc:
        return report(exc)
    except Exception as exc:  # a bug or an unexpected environment: still one line
        return report(exc)
    finally:
        # A caller's in-process call leaves the process's settings as they were.
        config.clear_overrides()
        config.override(**saved)
        if argv is None:
            leaving()


__all__ = ["EXIT_USAGE", "build_parser", "main", "report"]

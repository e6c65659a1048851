"""Options shared by the subcommands: ``-q``/``-v`` (before or after the subcommand), checked
numbers (``--port``, ``--jobs``) and the per-hub meaning of ``--storage``."""

from __future__ import annotations

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: importing typing costs start-up time
if TYPE_CHECKING:
    import argparse


#: The help of a REF argument: the grammar in short (the README's "References" in full).
REF_HELP = (
    "a model reference: hf:ORG/NAME[@REV][:PATH], tfhub:HANDLE, "
    "kaggle:OWNER/MODEL/FRAMEWORK/VARIATION[/VERSION], onnx:NAME[@OPSET], "
    "torch:NAME[@WEIGHTS] or torch:OWNER/REPO[:REF]/ENTRY, keras:NAME[/notop], url:URL, "
    "or a hub's https URL"
)


def ref_help(what: str) -> str:
    """The help of a REF argument: ``what`` it is for this subcommand, then the grammar."""
    return f"{what}: {REF_HELP}"


#: Two or three examples per subcommand, shown at the end of its --help.
EXAMPLES: dict[str, tuple[str, ...]] = {
    "pull": (
        "modelhub pull onnx:mnist",
        "modelhub pull torch:resnet18 --stage onnx",
        "modelhub pull hf:google-bert/bert-base-uncased --include '*.json' -q",
        "modelhub pull hf:google-bert/bert-base-uncased torch:resnet18 --dry-run",
    ),
    "path": ("modelhub path onnx:mnist", 'python infer.py "$(modelhub path torch:resnet18)"'),
    "info": ("modelhub info onnx:mnist", "modelhub info torch:resnet18 --json"),
    "list": ("modelhub list", "modelhub list --json", "modelhub list --remote s3://team/models"),
    "push": (
        "modelhub push onnx:mnist --remote s3://team/models",
        "MODELHUB_REMOTE=s3://team/models modelhub push onnx:mnist torch:resnet18",
        "modelhub push hf:google-bert/bert-base-uncased -q",
    ),
    "verify": ("modelhub verify", "modelhub verify onnx:mnist --json", "modelhub verify --repair"),
    "rm": ("modelhub rm onnx:mnist", "modelhub rm torch:resnet18 --force"),
    "import": (
        "modelhub import ./model.onnx --as onnx:my-model",
        "modelhub import ./snapshot --as hf:me/my-model --force",
    ),
    "serve": (
        "modelhub serve",
        "modelhub serve --port 0 --root /srv/models",
        "MODELHUB_MIRROR=http://HOST:8080 modelhub pull onnx:mnist   # on another machine",
    ),
    "sync": (
        "modelhub sync                      # modelhub.toml -> modelhub.lock",
        "modelhub sync dev.toml --locked    # exactly dev.lock",
        "modelhub sync --check; [ $? -eq 10 ] && echo 'changed upstream'",
        "modelhub sync prod.toml --dry-run      # what it would download, nothing written",
    ),
    "outdated": ("modelhub outdated", "modelhub outdated onnx:mnist --json"),
    "du": ("modelhub du", "modelhub du --json"),
    "gc": ("modelhub gc --dry-run", "modelhub gc --keep-lock modelhub.lock"),
    "view": ("modelhub view onnx:mnist", "modelhub view torch:resnet18 --original --no-browser"),
    "doctor": (
        "modelhub doctor",
        "modelhub doctor --json",
        "MODELHUB_MIRROR=http://HOST:8080 modelhub doctor",
    ),
    "completion": (
        'eval "$(modelhub completion bash)"   # in ~/.bashrc',
        'eval "$(modelhub completion zsh)"    # in ~/.zshrc',
    ),
    "check": ("modelhub check onnx:mnist --importer dl4j", "modelhub check --all --importer dl4j"),
}


def add_examples(parser: argparse.ArgumentParser, name: str) -> None:
    """End ``parser``'s --help with the examples of subcommand ``name``."""
    import argparse

    lines = EXAMPLES.get(name)
    if lines:
        parser.formatter_class = argparse.RawDescriptionHelpFormatter
        parser.epilog = "examples:\n" + "\n".join(f"  {line}" for line in lines)


def add_common(parser: argparse.ArgumentParser, *, top: bool) -> None:
    """Add ``-q/--quiet`` and ``-v/--verbose`` to ``parser``. On a subcommand they default to
    "not given", so that ``modelhub -q pull`` and ``modelhub pull -q`` mean the same."""
    import argparse

    parser.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        default=False if top else argparse.SUPPRESS,
        help="no progress bars or chatter on stderr (errors still show)",
    )
    parser.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=0 if top else argparse.SUPPRESS,
        help="log what happens on stderr (-vv: debug logs and tracebacks)",
    )


def verbosity(level: int) -> None:
    """Apply ``-v`` (INFO logs on stderr) or ``-vv`` (DEBUG logs, tracebacks on errors)."""
    if not level:
        return
    import logging

    from .. import config

    logging.basicConfig(
        level=logging.DEBUG if level > 1 else logging.INFO,
        format="modelhub: %(name)s: %(message)s",
    )
    if level > 1:
        config.override(debug=True)


def log_setup() -> None:
    """With ``-v``: log once what this command runs against (the store, its link mode, the
    offline switch, whether a mirror is used; never the mirror's URL, which may hold a
    password)."""
    import logging

    from .. import config

    s = config.settings()
    logging.getLogger("modelhub.cli").info(
        "store %s (link mode %s)%s%s",
        s.store_root,
        s.link_mode,
        "; offline" if s.offline else "",
        "; hubs through MODELHUB_MIRROR" if s.mirror else "",
    )


def port(text: str) -> int:
    """An ``argparse`` type: a TCP port, 0-65535 (0: any free port)."""
    import argparse

    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a port: give 1-65535, or 0 for any free port"
        )
    return value


def jobs(text: str) -> int:
    """An ``argparse`` type: a number of parallel jobs, at least 1."""
    import argparse

    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a number of jobs: give 1 or more (leave it out for the default)"
        )
    return value


def storage_help() -> str:
    """``--storage``'s help: what ``compressed`` means on each hub that has a compressed form
    (the registry rows say it, no adapter is imported); every other hub refuses it."""
    from .. import registry

    meanings = [f"{row.name}: {row.compressed}" for row in registry.rows() if row.compressed]
    where = "; ".join(meanings) or "no hub has one"
    return (
        f"uncompressed (default): files as the hub serves them, unpacked; compressed: {where}; "
        "other hubs have no compressed form and refuse it"
    )


__all__ = [
    "EXAMPLES",
    "REF_HELP",
    "add_common",
    "add_examples",
    "jobs",
    "log_setup",
    "port",
    "ref_help",
    "storage_help",
    "verbosity",
]

"""``modelhub doctor`` (what this machine gives modelhub) and ``modelhub completion bash|zsh``
(a completion script generated from the argument parser, so it cannot drift from it)."""

from __future__ import annotations

import argparse

from ..errors import EXIT_ERROR, EXIT_OK
from .jsonout import dumps
from .output import PROG, out, table


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``doctor`` and ``completion`` on ``sub``."""
    p = sub.add_parser(
        "doctor",
        help="check the store, disk, link mode, extras, mirror and caches",
        description="Check what modelhub needs here: the store root and whether it can be "
        "written, free disk, the link mode that works in the store (tried), the extras "
        "installed, the mirror (MODELHUB_MIRROR) reachable, the offline switches, and the "
        "SDK cache folders. Exit 0 when every check passes, 1 otherwise.",
    )
    p.add_argument("--json", action="store_true", help="print the checks as JSON")
    p = sub.add_parser(
        "completion",
        help="print a shell completion script (bash or zsh)",
        description="Print a completion script for SHELL, generated from modelhub's own "
        "options. bash: eval it from ~/.bashrc; zsh: from ~/.zshrc.",
    )
    p.add_argument("shell", choices=["bash", "zsh"], metavar="SHELL", help="bash or zsh")


def cmd_doctor(args: argparse.Namespace) -> int:
    """``modelhub doctor``: one line per check; exit 1 when one fails."""
    from ..doctor import run

    checks = run()
    ok = all(c.ok for c in checks)
    if args.json:
        out(dumps({"ok": ok, "checks": [c.as_dict() for c in checks]}))
    else:
        rows = [
            (c.name, "ok" if c.ok else "FAIL", c.value + (f"  -> {c.hint}" if c.hint else ""))
            for c in checks
        ]
        out(table(rows))
    return EXIT_OK if ok else EXIT_ERROR


# --- completion ---------------------------------------------------------------------------------
def _options(parser: argparse.ArgumentParser) -> tuple[list[str], dict[str, list[str]]]:
    """Every option string of ``parser``, and the choices of those that take a fixed set."""
    flags: list[str] = []
    choices: dict[str, list[str]] = {}
    for action in parser._actions:
        flags += action.option_strings
        if action.option_strings and action.choices:
            for flag in action.option_strings:
                choices[flag] = [str(c) for c in action.choices]
    return flags, choices


def bash_script(parser: argparse.ArgumentParser) -> str:
    """The bash completion function of ``parser`` (its subcommands, options and choices)."""
    subparsers: dict[str, argparse.ArgumentParser] = parser._modelhub_subparsers  # type: ignore[attr-defined]
    top, _ = _options(parser)
    cases = []
    prev_cases: dict[str, list[str]] = {}
    positional: dict[str, list[str]] = {}
    for name, sub in subparsers.items():
        flags, choices = _options(sub)
        cases.append(f'        {name}) opts="{" ".join(flags)}" ;;')
        for flag, values in choices.items():
            prev_cases.setdefault(" ".join(values), []).append(flag)
        for action in sub._actions:
            if not action.option_strings and action.choices:
                positional[name] = [str(c) for c in action.choices]
    prev_lines = [
        f'        {"|".join(sorted(set(flags)))}) COMPREPLY=($(compgen -W "{values}" -- "$cur")); '
        "return ;;"
        for values, flags in prev_cases.items()
    ]
    pos_lines = [
        f'        {name}) COMPREPLY=($(compgen -W "{" ".join(values)}" -- "$cur")); return ;;'
        for name, values in positional.items()
    ]
    return "\n".join(
        [
            f"# {PROG} completion for bash, generated from its argument parser.",
            f'# Use: eval "$({PROG} completion bash)"',
            f"_{PROG}() {{",
            '    local cur="${COMP_WORDS[COMP_CWORD]}" prev="${COMP_WORDS[COMP_CWORD-1]}"',
            "    local cmd='' i",
            "    for ((i = 1; i < COMP_CWORD; i++)); do",
            '        case "${COMP_WORDS[i]}" in -*) ;; *) cmd="${COMP_WORDS[i]}"; break ;; esac',
            "    done",
            '    if [ -z "$cmd" ]; then',
            f'        COMPREPLY=($(compgen -W "{" ".join(subparsers)} {" ".join(top)}" -- "$cur"))',
            "        return",
            "    fi",
            '    case "$prev" in',
            *prev_lines,
            "    esac",
            '    local opts=""',
            '    case "$cmd" in',
            *cases,
            "    esac",
            '    if [[ "$cur" == -* ]]; then',
            '        COMPREPLY=($(compgen -W "$opts" -- "$cur"))',
            '    elif [ "$i" -eq $((COMP_CWORD - 1)) ]; then',
            '        case "$cmd" in',
            *pos_lines,
            "        esac",
            "    fi",
            "}",
            f"complete -o default -o bashdefault -F _{PROG} {PROG}",
            "",
        ]
    )


def zsh_script(parser: argparse.ArgumentParser) -> str:
    """The zsh completion: the bash function through zsh's ``bashcompinit``."""
    return "\n".join(
        [
            f"# {PROG} completion for zsh, generated from its argument parser.",
            f'# Use: eval "$({PROG} completion zsh)"',
            "autoload -U +X compinit && compinit",
            "autoload -U +X bashcompinit && bashcompinit",
            bash_script(parser),
        ]
    )


def cmd_completion(args: argparse.Namespace) -> int:
    """``modelhub completion bash|zsh``: print the script."""
    parser = args.build_parser()  # set by main.build_parser: no import back up into main
    out(bash_script(parser) if args.shell == "bash" else zsh_script(parser))
    return EXIT_OK


__all__ = ["add_parsers", "bash_script", "cmd_completion", "cmd_doctor", "zsh_script"]

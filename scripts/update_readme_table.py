#!/usr/bin/env python3
"""Put the fault table the last run printed into README.md, between its markers.

    python scripts/update_readme_table.py            # README.md <- .cache/fault-table.md
    python scripts/update_readme_table.py --check    # exit 1, with a diff, when they differ

The table is the block the fault-table summary (``tests/faults/summary.py``) printed at the end
of the last run that passed, ran every hub x fault cell and the hostile inputs, and wrote to
``.cache/fault-table.md`` (``$MODELHUB_FAULT_TABLE_DIR`` when set). ``make test`` makes such a
run, then calls this script. README.md holds the table between ``<!-- fault-table:begin -->``
and ``<!-- fault-table:end -->``; nothing else in it changes.

Exit status: 0 written (or, with --check, identical); 1 the block differs (--check), or README.md
has no single marked block; 3 no run has written a table yet.
"""

from __future__ import annotations

import argparse
import difflib
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BEGIN = "<!-- fault-table:begin -->"
END = "<!-- fault-table:end -->"
NO_TABLE = 3


class NoBlockError(ValueError):
    """README.md does not hold exactly one marked fault-table block."""


def default_table() -> Path:
    """Where the summary writes the table: ``$MODELHUB_FAULT_TABLE_DIR``, else ``.cache/``."""
    return Path(os.environ.get("MODELHUB_FAULT_TABLE_DIR") or REPO / ".cache") / "fault-table.md"


def _span(text: str) -> tuple[int, int]:
    """Start and end offsets of the block's content (the lines between the marker lines)."""
    if text.count(BEGIN) != 1 or text.count(END) != 1:
        raise NoBlockError(f"README.md must hold {BEGIN} and {END} exactly once each")
    start = text.index(BEGIN) + len(BEGIN)
    end = text.index(END)
    if end < start or not text.startswith("\n", start) or (end and text[end - 1] != "\n"):
        raise NoBlockError(f"{BEGIN} and {END} must stand on their own lines, in that order")
    return start + 1, end


def read_block(text: str) -> str:
    """The content of the marked block of ``text``."""
    start, end = _span(text)
    return text[start:end]


def with_block(text: str, table: str) -> str:
    """``text`` with the marked block's content replaced by ``table``."""
    start, end = _span(text)
    return text[:start] + table.rstrip("\n") + "\n" + text[end:]


def main(argv: list[str] | None = None) -> int:
    """Write (or with ``--check`` compare) README.md's fault-table block; the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare only; exit 1 on a change")
    parser.add_argument("--readme", type=Path, default=REPO / "README.md")
    parser.add_argument("--table", type=Path, default=None, help="default: .cache/fault-table.md")
    args = parser.parse_args(argv)
    table_path: Path = args.table or default_table()
    if not table_path.is_file():
        print(
            f"update_readme_table: no fault table at {table_path}: no run has written one yet "
            "(a run that passes, runs every hub x fault cell and tests/test_hostile.py does)",
            file=sys.stderr,
        )
        return NO_TABLE
    table = table_path.read_text(encoding="utf-8").rstrip("\n") + "\n"
    readme: Path = args.readme
    text = readme.read_text(encoding="utf-8")
    try:
        current = read_block(text)
    except NoBlockError as exc:
        print(f"update_readme_table: {readme}: {exc}", file=sys.stderr)
        return 1
    if current == table:
        return 0
    if args.check:
        diff = difflib.unified_diff(
            current.splitlines(keepends=True),
            table.splitlines(keepends=True),
            f"{readme.name} (fault-table block)",
            str(table_path),
        )
        sys.stderr.write(
            f"update_readme_table: {readme}'s fault table is not the one the last run printed "
            f"({table_path}); `make test` writes it, or run scripts/update_readme_table.py:\n"
            + "".join(diff)
        )
        return 1
    tmp = readme.with_name(f".{readme.name}.tmp")
    tmp.write_text(with_block(text, table), encoding="utf-8")
    tmp.replace(readme)
    print(f"update_readme_table: {readme} now holds the fault table of {table_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

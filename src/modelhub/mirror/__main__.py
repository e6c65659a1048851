"""``python -m modelhub.mirror ROOT [--host H] [--port N]``: serve a store; print the URL.

The one line on stdout is the bound URL (so a parent process started with ``--port 0`` can
read it); the access log goes to stderr. Stops cleanly on SIGINT or SIGTERM.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .app import serve


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` and serve until interrupted; return the exit code."""
    parser = argparse.ArgumentParser(prog="python -m modelhub.mirror")
    parser.add_argument("root", type=Path)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--tree-page-size", type=int, default=1000)
    args = parser.parse_args(argv)

    def ready(url: str) -> None:
        print(url, flush=True)

    try:
        serve(args.root, args.host, args.port, ready=ready, tree_page_size=args.tree_page_size)
    except OSError as exc:
        print(f"modelhub.mirror: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

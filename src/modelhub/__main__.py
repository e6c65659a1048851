"""``python -m modelhub``: the command line."""

from .cli.main import main

# Guarded: worker processes (modelhub.stager) import the main module again.
if __name__ == "__main__":
    raise SystemExit(main())

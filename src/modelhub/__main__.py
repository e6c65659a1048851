"""``python -m modelhub``: the command line."""

from .cli.main import main

raise SystemExit(main())

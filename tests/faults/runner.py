"""``python -m tests.faults.runner ARGS...``: modelhub's CLI in a fresh process, for a test.

The same ``modelhub.cli.main.main(argv)`` as ``python -m modelhub``; first, when
``FAULTS_TORCH_WEIGHTS`` names a weights file, the test's torchvision model is registered in
this process (torchvision's registry lives in memory, as it does for any model a user's code
registers before calling modelhub).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path


def main() -> int:
    weights = os.environ.get("FAULTS_TORCH_WEIGHTS")
    if weights:
        from tests.faults.hubs import register_faultnet

        register_faultnet(Path(weights).read_bytes())
    from modelhub.cli.main import main as cli

    return cli(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())

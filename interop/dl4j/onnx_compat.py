"""Rewrite an ONNX file into the form Deeplearning4j 1.0.0-M2.1's ONNX importer imports correctly.

A thin command-line wrapper: the rewrite is ``modelhub.staging.onnx_dl4j`` (what ``pull --for
dl4j`` stages as ``<stem>.dl4j.onnx``); why each step exists is measured in FINDINGS.md.

Usage: ``python onnx_compat.py IN.onnx OUT.onnx`` (with modelhub installed).
"""

from __future__ import annotations

import sys

from modelhub.staging.onnx_dl4j import STEPS, make_dl4j_compatible

__all__ = ["STEPS", "main", "make_dl4j_compatible"]


def main(argv: list[str]) -> int:
    """Rewrite ``argv[0]`` into ``argv[1]``; 2 on bad arguments."""
    if len(argv) != 2:
        print("usage: python onnx_compat.py IN.onnx OUT.onnx", file=sys.stderr)
        return 2
    import onnx

    onnx.save(make_dl4j_compatible(onnx.load(argv[0])), argv[1])
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

"""Import-order safety between the deep-learning frameworks modelhub drives in one process.

torch's CUDA builds import ``triton``, whose bundled LLVM crashes the process (SIGSEGV) when
TensorFlow was loaded first; the reverse order is fine. A ``sync`` or a multi-model ``pull``
can stage a TF Hub model and then a torchvision one, so every module that imports torch calls
:func:`torch_import_guard` first: when TensorFlow is already loaded and triton is not, triton
is marked unavailable (torch then treats it as absent, which CPU paths never need).
"""

from __future__ import annotations

import sys


def torch_import_guard() -> None:
    """Make importing torch safe in a process that already loaded TensorFlow."""
    if "torch" in sys.modules or "triton" in sys.modules:
        return
    if "tensorflow" in sys.modules:
        sys.modules["triton"] = None  # type: ignore[assignment]  # import triton → ImportError

"""Import-order safety between the deep-learning frameworks modelhub drives in one process.

torch's CUDA builds import ``triton``, whose bundled LLVM crashes the process (SIGSEGV) when
TensorFlow was loaded first; the reverse order is fine. A ``sync`` or a multi-model ``pull``
can stage a TF Hub model and then a torchvision one, so every module that imports torch calls
:func:`torch_import_guard` first: when TensorFlow is already loaded and triton is not, triton
is marked unavailable (torch then treats it as absent, which CPU paths never need).
"""

from __future__ import annotations

import gc
import sys

# Frameworks whose import leaves ~10^5 long-lived objects behind (torch: ~190k).
_HEAVY = ("torch", "tensorflow", "keras", "transformers", "onnxruntime")
_owned = False
_settled: set[str] = set()


def torch_import_guard() -> None:
    """Make importing torch safe in a process that already loaded TensorFlow."""
    if "torch" in sys.modules or "triton" in sys.modules:
        return
    if "tensorflow" in sys.modules:
        sys.modules["triton"] = None  # type: ignore[assignment]  # import triton → ImportError


def own_process() -> None:
    """Declare this process modelhub's own: the command line, or a staging worker.

    Only then does :func:`settle` change the garbage collector; a program that calls the
    library keeps its own collector policy.
    """
    global _owned
    _owned = True


def owns_process() -> bool:
    """Whether :func:`own_process` was called: modelhub knows everything this process holds."""
    return _owned


def settle() -> None:
    """After importing a deep-learning framework, keep its objects out of the collector's way.

    A framework's import leaves hundreds of thousands of objects that live as long as the
    process; every full collection walks all of them (~150 ms with torch loaded, and once
    more at exit). In a process modelhub owns, the first call after a new framework appeared
    moves every object alive now into the permanent generation (``gc.freeze``, CPython's
    documented tool for long-lived heaps): later collections only walk what came after.
    A no-op elsewhere, and for frameworks already settled.
    """
    if not _owned:
        return
    fresh = {name for name in _HEAVY if name in sys.modules} - _settled
    if fresh:
        _settled.update(fresh)
        gc.freeze()


def leaving() -> None:
    """A process modelhub owns is about to exit: spare it the collector's last full pass.

    Interpreter shutdown collects once more over every object alive: ~70 ms of a ``sync``
    that loaded huggingface_hub, onnx and onnxruntime (measured: 0.12-0.14 s from the last
    atexit handler to the process's end, 0.05 s after this). Nothing the program needs happens
    in that pass: its files are written, closed and published by then, and the memory goes
    back to the system with the process. A no-op in a caller's process.
    """
    if _owned:
        gc.freeze()

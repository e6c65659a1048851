"""The parity check, in one place: staged outputs against the source's, on fixed inputs."""

from __future__ import annotations

import datetime as _dt
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ..errors import ParityError

if TYPE_CHECKING:
    from ..refs import ModelRef
    from ..store import Store

DEFAULT_TOLERANCE = 1e-4
FIXTURE_SUFFIX = ".fixture.npz"


def fixture_path(staged_rel: str) -> str:
    """Where the parity fixture of the staged file ``staged_rel`` lives (beside it)."""
    return staged_rel + FIXTURE_SUFFIX


def write_fixture(
    store: Store,
    ref: ModelRef,
    staged_rel: str,
    inputs: Sequence[Any],
    outputs: Sequence[Any],
) -> dict[str, Any]:
    """Publish the parity fixture of ``staged_rel``: an ``.npz`` (uncompressed) with the seeded
    ``inputs`` as ``input_0``, ``input_1``... and the *source's* ``outputs`` as ``output_0``...
    (in the order of the staged entry's ``inputs``/``outputs``). Returns the manifest's
    ``fixture`` record ``{path, sha256, size}``."""
    import numpy as np

    from ..store.files import sha256_file

    arrays = {f"input_{i}": np.asarray(a) for i, a in enumerate(inputs)}
    arrays.update({f"output_{i}": np.asarray(a) for i, a in enumerate(outputs)})
    rel = fixture_path(staged_rel)
    tmp = store.tmp_dir / f".fixture.{os.getpid()}.{os.urandom(4).hex()}.npz"
    try:
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)  # type: ignore[arg-type]  # numpy's stub: allow_pickle
        sha, size = sha256_file(tmp)
        store.publish(tmp, rel, ref, sha, size)
    finally:
        tmp.unlink(missing_ok=True)
    return {"path": rel, "sha256": sha, "size": size}


def compare(
    reference: Sequence[Any],
    candidate: Sequence[Any],
    *,
    what: str,
    tolerance: float = DEFAULT_TOLERANCE,
    names: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Compare two lists of arrays; return the manifest's parity record.

    Raises ParityError (exit 5) when shapes differ, when a value is not finite in one and finite
    in the other, or when the max absolute difference exceeds ``tolerance``.
    """
    import numpy as np

    if len(reference) != len(candidate):
        raise ParityError(f"{what}: {len(candidate)} outputs, the source has {len(reference)}")
    worst = 0.0
    per_output: dict[str, float] = {}
    for i, (ref, cand) in enumerate(zip(reference, candidate, strict=True)):
        name = names[i] if names and i < len(names) else str(i)
        a = np.asarray(ref)
        b = np.asarray(cand)
        if a.shape != b.shape:
            raise ParityError(f"{what}: output {name} has shape {b.shape}, source {a.shape}")
        if a.dtype.kind in "fc" or b.dtype.kind in "fc":
            a64 = a.astype(np.float64)
            b64 = b.astype(np.float64)
            if not np.array_equal(np.isfinite(a64), np.isfinite(b64)):
                raise ParityError(
                    f"{what}: output {name} has non-finite values where the "
                    "source has none (or the reverse)"
                )
            finite = np.isfinite(a64)
            diff = float(np.max(np.abs(a64[finite] - b64[finite]))) if finite.any() else 0.0
        else:
            diff = float(np.max(np.abs(a.astype(np.int64) - b.astype(np.int64)))) if a.size else 0.0
        per_output[name] = diff
        worst = max(worst, diff)
    if worst > tolerance:
        raise ParityError(
            f"{what}: max abs diff {worst:.3g} exceeds the tolerance {tolerance:g}; "
            "the staged file was not published"
        )
    return {
        "max_abs_diff": worst,
        "tolerance": tolerance,
        "per_output": per_output,
        "checked_on": _dt.datetime.now(_dt.UTC)
        .replace(microsecond=0)
        .isoformat()
        .replace("+00:00", "Z"),
    }

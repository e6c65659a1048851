#!/usr/bin/env python3
"""``modelhub sync --jobs 4`` of real-size ONNX models: heavy staging in workers vs in threads.

Validating an ONNX model (checker, shape inference, an onnxruntime session) holds the GIL: for
a ResNet-50 (100 MB) ~0.6 s of CPU that two threads do no faster than one after the other. With
``--jobs`` > 1, ``modelhub sync`` runs such heavy staging in worker processes
(``modelhub.stager``). This bench measures what that buys on this machine.

``--models`` copies of a torchvision ResNet-50 (random weights, exported once to ONNX into
bench/.data/ with torch; torchvision needed only for that) are imported into a seed store as
``onnx:r50-N`` and served by ``modelhub serve`` in its own process. Each timed run is a whole
child process calling ``modelhub.sync.sync(toml, jobs=4, stage_in_processes=...)`` into a fresh
store (the CLI always uses workers when ``--jobs`` > 1; the API lets the threads-only
comparator run the same code otherwise). One untimed warm-up round, then ``--runs``
interleaved rounds; the ratio compares medians.

    .venv/bin/python bench/sync_heavy.py [--models 4] [--runs 5] [--json out.json]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (
    DATA_DIR,
    Series,
    dump_json,
    fmt_ratio,
    log,
    mirror_serving,
    python_snippet,
    ratio,
    run_main,
    run_process,
    table,
)

EXPORT = """
import sys, torch, torchvision
model = torchvision.models.resnet50(weights=None).eval()
torch.onnx.export(model, (torch.randn(1, 3, 224, 224),), sys.argv[1], input_names=["x"],
                  output_names=["y"], dynamic_axes={"x": {0: "N"}}, dynamo=False)
"""

SYNC = """
import sys
from pathlib import Path
from modelhub.store import Store
from modelhub.sync import sync
if __name__ == "__main__":
    report = sync(Path(sys.argv[1]), jobs=4, store=Store(sys.argv[2]),
                  stage_in_processes=sys.argv[3] == "workers")
    sys.exit(report.exit_code)
"""


def resnet50_onnx() -> Path:
    """The exported ResNet-50, made once."""
    target = DATA_DIR / "sync_heavy" / "resnet50-13.onnx"
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    log("exporting a torchvision ResNet-50 to ONNX (once)")
    part = target.with_suffix(".part")
    run = run_process([*python_snippet(EXPORT), str(part)], exact_rss=False)
    run.check("the ResNet-50 export (needs torch and torchvision)")
    part.rename(target)
    return target


def build_seed(root: Path, work: Path, count: int) -> list[str]:
    """``count`` copies of the model in a seed store; their references."""
    from modelhub.importer import import_path
    from modelhub.refs import parse
    from modelhub.store import Store

    source = resnet50_onnx()
    seed = Store(root)
    refs = []
    for i in range(count):
        copy = work / f"r50-{i}-13.onnx"
        shutil.copyfile(source, copy)
        ref = parse(f"onnx:r50-{i}")
        with seed.lock(ref):
            import_path(seed, copy, ref)
        refs.append(ref.canonical)
    return refs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", type=int, default=4)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    series = {m: Series(f"sync --jobs 4, heavy staging in {m}") for m in ("threads", "workers")}
    with tempfile.TemporaryDirectory(prefix="modelhub-bench-heavy-") as tmp:
        work = Path(tmp)
        (work / "src").mkdir()
        refs = build_seed(work / "seed", work / "src", args.models)
        toml = work / "project" / "modelhub.toml"
        toml.parent.mkdir()
        toml.write_text("".join(f'[[model]]\nref = "{r}"\n\n' for r in refs), encoding="utf-8")
        with mirror_serving(work / "seed", work / "mirror.log") as url:
            env = {"MODELHUB_MIRROR": url, "MODELHUB_QUIET": "1", "NO_PROXY": "127.0.0.1"}
            for rnd in range(args.runs + 1):
                for mode, s in series.items():
                    store = work / f"store-{mode}"
                    (toml.parent / "modelhub.lock").unlink(missing_ok=True)
                    cmd = [*python_snippet(SYNC), str(toml), str(store), mode]
                    run = run_process(cmd, env=env).check(s.label)
                    shutil.rmtree(store, ignore_errors=True)
                    if rnd:  # round 0 warms the page cache and the fork server's imports
                        s.add(run)
                        log(f"round {rnd}/{args.runs} {mode:8} {run.seconds:.2f} s")
    threads, workers = series["threads"], series["workers"]
    print(f"\n{args.models} ResNet-50 ONNX models (~100 MB each) through the mirror on 127.0.0.1")
    print(table([threads, workers]))
    speedup = ratio(threads, workers)
    print(f"\nworkers vs threads (medians): {fmt_ratio(speedup)} faster")
    if args.json:
        dump_json(
            args.json,
            {
                "bench": "sync_heavy",
                "models": args.models,
                "results": {m: s.as_dict() for m, s in series.items()},
                "speedup": speedup,
            },
        )
    return 0


if __name__ == "__main__":
    run_main("sync_heavy", main)

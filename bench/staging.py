#!/usr/bin/env python3
"""Staging cost: modelhub's conversions (parity check included) vs the bare converter call.

Two pairs, each on the same model, each contender a whole child process run ``--runs`` times,
interleaved round by round:

    TF   modelhub  staging.freeze_tf.freeze_saved_model(dir) + write the .pb
                   (load, convert_variables_to_constants_v2, flatness check, parity: the
                   SavedModel and the frozen graph in a fresh session on seeded inputs)
         bare      tf.saved_model.load(dir) + convert_variables_to_constants_v2(serving_default)
                   + write the .pb
         model     a Keras MobileNetV2 (α=1.0, 224×224, seeded random weights) exported as a
                   SavedModel once into bench/.data/staging/
    torch  modelhub  staging.torch_onnx.export_module(...) as torchvision staging calls it
                   (traced on a batch of 2, dynamic batch, opset 17, parity by onnxruntime
                   on fresh values at batch 1: ``--check-batch``)
         bare      torch.onnx.export(..., dynamo=False) with the same arguments
         model     torchvision resnet18, seeded random weights

Each child reports the time of the work alone (after importing the framework; modelhub's
own lazy imports such as onnx and onnxruntime count as work) and the growth of its peak RSS
during the work (``ru_maxrss`` after − before); the parent records the whole process's wall
time and peak RSS (GNU ``/usr/bin/time``). Ratios compare medians of the work time; the goals
(issues 5 and 6) are modelhub ≤ 1.3× bare for both pairs.

Every child runs a full garbage collection just before its timer starts: with a framework
loaded one costs ~150 ms, and whether a contender's window happens to include one depends on
how many objects its set-up left, not on its work. The modelhub children declare themselves
modelhub's own process, as the command line and the staging workers do
(``modelhub._frameworks.own_process``: the framework's objects are then frozen out of later
collections, which also spares the whole process a ~0.3 s collection at exit).

    python bench/staging.py [--runs 5] [--only tf|torch]
        [--tf-python /tmp/venv-tf/bin/python] [--torch-python /tmp/venv-tv/bin/python]
        [--json out.json]

Each half needs an interpreter with its framework and modelhub importable (by default the one
running the bench; a half whose interpreter lacks the framework is reported as skipped).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))

from common import (  # noqa: E402
    DATA_DIR,
    REPO_ROOT,
    BenchError,
    Run,
    Series,
    dump_json,
    fmt_ratio,
    fmt_seconds,
    log,
    run_main,
    run_process,
    table,
)

GOAL = 1.3
SRC = REPO_ROOT / "src"

# --- child programs ---------------------------------------------------------------------------
# Each prints one JSON line on stdout: {"work_s", "cpu_s", "rss_before_kib", "rss_after_kib"}.
_REPORT = """
import gc, json, resource, time
def _rss():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
def _start():
    gc.collect()  # no contender pays, inside its timer, for garbage its set-up left
    return _rss(), time.process_time(), time.perf_counter()
def _figures(start, cpu0, rss0, **extra):
    return json.dumps({"work_s": time.perf_counter() - start,
                       "cpu_s": time.process_time() - cpu0,
                       "rss_before_kib": rss0, "rss_after_kib": _rss(), **extra})
"""

MAKE_SAVED_MODEL = """
import os, sys
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import keras
keras.utils.set_random_seed(0)
model = keras.applications.MobileNetV2(weights=None)
model.export(sys.argv[1], verbose=False)
"""

TF_BARE = (
    _REPORT
    + """
import os, sys
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import tensorflow as tf
from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2
rss0, cpu0, start = _start()
loaded = tf.saved_model.load(sys.argv[1])
frozen = convert_variables_to_constants_v2(loaded.signatures["serving_default"])
data = frozen.graph.as_graph_def().SerializeToString()
with open(sys.argv[2], "wb") as fh:
    fh.write(data)
print(_figures(start, cpu0, rss0))
"""
)

TF_MODELHUB = (
    _REPORT
    + """
import os, sys
from pathlib import Path
from modelhub._frameworks import own_process
own_process()  # as the command line and the staging workers run
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import tensorflow as tf
from modelhub.staging.freeze_tf import freeze_saved_model
rss0, cpu0, start = _start()
frozen = freeze_saved_model(Path(sys.argv[1]))
with open(sys.argv[2], "wb") as fh:
    fh.write(frozen.graph_bytes)
print(_figures(start, cpu0, rss0, parity=frozen.parity["max_abs_diff"]))
"""
)

_TORCH_SETUP = """
import os, sys, warnings
warnings.simplefilter("ignore")
import torch, torchvision
torch.manual_seed(0)
model = torchvision.models.resnet18(weights=None).eval()
gen = torch.Generator().manual_seed(0)
example = torch.randn((2, 3, 224, 224), generator=gen)
check = torch.randn((CHECK_BATCH, 3, 224, 224), generator=gen)
axes = {"input": {0: "batch"}, "output": {0: "batch"}}
"""

TORCH_BARE = (
    _REPORT
    + _TORCH_SETUP
    + """
rss0, cpu0, start = _start()
torch.onnx.export(model, (example,), sys.argv[1], input_names=["input"], output_names=["output"],
                  dynamic_axes=axes, opset_version=17, dynamo=False)
print(_figures(start, cpu0, rss0))
"""
)

TORCH_MODELHUB = (
    _REPORT
    + _TORCH_SETUP
    + """
from pathlib import Path
from modelhub._frameworks import own_process
own_process()  # as the command line and the staging workers run
from modelhub.staging.torch_onnx import export_module
rss0, cpu0, start = _start()
exported = export_module(model, {"input": example}, ["output"], Path(sys.argv[1]),
                         dynamic_axes=axes, check_inputs=[{"input": check}], opset=17)
figures = _figures(start, cpu0, rss0, parity=exported.parity["max_abs_diff"])
# The default staging writes the DL4J form (issue 17): a run that kept the export as it was
# did less work than a staging does, and is not a figure.
assert exported.dl4j.get("dl4j_ready") is True, exported.dl4j
print(figures)
"""
)


# --- measurement ------------------------------------------------------------------------------
@dataclass
class Contender:
    """One child program and its figures: whole-process series plus in-process work figures."""

    label: str
    python: str
    code: str
    process: Series = field(init=False)
    work_s: list[float] = field(default_factory=list)
    cpu_s: list[float] = field(default_factory=list)
    rss_growth_kib: list[int] = field(default_factory=list)
    parity: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.process = Series(self.label)

    def run(self, args: list[str], env: dict[str, str], record: bool = True) -> Run:
        cmd = [self.python, "-c", textwrap.dedent(self.code), *args]
        run = run_process(cmd, env=env).check(self.label)
        lines = [ln for ln in run.stdout.splitlines() if ln.startswith("{")]
        if not lines:
            raise BenchError(f"{self.label} printed no figures: {run.stdout[-300:]!r}")
        figures = json.loads(lines[-1])
        if record:
            self.process.add(run)
            self.work_s.append(float(figures["work_s"]))
            self.cpu_s.append(float(figures["cpu_s"]))
            self.rss_growth_kib.append(
                max(0, int(figures["rss_after_kib"]) - int(figures["rss_before_kib"]))
            )
            if "parity" in figures:
                self.parity.append(float(figures["parity"]))
        return run

    def work_series(self) -> Series:
        series = Series(f"{self.label} (work)")
        series.seconds = list(self.work_s)
        series.rss_kib = list(self.rss_growth_kib)
        return series

    def as_dict(self) -> dict[str, object]:
        return {
            "process": self.process.as_dict(),
            "work_s": self.work_s,
            "work_median_s": statistics.median(self.work_s) if self.work_s else None,
            "cpu_s": self.cpu_s,
            "rss_growth_mib": [round(k / 1024, 1) for k in self.rss_growth_kib],
            "parity_max_abs_diff": max(self.parity) if self.parity else None,
        }


def has_module(python: str, module: str, env: dict[str, str]) -> bool:
    """True when ``python`` can import ``module`` (and modelhub)."""
    code = f"import {module}, modelhub"
    return run_process([python, "-c", code], env=env, exact_rss=False).returncode == 0


def ensure_saved_model(python: str, env: dict[str, str]) -> Path:
    """The bench SavedModel (Keras MobileNetV2, random weights), exported once."""
    folder = DATA_DIR / "staging" / "mobilenet_v2_savedmodel"
    if (folder / "saved_model.pb").is_file():
        return folder
    log(f"exporting a Keras MobileNetV2 SavedModel into {folder} (once)")
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.with_name(folder.name + ".tmp")
    if tmp.exists():
        import shutil

        shutil.rmtree(tmp)
    run_process([python, "-c", MAKE_SAVED_MODEL, str(tmp)], env=env).check("SavedModel export")
    os.replace(tmp, folder)
    return folder


def measure(
    pair: list[Contender], args_for: dict[str, list[str]], env: dict[str, str], runs: int
) -> None:
    """One untimed warm-up round, then ``runs`` interleaved rounds."""
    for contender in pair:
        contender.run(args_for[contender.label], env, record=False)
    for round_no in range(runs):
        for contender in pair:
            contender.run(args_for[contender.label], env)
        log(f"{pair[0].label.split()[0]}: {round_no + 1}/{runs} rounds")


def report(title: str, modelhub: Contender, bare: Contender) -> dict[str, object]:
    """Print the tables and ratios of one pair; return its JSON figures."""
    work = [modelhub.work_series(), bare.work_series()]
    print(f"\n{title}\n")
    print("whole processes (wall time, peak RSS of the process):")
    print(table([modelhub.process, bare.process]))
    print("\nthe staging work alone (in-process; 'peak RSS' = growth of the peak during it):")
    print(table(work))
    med = statistics.median
    work_ratio = med(modelhub.work_s) / med(bare.work_s)
    min_ratio = min(modelhub.work_s) / min(bare.work_s)
    cpu_ratio = med(modelhub.cpu_s) / med(bare.cpu_s)
    process_ratio = modelhub.process.median / bare.process.median
    growth = [max(c.rss_growth_kib) / 1024 for c in (modelhub, bare)]
    print()
    print(f"modelhub / bare, work (median)     {fmt_ratio(work_ratio, GOAL)}")
    print(f"modelhub / bare, work (min)        {fmt_ratio(min_ratio)}")
    print(
        f"modelhub / bare, CPU time (median) {fmt_ratio(cpu_ratio)}   "
        f"({med(modelhub.cpu_s):.2f} s vs {med(bare.cpu_s):.2f} s)"
    )
    print(f"modelhub / bare, whole process     {fmt_ratio(process_ratio)}")
    print(f"peak RSS growth, modelhub vs bare  {growth[0]:.0f} MiB vs {growth[1]:.0f} MiB")
    if modelhub.parity:
        print(f"parity (max abs diff, worst run)   {max(modelhub.parity):.3g}")
    print(
        f"extra time per staging (median)    "
        f"{fmt_seconds(statistics.median(modelhub.work_s) - statistics.median(bare.work_s))}"
    )
    return {
        "work_ratio": work_ratio,
        "work_min_ratio": min_ratio,
        "cpu_ratio": cpu_ratio,
        "process_ratio": process_ratio,
        "goal": GOAL,
        "met": work_ratio <= GOAL,
        "modelhub": modelhub.as_dict(),
        "bare": bare.as_dict(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="runs per contender (default 5)")
    parser.add_argument("--only", choices=["tf", "torch"], help="one half only")
    parser.add_argument("--tf-python", default=sys.executable, help="interpreter with TF/Keras")
    parser.add_argument("--torch-python", default=sys.executable, help="interpreter with torch")
    parser.add_argument(
        "--check-batch",
        type=int,
        default=1,
        help="batch of the torch parity input (default 1, as torchvision staging)",
    )
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args(argv)
    if args.runs < 3:
        parser.error("--runs must be ≥ 3 (min / median / max)")

    # modelhub from this checkout, whichever interpreter runs it; no hub traffic at all.
    env = {
        "PYTHONPATH": os.pathsep.join(filter(None, [str(SRC), os.environ.get("PYTHONPATH")])),
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "MODELHUB_OFFLINE": "1",
    }
    results: dict[str, object] = {"runs": args.runs, "nproc": os.cpu_count()}
    failed = False
    with tempfile.TemporaryDirectory(prefix="modelhub-bench-staging-") as tmp:
        work = Path(tmp)
        if args.only in (None, "tf"):
            if has_module(args.tf_python, "tensorflow", env):
                saved = ensure_saved_model(args.tf_python, env)
                pair = [
                    Contender("tf modelhub freeze_saved_model", args.tf_python, TF_MODELHUB),
                    Contender("tf bare convert_variables_to_constants_v2", args.tf_python, TF_BARE),
                ]
                outs = {c.label: [str(saved), str(work / f"tf{i}.pb")] for i, c in enumerate(pair)}
                measure(pair, outs, env, args.runs)
                results["tf"] = report(
                    f"TF: SavedModel → frozen GraphDef, {saved.name} ({args.runs} runs)", *pair
                )
                failed |= not results["tf"]["met"]  # type: ignore[index]
            else:
                print(f"\nTF half skipped: {args.tf_python} cannot import tensorflow + modelhub")
        if args.only in (None, "torch"):
            if has_module(args.torch_python, "torchvision", env):
                pair = [
                    Contender(
                        "torch modelhub export_module",
                        args.torch_python,
                        TORCH_MODELHUB.replace("CHECK_BATCH", str(args.check_batch)),
                    ),
                    Contender(
                        "torch bare torch.onnx.export",
                        args.torch_python,
                        TORCH_BARE.replace("CHECK_BATCH", str(args.check_batch)),
                    ),
                ]
                outs = {c.label: [str(work / f"t{i}.onnx")] for i, c in enumerate(pair)}
                measure(pair, outs, env, args.runs)
                results["torch"] = report(
                    f"torch: resnet18 → ONNX, dynamic batch, opset 17 ({args.runs} runs)", *pair
                )
                failed |= not results["torch"]["met"]  # type: ignore[index]
            else:
                print(f"\ntorch half skipped: {args.torch_python} cannot import torchvision")
    if args.json:
        dump_json(args.json, {"bench": "staging", **results})
    return 1 if failed else 0


if __name__ == "__main__":
    run_main("staging", main)

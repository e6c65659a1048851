#!/usr/bin/env python3
"""Run every benchmark in bench/ and write BENCHMARKS.md at the repository root.

Each ``bench/*.py`` script (all but this one and ``common.py``) runs as its own process with
``--json``; its console report is kept in ``bench/.data/all/<script>.log`` and every figure of
the run in ``bench/.data/all/run.json`` (``--render`` rewrites the report from it).
BENCHMARKS.md then gives the machine (nproc, memory, CPU model, kernel, load), the date, the
versions of everything measured, the exact command of each bench, and each figure with
min / median / max and its ratio to its comparator (medians, as every bench computes them),
with the goal of the issue that asked for it.

    python bench/all.py                 # full sizes (1 GiB files; ~15 minutes on 2 cores)
    python bench/all.py --quick         # small sizes (128 MiB files, 3 runs; minutes)
    python bench/all.py --only cache_hit,sync [--out BENCHMARKS.md]
    python bench/all.py --render        # rewrite the report from the last run's figures

A bench that fails (or whose dependencies are missing, e.g. the remote tier without boto3/moto)
is listed with its last error line instead of figures; the exit status is then 1. A new
``bench/*.py`` that this file does not know yet is still run (``--json`` only) and its
min/median/max series are listed as found.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
SKIP = {"all.py", "common.py"}


# --- what each bench is run with, and how its figures are read ---------------------------------
@dataclass
class Row:
    """One figure: a min/median/max series, or a derived ratio."""

    figure: str
    runs: int | None = None
    low: float | None = None
    median: float | None = None
    high: float | None = None
    unit: str = "s"
    comparator: str = ""
    ratio: float | None = None
    goal: str = ""
    note: str = ""


@dataclass
class Bench:
    """A bench script, its full and quick arguments and its reader."""

    script: str
    full: list[str]
    quick: list[str]
    read: Callable[[dict[str, Any]], list[Row]]
    title: str = ""
    rows: list[Row] = field(default_factory=list)


def _series(doc: Any, figure: str | None = None, unit: str = "s") -> Row:
    """A Row from a Series.as_dict() (or an error row)."""
    if not isinstance(doc, dict):
        return Row(figure or "?", note="no figures")
    label = figure or str(doc.get("label", "?"))
    if "error" in doc:
        return Row(label, note=f"failed: {doc['error']}")
    return Row(
        label,
        runs=doc.get("runs"),
        low=doc.get("min"),
        median=doc.get("median"),
        high=doc.get("max"),
        unit=unit,
    )


def _ratio(row: Row, other: Row, comparator: str, goal: str = "", invert: bool = False) -> Row:
    """A ratio row: ``row``'s median over ``other``'s (``invert``: other / row, i.e. speed)."""
    if row.median and other.median:
        row.ratio = (other.median / row.median) if invert else (row.median / other.median)
    row.comparator, row.goal = comparator, goal
    row.median = row.runs = None  # the figures are in the rows above; this row is the ratio
    return row


def read_throughput(doc: dict[str, Any]) -> list[Row]:
    res = doc.get("results", {})
    rows = {k: _series(v) for k, v in res.items()}
    out = []
    mh = rows.get("modelhub")
    goals = {"curl": "≤ 0.70×", "hf": "≤ 0.40×"}
    for key, row in rows.items():
        if key != "modelhub" and mh is not None:
            out.append(row)
    if mh is not None:
        out.insert(0, mh)
        for key in ("curl", "hf", "httpx", "cat"):
            if key in rows:
                out.append(
                    _ratio(
                        Row(f"modelhub / {rows[key].figure}", median=mh.median),
                        rows[key],
                        rows[key].figure,
                        goals.get(key, ""),
                    )
                )
        rss = res.get("modelhub", {}).get("peak_rss_mib")
        if rss is not None:
            out.append(Row("modelhub peak RSS", median=rss, unit="MiB", goal="≤ 143 MiB (150 MB)"))
    return out


def read_cache_hit(doc: dict[str, Any]) -> list[Row]:
    res = doc.get("results", {})
    rows = {k: _series(v) for k, v in res.items()}
    out = list(rows.values())
    if "path" in rows and "pass" in rows:
        out.append(
            _ratio(
                Row("modelhub path / python -c pass", median=rows["path"].median),
                rows["pass"],
                "python -c pass",
                "≤ 3.00×",
            )
        )
    if "import" in rows and "pass" in rows:
        out.append(
            _ratio(
                Row("import modelhub.cli / python -c pass", median=rows["import"].median),
                rows["pass"],
                "python -c pass",
            )
        )
    if doc.get("path_peak_rss_mib") is not None:
        out.append(Row("modelhub path peak RSS", median=doc["path_peak_rss_mib"], unit="MiB"))
    return out


def read_mirror(doc: dict[str, Any]) -> list[Row]:
    res = doc.get("results", {})
    out = []
    for clients in (1, doc.get("clients", 8)):
        nginx, mirror = _series(res.get(f"nginx-{clients}")), _series(res.get(f"mirror-{clients}"))
        out += [nginx, mirror]
        speed = nginx.median / mirror.median if nginx.median and mirror.median else None
        out.append(
            Row(
                f"modelhub serve throughput / nginx's, {clients} client(s)",
                comparator=nginx.figure,
                ratio=speed,
                goal="≥ 0.70×",
            )
        )
    return out


def read_hf(doc: dict[str, Any]) -> list[Row]:
    out = []
    dl = {k: _series(v) for k, v in doc.get("download", {}).items()}
    cpu = {
        k: _series(v, f"{_series(v).figure} — CPU", "s CPU")
        for k, v in doc.get("download_cpu", {}).items()
    }
    hit = {k: _series(v) for k, v in doc.get("cache_hit", {}).items()}
    out += [dl[k] for k in ("modelhub", "sdk") if k in dl]
    if "modelhub" in dl and "sdk" in dl:
        out.append(
            _ratio(
                Row("modelhub pull hf: / snapshot_download (wall)", median=dl["modelhub"].median),
                dl["sdk"],
                dl["sdk"].figure,
                "≤ 1.10×",
            )
        )
    out += [cpu[k] for k in ("modelhub", "sdk") if k in cpu]
    if "modelhub" in cpu and "sdk" in cpu:
        out.append(
            _ratio(
                Row(
                    "modelhub / snapshot_download (CPU)",
                    median=cpu["modelhub"].median,
                    unit="s CPU",
                ),
                cpu["sdk"],
                cpu["sdk"].figure,
            )
        )
    out += list(hit.values())
    if "hf" in hit and "path" in hit:
        out.append(
            _ratio(
                Row("hf download (offline) / modelhub path", median=hit["hf"].median),
                hit["path"],
                hit["path"].figure,
                "≥ 5.00×",
            )
        )
    return out


def read_links(doc: dict[str, Any]) -> list[Row]:
    out = []
    part = doc.get("file") or {}
    res = part.get("results", {})
    rows = {k: _series(v) for k, v in res.items()}
    out += list(rows.values())
    mh = rows.get("modelhub")
    if mh is not None:
        for key, goal, speed in (("curl", "≥ 4.00×", True), ("aria2c", "≤ 1.10×", False)):
            if key in rows:
                label = f"{rows[key].figure} / modelhub" if speed else f"modelhub / {key}"
                ratio_row = Row(label, median=mh.median)
                out.append(_ratio(ratio_row, rows[key], rows[key].figure, goal, invert=speed))
        if "hf" in rows:
            ratio_row = Row(f"{rows['hf'].figure} / modelhub", median=mh.median)
            out.append(_ratio(ratio_row, rows["hf"], rows["hf"].figure, invert=True))
        rss = res.get("modelhub", {}).get("peak_rss_mib")
        if rss is not None:
            out.append(Row("modelhub peak RSS (file)", median=rss, unit="MiB"))
    repo = doc.get("repo") or {}
    reps = {k: _series(v) for k, v in repo.get("results", {}).items()}
    out += list(reps.values())
    if "modelhub" in reps and "sdk" in reps:
        ratio_row = Row("snapshot_download / modelhub pull hf:", median=reps["modelhub"].median)
        out.append(_ratio(ratio_row, reps["sdk"], reps["sdk"].figure, "≥ 2.00×", invert=True))
    kill = repo.get("kill")
    if isinstance(kill, dict):
        out.append(
            Row(
                f"kill -9 at {kill['killed_at']:.0%} + re-run: bytes over the repo's",
                ratio=kill["bytes_ratio"],
                goal="< 1.30×",
            )
        )
    return out


def read_sync(doc: dict[str, Any]) -> list[Row]:
    out = []
    for result in doc.get("results", []):
        latency = result.get("latency_ms")
        series = [_series(s) for s in result.get("series", [])]
        out += series
        if len(series) == 2 and result.get("speedup") is not None:
            goal = "≥ 2.50×" if latency else "(loopback: no network wait to overlap)"
            out.append(
                Row(
                    f"speed-up, {latency:g} ms/request",
                    comparator=series[0].figure,
                    ratio=result["speedup"],
                    goal=goal,
                )
            )
    return out


def read_sync_heavy(doc: dict[str, Any]) -> list[Row]:
    res = doc.get("results", {})
    threads, workers = _series(res.get("threads")), _series(res.get("workers"))
    out = [threads, workers]
    if threads.median and workers.median:
        out.append(
            Row(
                "speed-up, heavy staging in workers vs in threads",
                comparator=threads.figure,
                ratio=threads.median / workers.median,
                note="(no goal; peak RSS is the sync process's own, workers excluded)",
            )
        )
    return out


def read_remote(doc: dict[str, Any]) -> list[Row]:
    res = doc.get("results", {})
    rows = {k: _series(v) for k, v in res.items()}
    out = list(rows.values())
    # speed_vs[name] = median time of name / median time of the remote pull: the remote pull's
    # speed relative to that contender (bench/remote.py).
    for key, value in (doc.get("speed_vs") or {}).items():
        if value is not None and key in rows:
            goal = "≥ 0.80×" if key in ("boto3", "s3fs") else ""
            out.append(
                Row(
                    f"speed of modelhub pull (remote) vs {rows[key].figure}",
                    comparator=rows[key].figure,
                    ratio=value,
                    goal=goal,
                )
            )
    return out


def read_staging(doc: dict[str, Any]) -> list[Row]:
    out = []
    for half in ("tf", "torch"):
        part = doc.get(half)
        if not isinstance(part, dict):
            continue
        for who in ("modelhub", "bare"):
            c = part.get(who, {})
            work = c.get("work_s") or []
            if work:
                out.append(
                    Row(
                        f"{half}: {who} conversion (work)",
                        runs=len(work),
                        low=min(work),
                        median=statistics.median(work),
                        high=max(work),
                    )
                )
            process = c.get("process")
            if isinstance(process, dict):
                out.append(_series(process, f"{half}: {who} whole process"))
        if part.get("work_ratio") is not None:
            out.append(
                Row(
                    f"{half}: modelhub / bare (work)",
                    comparator=f"{half}: bare",
                    ratio=part["work_ratio"],
                    goal="≤ 1.30×",
                )
            )
    return out


def read_generic(doc: dict[str, Any]) -> list[Row]:
    """Any Series-shaped dict found anywhere in the document."""
    rows: list[Row] = []

    def walk(node: Any, path: str) -> None:
        if isinstance(node, dict):
            if {"min", "median", "max"} <= set(node) or ("label" in node and "error" in node):
                rows.append(_series(node, node.get("label") or path))
                return
            for key, value in node.items():
                walk(value, f"{path}.{key}" if path else str(key))
        elif isinstance(node, list):
            for i, value in enumerate(node):
                walk(value, f"{path}[{i}]")

    walk(doc, "")
    return rows


KNOWN: dict[str, Bench] = {
    "throughput.py": Bench(
        "throughput.py",
        ["--size-mib", "1024", "--runs", "5"],
        ["--size-mib", "128", "--runs", "3"],
        read_throughput,
        "Large download: modelhub pull vs curl, huggingface_hub, httpx (issue 2)",
    ),
    "cache_hit.py": Bench(
        "cache_hit.py",
        ["--runs", "30"],
        ["--runs", "10"],
        read_cache_hit,
        "A model already in the store: `modelhub path` (issue 2)",
    ),
    "mirror.py": Bench(
        "mirror.py",
        ["--size-mib", "1024", "--runs", "5"],
        ["--size-mib", "128", "--runs", "3"],
        read_mirror,
        "`modelhub serve` vs nginx (issue 3)",
    ),
    "hf.py": Bench(
        "hf.py",
        ["--size-mib", "1024", "--files", "6", "--runs", "3", "--hit-runs", "20"],
        ["--size-mib", "128", "--files", "3", "--runs", "3", "--hit-runs", "10"],
        read_hf,
        "Hugging Face: modelhub pull vs snapshot_download, cache hits (issue 4)",
    ),
    "staging.py": Bench(
        "staging.py",
        ["--runs", "5"],
        ["--runs", "3"],
        read_staging,
        "Staging: modelhub's conversions vs the bare converter call (issue 5)",
    ),
    "sync.py": Bench(
        "sync.py",
        ["--runs", "5", "--latency-ms", "0,40,100"],
        ["--runs", "3", "--latency-ms", "0,40,100"],
        read_sync,
        "`modelhub sync` of 20 models: --jobs 4 vs --jobs 1 (issue 7)",
    ),
    "sync_heavy.py": Bench(
        "sync_heavy.py",
        ["--models", "4", "--runs", "5"],
        ["--models", "2", "--runs", "3"],
        read_sync_heavy,
        "`modelhub sync` of real-size ONNX models: heavy staging in workers vs threads",
    ),
    "links.py": Bench(
        "links.py",
        ["--runs", "3"],
        ["--size-mib", "128", "--repo-mib", "128", "--runs", "3"],
        read_links,
        "A capped link (25 MiB/s a connection, 40 ms RTT): modelhub vs curl, aria2c, "
        "huggingface_hub; an hf: repo vs snapshot_download; kill -9 and resume (issue 20)",
    ),
    "remote.py": Bench(
        "remote.py",
        ["--size-mib", "1024", "--runs", "5"],
        ["--size-mib", "128", "--runs", "3"],
        read_remote,
        "Remote tier (S3): modelhub pull vs boto3 / s3fs (issue 9)",
    ),
}


# --- the machine and the versions ---------------------------------------------------------------
def _first_line(cmd: list[str]) -> str:
    if shutil.which(cmd[0]) is None:
        return "not installed"
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    text = (proc.stdout or proc.stderr).strip().splitlines()
    return text[0] if text else "?"


def machine() -> dict[str, str]:
    """nproc, memory, CPU model, kernel, Python."""
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = "?"
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem = f"{int(line.split()[1]) / 2**20:.1f} GiB"
                break
    except (OSError, ValueError):
        pass
    return {
        "nproc": str(os.cpu_count()),
        "memory": mem,
        "cpu": cpu,
        "kernel": f"{platform.system()} {platform.release()}",
        "python": f"{platform.python_implementation()} {platform.python_version()}",
    }


def versions(python: str) -> dict[str, str]:
    """Versions of modelhub and everything the benches measure against (in ``python``)."""
    packages = [
        "modelhub",
        "huggingface_hub",
        "aiohttp",
        "onnx",
        "onnxruntime",
        "numpy",
        "torch",
        "torchvision",
        "tensorflow",
        "tensorflow-cpu",
        "keras",
        "transformers",
        "httpx",
        "httpx2",
        "boto3",
        "moto",
        "s3fs",
    ]
    code = (
        "import json, importlib.metadata as m\n"
        "out = {}\n"
        f"for p in {packages!r}:\n"
        "    try: out[p] = m.version(p)\n"
        "    except m.PackageNotFoundError: pass\n"
        "print(json.dumps(out))\n"
    )
    found: dict[str, str] = {}
    try:
        out = subprocess.run([python, "-c", code], capture_output=True, text=True, timeout=60)
        found.update(json.loads(out.stdout))
    except (OSError, ValueError, subprocess.TimeoutExpired):
        pass
    found["nginx"] = _first_line(["nginx", "-v"]).removeprefix("nginx version: nginx/")
    found["curl"] = [*_first_line(["curl", "--version"]).split(), "?", "?"][1]
    return found


# --- running ------------------------------------------------------------------------------------
def discover() -> list[str]:
    """Every bench script, known ones in a stable order first."""
    found = sorted(p.name for p in BENCH_DIR.glob("*.py") if p.name not in SKIP)
    order = [name for name in KNOWN if name in found]
    return order + [name for name in found if name not in KNOWN]


def run_one(
    name: str, quick: bool, python: str, logs: Path, timeout: float
) -> tuple[list[str], dict[str, Any] | None, str, float]:
    """Run one bench; return (its command, its JSON or None, its error line, seconds)."""
    bench = KNOWN.get(name)
    args = (bench.quick if quick else bench.full) if bench else []
    with tempfile.TemporaryDirectory(prefix="bench-all-") as tmp:
        out = Path(tmp) / "figures.json"
        cmd = [python, str(BENCH_DIR / name), *args, "--json", str(out)]
        shown = ["python", f"bench/{name}", *args, "--json", "FILE"]
        log_path = logs / f"{name.removesuffix('.py')}.log"
        print(f"[all] {' '.join(shown)}  (log: {log_path})", file=sys.stderr, flush=True)
        started = time.monotonic()
        try:
            with open(log_path, "w", encoding="utf-8") as fh:
                proc = subprocess.run(
                    cmd, stdout=fh, stderr=subprocess.STDOUT, cwd=REPO_ROOT, timeout=timeout
                )
            code = proc.returncode
        except subprocess.TimeoutExpired:
            code = -1
        seconds = time.monotonic() - started
        doc = None
        if out.is_file():
            try:
                doc = json.loads(out.read_text(encoding="utf-8"))
            except ValueError:
                doc = None
    error = ""
    if code == -1:
        error = f"timed out after {timeout:.0f} s"
    elif code != 0 and doc is not None:
        # The bench measured, then exited non-zero: a goal not met or a contender that failed.
        error = (
            f"exit status {code}: a goal above is not met or a contender failed (see {log_path})"
        )
    elif code != 0:
        lines = [
            ln.strip() for ln in log_path.read_text(errors="replace").splitlines() if ln.strip()
        ]
        error = lines[-1] if lines else f"exit status {code}"
    return shown, doc, error, seconds


# --- the report ---------------------------------------------------------------------------------
def _fmt(value: float | None, unit: str) -> str:
    if value is None:
        return ""
    if unit == "s":
        return f"{value:.3f} s" if value >= 1 else f"{value * 1000:.1f} ms"
    if unit.startswith("s "):
        return f"{value:.3f} {unit}"
    return f"{value:.1f} {unit}"


def verdict(row: Row) -> str:
    """``row``'s goal with "met" / "NOT met" when it states one (``≤ 0.70×``, ``< 1.30×``)."""
    goal = row.goal
    parts = goal.split()
    if row.ratio is None or len(parts) < 2 or parts[0] not in ("≤", "≥", "<", ">"):
        return goal
    try:
        bound = float(parts[1].rstrip("×"))
    except ValueError:
        return goal
    r = row.ratio
    met = {"≤": r <= bound, "≥": r >= bound, "<": r < bound, ">": r > bound}[parts[0]]
    return f"{goal}: {'met' if met else '**NOT met**'}"


def table(rows: Iterable[Row]) -> list[str]:
    lines = [
        "| figure | runs | min | median | max | ratio (medians) | comparator | goal |",
        "|---|---:|---:|---:|---:|---:|---|---|",
    ]
    for r in rows:
        ratio = f"**{r.ratio:.2f}×**" if r.ratio is not None else ""
        figure = r.figure + (f" — {r.note}" if r.note else "")
        lines.append(
            f"| {figure} | {r.runs or ''} | {_fmt(r.low, r.unit)} | {_fmt(r.median, r.unit)} | "
            f"{_fmt(r.high, r.unit)} | {ratio} | {r.comparator} | {verdict(r)} |"
        )
    return lines


def render(
    results: list[tuple[str, list[str], dict[str, Any] | None, str, float]],
    quick: bool,
    mach: dict[str, str],
    vers: dict[str, str],
    load: tuple[tuple[float, ...], tuple[float, ...]],
    command: str,
    now: str,
) -> str:
    lines = [
        "# Benchmarks",
        "",
        f"Generated by `{command}` on {now}; do not edit by hand (run it again).",
        "",
        "Every figure is the wall time of whole processes (interpreter start-up, imports, work, "
        "exit) unless it says CPU; min / median / max over the runs; ratios compare **medians**, "
        "as each bench does (see bench/README.md for what each measures and why).",
        "",
        "Sizes: "
        + (
            "**quick** (`--quick`: 128 MiB files, 3 runs; the full sizes are 1 GiB and 3–30 runs)."
            if quick
            else "**full** (1 GiB files, 3–30 runs)."
        ),
        "",
        "## Machine",
        "",
        f"- CPUs (nproc): {mach['nproc']}; CPU model: {mach['cpu']}",
        f"- memory: {mach['memory']}; kernel: {mach['kernel']}",
        f"- {mach['python']}",
        "- load average (1/5/15 min): "
        f"{' '.join(f'{x:.2f}' for x in load[0])} before, "
        f"{' '.join(f'{x:.2f}' for x in load[1])} after "
        "(shared machine: absolute times move with the load; ratios of interleaved runs less so)",
        "",
        "## Versions",
        "",
        ", ".join(f"{k} {v}" for k, v in sorted(vers.items())),
        "",
    ]
    for name, shown, doc, error, seconds in results:
        bench = KNOWN.get(name)
        title = bench.title if bench else f"{name} (not described by bench/all.py)"
        lines += [f"## {name} — {title}", "", f"`{' '.join(shown)}` ({seconds:.0f} s)", ""]
        rows = []
        if doc is not None:
            reader = bench.read if bench else read_generic
            try:
                rows = reader(doc)
            except Exception as exc:  # a bench's JSON this file does not understand
                error = error or f"unreadable figures: {type(exc).__name__}: {exc}"
        if rows:
            lines += table(rows)
            lines.append("")
        if error:
            lines += [f"**Not measured / failed:** {error}", ""]
    return "\n".join(lines).rstrip() + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (minutes, not an hour)")
    parser.add_argument("--only", help="comma-separated scripts, e.g. cache_hit,sync")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "BENCHMARKS.md")
    parser.add_argument("--python", default=sys.executable, help="interpreter for the benches")
    parser.add_argument("--timeout", type=float, default=4 * 3600, help="per bench, seconds")
    parser.add_argument(
        "--render", action="store_true", help="only rewrite the report from the last run's figures"
    )
    args = parser.parse_args(argv)
    logs = BENCH_DIR / ".data" / "all"
    record = logs / "run.json"
    if args.render:
        try:
            run = json.loads(record.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            parser.error(f"no figures of an earlier run in {record}: {exc}")
    else:
        names = discover()
        if args.only:
            wanted = [w if w.endswith(".py") else f"{w}.py" for w in args.only.split(",")]
            unknown = [w for w in wanted if w not in names]
            if unknown:
                parser.error(f"no such bench: {', '.join(unknown)} (have: {', '.join(names)})")
            names = [n for n in names if n in wanted]
        logs.mkdir(parents=True, exist_ok=True)
        load_before = os.getloadavg()
        results = []
        for name in names:
            shown, doc, error, seconds = run_one(name, args.quick, args.python, logs, args.timeout)
            results.append([name, shown, doc, error, seconds])
        command = "python bench/all.py" + (" --quick" if args.quick else "")
        if args.only:
            command += f" --only {args.only}"
        run = {
            "command": command,
            "date": _dt.datetime.now(_dt.UTC).replace(microsecond=0).isoformat(),
            "quick": args.quick,
            "machine": machine(),
            "versions": versions(args.python),
            "load": [load_before, os.getloadavg()],
            "results": results,
        }
        record.write_text(json.dumps(run, indent=1) + "\n", encoding="utf-8")
    text = render(
        [tuple(r) for r in run["results"]],
        run["quick"],
        run["machine"],
        run["versions"],
        (tuple(run["load"][0]), tuple(run["load"][1])),
        run["command"],
        run["date"].replace("+00:00", "Z"),
    )
    args.out.write_text(text, encoding="utf-8")
    print(f"[all] wrote {args.out} (figures: {record})", file=sys.stderr)
    return 1 if any(r[3] for r in run["results"]) else 0


if __name__ == "__main__":
    sys.exit(main())

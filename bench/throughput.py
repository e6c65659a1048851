#!/usr/bin/env python3
"""Download throughput: modelhub vs curl vs huggingface_hub vs a plain httpx stream.

A random file (1 GiB by default, created once under bench/.data) is served by nginx on
127.0.0.1. Each contender is a whole process downloading it to disk, timed from spawn to exit;
the rounds interleave the contenders so that machine noise spreads over all of them.

    modelhub pull url:URL --sha256 HEX     into a fresh store each run (hash verified inline)
    curl -s -o FILE URL                    no hash
    huggingface_hub http_get(url, file)    its own downloader (size check, no hash)
    httpx stream + hashlib.sha256          1 MiB chunks, hash inline
    cat FILE > OUT                         local copy: the floor for this disk

Goals (issue 2): modelhub ≤ 0.7× curl and ≤ 0.4× huggingface_hub (medians), peak RSS ≤ 150 MB.

    .venv/bin/python bench/throughput.py [--size-mib 1024] [--runs 5] [--json out.json]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (
    BenchError,
    Run,
    Series,
    dump_json,
    fmt_ratio,
    log,
    modelhub_command,
    nginx_serving,
    python_snippet,
    random_file,
    ratio,
    run_main,
    run_process,
    table,
    warm_page_cache,
)

HF_GET = """
import sys
from huggingface_hub.file_download import http_get
url, out, size = sys.argv[1], sys.argv[2], int(sys.argv[3])
with open(out, "wb") as fh:
    http_get(url, fh, expected_size=size)
"""

HTTPX_GET = """
import hashlib, sys
try:
    import httpx
except ImportError:  # huggingface_hub 2.x brings the fork, importable as httpx2
    import httpx2 as httpx
url, out, expected = sys.argv[1], sys.argv[2], sys.argv[3]
digest = hashlib.sha256()
with httpx.stream("GET", url, timeout=60) as response, open(out, "wb") as fh:
    response.raise_for_status()
    for chunk in response.iter_bytes(1 << 20):
        digest.update(chunk)
        fh.write(chunk)
if digest.hexdigest() != expected:
    sys.exit("sha256 mismatch")
"""

# A contender: given (url, output dir, sha256, size, source file) -> (command, env).
Command = tuple[list[str], dict[str, str]]
Contender = Callable[[str, Path, str, int, Path], Command]


def _modelhub(url: str, out: Path, sha: str, size: int, src: Path) -> Command:
    cmd = [*modelhub_command(), "pull", f"url:{url}", "--sha256", sha]
    return cmd, {"MODELHUB_PATH": str(out / "store"), "MODELHUB_QUIET": "1"}


def _curl(url: str, out: Path, sha: str, size: int, src: Path) -> Command:
    return ["curl", "-s", "--fail", "-o", str(out / "file.bin"), url], {}


def _hf(url: str, out: Path, sha: str, size: int, src: Path) -> Command:
    return [*python_snippet(HF_GET), url, str(out / "file.bin"), str(size)], {
        "HF_HUB_DISABLE_PROGRESS_BARS": "1",
        "HF_HUB_DISABLE_TELEMETRY": "1",
    }


def _httpx(url: str, out: Path, sha: str, size: int, src: Path) -> Command:
    return [*python_snippet(HTTPX_GET), url, str(out / "file.bin"), sha], {}


def _cat(url: str, out: Path, sha: str, size: int, src: Path) -> Command:
    return ["sh", "-c", 'cat "$0" > "$1"', str(src), str(out / "file.bin")], {}


CONTENDERS: dict[str, tuple[str, Contender]] = {
    "modelhub": ("modelhub pull (sha256)", _modelhub),
    "curl": ("curl -o", _curl),
    "hf": ("huggingface_hub http_get", _hf),
    "httpx": ("httpx stream + sha256", _httpx),
    "cat": ("cat (local copy, floor)", _cat),
}


def _downloaded_size(name: str, run: Run, out: Path) -> int:
    """Size of what the contender wrote (modelhub: the path it printed)."""
    if name == "modelhub":
        lines = [ln for ln in run.stdout.splitlines() if ln.strip()]
        if not lines:
            raise BenchError("modelhub pull printed no path")
        return Path(lines[-1].strip()).stat().st_size
    return (out / "file.bin").stat().st_size


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mib", type=int, default=1024, help="file size (default 1024)")
    parser.add_argument("--runs", type=int, default=5, help="runs per contender (default 5)")
    parser.add_argument(
        "--only",
        default=",".join(CONTENDERS),
        help=f"comma-separated subset of {','.join(CONTENDERS)}",
    )
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = [n for n in names if n not in CONTENDERS]
    if unknown or args.runs < 1 or args.size_mib < 1:
        parser.error(f"bad --only {unknown}" if unknown else "--runs and --size-mib must be ≥ 1")
    if "curl" in names and not shutil.which("curl"):
        log("curl not found: skipping it")
        names.remove("curl")

    src, sha = random_file(args.size_mib)
    size = src.stat().st_size
    warm_page_cache(src)
    series = {name: Series(CONTENDERS[name][0]) for name in names}

    with nginx_serving(src.parent) as base:
        url = f"{base}/{src.name}"
        log(f"serving {src.name} ({args.size_mib} MiB) at {url}")
        for round_no in range(1, args.runs + 1):
            for name in names:
                s = series[name]
                if s.error:
                    continue
                # Same filesystem as the source, removed after each run: every run starts empty.
                with tempfile.TemporaryDirectory(prefix="run-", dir=src.parent) as tmp:
                    out = Path(tmp)
                    cmd, env = CONTENDERS[name][1](url, out, sha, size, src)
                    try:
                        run = run_process(cmd, env=env).check(s.label)
                        got = _downloaded_size(name, run, out)
                        if got != size:
                            raise BenchError(f"{s.label} wrote {got} bytes, expected {size}")
                    except (BenchError, OSError) as exc:
                        s.error = str(exc)
                        log(f"{name}: {exc}")
                        continue
                    s.add(run)
                    log(
                        f"round {round_no}/{args.runs} {name:<9} {run.seconds:7.3f} s  "
                        f"{run.max_rss_kib / 1024:6.1f} MiB"
                    )

    results = [series[n] for n in names]
    print(
        f"\nthroughput: {args.size_mib} MiB from nginx on 127.0.0.1, whole processes, "
        f"{args.runs} runs each (wall time)\n"
    )
    print(table(results, size))
    mh = series.get("modelhub")
    print()
    if mh is not None:
        if "curl" in series:
            print(f"modelhub / curl            {fmt_ratio(ratio(mh, series['curl']), 0.7)}")
        if "hf" in series:
            print(f"modelhub / huggingface_hub {fmt_ratio(ratio(mh, series['hf']), 0.4)}")
        if "httpx" in series:
            print(f"modelhub / httpx stream    {fmt_ratio(ratio(mh, series['httpx']))}")
        if mh.ok:
            peak_mb = max(mh.rss_kib) * 1024 / 1e6
            verdict = "met" if peak_mb <= 150 else "NOT met"
            print(
                f"modelhub peak RSS          {mh.peak_rss_mib:.1f} MiB = {peak_mb:.1f} MB "
                f"(goal ≤ 150 MB: {verdict})"
            )
    if args.json:
        dump_json(
            args.json,
            {
                "bench": "throughput",
                "size_mib": args.size_mib,
                "runs": args.runs,
                "results": {n: series[n].as_dict() for n in names},
            },
        )
    return 0 if all(s.ok for s in results) else 1


if __name__ == "__main__":
    run_main("throughput", main)

#!/usr/bin/env python3
"""A real link's shape: modelhub vs curl vs aria2c vs huggingface_hub, each connection capped.

Loopback lets one connection outrun the disk; the internet does not: a CDN caps each
connection (tens of MB/s) and every request costs a round trip. Here a random file (1 GiB by
default, created once under bench/.data) is served by nginx (and, for huggingface_hub, by
``modelhub serve``'s /hf routes) behind tests/support/shaper.py: ``--rate-mib`` MiB/s per
connection and ``--rtt-ms`` of round trip (default 25 MiB/s, 40 ms). Whole processes, timed
from spawn to exit, contenders interleaved round by round:

    modelhub pull url:URL --sha256 HEX     probe, then as many connections as keep paying
                                           (MODELHUB_CONNECTIONS the ceiling); sha256 + fsync
    curl -s -o FILE URL                    one stream, no hash
    aria2c -x8 -s8 URL                     8 connections, no hash (Debian's ``aria2``: install
                                           it for this bench, ``apt-get install aria2``; skipped
                                           when absent)
    hf_hub_download(repo, file)            huggingface_hub's downloader against the mirror's /hf

Goals (issue 20): modelhub ≥ 4× faster than curl, ≤ 1.1× aria2c's wall time (medians).

    .venv/bin/python bench/links.py [--size-mib 1024] [--runs 3] [--rate-mib 25] [--rtt-ms 40]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (
    DATA_DIR,
    MIB,
    REPO_ROOT,
    BenchError,
    Run,
    Series,
    dump_json,
    fmt_ratio,
    log,
    mirror_serving,
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

sys.path.insert(0, str(REPO_ROOT))
from tests.support.shaper import LinkShaper

REPO_ID = "bench/links"
HF_GET = """
import sys
from huggingface_hub import hf_hub_download
endpoint, repo, name, cache = sys.argv[1:5]
print(hf_hub_download(repo, name, endpoint=endpoint, cache_dir=cache))
"""

Command = tuple[list[str], dict[str, str]]
# (nginx URL of the file, mirror endpoint, output dir, sha256, file name) -> (command, env)
Contender = Callable[[str, str, Path, str, str], Command]


def _modelhub(url: str, hf: str, out: Path, sha: str, name: str) -> Command:
    cmd = [*modelhub_command(), "pull", f"url:{url}", "--sha256", sha]
    return cmd, {"MODELHUB_PATH": str(out / "store"), "MODELHUB_QUIET": "1"}


def _curl(url: str, hf: str, out: Path, sha: str, name: str) -> Command:
    return ["curl", "-s", "--fail", "-o", str(out / "file.bin"), url], {}


def _aria2c(url: str, hf: str, out: Path, sha: str, name: str) -> Command:
    cmd = ["aria2c", "-x8", "-s8", "-q", "--file-allocation=none", "--allow-overwrite=true"]
    return [*cmd, "-d", str(out), "-o", "file.bin", url], {}


def _hf(url: str, hf: str, out: Path, sha: str, name: str) -> Command:
    return [*python_snippet(HF_GET), hf, REPO_ID, name, str(out / "hf-cache")], {
        "HF_HUB_DISABLE_PROGRESS_BARS": "1",
        "HF_HUB_DISABLE_TELEMETRY": "1",
    }


CONTENDERS: dict[str, tuple[str, Contender]] = {
    "modelhub": ("modelhub pull (sha256, fsync)", _modelhub),
    "curl": ("curl -o (one stream)", _curl),
    "aria2c": ("aria2c -x8 -s8", _aria2c),
    "hf": ("huggingface_hub hf_hub_download", _hf),
}


def _written(name: str, run: Run, out: Path) -> Path:
    if name in ("modelhub", "hf"):
        lines = [ln.strip() for ln in run.stdout.splitlines() if ln.strip()]
        if not lines:
            raise BenchError(f"{name} printed no path")
        return Path(lines[-1])
    return out / "file.bin"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mib", type=int, default=1024, help="file size (default 1024)")
    parser.add_argument("--runs", type=int, default=3, help="runs per contender (default 3)")
    parser.add_argument("--rate-mib", type=float, default=25.0, help="MiB/s per connection")
    parser.add_argument("--rtt-ms", type=float, default=40.0, help="round trip (default 40)")
    parser.add_argument("--only", default=",".join(CONTENDERS), help="comma-separated subset")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.only.split(",") if n.strip()]
    if [n for n in names if n not in CONTENDERS] or args.runs < 1 or args.size_mib < 1:
        parser.error(f"--only takes {','.join(CONTENDERS)}; --runs, --size-mib ≥ 1")
    for name, tool in (("curl", "curl"), ("aria2c", "aria2c")):
        if name in names and not shutil.which(tool):
            log(f"{tool} not found: skipping it (aria2c: apt-get install aria2)")
            names.remove(name)

    src, sha = random_file(args.size_mib)
    size = src.stat().st_size
    warm_page_cache(src)
    series = {name: Series(CONTENDERS[name][0]) for name in names}
    rate, rtt = args.rate_mib * MIB, args.rtt_ms / 1000

    with tempfile.TemporaryDirectory(prefix="links-", dir=DATA_DIR) as tmp:
        work = Path(tmp)
        seed = work / "seed"
        if "hf" in names:
            snapshot = work / "snapshot"
            snapshot.mkdir()
            os.link(src, snapshot / src.name)  # a one-file repo: the same bytes, no copy
            run_process(
                [*modelhub_command(), "import", str(snapshot), "--as", f"hf:{REPO_ID}"],
                env={"MODELHUB_PATH": str(seed), "MODELHUB_QUIET": "1"},
            ).check("modelhub import")
        else:
            seed.mkdir()
        with (
            nginx_serving(src.parent) as base,
            mirror_serving(seed) as mirror,
            LinkShaper(base, rate=rate, rtt=rtt) as link,
            LinkShaper(mirror, rate=rate, rtt=rtt) as hf_link,
        ):
            url = f"{link.url}/{src.name}"
            hf = f"{hf_link.url}/hf"
            log(f"{src.name} ({args.size_mib} MiB) at {url}: {args.rate_mib:g} MiB/s, {rtt:g} s")
            for round_no in range(1, args.runs + 1):
                for name in names:
                    s = series[name]
                    if s.error:
                        continue
                    with tempfile.TemporaryDirectory(prefix="run-", dir=DATA_DIR) as run_tmp:
                        out = Path(run_tmp)
                        cmd, env = CONTENDERS[name][1](url, hf, out, sha, src.name)
                        os.sync()
                        before = link.connections + hf_link.connections
                        try:
                            run = run_process(cmd, env=env).check(s.label)
                            got = _written(name, run, out).stat().st_size
                            if got != size:
                                raise BenchError(f"{s.label} wrote {got} bytes, expected {size}")
                        except (BenchError, OSError) as exc:
                            s.error = str(exc)
                            log(f"{name}: {exc}")
                            continue
                        s.add(run)
                        conns = link.connections + hf_link.connections - before
                        log(
                            f"round {round_no}/{args.runs} {name:<9} {run.seconds:7.3f} s  "
                            f"{conns} connection(s)"
                        )

    results = [series[n] for n in names]
    print(
        f"\nlinks: {args.size_mib} MiB through a shaper at {args.rate_mib:g} MiB/s per "
        f"connection, {args.rtt_ms:g} ms RTT; whole processes, {args.runs} runs (wall time)\n"
    )
    print(table(results, size))
    mh = series.get("modelhub")
    print()
    if mh is not None:
        if "curl" in series:
            r = ratio(series["curl"], mh)
            print(f"curl / modelhub            {fmt_ratio(r, 4.0, le=False)}  (times faster)")
        if "aria2c" in series:
            print(f"modelhub / aria2c -x8      {fmt_ratio(ratio(mh, series['aria2c']), 1.1)}")
        if "hf" in series:
            print(f"hf_hub_download / modelhub {fmt_ratio(ratio(series['hf'], mh))}")
    if args.json:
        dump_json(
            args.json,
            {
                "bench": "links",
                "size_mib": args.size_mib,
                "rate_mib": args.rate_mib,
                "rtt_ms": args.rtt_ms,
                "runs": args.runs,
                "results": {n: series[n].as_dict() for n in names},
            },
        )
    return 0 if all(s.ok for s in results) else 1


if __name__ == "__main__":
    run_main("links", main)

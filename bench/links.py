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

The ``repo`` part does the same for a Hugging Face repo of ``--repo-files`` random shards
(``--repo-mib`` in all, default 4 × 256 MiB, plus a config.json) imported into a seed store and
served by ``modelhub serve`` behind the same shaper:

    modelhub pull hf:bench/links-repo      the engine: 4 files at once, each over as many
                                           connections as keep paying; sha256 against the oid
    snapshot_download(repo, endpoint=)     huggingface_hub alone (8 threads, one stream a file)

then a ``modelhub pull`` is killed (SIGKILL) once 60 % of the repo's bytes went through the
shaper, and run again: the bytes the shaper delivered to both processes, over the repo's size.

Goals (issue 20): modelhub ≥ 4× faster than curl, ≤ 1.1× aria2c's wall time; the repo ≥ 2×
faster than snapshot_download; kill at 60 % + re-run < 1.3× the repo's bytes (medians).

    .venv/bin/python bench/links.py [--part file,repo] [--size-mib 1024] [--repo-mib 1024]
        [--repo-files 4] [--runs 3] [--rate-mib 25] [--rtt-ms 40] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

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
from hf import QUIET_HF, SNAPSHOT_DOWNLOAD, make_repo, tree_sizes
from tests.support.shaper import LinkShaper

REPO_ID = "bench/links"
REPO_REPO = "bench/links-repo"
KILL_AT = 0.6
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


def bench_file(args: argparse.Namespace, names: list[str]) -> dict[str, Any]:
    """The one-file part: every contender in ``names``, interleaved; print the table."""
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

    print(
        f"\nlinks: {args.size_mib} MiB through a shaper at {args.rate_mib:g} MiB/s per "
        f"connection, {args.rtt_ms:g} ms RTT; whole processes, {args.runs} runs (wall time)\n"
    )
    print(table([series[n] for n in names], size))
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
    return {
        "size_mib": args.size_mib,
        "results": {n: series[n].as_dict() for n in names},
        "ok": all(series[n].ok for n in names),
    }


def _hf_env(out: Path, endpoint: str) -> dict[str, str]:
    return {
        **QUIET_HF,
        "HF_HUB_CACHE": str(out / "hf-cache"),
        "MODELHUB_PATH": str(out / "store"),
        "MODELHUB_HF_URL": endpoint,
    }


def _repo_command(name: str, endpoint: str, env: dict[str, str]) -> list[str]:
    if name == "modelhub":
        return [*modelhub_command(), "pull", f"hf:{REPO_REPO}"]
    return [*python_snippet(SNAPSHOT_DOWNLOAD), REPO_REPO, endpoint, env["HF_HUB_CACHE"]]


def _check_store(env: dict[str, str], hashes: dict[str, str]) -> None:
    """The pulled model's manifest lists every file with the sha256 the bench wrote."""
    info = run_process([*modelhub_command(), "info", f"hf:{REPO_REPO}", "--json"], env=env)
    doc = json.loads(info.check("modelhub info").stdout)
    prefix = f"huggingface/{REPO_REPO}/"
    got = {f["path"].removeprefix(prefix): f["sha256"] for f in doc["files"]}
    if got != hashes:
        raise BenchError(f"manifest sha256 {got} differ from the files' {hashes}")


def _kill_and_resume(
    link: LinkShaper, endpoint: str, work: Path, total: int, hashes: dict[str, str]
) -> dict[str, Any]:
    """``modelhub pull`` SIGKILLed once KILL_AT of the repo went through ``link``, then run
    again to the end: the bytes the link delivered to both, and the re-run's wall time."""
    out = work / "kill"
    env = _hf_env(out, endpoint)
    cmd = _repo_command("modelhub", endpoint, env)
    before = link.delivered
    proc = subprocess.Popen(
        cmd,
        env={**os.environ, **env},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    killed_at = 0
    try:
        while proc.poll() is None:
            killed_at = link.delivered - before
            if killed_at >= KILL_AT * total:
                proc.send_signal(signal.SIGKILL)
                break
            time.sleep(0.01)
    finally:
        proc.wait()
    if proc.returncode != -signal.SIGKILL:
        raise BenchError(f"modelhub pull ended ({proc.returncode}) before {KILL_AT:.0%}")
    rerun = run_process(cmd, env=env).check("modelhub pull (re-run)")
    _check_store(env, hashes)
    moved = link.delivered - before
    log(
        f"kill -9 at {killed_at / total:.0%} of the repo, re-run {rerun.seconds:.3f} s: "
        f"{moved / total:.3f}× the repo's bytes in all"
    )
    shutil.rmtree(out)
    return {"killed_at": killed_at / total, "bytes_ratio": moved / total, "rerun_s": rerun.seconds}


def bench_repo(args: argparse.Namespace) -> dict[str, Any]:
    """The repo part: modelhub pull hf: vs snapshot_download behind the shaper; then kill -9."""
    src, hashes = make_repo(args.repo_mib, args.repo_files)
    sizes = tree_sizes(src)
    total = sum(sizes.values())
    rate, rtt = args.rate_mib * MIB, args.rtt_ms / 1000
    series = {
        "modelhub": Series("modelhub pull hf: (engine)"),
        "sdk": Series("huggingface_hub snapshot_download"),
    }
    with tempfile.TemporaryDirectory(prefix="links-repo-", dir=DATA_DIR) as tmp:
        work = Path(tmp)
        seed = {"MODELHUB_PATH": str(work / "seed"), "MODELHUB_QUIET": "1"}
        run_process(
            [*modelhub_command(), "import", str(src), "--as", f"hf:{REPO_REPO}"], env=seed
        ).check("modelhub import")
        for path in (work / "seed").rglob("*"):
            if path.is_file():
                warm_page_cache(path)
        with mirror_serving(work / "seed") as mirror, LinkShaper(mirror, rate, rtt) as link:
            endpoint = f"{link.url}/hf"
            log(f"hf:{REPO_REPO}: {len(sizes)} files, {total / MIB:.0f} MiB at {endpoint}")
            for round_no in range(1, args.runs + 1):
                order = ["modelhub", "sdk"] if round_no % 2 else ["sdk", "modelhub"]
                for name in order:
                    out = work / f"run-{name}-{round_no}"
                    env = _hf_env(out, endpoint)
                    os.sync()
                    before = link.connections
                    run = run_process(_repo_command(name, endpoint, env), env=env)
                    run.check(series[name].label)
                    lines = [ln.strip() for ln in run.stdout.splitlines() if ln.strip()]
                    got = tree_sizes(Path(lines[-1])) if lines else {}
                    if got != sizes:
                        raise BenchError(f"{series[name].label} produced {got}, not {sizes}")
                    if name == "modelhub" and round_no == 1:
                        _check_store(env, hashes)
                    series[name].add(run)
                    log(
                        f"repo round {round_no}/{args.runs} {name:<8} {run.seconds:7.3f} s  "
                        f"{link.connections - before} connection(s)"
                    )
                    shutil.rmtree(out)
            kill = _kill_and_resume(link, endpoint, work, total, hashes)
    print(
        f"\nlinks, repo: hf:{REPO_REPO} ({len(sizes)} files, {total / MIB:.0f} MiB) from "
        f"modelhub serve through the shaper at {args.rate_mib:g} MiB/s per connection, "
        f"{args.rtt_ms:g} ms RTT; whole processes, {args.runs} runs (wall time)\n"
    )
    print(table(list(series.values()), total))
    r = ratio(series["sdk"], series["modelhub"])
    print(f"\nsnapshot_download / modelhub  {fmt_ratio(r, 2.0, le=False)}  (times faster)")
    print(
        f"kill -9 at {kill['killed_at']:.0%} + re-run: {kill['bytes_ratio']:.3f}× the repo's "
        f"bytes (goal < 1.3×)"
    )
    return {
        "repo_mib": args.repo_mib,
        "files": len(sizes),
        "results": {n: s.as_dict() for n, s in series.items()},
        "sdk_over_modelhub": r,
        "kill": kill,
        "ok": kill["bytes_ratio"] < 1.3,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--part", default="file,repo", help="file, repo or both (default)")
    parser.add_argument("--size-mib", type=int, default=1024, help="file size (default 1024)")
    parser.add_argument("--repo-mib", type=int, default=1024, help="repo size (default 1024)")
    parser.add_argument("--repo-files", type=int, default=4, help="repo shards (default 4)")
    parser.add_argument("--runs", type=int, default=3, help="runs per contender (default 3)")
    parser.add_argument("--rate-mib", type=float, default=25.0, help="MiB/s per connection")
    parser.add_argument("--rtt-ms", type=float, default=40.0, help="round trip (default 40)")
    parser.add_argument("--only", default=",".join(CONTENDERS), help="file part: a subset")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args(argv)
    parts = [p.strip() for p in args.part.split(",") if p.strip()]
    names = [n.strip() for n in args.only.split(",") if n.strip()]
    if [n for n in names if n not in CONTENDERS] or not set(parts) <= {"file", "repo"}:
        parser.error(f"--only takes {','.join(CONTENDERS)}; --part file, repo or file,repo")
    if min(args.runs, args.size_mib, args.repo_mib, args.repo_files) < 1 or not parts:
        parser.error("--runs, --size-mib, --repo-mib, --repo-files must be ≥ 1")
    for name, tool in (("curl", "curl"), ("aria2c", "aria2c")):
        if name in names and not shutil.which(tool):
            log(f"{tool} not found: skipping it (aria2c: apt-get install aria2)")
            names.remove(name)
    figures: dict[str, Any] = {
        "bench": "links",
        "rate_mib": args.rate_mib,
        "rtt_ms": args.rtt_ms,
        "runs": args.runs,
    }
    if "file" in parts:
        figures["file"] = bench_file(args, names)
    if "repo" in parts:
        figures["repo"] = bench_repo(args)
    if args.json:
        dump_json(args.json, figures)
    return 0 if all(figures[p]["ok"] for p in parts) else 1


if __name__ == "__main__":
    run_main("links", main)

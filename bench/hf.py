#!/usr/bin/env python3
"""Hugging Face: ``modelhub pull hf:`` vs ``huggingface_hub.snapshot_download``, and cache hits.

A multi-file repo (``--size-mib`` in total, default 1024, split into ``--files`` random
safetensors shards plus a config.json; created once under bench/.data) is imported into a seed
store and served by ``modelhub serve`` in its own process on 127.0.0.1. Whole processes are
timed, contenders interleaved round by round.

(a) download, fresh store and fresh HF cache every run, same server:

    modelhub pull hf:bench/big-model            snapshot_download + links + sha256 per file
    python -c snapshot_download(..., endpoint=)  the SDK alone (size check only)

(b) cache hit, the server stopped, ``HF_HUB_OFFLINE=1``:

    modelhub path hf:bench/big-model            answered from the store's manifest
    hf download bench/big-model                  the SDK's CLI, from its cache
    modelhub pull hf:bench/big-model            the same, through pull
    python -c pass                               the interpreter's floor

Goals (issue 4): (a) modelhub ≤ 1.1× snapshot_download; (b) modelhub path ≥ 5× faster than
hf download (medians).

    python bench/hf.py [--size-mib 1024] [--files 6] [--runs 3] [--hit-runs 20] [--json out.json]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (
    DATA_DIR,
    MIB,
    BenchError,
    Run,
    Series,
    dump_json,
    fmt_ratio,
    log,
    mirror_serving,
    modelhub_command,
    python_snippet,
    ratio,
    run_main,
    run_process,
    table,
    warm_page_cache,
)

REPO = "bench/big-model"
REF = f"hf:{REPO}"

SNAPSHOT_DOWNLOAD = """
import sys
from huggingface_hub import snapshot_download
print(snapshot_download(sys.argv[1], endpoint=sys.argv[2], cache_dir=sys.argv[3]))
"""

QUIET_HF = {
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "HF_HUB_DISABLE_IMPLICIT_TOKEN": "1",
    "MODELHUB_QUIET": "1",
}


# --------------------------------------------------------------------------- data


def make_repo(size_mib: int, files: int) -> tuple[Path, dict[str, str]]:
    """A snapshot folder of ``files`` random shards (``size_mib`` in all) + config.json.

    Created once under DATA_DIR; returns (folder, {repo path: sha256}).
    """
    folder = DATA_DIR / f"hf-repo-{size_mib}MiB-{files}"
    sums = folder.with_suffix(".sha256.json")
    if folder.is_dir() and sums.is_file():
        return folder, json.loads(sums.read_text())
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    log(f"creating {folder} ({size_mib} MiB of random bytes in {files} shards, once)")
    shares = [size_mib // files + (1 if i < size_mib % files else 0) for i in range(files)]
    hashes: dict[str, str] = {}
    for i, mib in enumerate(shares, 1):
        name = f"model-{i:05d}-of-{files:05d}.safetensors"
        digest = hashlib.sha256()
        with (folder / name).open("wb") as fh:
            for _ in range(mib):
                block = os.urandom(MIB)
                digest.update(block)
                fh.write(block)
        hashes[name] = digest.hexdigest()
    config = json.dumps({"model_type": "bench", "shards": files}).encode()
    (folder / "config.json").write_bytes(config)
    hashes["config.json"] = hashlib.sha256(config).hexdigest()
    sums.write_text(json.dumps(hashes, indent=1, sort_keys=True) + "\n")
    return folder, hashes


def tree_sizes(folder: Path) -> dict[str, int]:
    """Every file under ``folder`` (its path relative to it) and its size."""
    return {
        p.relative_to(folder).as_posix(): p.stat().st_size for p in folder.rglob("*") if p.is_file()
    }


def run_with_cpu(cmd: list[str], env: dict[str, str]) -> tuple[Run, float]:
    """``run_process`` plus the process's CPU time (user + sys, all its threads), in seconds.

    CPU time is what the process itself did; on a shared, loaded machine it moves much less
    than wall time, so it shows extra work (hashing, copying) that wall time would hide in noise.
    """
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=err, env={**os.environ, **env}
        )
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - start
        out.seek(0)
        err.seek(0)
        run = Run(
            seconds=seconds,
            max_rss_kib=int(usage.ru_maxrss),
            returncode=os.waitstatus_to_exitcode(status),
            stdout=out.read().decode(errors="replace"),
            stderr=err.read().decode(errors="replace"),
        )
    return run, usage.ru_utime + usage.ru_stime


def _last_line(run: Run, what: str) -> Path:
    lines = [ln.strip() for ln in run.stdout.splitlines() if ln.strip()]
    if not lines:
        raise BenchError(f"{what} printed no path")
    return Path(lines[-1])


# --------------------------------------------------------------------------- (a) download


def bench_download(
    url: str, work: Path, sizes: dict[str, int], hashes: dict[str, str], runs: int
) -> tuple[dict[str, Series], dict[str, Series], dict[str, str]]:
    """Interleaved rounds of both contenders; return wall and CPU series, the last run's env."""
    endpoint = f"{url}/hf"
    series = {
        "modelhub": Series("modelhub pull hf: (links + sha256)"),
        "sdk": Series("huggingface_hub snapshot_download"),
    }
    cpu = {name: Series(s.label) for name, s in series.items()}
    keep: dict[str, str] = {}
    for round_no in range(1, runs + 1):
        # Alternate who goes first: the order within a round is no one's advantage.
        order = ["modelhub", "sdk"] if round_no % 2 else ["sdk", "modelhub"]
        for name in order:
            s = series[name]
            run_dir = work / f"run-{name}-{round_no}"
            env = {**QUIET_HF, "HF_HUB_CACHE": str(run_dir / "hf-cache")}
            if name == "modelhub":
                env.update(MODELHUB_PATH=str(run_dir / "store"), MODELHUB_HF_URL=endpoint)
                cmd = [*modelhub_command(), "pull", REF]
            else:
                cmd = [*python_snippet(SNAPSHOT_DOWNLOAD), REPO, endpoint, env["HF_HUB_CACHE"]]
            os.sync()  # the previous run's dirty pages are not this run's cost
            run, cpu_seconds = run_with_cpu(cmd, env)
            run.check(s.label)
            got = tree_sizes(_last_line(run, s.label))
            if got != sizes:
                raise BenchError(f"{s.label} produced {got}, expected {sizes}")
            if name == "modelhub" and round_no == 1:
                _check_manifest(env, hashes)
            s.add(run)
            cpu[name].seconds.append(cpu_seconds)
            log(
                f"(a) round {round_no}/{runs} {name:<8} {run.seconds:7.3f} s "
                f"(cpu {cpu_seconds:.3f} s)"
            )
            if round_no == runs and name == "modelhub" and not keep:
                keep = env  # the store and cache the cache-hit runs use
            else:
                shutil.rmtree(run_dir)
    return series, cpu, keep


def _check_manifest(env: dict[str, str], hashes: dict[str, str]) -> None:
    """modelhub's manifest lists every file with the sha256 the bench wrote."""
    info = run_process([*modelhub_command(), "info", REF, "--json"], env=env).check("info")
    doc = json.loads(info.stdout)
    got = {f["path"].removeprefix(f"huggingface/{REPO}/"): f["sha256"] for f in doc["files"]}
    if got != hashes:
        raise BenchError(f"manifest sha256 {got} differ from the files' {hashes}")
    log(f"manifest: {len(got)} files, sha256 of each as written; link modes {_modes(doc)}")


def _modes(doc: dict[str, object]) -> object:
    details = doc.get("details")
    return details.get("link_modes") if isinstance(details, dict) else None


# --------------------------------------------------------------------------- (b) cache hit


def bench_cache_hit(env: dict[str, str], runs: int) -> dict[str, Series]:
    """``modelhub path`` / ``pull`` vs ``hf download``, all offline, interleaved."""
    hf_cli = Path(sys.executable).parent / "hf"
    if not hf_cli.exists():
        raise BenchError(f"no hf command beside {sys.executable}")
    offline = {**env, "HF_HUB_OFFLINE": "1", "MODELHUB_HF_URL": "http://127.0.0.1:9/hf"}
    commands = {
        "path": ("modelhub path hf:", [*modelhub_command(), "path", REF]),
        "hf": ("hf download (HF_HUB_OFFLINE=1)", [str(hf_cli), "download", REPO]),
        "pull": ("modelhub pull hf: (present)", [*modelhub_command(), "pull", REF]),
        "pass": ("python -c pass", [sys.executable, "-c", "pass"]),
    }
    store_folder = Path(env["MODELHUB_PATH"]) / "huggingface" / REPO
    for _ in range(2):  # untimed warm-up; also checks every command answers
        for key, (label, cmd) in commands.items():
            run = run_process(cmd, env=offline, exact_rss=False).check(label)
            if key in ("path", "pull") and _last_line(run, label) != store_folder:
                raise BenchError(f"{label} printed {run.stdout.strip()!r}")
            if key == "hf" and _last_line(run, label).parent.name != "snapshots":
                raise BenchError(f"{label} printed {run.stdout.strip()!r}")
    series = {key: Series(label) for key, (label, _) in commands.items()}
    for round_no in range(1, runs + 1):
        for key, (label, cmd) in commands.items():
            series[key].add(run_process(cmd, env=offline, exact_rss=False).check(label))
        if round_no % 10 == 0:
            log(f"(b) {round_no}/{runs} rounds")
    return series


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mib", type=int, default=1024, help="repo size (default 1024)")
    parser.add_argument("--files", type=int, default=6, help="weight shards (default 6)")
    parser.add_argument("--runs", type=int, default=3, help="download runs each (default 3)")
    parser.add_argument("--hit-runs", type=int, default=20, help="cache-hit runs (default 20)")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args(argv)
    if min(args.size_mib, args.files, args.runs, args.hit_runs) < 1:
        parser.error("--size-mib, --files, --runs and --hit-runs must be ≥ 1")

    src, hashes = make_repo(args.size_mib, args.files)
    sizes = tree_sizes(src)
    total = sum(sizes.values())
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    # Same filesystem as the data (links and renames stay local); removed at the end.
    with tempfile.TemporaryDirectory(prefix="hf-bench-", dir=DATA_DIR) as tmp:
        work = Path(tmp)
        seed = {"MODELHUB_PATH": str(work / "seed"), "MODELHUB_QUIET": "1"}
        log(f"importing {src.name} into a seed store as {REF}")
        run_process([*modelhub_command(), "import", str(src), "--as", REF], env=seed).check(
            "modelhub import"
        )
        for path in (work / "seed" / "huggingface" / REPO).rglob("*"):
            if path.is_file():
                warm_page_cache(path)
        with mirror_serving(work / "seed") as url:
            log(f"modelhub serve at {url}; {len(sizes)} files, {total / MIB:.0f} MiB")
            download, cpu, env = bench_download(url, work, sizes, hashes, args.runs)
        hit = bench_cache_hit(env, args.hit_runs)

    print(
        f"\n(a) download: {REF}, {len(sizes)} files, {total / MIB:.0f} MiB from modelhub serve "
        f"on 127.0.0.1, fresh store + HF cache each run, {args.runs} runs (wall time)\n"
    )
    print(table(list(download.values()), total))
    a = ratio(download["modelhub"], download["sdk"])
    pairs = [
        m / s for m, s in zip(download["modelhub"].seconds, download["sdk"].seconds, strict=True)
    ]
    paired = statistics.median(pairs)
    print(f"\nmodelhub pull / snapshot_download   {fmt_ratio(a, 1.1)}")
    print(f"  same, median of per-round ratios  {fmt_ratio(paired, 1.1)}")
    print("\nCPU time of the same processes (user + sys, all threads)\n")
    print(table(list(cpu.values()), rss=False))
    c = ratio(cpu["modelhub"], cpu["sdk"])
    print(f"\nmodelhub pull / snapshot_download   {fmt_ratio(c)}  (CPU)")
    print(f"\n(b) cache hit, server stopped, HF_HUB_OFFLINE=1, {args.hit_runs} runs\n")
    print(table(list(hit.values()), rss=False))
    b = ratio(hit["hf"], hit["path"])
    print(f"\nhf download / modelhub path         {fmt_ratio(b, 5.0, le=False)}")
    print(f"hf download / modelhub pull         {fmt_ratio(ratio(hit['hf'], hit['pull']))}")
    if args.json:
        dump_json(
            args.json,
            {
                "bench": "hf",
                "size_mib": args.size_mib,
                "files": len(sizes),
                "download": {k: s.as_dict() for k, s in download.items()},
                "download_cpu": {k: s.as_dict() for k, s in cpu.items()},
                "cache_hit": {k: s.as_dict() for k, s in hit.items()},
                "ratios": {
                    "pull_over_snapshot_download": a,
                    "pull_over_snapshot_download_paired": paired,
                    "pull_over_snapshot_download_cpu": c,
                    "hf_download_over_path": b,
                },
            },
        )
    return 0


if __name__ == "__main__":
    run_main("hf", main)

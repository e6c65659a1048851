#!/usr/bin/env python3
"""``modelhub sync`` of 20 small models through the mirror: ``--jobs 4`` vs ``--jobs 1``.

Sets up a seed store of 20 small models on four hubs (8 ``onnx:`` tiny MLPs, 6 ``hf:``
snapshots of ~70 kB, 3 ``tfhub:`` SavedModel-shaped folders, 3 ``url:`` files of 200 kB; built
with the test suite's fixture builders) and serves it with the mirror in a **separate process**
on 127.0.0.1. Each timed run is a whole ``modelhub sync modelhub.toml --jobs N`` process into a
fresh store with fresh Hugging Face and TF Hub caches (nothing cached anywhere), checked to have
installed all 20 models. Rounds are interleaved (jobs 1, jobs 4, jobs 1, ...) after one untimed
warm-up round, and the ratio compares medians.

A hub on the internet answers each request after a round trip and some server time; the mirror
on loopback answers in well under a millisecond. ``--latency-ms`` (default ``0,40,100``) adds that
wait to every request in the mirror process (an aiohttp middleware sleeping before the handler:
it delays, it costs no CPU), so the figures show both the loopback floor and a modest WAN.

    .venv/bin/python bench/sync.py [--runs 5] [--latency-ms 0,40,100] [--json out.json]

Goal (issue 7): ``--jobs 4`` ≥ 2.5× faster than ``--jobs 1`` (medians).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
sys.path.insert(0, str(BENCH_DIR))
sys.path.insert(0, str(REPO_ROOT))

from common import (  # noqa: E402
    BenchError,
    Run,
    Series,
    dump_json,
    fmt_ratio,
    log,
    modelhub_command,
    ratio,
    run_main,
    run_process,
    server_process,
    table,
)

GOAL = 2.5

# The mirror of modelhub serve, plus a per-request delay, in its own process. Prints its URL.
SERVER = r"""
import asyncio, sys
from aiohttp import web
from modelhub.mirror.app import make_app

root, delay = sys.argv[1], float(sys.argv[2]) / 1000

@web.middleware
async def wan(request, handler):
    if delay:
        await asyncio.sleep(delay)
    return await handler(request)

async def main():
    app = make_app(root)
    app.middlewares.insert(0, wan)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, backlog=1024)
    await site.start()
    print(f"http://127.0.0.1:{runner.addresses[0][1]}", flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
"""


def build_seed(root: Path, work: Path) -> list[tuple[str, str | None]]:
    """Import the 20 models into the seed store at ``root``; return (ref, stage) pairs.

    ``url:`` references contain ``MIRROR``, replaced by the mirror's URL once it runs.
    """
    from tests.support.mirror_fixtures import make_hf_snapshot, make_savedmodel_folder
    from tests.support.onnx_models import make_mlp

    from modelhub.importer import import_path
    from modelhub.refs import parse
    from modelhub.store import Store, layout

    seed = Store(root)

    def put(src: Path, ref: str) -> None:
        mref = parse(ref)
        with seed.lock(mref):
            import_path(seed, src, mref)

    models: list[tuple[str, str | None]] = []
    for i in range(8):
        put(make_mlp(work / f"bench-mlp-{i}-13.onnx", seed=i, width=16), f"onnx:bench-mlp-{i}")
        models.append((f"onnx:bench-mlp-{i}", None))
    for i in range(6):
        make_hf_snapshot(work / f"hf-{i}", seed=i)
        put(work / f"hf-{i}", f"hf:bench/tiny-{i}")
        models.append((f"hf:bench/tiny-{i}", None))
    for i in range(3):
        make_savedmodel_folder(work / f"sm-{i}", seed=i)
        put(work / f"sm-{i}", f"tfhub:bench/sm-{i}/1")
        models.append((f"tfhub:bench/sm-{i}/1", "none"))  # freezing would need TensorFlow
    for i in range(3):
        weights = work / f"bench-w{i}.tflite"
        weights.write_bytes(os.urandom(200_000))
        seed_ref = f"url:http://seed.invalid/bench-w{i}.tflite"
        put(weights, seed_ref)
        rel = layout.file_path(parse(seed_ref), weights.name)  # the mirror serves the store
        models.append((f"url:MIRROR/omnihub/{rel}", None))
    return models


def write_toml(path: Path, models: list[tuple[str, str | None]], mirror: str) -> None:
    lines = []
    for ref, stage in models:
        lines += ["[[model]]", f'ref = "{ref.replace("MIRROR", mirror)}"']
        if stage:
            lines.append(f'stage = "{stage}"')
        lines.append("")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines), encoding="utf-8")


@contextlib.contextmanager
def mirror_process(root: Path, latency_ms: float, log_file: Path | None = None) -> Iterator[str]:
    """The mirror of ``root`` in a child process with ``latency_ms`` per request; its URL."""
    cmd = [sys.executable, "-c", SERVER, str(root), str(latency_ms)]
    with server_process(cmd, what="the mirror", log_file=log_file) as url:
        if not url.startswith("http://"):
            raise BenchError(f"the mirror did not start: printed {url!r}")
        yield url


def sync_once(toml: Path, mirror: str, jobs: int, scratch: Path, count: int) -> Run:
    """One whole ``modelhub sync`` process into fresh store and caches; returns the Run."""
    run_dir = Path(tempfile.mkdtemp(prefix="run-", dir=scratch))
    env = {
        **os.environ,
        "MODELHUB_MIRROR": mirror,
        "MODELHUB_PATH": str(run_dir / "store"),
        "HF_HUB_CACHE": str(run_dir / "hf-cache"),
        "TFHUB_CACHE_DIR": str(run_dir / "tfhub-cache"),
        "MODELHUB_QUIET": "1",
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "NO_PROXY": "127.0.0.1,localhost",
    }
    try:
        run = run_process(
            [*modelhub_command(), "sync", str(toml), "--jobs", str(jobs), "--json"], env=env
        )
        run.check(f"modelhub sync --jobs {jobs}")
        doc = json.loads(run.stdout)
        ok = [m for m in doc["models"] if m["status"] == "ok"]
        if len(ok) != count:
            raise BenchError(f"--jobs {jobs}: {len(ok)} of {count} models installed")
        return run
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="timed rounds (default 5)")
    parser.add_argument("--jobs", default="1,4", help="the two --jobs values (default 1,4)")
    parser.add_argument(
        "--latency-ms", default="0,40,100", help="per-request delays to measure (default 0,40,100)"
    )
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args()
    slow, fast = (int(j) for j in args.jobs.split(","))
    latencies = [float(x) for x in args.latency_ms.split(",")]

    load_before = os.getloadavg()
    report: dict[str, object] = {
        "nproc": os.cpu_count(),
        "loadavg_before": load_before,
        "runs": args.runs,
        "jobs": [slow, fast],
        "results": [],
    }
    failed = False
    with tempfile.TemporaryDirectory(prefix="modelhub-bench-sync-") as tmp:
        work = Path(tmp)
        log("building the seed store (20 models)")
        models = build_seed(work / "seed", work / "src")
        for latency in latencies:
            with mirror_process(work / "seed", latency, work / f"mirror-{latency:g}.log") as url:
                toml = work / f"project-{latency:g}" / "modelhub.toml"
                write_toml(toml, models, url)
                series = {
                    j: Series(f"modelhub sync --jobs {j}  [{latency:g} ms/request]")
                    for j in (slow, fast)
                }
                try:
                    log(f"{latency:g} ms per request: warm-up round")
                    for j in (slow, fast):
                        sync_once(toml, url, j, work, len(models))
                    for n in range(args.runs):
                        log(f"{latency:g} ms per request: round {n + 1}/{args.runs}")
                        for j in (slow, fast):
                            series[j].add(sync_once(toml, url, j, work, len(models)))
                except BenchError as exc:
                    failed = True
                    for s in series.values():
                        s.error = s.error or str(exc)
                speedup = ratio(series[slow], series[fast])
                print(f"\n{len(models)} models, mirror on 127.0.0.1 + {latency:g} ms per request")
                print(table(list(series.values())))
                print(
                    f"speed-up --jobs {fast} vs --jobs {slow} (medians): "
                    f"{fmt_ratio(speedup, GOAL, le=False)}"
                )
                report["results"].append(  # type: ignore[attr-defined]
                    {
                        "latency_ms": latency,
                        "series": [s.as_dict() for s in series.values()],
                        "speedup": speedup,
                    }
                )
    report["loadavg_after"] = os.getloadavg()
    print(
        f"\nmachine: {os.cpu_count()} CPUs; load average (1/5/15 min) "
        f"{' '.join(f'{x:.1f}' for x in load_before)} before, "
        f"{' '.join(f'{x:.1f}' for x in os.getloadavg())} after"
    )
    if args.json:
        dump_json(args.json, report)
    return 1 if failed else 0


if __name__ == "__main__":
    run_main("sync", main)

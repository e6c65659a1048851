#!/usr/bin/env python3
"""Remote tier: a large model pulled from the shared S3 store vs the mirror vs plain S3 clients.

A random file (1 GiB by default, created once under bench/.data) is imported into a seed store as
``url:https://download.pytorch.org/models/big-<sha256[:8]>.pth`` and published with
``modelhub push`` to a bucket of moto's S3 server, started in its own process on a random
127.0.0.1 port (a real S3 API over HTTP; it keeps objects in memory or its temp files). The same
seed store is served by ``modelhub serve``.

Contenders, each a whole process writing into a fresh folder on the same filesystem:

    modelhub pull (remote)   MODELHUB_REMOTE=s3://…: manifest GET, object GET, sha256 inline
    modelhub pull (mirror)   url:<mirror>/omnihub/<store path> --sha256 HEX, no remote
    boto3 get_object         one GET streamed to a file in 1 MiB chunks, no hash ("aws s3 cp"-class)
    boto3 + sha256           the same with hashlib.sha256 inline (what verification costs)
    s3fs get_file            s3fs.S3FileSystem().get_file(..., max_concurrency=1): one GET, no hash

Rounds interleave the contenders so machine noise spreads over all, and every run starts after
``os.sync()``; figures are min / median / max; speed ratios compare medians. Goal (issue 9):
remote ≥ 0.8× the plain download's speed.

Ranged, parallel downloads (boto3's ``download_file``, s3fs's default ``get_file``) are left out
by default: moto answers every ranged GET by copying the whole object first, which makes them
several times slower on moto, the more so the larger the object (s3fs's default took ~30 s for
1 GiB here) — a property of moto, not of S3. ``--ranged`` adds them.

    .venv/bin/python bench/remote.py [--size-mib 1024] [--runs 5] [--ranged] [--json r.json]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
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
    random_file,
    ratio,
    run_main,
    run_process,
    server_process,
    store_rel,
    table,
    warm_page_cache,
)

GOAL = 0.8
BUCKET = "modelhub-bench"
PREFIX = "fleet"
# Dummy credentials for moto (it accepts any signed request unless IAM auth is switched on).
AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "AKIAMODELHUBBENCH000",
    "AWS_SECRET_ACCESS_KEY": "modelhub-bench-secret-not-a-real-one",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
}

MOTO_SERVER = """
import logging, sys, time
from moto.server import ThreadedMotoServer
logging.getLogger("werkzeug").setLevel(logging.ERROR)
server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
server.start()
print(server.get_host_and_port()[1], flush=True)
while True:
    time.sleep(3600)
"""

BOTO3_GET = """
import sys, boto3
bucket, key, out, hashed = sys.argv[1:5]
body = boto3.client("s3").get_object(Bucket=bucket, Key=key)["Body"]
digest = None
if hashed == "1":
    import hashlib
    digest = hashlib.sha256()
with open(out, "wb") as fh:
    for chunk in body.iter_chunks(1 << 20):
        if digest is not None:
            digest.update(chunk)
        fh.write(chunk)
if digest is not None:
    print(digest.hexdigest())
"""

BOTO3_RANGED = """
import sys, boto3
bucket, key, out = sys.argv[1:4]
boto3.client("s3").download_file(bucket, key, out)
"""

S3FS_GET = """
import sys, s3fs
path, out, concurrency = sys.argv[1:4]
fs = s3fs.S3FileSystem()
if concurrency == "default":
    fs.get_file(path, out)
else:
    fs.get_file(path, out, max_concurrency=int(concurrency))
"""


# --------------------------------------------------------------------------- set-up


@contextlib.contextmanager
def moto_serving(log_file: Path) -> Iterator[str]:
    """moto's S3 server in its own process on a random 127.0.0.1 port; yield its endpoint."""
    with server_process(python_snippet(MOTO_SERVER), what="moto server", log_file=log_file) as port:
        if not port.isdigit():
            raise BenchError(f"moto server did not start: printed {port!r}")
        yield f"http://127.0.0.1:{port}"


def seed_store(src: Path, sha: str) -> tuple[Path, str, str]:
    """A store holding ``src`` as PyTorch weights; return (root, reference, store-relative path).

    Kept under bench/.data and reused while complete (``modelhub import`` copies 1 GiB).
    """
    filename = f"big-{sha[:8]}.pth"
    ref = f"url:https://download.pytorch.org/models/{filename}"
    root = src.parent / f"remote-seed-{src.stem}"
    rel = store_rel(ref, filename)
    env = {"MODELHUB_PATH": str(root), "MODELHUB_QUIET": "1"}
    found = run_process([*modelhub_command(), "path", ref], env=env, exact_rss=False)
    path = Path(found.stdout.strip())
    if found.returncode == 0 and path == root / rel and path.stat().st_size == src.stat().st_size:
        return root, ref, rel
    shutil.rmtree(root, ignore_errors=True)
    log(f"modelhub import {src.name} --as {ref} (into {root}, once)")
    run_process(
        [*modelhub_command(), "import", str(src), "--as", ref], env=env, exact_rss=False
    ).check("modelhub import")
    return root, ref, rel


def make_bucket(endpoint: str) -> None:
    import boto3

    boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket=BUCKET)


# --------------------------------------------------------------------------- measuring


def check_file(label: str, path: Path, size: int) -> None:
    if not path.is_file() or path.stat().st_size != size:
        got = path.stat().st_size if path.is_file() else "no file"
        raise BenchError(f"{label}: wrote {got}, expected {size} bytes")


def measure(series: Series, cmd: list[str], env: dict[str, str], out: Path, size: int) -> Run:
    run = run_process(cmd, env=env).check(series.label)
    check_file(series.label, out, size)
    series.add(run)
    return run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mib", type=int, default=1024, help="model size (default 1024)")
    parser.add_argument("--runs", type=int, default=5, help="runs per contender (default 5)")
    parser.add_argument(
        "--ranged", action="store_true", help="add boto3 download_file and s3fs default get_file"
    )
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args(argv)
    if args.runs < 1 or args.size_mib < 1:
        parser.error("--runs and --size-mib must be ≥ 1")
    try:
        import boto3  # noqa: F401
        import moto.server  # noqa: F401
        import s3fs  # noqa: F401
    except ImportError as exc:
        raise BenchError(f"{exc.name} missing: pip install -e '.[dev,remote]'") from None

    src, sha = random_file(args.size_mib)
    size = src.stat().st_size
    root, ref, rel = seed_store(src, sha)
    warm_page_cache(root / rel)
    remote_url = f"s3://{BUCKET}/{PREFIX}"
    key = f"{PREFIX}/{rel}"

    series = {
        "remote": Series("modelhub pull (remote)"),
        "mirror": Series("modelhub pull (mirror)"),
        "boto3": Series("boto3 get_object"),
        "boto3-sha": Series("boto3 get_object + sha256"),
        "s3fs": Series("s3fs get_file (1 stream)"),
    }
    if args.ranged:
        series["boto3-ranged"] = Series("boto3 download_file (ranged)")
        series["s3fs-ranged"] = Series("s3fs get_file (ranged, default)")

    with (
        tempfile.TemporaryDirectory(prefix="modelhub-bench-remote-", dir=DATA_DIR) as tmp_name,
        moto_serving(Path(tmp_name) / "moto.log") as endpoint,
        mirror_serving(root, Path(tmp_name) / "serve.log") as mirror,
    ):
        tmp = Path(tmp_name)
        aws = {**AWS_ENV, "AWS_ENDPOINT_URL": endpoint}
        os.environ.update(aws)
        make_bucket(endpoint)
        log(f"moto S3 at {endpoint}; mirror at {mirror}")
        log(f"modelhub push {ref} → {remote_url} (setup, timed once)")
        pushed = run_process(
            [*modelhub_command(), "push", ref],
            env={"MODELHUB_PATH": str(root), "MODELHUB_REMOTE": remote_url, **aws},
        ).check("modelhub push")
        log(f"push: {pushed.seconds:.1f} s ({size / MIB / pushed.seconds:.0f} MiB/s upload)")
        mirror_ref = f"url:{mirror}/omnihub/{rel}"  # the store as the mirror serves it

        def contender(name: str, out_dir: Path) -> tuple[list[str], dict[str, str], Path]:
            store = {"MODELHUB_PATH": str(out_dir / "store"), "MODELHUB_QUIET": "1"}
            if name == "remote":
                cmd = [*modelhub_command(), "pull", ref]
                return cmd, {**store, "MODELHUB_REMOTE": remote_url}, out_dir / "store" / rel
            if name == "mirror":
                cmd = [*modelhub_command(), "pull", mirror_ref, "--sha256", sha]
                return cmd, store, out_dir / "store" / store_rel(mirror_ref, Path(rel).name)
            out = out_dir / "out.bin"
            if name in ("boto3", "boto3-sha"):
                hashed = "1" if name == "boto3-sha" else "0"
                return [*python_snippet(BOTO3_GET), BUCKET, key, str(out), hashed], {}, out
            if name == "boto3-ranged":
                return [*python_snippet(BOTO3_RANGED), BUCKET, key, str(out)], {}, out
            concurrency = "default" if name == "s3fs-ranged" else "1"
            return [*python_snippet(S3FS_GET), f"{BUCKET}/{key}", str(out), concurrency], {}, out

        # One untimed warm-up of each path (imports in the page cache, moto's object buffered).
        for name in ("remote", "mirror", "boto3"):
            with tempfile.TemporaryDirectory(dir=tmp) as out_name:
                cmd, env, out = contender(name, Path(out_name))
                run_process(cmd, env=env, exact_rss=False).check(f"warm-up {name}")
                check_file(f"warm-up {name}", out, size)

        for round_no in range(1, args.runs + 1):
            for name, s in series.items():
                with tempfile.TemporaryDirectory(dir=tmp) as out_name:
                    cmd, env, out = contender(name, Path(out_name))
                    # The previous run's dirty pages are not this run's cost: the plain
                    # clients never fsync, and their gigabyte would be flushed during the
                    # next run (which, for modelhub, fsyncs before its rename).
                    os.sync()
                    try:
                        run = measure(s, cmd, env, out, size)
                    except BenchError as exc:
                        s.error = str(exc)
                        log(f"round {round_no}/{args.runs} {s.label:<32} failed: {exc}")
                        continue
                    if name == "boto3-sha" and run.stdout.strip() != sha:
                        raise BenchError(f"{s.label}: sha256 {run.stdout.strip()} != {sha}")
                log(
                    f"round {round_no}/{args.runs} {s.label:<32} {s.seconds[-1]:7.3f} s  "
                    f"{size / MIB / s.seconds[-1]:6.0f} MiB/s  {s.rss_kib[-1] / 1024:7.1f} MiB"
                )
                time.sleep(0.2)

    print(
        f"\nremote tier: one {args.size_mib} MiB model from moto's S3 server on 127.0.0.1, "
        f"whole processes, {args.runs} runs each (wall time)\n"
    )
    print(table(list(series.values()), size))
    print()
    print("speed of modelhub pull (remote) relative to (medians; best runs in brackets):")
    remote = series["remote"]
    for name, s in series.items():
        if name == "remote" or not (s.ok and remote.ok):
            continue
        goal = GOAL if name in ("boto3", "s3fs") else None
        best = s.min / remote.min
        print(f"  {s.label:<32} {fmt_ratio(ratio(s, remote), goal, le=False)}  [best {best:.2f}×]")
    if args.json:
        dump_json(
            args.json,
            {
                "bench": "remote",
                "size_mib": args.size_mib,
                "runs": args.runs,
                "push_seconds": pushed.seconds,
                "results": {name: s.as_dict() for name, s in series.items()},
                "speed_vs": {
                    name: ratio(s, remote) for name, s in series.items() if name != "remote"
                },
            },
        )
    failed = [s.label for s in series.values() if not s.ok]
    return 1 if failed else 0


if __name__ == "__main__":
    run_main("remote", main)

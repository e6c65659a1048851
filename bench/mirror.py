#!/usr/bin/env python3
"""Mirror throughput: ``modelhub serve`` vs nginx serving the same large file on 127.0.0.1.

A random file (1 GiB by default, created once under bench/.data) is imported into a bench
store as ``url:https://download.pytorch.org/models/big-<sha256[:8]>.pth``: a PyTorch weights
file, so the mirror serves it in the download.pytorch.org layout at
``/torch/models/big-<hex>.pth`` (the route ``torch.hub`` and modelhub's ``torch:`` hub use).
nginx (``sendfile on``, one worker, access log off) serves the same store folder, so both
servers send the very same inode from the page cache.

Clients are curl processes writing to /dev/null, timed as one whole process from spawn until
every client has exited: one client, then ``--clients`` (default 8) clients started together.
Every client's byte count is checked. Rounds interleave the two servers so that machine noise
spreads over both; ratios compare medians. The servers' own CPU time per GiB sent (from
/proc, for the processes holding the listening socket) is printed too: unlike wall time on a
busy machine, it hardly moves with the load.

Goal (issue 3): mirror throughput ≥ 0.7× nginx's, for one client and for 8 clients.

    .venv/bin/python bench/mirror.py [--size-mib 1024] [--runs 5] [--clients 8] [--json m.json]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (
    DATA_DIR,
    MIB,
    BenchError,
    Series,
    dump_json,
    fmt_ratio,
    log,
    mirror_serving,
    modelhub_command,
    nginx_serving,
    random_file,
    ratio,
    run_main,
    run_process,
    table,
    warm_page_cache,
)

GOAL = 0.7

# N curl processes at once; each prints the bytes it received, the shell fails if any failed.
# One client runs through the same script, so both cases carry the same (tiny) overhead.
CLIENTS_SH = r"""
n=$1; url=$2; i=0; pids=""
while [ "$i" -lt "$n" ]; do
    curl -s --fail -o /dev/null -w '%{size_download}\n' "$url" &
    pids="$pids $!"
    i=$((i + 1))
done
rc=0
for pid in $pids; do wait "$pid" || rc=1; done
exit $rc
"""


def _clients(n: int, url: str) -> list[str]:
    return ["sh", "-c", CLIENTS_SH, "sh", str(n), url]


# --------------------------------------------------------------------------- the bench store


def bench_store(src: Path, sha: str) -> tuple[Path, str]:
    """A store holding ``src`` as a PyTorch weights file; return (root, store-relative path).

    Kept under bench/.data beside the random file and reused while its file is complete
    (``modelhub import`` copies and hashes 1 GiB: seconds we need not spend every time).
    """
    filename = f"big-{sha[:8]}.pth"
    ref = f"url:https://download.pytorch.org/models/{filename}"
    root = src.parent / f"mirror-store-{src.stem}"
    rel = f"pytorch/{filename}"
    env = {**os.environ, "MODELHUB_PATH": str(root), "MODELHUB_QUIET": "1"}
    cmd = modelhub_command()
    found = subprocess.run(
        [*cmd, "path", ref], env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL
    )
    path = Path(found.stdout.strip()) if found.returncode == 0 else None
    if path is not None and path.is_file() and path.stat().st_size == src.stat().st_size:
        return root, rel
    shutil.rmtree(root, ignore_errors=True)
    log(f"modelhub import {src.name} --as {ref} (into {root}, once)")
    imported = subprocess.run(
        [*cmd, "import", str(src), "--as", ref],
        env=env,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
    )
    if imported.returncode != 0:
        raise BenchError(f"modelhub import failed: {imported.stderr.strip()[-300:]}")
    if Path(imported.stdout.strip()) != root / rel:
        raise BenchError(f"modelhub import stored the file at {imported.stdout.strip()}")
    return root, rel


# --------------------------------------------------------------------------- measuring


_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def listening_pids(url: str) -> list[int]:
    """The processes holding the listening socket of ``url``'s 127.0.0.1 port (Linux /proc).

    For nginx: its master and worker; for the mirror: the ``modelhub serve`` process. Empty
    when /proc cannot tell (then no CPU figures are shown).
    """
    port = int(url.rsplit(":", 1)[1].split("/", 1)[0])
    inodes = set()
    with contextlib.suppress(OSError), open("/proc/net/tcp") as tcp:
        for line in tcp.readlines()[1:]:
            fields = line.split()
            if fields[1] == f"0100007F:{port:04X}" and fields[3] == "0A":  # LISTEN
                inodes.add(f"socket:[{fields[9]}]")
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            if any(os.readlink(fd) in inodes for fd in (proc / "fd").iterdir()):
                pids.append(int(proc.name))
    return pids


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time used so far by ``pids`` (0 for one that is gone)."""
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / _CLOCK_TICKS


def measure(
    series: Series, url: str, clients: int, size: int, pids: list[int], cpu: list[float]
) -> None:
    """One timed run of ``clients`` curl processes; every one must receive ``size`` bytes.

    The servers' CPU time during the run (``pids``) is appended to ``cpu``.
    """
    before = cpu_seconds(pids)
    run = run_process(_clients(clients, url), exact_rss=False).check(series.label)
    cpu.append(cpu_seconds(pids) - before)
    got = [int(x) for x in run.stdout.split() if x.isdigit()]
    if len(got) != clients or any(g != size for g in got):
        raise BenchError(f"{series.label}: clients received {got} bytes, expected {size} each")
    series.add(run)


def warm_up(url: str, size: int) -> None:
    """One untimed full download per server (the mirror builds its index on first use)."""
    run = run_process(_clients(1, url), exact_rss=False).check(f"warm-up {url}")
    if run.stdout.split() != [str(size)]:
        raise BenchError(f"warm-up {url}: got {run.stdout.split()} bytes, expected {size}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mib", type=int, default=1024, help="file size (default 1024)")
    parser.add_argument("--runs", type=int, default=5, help="runs per case (default 5)")
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients (default 8)")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args(argv)
    if args.runs < 1 or args.size_mib < 1 or args.clients < 2:
        parser.error("--runs and --size-mib must be ≥ 1, --clients ≥ 2")
    if not shutil.which("curl"):
        raise BenchError("curl is not installed")

    src, sha = random_file(args.size_mib)
    size = src.stat().st_size
    root, rel = bench_store(src, sha)
    warm_page_cache(root / rel)
    n = args.clients
    gib = size / (1 << 30)
    series = {
        ("nginx", 1): Series("nginx, 1 client"),
        ("mirror", 1): Series("modelhub serve, 1 client"),
        ("nginx", n): Series(f"nginx, {n} clients"),
        ("mirror", n): Series(f"modelhub serve, {n} clients"),
    }
    cpu: dict[tuple[str, int], list[float]] = {key: [] for key in series}

    with (
        tempfile.TemporaryDirectory(prefix="modelhub-bench-mirror-", dir=DATA_DIR) as tmp,
        nginx_serving(root) as nginx_base,
        mirror_serving(root, Path(tmp) / "serve.log") as mirror_base,
    ):
        urls = {
            "nginx": f"{nginx_base}/{rel}",
            "mirror": f"{mirror_base}/torch/models/{Path(rel).name}",
        }
        pids = {server: listening_pids(url) for server, url in urls.items()}
        for server, url in urls.items():
            log(f"{server}: {url} (pids {pids[server]})")
            warm_up(url, size)
        for round_no in range(1, args.runs + 1):
            for clients in (1, n):
                for server in ("nginx", "mirror"):
                    s = series[(server, clients)]
                    measure(s, urls[server], clients, size, pids[server], cpu[(server, clients)])
                    total = clients * size / MIB
                    log(
                        f"round {round_no}/{args.runs} {s.label:<28} {s.seconds[-1]:7.3f} s  "
                        f"{total / s.seconds[-1]:7.0f} MiB/s  "
                        f"server CPU {cpu[(server, clients)][-1]:5.2f} s"
                    )

    print(
        f"\nmirror throughput: one {args.size_mib} MiB file on 127.0.0.1, curl → /dev/null, "
        f"{args.runs} runs each (wall time until every client has finished)\n"
    )
    print(table([series[("nginx", 1)], series[("mirror", 1)]], size, rss=False))
    print()
    print(table([series[("nginx", n)], series[("mirror", n)]], n * size, rss=False))
    print()
    print("mirror / nginx throughput (medians; best runs in brackets, the least noisy figure):")
    one = ratio(series[("nginx", 1)], series[("mirror", 1)])
    many = ratio(series[("nginx", n)], series[("mirror", n)])
    best = {c: series[("nginx", c)].min / series[("mirror", c)].min for c in (1, n)}
    print(f"  1 client    {fmt_ratio(one, GOAL, le=False)}  [best {best[1]:.2f}×]")
    print(f"  {n} clients   {fmt_ratio(many, GOAL, le=False)}  [best {best[n]:.2f}×]")
    # Wall time on a busy machine swings with the load; the servers' own CPU per GiB sent
    # does not, and shows what each costs.
    per_gib = {key: statistics.median(c) / (key[1] * gib) for key, c in cpu.items() if c and any(c)}
    if len(per_gib) == len(cpu):
        print("\nserver CPU time per GiB sent (median; user + system, all its processes):")
        for (server, clients), s in series.items():
            print(f"  {s.label:<28} {per_gib[(server, clients)]:.3f} s")
    if args.json:
        dump_json(
            args.json,
            {
                "bench": "mirror",
                "size_mib": args.size_mib,
                "runs": args.runs,
                "clients": n,
                "results": {
                    f"{server}-{clients}": {
                        **s.as_dict(),
                        "server_cpu_seconds": cpu[(server, clients)],
                    }
                    for (server, clients), s in series.items()
                },
                "ratio_1_client": one,
                f"ratio_{n}_clients": many,
                "ratio_best_1_client": best[1],
                f"ratio_best_{n}_clients": best[n],
            },
        )
    return 0


if __name__ == "__main__":
    run_main("mirror", main)

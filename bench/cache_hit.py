#!/usr/bin/env python3
"""Cache hit: ``modelhub path REF`` for a model already in the store vs ``python -c pass``.

Sets up its own store first: builds a tiny ONNX model with ``onnx.helper``, lays it out as an
ONNX Model Zoo (scripts/make_zoo.py), serves it on 127.0.0.1, pulls it with
``modelhub pull onnx:...``, and stops the server, so the timed runs cannot use the network.
Then times whole processes, interleaved, and compares medians.

    python -c pass                        the interpreter's floor
    python -c "import modelhub.cli.main"  what importing the CLI costs
    modelhub path onnx:REF                the console script, a cache hit

Goal (issue 2): modelhub path ≤ 3× python -c pass (medians).

    .venv/bin/python bench/cache_hit.py [--runs 30] [--json out.json]
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import http.server
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))
sys.path.insert(0, str(BENCH_DIR.parent / "scripts"))

from common import (  # noqa: E402
    BenchError,
    Series,
    dump_json,
    fmt_ratio,
    log,
    modelhub_command,
    ratio,
    run_main,
    run_process,
    table,
)

MODEL_NAME = "bench_tiny_add"
HEAVY = ("onnx", "onnxruntime", "numpy", "torch", "tensorflow", "keras", "transformers")

IMPORT_PROBE = """
import sys
from modelhub.cli.main import main
code = main(["path", sys.argv[1]])
heavy = sorted(m for m in {heavy!r} if m in sys.modules)
print("heavy modules imported: " + (", ".join(heavy) or "none"), file=sys.stderr)
sys.exit(code)
"""


def build_tiny_onnx(path: Path) -> None:
    """Write a one-node ONNX model (y = x + x) at ``path``."""
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])
    graph = helper.make_graph([helper.make_node("Add", ["x", "x"], ["y"])], MODEL_NAME, [x], [y])
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="modelhub-bench"
    )
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@contextlib.contextmanager
def serve(folder: Path) -> Iterator[str]:
    """Serve ``folder`` on 127.0.0.1 (any free port) in a thread; yield the base URL."""
    handler = functools.partial(_QuietHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def prepare_store(work: Path) -> tuple[dict[str, str], str]:
    """Pull the tiny model into a fresh store under ``work``; return (env, expected path)."""
    from make_zoo import build_zoo

    (work / "src").mkdir()
    model = work / "src" / f"{MODEL_NAME}.onnx"
    build_tiny_onnx(model)
    build_zoo([model], work / "zoo", tags=["bench"])
    env = {"MODELHUB_PATH": str(work / "store"), "MODELHUB_QUIET": "1"}
    with serve(work / "zoo") as url:
        # The manifest and, at the same paths, the files (the zoo's Hugging Face copy's base).
        env["MODELHUB_ONNX_URL"] = env["MODELHUB_ONNX_FILES_URL"] = url
        log(f"pulling onnx:{MODEL_NAME} from {url} into {env['MODELHUB_PATH']}")
        run = run_process([*modelhub_command(), "pull", f"onnx:{MODEL_NAME}"], env=env)
        run.check("modelhub pull")
    # The server is gone now: a cache hit that tried the network would fail or stall.
    env["MODELHUB_ONNX_URL"] = env["MODELHUB_ONNX_FILES_URL"] = "http://127.0.0.1:9"
    lines = [ln.strip() for ln in run.stdout.splitlines() if ln.strip()]
    if not lines:
        raise BenchError("modelhub pull printed no path")
    return env, lines[-1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=30, help="runs per command (default 30)")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be ≥ 1")

    ref = f"onnx:{MODEL_NAME}"
    with tempfile.TemporaryDirectory(prefix="modelhub-bench-cache-") as tmp:
        env, expected = prepare_store(Path(tmp))
        first = run_process([*modelhub_command(), "path", ref], env=env).check("modelhub path")
        if first.stdout.strip() != expected:
            raise BenchError(
                f"modelhub path printed {first.stdout.strip()!r}, pull printed {expected!r}"
            )
        probe = run_process([sys.executable, "-c", IMPORT_PROBE.format(heavy=HEAVY), ref], env=env)
        probe_line = (probe.stderr.strip().splitlines() or ["(probe printed nothing)"])[-1]

        commands = {
            "pass": ("python -c pass", [sys.executable, "-c", "pass"]),
            "import": (
                "python -c 'import modelhub.cli.main'",
                [sys.executable, "-c", "import modelhub.cli.main"],
            ),
            "path": (f"modelhub path {ref}", [*modelhub_command(), "path", ref]),
        }
        series = {key: Series(label) for key, (label, _) in commands.items()}
        for _ in range(2):  # warm the page cache and the bytecode caches, untimed
            for _label, cmd in commands.values():
                run_process(cmd, env=env, exact_rss=False)
        for round_no in range(args.runs):
            for key, (label, cmd) in commands.items():
                # No /usr/bin/time wrapper here: its extra millisecond would flatter the ratio.
                series[key].add(run_process(cmd, env=env, exact_rss=False).check(label))
            if (round_no + 1) % 10 == 0:
                log(f"{round_no + 1}/{args.runs} rounds")

    results = list(series.values())
    print(f"\ncache hit: whole processes, {args.runs} runs each, interleaved (wall time)\n")
    print(table(results, rss=False))
    print()
    print(
        f"modelhub path / python -c pass   {fmt_ratio(ratio(series['path'], series['pass']), 3.0)}"
    )
    print(f"import modelhub.cli / pass       {fmt_ratio(ratio(series['import'], series['pass']))}")
    print(f"modelhub path peak RSS           {first.max_rss_kib / 1024:.1f} MiB")
    print(f"modelhub path, in-process probe: {probe_line}")
    if args.json:
        dump_json(
            args.json,
            {
                "bench": "cache_hit",
                "runs": args.runs,
                "probe": probe_line,
                "path_peak_rss_mib": round(first.max_rss_kib / 1024, 1),
                "results": {key: s.as_dict() for key, s in series.items()},
            },
        )
    return 0


if __name__ == "__main__":
    run_main("cache_hit", main)

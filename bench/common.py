"""Shared helpers for the benchmarks: whole-process timing, statistics, nginx, test data.

Every figure is the wall time of a whole process (interpreter start-up and imports included),
because that is what a user waits for. Peak RSS is the kernel's ``ru_maxrss`` for that one
process, read through GNU ``/usr/bin/time`` when it is installed (see ``run_process``), in KiB.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import select
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
# Large generated files live here (gitignored); MODELHUB_BENCH_DATA moves them elsewhere.
DATA_DIR = Path(os.environ.get("MODELHUB_BENCH_DATA") or BENCH_DIR / ".data")
MIB = 1 << 20


def _as_installed() -> None:
    """Measure modelhub as pip leaves an install: with its bytecode compiled.

    The checkout is an editable install, whose modules are compiled on first import and cached
    in __pycache__ unless PYTHONDONTWRITEBYTECODE is set (CI sets it to keep the clone clean):
    then every timed process would compile ~50 modules again (~45 ms here), which no installed
    modelhub does. So the benches compile src/ once and let their children use the cache.
    """
    import compileall

    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    sys.dont_write_bytecode = False
    compileall.compile_dir(str(REPO_ROOT / "src"), quiet=1)


_as_installed()


def log(message: str) -> None:
    """Progress for the person running the bench: stderr, so stdout stays the report."""
    print(f"[bench] {message}", file=sys.stderr, flush=True)


class BenchError(RuntimeError):
    """The benchmark could not be set up or a measured command failed."""


def run_main(name: str, main: Callable[[], int]) -> NoReturn:
    """Exit with ``main()``'s status; a ``BenchError`` is one stderr line and status 1, ^C 130."""
    try:
        sys.exit(main())
    except BenchError as exc:
        print(f"{name}: error: {exc}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)


# --------------------------------------------------------------------------- processes


@dataclass(frozen=True)
class Run:
    """One whole-process run."""

    seconds: float
    max_rss_kib: int
    returncode: int
    stdout: str
    stderr: str

    def check(self, what: str) -> Run:
        """Return self, or raise ``BenchError`` with the command's last stderr line."""
        if self.returncode != 0:
            lines = [ln for ln in self.stderr.splitlines() if ln.strip()]
            last = lines[-1].strip() if lines else "(no output)"
            raise BenchError(f"{what} exited with status {self.returncode}: {last}")
        return self


GNU_TIME = Path("/usr/bin/time")


def run_process(
    cmd: Sequence[str | os.PathLike[str]],
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    exact_rss: bool = True,
) -> Run:
    """Run ``cmd`` to completion; return its wall time, peak RSS and output.

    stdout and stderr go to temporary files, not pipes, so a chatty child never blocks and
    the parent does no work while the child runs.

    Linux folds the pre-``exec`` image of a forked child into its ``ru_maxrss``, so measured
    straight from this (Python, ~25 MiB) process no child ever shows less than our own RSS.
    With ``exact_rss`` the command runs under GNU ``/usr/bin/time`` (a ~2 MiB parent, about a
    millisecond of extra start-up) and its ``%M`` is reported instead.
    """
    full_env = dict(os.environ)
    if env:
        full_env.update(env)
    argv = [str(c) for c in cmd]
    use_time = exact_rss and GNU_TIME.exists()
    with (
        tempfile.TemporaryFile() as out,
        tempfile.TemporaryFile() as err,
        tempfile.NamedTemporaryFile("r", suffix=".rss") as rss_file,
    ):
        if use_time:
            argv = [str(GNU_TIME), "-f", "%M", "-o", rss_file.name, *argv]
        start = time.perf_counter()
        proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=out, stderr=err, env=full_env, cwd=cwd
        )
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        max_rss = int(usage.ru_maxrss)
        if use_time:
            # On failure GNU time writes "Command exited with non-zero status N" first.
            lines = rss_file.read().split()
            if lines and lines[-1].isdigit():
                max_rss = int(lines[-1])
        out.seek(0)
        err.seek(0)
        return Run(
            seconds=seconds,
            max_rss_kib=max_rss,
            returncode=proc.returncode,
            stdout=out.read().decode(errors="replace"),
            stderr=err.read().decode(errors="replace"),
        )


# --------------------------------------------------------------------------- statistics


@dataclass
class Series:
    """Repeated measurements of one command."""

    label: str
    seconds: list[float] = field(default_factory=list)
    rss_kib: list[int] = field(default_factory=list)
    error: str | None = None

    def add(self, run: Run) -> None:
        self.seconds.append(run.seconds)
        self.rss_kib.append(run.max_rss_kib)

    @property
    def ok(self) -> bool:
        return self.error is None and bool(self.seconds)

    @property
    def min(self) -> float:
        return min(self.seconds)

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    @property
    def max(self) -> float:
        return max(self.seconds)

    @property
    def peak_rss_mib(self) -> float:
        return max(self.rss_kib) / 1024 if self.rss_kib else float("nan")

    def as_dict(self) -> dict[str, object]:
        if not self.ok:
            return {"label": self.label, "error": self.error}
        return {
            "label": self.label,
            "runs": len(self.seconds),
            "seconds": self.seconds,
            "min": self.min,
            "median": self.median,
            "max": self.max,
            "peak_rss_mib": round(self.peak_rss_mib, 1),
        }


def fmt_seconds(value: float) -> str:
    """``1.234 s`` or ``23.4 ms``."""
    return f"{value:.3f} s" if value >= 1 else f"{value * 1000:.1f} ms"


def ratio(a: Series, b: Series) -> float | None:
    """Median of ``a`` over median of ``b``, or None when either has no figures."""
    if not (a.ok and b.ok) or b.median == 0:
        return None
    return a.median / b.median


def fmt_ratio(value: float | None, goal: float | None = None, le: bool = True) -> str:
    """``0.62×`` plus, when a goal is given, ``(goal ≤ 0.70×: met)``."""
    if value is None:
        return "n/a"
    text = f"{value:.2f}×"
    if goal is not None:
        met = value <= goal if le else value >= goal
        text += f"  (goal {'≤' if le else '≥'} {goal:.2f}×: {'met' if met else 'NOT met'})"
    return text


def table(series: Sequence[Series], size_bytes: int | None = None, rss: bool = True) -> str:
    """A fixed-width table: min / median / max wall time, throughput, peak RSS."""
    width = max(len(s.label) for s in series) + 2
    head = f"{'command':<{width}}{'min':>11}{'median':>11}{'max':>11}"
    if size_bytes:
        head += f"{'MiB/s (med)':>13}"
    if rss:
        head += f"{'peak RSS':>12}"
    lines = [head, "-" * len(head)]
    for s in series:
        if not s.ok:
            lines.append(f"{s.label:<{width}}failed: {s.error}")
            continue
        line = (
            f"{s.label:<{width}}{fmt_seconds(s.min):>11}{fmt_seconds(s.median):>11}"
            f"{fmt_seconds(s.max):>11}"
        )
        if size_bytes:
            line += f"{size_bytes / MIB / s.median:>13.0f}"
        if rss:
            line += f"{s.peak_rss_mib:>8.1f} MiB"
        lines.append(line)
    return "\n".join(lines)


def dump_json(path: Path, payload: Mapping[str, object]) -> None:
    path.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    log(f"wrote {path}")


# --------------------------------------------------------------------------- tools


def modelhub_command() -> list[str]:
    """The ``modelhub`` console script beside this interpreter (or on PATH)."""
    beside = Path(sys.executable).parent / "modelhub"
    if beside.exists():
        return [str(beside)]
    found = shutil.which("modelhub")
    if found:
        return [found]
    raise BenchError("no modelhub command: run the bench with the project's .venv (make bench)")


def free_port() -> int:
    """A port free on 127.0.0.1 right now (for servers that cannot be told to bind port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, timeout: float = 10.0) -> None:
    """Return once something accepts connections on 127.0.0.1:``port``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise BenchError(f"nothing listening on 127.0.0.1:{port} after {timeout:.0f} s")


@contextlib.contextmanager
def server_process(
    cmd: list[str],
    *,
    what: str,
    log_file: Path | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 60,
) -> Iterator[str]:
    """Run a server that prints one line (its URL or port) on stdout; yield that line, stripped.

    stderr goes to ``log_file`` (or nowhere). If no line comes within ``timeout`` seconds, or
    the process exits first, raise ``BenchError`` with the log's last line. After the block the
    server gets SIGTERM, then SIGKILL if it has not exited within 30 s.
    """
    with log_file.open("wb") if log_file else contextlib.nullcontext(None) as err:
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=err if err is not None else subprocess.DEVNULL,
            env=env,
        )
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + timeout
        buffer = b""
        while b"\n" not in buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            ready, _, _ = select.select([proc.stdout], [], [], min(left, 0.2))
            if ready:
                chunk = os.read(proc.stdout.fileno(), 4096)
                if not chunk:
                    break
                buffer += chunk
            elif proc.poll() is not None:
                break
        line = buffer.split(b"\n", 1)[0].decode(errors="replace").strip()
        if not line:
            tail = ["no output"]
            if log_file is not None:
                text = log_file.read_text(errors="replace").strip()
                tail = text.splitlines()[-1:] or tail
            raise BenchError(f"{what} did not start: {tail[0]}")
        yield line
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


@contextlib.contextmanager
def mirror_serving(root: Path, log_file: Path | None = None) -> Iterator[str]:
    """``modelhub serve --root ROOT --port 0`` in its own process; yield its URL; stop it after.

    Its stderr (the access log) goes to ``log_file``, or nowhere.
    """
    cmd = [*modelhub_command(), "serve", "--root", str(root), "--port", "0"]
    with server_process(cmd, what="modelhub serve", log_file=log_file) as url:
        if not url.startswith("http://"):
            raise BenchError(f"modelhub serve did not start: printed {url!r}")
        yield url


def store_rel(ref: str, filename: str) -> str:
    """Where ``modelhub pull REF`` puts ``filename``, relative to the store (the store layout
    of ARCHITECTURE.md, e.g. a ``url:`` file under its host and path)."""
    from modelhub.refs import parse
    from modelhub.store import layout

    return layout.file_path(parse(ref), filename)


# --------------------------------------------------------------------------- nginx


def ensure_nginx() -> str:
    """Return the nginx binary; install Debian's ``nginx-light`` if it is missing (bench only)."""
    found = shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/sbin/nginx") if os.access(p, os.X_OK)), None
    )
    if found:
        return found
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise BenchError("nginx is not installed: apt-get install nginx-light")
    log("nginx missing: apt-get install -y nginx-light")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-q", "--no-install-recommends", "nginx-light"]
    if subprocess.run(install, env=env, stdin=subprocess.DEVNULL).returncode != 0:
        subprocess.run(["apt-get", "update", "-q"], env=env, stdin=subprocess.DEVNULL, check=False)
        subprocess.run(install, env=env, stdin=subprocess.DEVNULL, check=True)
    found = shutil.which("nginx") or "/usr/sbin/nginx"
    if not os.access(found, os.X_OK):
        raise BenchError("apt-get install nginx-light gave no nginx binary")
    return found


_NGINX_CONF = """\
{user}worker_processes 1;
daemon off;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 64; }}
http {{
    access_log off;
    default_type application/octet-stream;
    sendfile on;
    tcp_nopush on;
    keepalive_timeout 10;
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    server {{
        listen 127.0.0.1:{port};
        root {root};
        location / {{ }}
    }}
}}
"""


@contextlib.contextmanager
def nginx_serving(root: Path) -> Iterator[str]:
    """Serve ``root`` with nginx on a random 127.0.0.1 port; yield the base URL; stop it after."""
    binary = ensure_nginx()
    with tempfile.TemporaryDirectory(prefix="modelhub-bench-nginx-") as prefix:
        proc: subprocess.Popen[bytes] | None = None
        for _attempt in range(3):  # free_port() can race with another process: retry
            port = free_port()
            conf = Path(prefix) / "nginx.conf"
            # As root the workers would drop to 'nobody', who may not read a private temp dir.
            user = "user root;\n" if os.geteuid() == 0 else ""
            conf.write_text(
                _NGINX_CONF.format(user=user, prefix=prefix, port=port, root=root.resolve())
            )
            proc = subprocess.Popen(
                [binary, "-p", prefix, "-c", str(conf), "-e", f"{prefix}/error.log"],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
            try:
                wait_for_port(port, timeout=5)
                break
            except BenchError:
                proc.kill()
                _, err = proc.communicate()
                log(f"nginx did not start on port {port}: {err.decode(errors='replace')[-300:]}")
                proc = None
        if proc is None:
            raise BenchError("could not start nginx")
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            proc.send_signal(signal.SIGQUIT)  # graceful stop
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


# --------------------------------------------------------------------------- data


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(4 * MIB):
            digest.update(chunk)
    return digest.hexdigest()


def random_file(size_mib: int, directory: Path = DATA_DIR) -> tuple[Path, str]:
    """Return ``(path, sha256)`` of a random file of ``size_mib`` MiB, created once and cached.

    The hash is kept beside the file so later runs need not re-read it.
    """
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"random-{size_mib}MiB.bin"
    sidecar = path.with_suffix(".sha256")
    if path.is_file() and path.stat().st_size == size_mib * MIB and sidecar.is_file():
        return path, sidecar.read_text().strip()
    log(f"creating {path} ({size_mib} MiB of random bytes, once)")
    digest = hashlib.sha256()
    tmp = path.with_suffix(".tmp")
    with tmp.open("wb") as fh:
        for _ in range(size_mib):
            block = os.urandom(MIB)
            digest.update(block)
            fh.write(block)
    os.replace(tmp, path)
    sidecar.write_text(digest.hexdigest() + "\n")
    return path, digest.hexdigest()


def warm_page_cache(path: Path) -> None:
    """Read ``path`` once so every contender starts with it in the page cache."""
    with path.open("rb") as fh:
        while fh.read(4 * MIB):
            pass


def python_snippet(code: str) -> list[str]:
    """``[python, -c, code]`` with ``code`` dedented."""
    return [sys.executable, "-c", textwrap.dedent(code)]

"""The fault table: every hub × every fault, through a real proxy in front of `modelhub serve`.

Each case ends in one of two ways, and nothing else:

- success: the model's files are in the store byte for byte (sha256 of the served model), the
  manifest verifies, nothing is left in ``.modelhub/tmp``;
- the contract's exit code with one error line, nothing half-written under a final name (only
  complete, verified files may carry a final name), no manifest, no lock left to block the
  next run, and the next run succeeds.

Every row's model bytes go through modelhub's transfer engine (hf: its large LFS files, written
into huggingface_hub's cache layout), so every row must survive network faults within one run
and resume rather than restart (bytes fetched, measured at the proxy, < 1.3x the file). A
scenario marked ``sdk_retries`` (none today) would be a transport that is an SDK's own: its
faults may end the run with the contract's exit code, and its bytes are recorded, not bounded.

Transport rows pull with the cheapest stage (``--stage none`` where the hub's default stage
imports a framework): the faults are in the transfer; the staging row uses the default stage.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.faults.checks import half_written, live_bytes, manifests, tmp_files, verified
from tests.faults.conftest import Case
from tests.faults.hubs import FAULTS, HUBS, PATHS, MiB

MAX_FETCH_RATIO = 1.3
SIGNATURE_LIFETIME = 0.3  # seconds a signed URL of the signed_expiry row is served
ONE_ERROR_LINE = re.compile(r"^modelhub: error: \S.*$", re.MULTILINE)


# --- shared checks --------------------------------------------------------------------------------
def _record(request: pytest.FixtureRequest, case: Case, lost: int) -> None:
    """What the summary reports of this cell (tests.faults.summary; the item already carries
    its ``fault_row``, tagged at collection, so a skip before this still names the cell)."""
    request.node.user_properties += [
        ("outcome", case.outcome),
        ("bytes_lost", lost),
        ("bytes_unverifiable", case.unverified),
        ("bytes_fetched", case.proxy.sent(case.scenario.target)),
        ("file_size", case.scenario.size),
    ]


def _assert_success(case: Case, staging: bool = False) -> int:
    """The model is in the store, verified; returns bytes lost (0 when it passes)."""
    from modelhub import Store, parse

    sc = case.scenario
    expected = sc.staging_files if staging and sc.staging_files else sc.files
    problems, lost = verified(case.store, expected)
    store = Store(case.store)
    manifest = store.manifest(parse(case.ref(staging)))
    assert manifest is not None, "no manifest after a successful pull"
    assert {f.path for f in manifest.files} == set(expected)
    problems += store.verify(manifest)
    assert not problems, problems
    assert not tmp_files(case.store), tmp_files(case.store)
    return lost


def _assert_clean_failure(case: Case, staging: bool = False) -> int:
    """Nothing half-written, no manifest, the model's lock is free; returns bytes lost."""
    from modelhub import Store, parse

    sc = case.scenario
    expected = sc.staging_files if staging and sc.staging_files else sc.files
    problems, lost = half_written(case.store, expected, sc.known, sc.staged_names)
    assert not manifests(case.store), "a failed pull must not write a manifest"
    assert not problems, problems
    with Store(case.store).lock(parse(case.ref(staging)), timeout=5):
        pass  # a held (or stale) lock would time out here
    tfhub_cache = Path(case.env["TFHUB_CACHE_DIR"])
    if tfhub_cache.is_dir():
        assert not list(tfhub_cache.glob("*.lock")), "a stale tensorflow_hub lock file is left"
        for folder in tfhub_cache.iterdir():
            if folder.is_dir() and re.fullmatch(r"[0-9a-f]{40}", folder.name):
                assert (folder / "saved_model.pb").is_file(), f"a partial module in {folder}"
    kaggle_cache = Path(case.env.get("KAGGLEHUB_CACHE") or case.store / "no-kagglehub-cache")
    served = {sha for sha, _ in expected.values()}
    for marker in kaggle_cache.glob("models/*/*/*/*/*.complete"):
        if not marker.is_file():
            continue  # the per-file markers' folder (.complete/)
        version = marker.with_name(marker.name.removesuffix(".complete"))
        got = {
            hashlib.sha256(p.read_bytes()).hexdigest() for p in version.rglob("*") if p.is_file()
        }
        assert got and got <= served, f"kagglehub's cache marks {version} complete, wrongly"
    return lost


def _assert_one_error_line(
    err: str, code: int, expected_code: int, case: Case | None = None
) -> str:
    lines = ONE_ERROR_LINE.findall(err)
    if case is not None:
        case.outcome = f"exit {code}" + (f": {lines[0]}" if lines else "")
    assert code == expected_code, f"exit {code}, expected {expected_code}: {err[-2000:]}"
    assert len(lines) == 1, f"expected one error line, got: {err[-2000:]}"
    return lines[0]


def _rerun_in_process(case: Case, args: list[str]) -> None:
    case.proxy.clear()
    code, _, err = case.cli("pull", case.ref(), *args)
    assert code == 0, f"the next run must recover: exit {code}: {err}"


def _under_bound(case: Case) -> None:
    sc = case.scenario
    fetched = case.proxy.sent(sc.target)
    if sc.sdk_retries:
        return  # the SDK's own transfer: its resume granularity is not modelhub's promise
    assert fetched < MAX_FETCH_RATIO * sc.size, (
        f"fetched {fetched} bytes for a {sc.size}-byte file: restarted instead of resuming "
        f"({[(e.status, e.sent, e.headers.get('range')) for e in case.proxy.exchanges(sc.target)]})"
    )


def _pull_maybe_retried_by_sdk(case: Case, args: list[str]) -> int:
    """Pull once; a hub whose SDK gave up may exit 6 (clean), then the next run must succeed.

    Returns the first run's exit code.
    """
    code, _, err = case.cli("pull", case.ref(), *args)
    if code != 0:
        assert case.scenario.sdk_retries, f"modelhub's transfer must survive this: {err}"
        _assert_one_error_line(err, code, 6, case)
        _assert_clean_failure(case)
        _rerun_in_process(case, args)
    return code


# --- the rows ---------------------------------------------------------------------------------
def row_reset(case: Case) -> int:
    """Connection reset (TCP RST) in the middle of the body: resumed, not restarted."""
    sc = case.scenario
    case.proxy.add("reset", sc.target, after=sc.size // 2)
    _pull_maybe_retried_by_sdk(case, sc.transport_args)
    assert [e.fault for e in case.proxy.exchanges(sc.target)].count("reset") == 1
    _under_bound(case)
    return _assert_success(case)


def row_5xx_burst(case: Case) -> int:
    """503, 502, 500 in a row on the model's file, then the real answer."""
    sc = case.scenario
    for status in (503, 502, 500):
        case.proxy.add("status", sc.target, status=status)
    first = _pull_maybe_retried_by_sdk(case, sc.transport_args)
    statuses = [e.status for e in case.proxy.exchanges(sc.target, "GET")]
    burst = [503] if first else [503, 502, 500]  # an SDK that gave up met only the first
    assert statuses[: len(burst)] == burst and statuses[-1] in (200, 206), statuses
    _under_bound(case)
    return _assert_success(case)


def row_429_retry_after(case: Case) -> int:
    """429 with Retry-After: 1 — the next request waits at least that long."""
    sc = case.scenario
    case.proxy.add("status", sc.target, status=429, retry_after="1")
    _pull_maybe_retried_by_sdk(case, sc.transport_args)
    gets = case.proxy.exchanges(sc.target, "GET")
    assert gets[0].status == 429 and len(gets) >= 2
    waited = gets[1].started - gets[0].started
    assert waited >= 0.95, f"Retry-After: 1 not honoured (next request after {waited:.3f} s)"
    return _assert_success(case)


def row_wrong_bytes(case: Case) -> int:
    """One byte flipped in the body (same length, same headers): integrity failure, exit 5."""
    sc = case.scenario
    case.proxy.add("wrong_bytes", sc.target)
    code, _, err = case.cli("pull", case.ref(), *sc.transport_args)
    if code == 0 and sc.unverifiable:
        case.outcome = "xfail"
        case.unverified = verified(case.store, sc.files)[1]
        pytest.xfail(sc.unverifiable)
    if code == 0:
        # Accepted: the bytes in the store are then the corrupt ones, and that is the finding.
        lost = case.lost = verified(case.store, sc.files)[1]
        pytest.fail(
            f"{sc.hub}: a body with a flipped byte was accepted into the store "
            f"({lost} bytes under final names differ from the served model)"
        )
    line = _assert_one_error_line(err, code, 5, case)
    assert re.search(r"sha256|hash|md5|archive|gzip|CRC|integrity", line, re.IGNORECASE), line
    lost = _assert_clean_failure(case)
    _rerun_in_process(case, sc.transport_args)
    return lost + _assert_success(case)


def row_truncated(case: Case) -> int:
    """A clean close after a third of the body under the full Content-Length: resumed."""
    sc = case.scenario
    case.proxy.add("truncate", sc.target, after=sc.size // 3)
    _pull_maybe_retried_by_sdk(case, sc.transport_args)
    _under_bound(case)
    return _assert_success(case)


def row_stall(case: Case) -> int:
    """The server sends headers, then nothing: exit 6 within the timeout, one clear line."""
    sc = case.scenario
    case.proxy.add("stall", sc.target, after=0, times=-1, seconds=120)
    started = time.monotonic()
    proc = case.run(
        "pull",
        case.ref(),
        *sc.transport_args,
        timeout=120,
        MODELHUB_TIMEOUT="1",
        MODELHUB_RETRIES="1",
        HF_HUB_DOWNLOAD_TIMEOUT="1",
        HF_HUB_ETAG_TIMEOUT="1",
    )
    elapsed = time.monotonic() - started
    line = _assert_one_error_line(proc.stderr, proc.returncode, 6, case)
    assert re.search(r"timed? ?out|timeout", line, re.IGNORECASE), line
    assert elapsed < 60, f"a 1 s timeout took {elapsed:.1f} s to give up"
    lost = _assert_clean_failure(case)
    _rerun_in_process(case, sc.transport_args)
    return lost + _assert_success(case)


def _kill_when(proc: subprocess.Popen[str], ready: Callable[[], bool], timeout: float) -> bool:
    """SIGKILL ``proc`` as soon as ``ready()``; False if it ended (or timed out) first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        if ready():
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
            return True
        time.sleep(0.005)
    proc.kill()
    proc.wait(timeout=30)
    return False


def _inflight_bytes(case: Case) -> int:
    # Polled while the pull runs: the SDK creates and removes temporary folders in its cache.
    hf_cache = Path(case.env["HF_HUB_CACHE"])
    return live_bytes(case.store / ".modelhub" / "tmp") + live_bytes(hf_cache, ".incomplete")


def row_kill_download(case: Case) -> int:
    """kill -9 while half the file is in: the next run resumes it (no partial final file)."""
    sc = case.scenario
    # Halfway, but past the first 4 MiB receive buffer: what a killed process loses is the
    # buffer it was filling (see hubs.SIZE); the resume from what reached the disk is measured.
    half = max(sc.size // 2, min(sc.size - MiB, 5 * MiB))
    case.proxy.add("stall", sc.target, after=half, seconds=120)
    proc = case.spawn("pull", case.ref(), *sc.transport_args)
    seen: dict[str, Any] = {"bytes": None, "since": time.monotonic()}

    def stalled_halfway() -> bool:
        # Half the file sent, and what the client wrote of it (the part file; hf: the SDK's
        # .incomplete blob) has stopped growing: the process is inside the transfer, blocked.
        # On the shaped path the link must be idle too: the proxy's bytes queue in the shaper
        # and reach the client at the link's rate, seconds after the proxy sent them.
        if case.proxy.sent(sc.target) < half:
            return False
        now = time.monotonic()
        size = (_inflight_bytes(case), case.link.delivered if case.link else 0)
        if size != seen["bytes"]:
            seen.update(bytes=size, since=now)
        return now - seen["since"] >= 0.3

    killed = _kill_when(proc, stalled_halfway, timeout=120)
    case.outcome = "killed"
    assert killed, f"the pull ended before it could be killed: {proc.stderr.read()[-2000:]}"
    lost = _assert_clean_failure(case)
    case.proxy.clear()
    again = case.run("pull", case.ref(), *sc.transport_args, timeout=120)
    assert again.returncode == 0, f"the next run must recover: {again.stderr[-2000:]}"
    _under_bound(case)
    return lost + _assert_success(case)


def row_kill_staging(case: Case) -> int:
    """kill -9 after the originals are published, while staging runs: the next run stages from
    the verified originals (no new download), and gc leaves no scratch file behind."""
    sc = case.scenario
    expected = sc.staging_files or sc.files
    if sc.hub == "hf" and sc.staging_ref is None:
        pytest.skip("hf: staging (--stage onnx) needs torch + transformers")
    if "none" in sc.staging_args:
        pytest.skip(f"{sc.hub}: staging (freezing to .pb) needs tensorflow")
    target = sc.staging_target or sc.target

    since: list[float] = []

    def published() -> bool:
        if manifests(case.store) or not all(
            (case.store / rel).is_file() and (case.store / rel).stat().st_size == size
            for rel, (_, size) in expected.items()
        ):
            return False
        if sc.staging_marker is not None:
            var, rel = sc.staging_marker
            if not (Path(case.env[var]) / rel).is_file():
                return False
        since.append(time.monotonic())
        return since[-1] - since[0] >= sc.staging_settle

    proc = case.spawn("pull", case.ref(staging=True), *sc.staging_args)
    killed = _kill_when(proc, published, timeout=180)
    case.outcome = "killed"
    assert killed, f"the pull ended before staging could be interrupted: {proc.stderr.read()}"
    assert not manifests(case.store), "staging finished before the kill landed"
    lost = _assert_clean_failure(case, staging=True)
    fetched = case.proxy.sent(target)
    again = case.run("pull", case.ref(staging=True), *sc.staging_args, timeout=300)
    assert again.returncode == 0, f"the next run must recover: {again.stderr[-3000:]}"
    assert case.proxy.sent(target) == fetched, "verified originals were downloaded again"
    from modelhub import Store, parse

    manifest = Store(case.store).manifest(parse(case.ref(staging=True)))
    assert manifest is not None
    if sc.staged_names and "none" not in sc.staging_args:
        assert {s.path for s in manifest.staged} & set(sc.staged_names), manifest.staged
    code, _, err = case.cli("gc")
    assert code == 0, err
    assert not tmp_files(case.store), "gc must remove what the killed process left in tmp"
    return lost + _assert_success(case, staging=True)


@contextlib.contextmanager
def _small_filesystem(where: Path, size: str) -> Iterator[Path]:
    where.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("disk full: needs root to mount a size-limited tmpfs (not root here)")
    proc = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(where)],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        pytest.skip(f"disk full: cannot mount a tmpfs here ({proc.stderr.strip()})")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], capture_output=True)


def row_disk_full(case: Case) -> int:
    """The store (and the SDK caches) on a 1 MiB filesystem: exit 1 naming the full disk,
    nothing half-written, the in-flight file removed; once there is room, the next run works."""
    sc = case.scenario
    with _small_filesystem(case.tmp / "small", "1m") as small:
        case.store = small / "store"
        case.tmp = small
        code, _, err = case.cli("pull", case.ref(), *sc.transport_args)
        line = _assert_one_error_line(err, code, 1, case)
        assert re.search(r"no space left|disk (is )?full", line, re.IGNORECASE), line
        lost = _assert_clean_failure(case)
        parts = [p for p in tmp_files(case.store) if p.stat().st_size]
        assert not parts, f"a failed download on a full disk must free its space: {parts}"
        subprocess.run(["mount", "-o", "remount,size=64m", str(small)], check=True)
        _rerun_in_process(case, sc.transport_args)
        return lost + _assert_success(case)


def row_signed_expiry(case: Case) -> int:
    """The file's request is answered with a redirect to a signed URL that storage refuses
    (403) SIGNATURE_LIFETIME seconds after signing, and the first signed response is cut at a
    third: every later request needs a fresh signature, which only the original URL hands out.
    Survived by resolving the original URL again, resumed (not restarted)."""
    sc = case.scenario
    case.proxy.add("expire", sc.target, times=-1, seconds=SIGNATURE_LIFETIME)
    case.proxy.add("truncate", sc.target, after=sc.size // 3)
    _pull_maybe_retried_by_sdk(case, sc.transport_args)
    gets = case.proxy.exchanges(sc.target, "GET")
    assert sum(e.fault == "truncate" for e in gets) == 1, [(e.fault, e.status) for e in gets]
    signed = sum(e.fault == "expire" for e in gets)
    assert signed >= 2, f"the original URL was resolved {signed} time(s): no fresh signature"
    _under_bound(case)
    return _assert_success(case)


ROWS: dict[str, Callable[[Case], int]] = {
    "reset": row_reset,
    "5xx_burst": row_5xx_burst,
    "429_retry_after": row_429_retry_after,
    "wrong_bytes": row_wrong_bytes,
    "truncated": row_truncated,
    "stall": row_stall,
    "kill_download": row_kill_download,
    "kill_staging": row_kill_staging,
    "disk_full": row_disk_full,
    "signed_expiry": row_signed_expiry,
}


@pytest.mark.filterwarnings("ignore:Not enough free disk space:UserWarning")  # disk_full: hf
@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("fault", FAULTS)
@pytest.mark.parametrize("hub", HUBS)
def test_fault(hub: str, fault: str, path: str, make_case, request: pytest.FixtureRequest) -> None:
    case = make_case(hub, path=path)
    try:
        case.lost = max(case.lost, ROWS[fault](case))
    finally:
        _record(request, case, case.lost)
    assert case.lost == 0, f"{case.lost} bytes under final names are not the served model's"


@pytest.mark.parametrize("hub", ["tfhub"])
def test_kill_during_extraction_leaves_no_blocking_lock(hub: str, make_case) -> None:
    """kill -9 while the SavedModel archive is extracted into tensorflow_hub's cache (under
    its ``<sha1>.lock`` file protocol): the next run must not wait for the dead owner.

    The lock exists only while the archive is extracted (tens of milliseconds): a pull that
    finished before the kill landed proves nothing, so the store and the cache are emptied and
    the pull is tried again; never landing in five tries fails (this test does not skip)."""
    case = make_case(hub)
    sc = case.scenario
    cache = Path(case.env["TFHUB_CACHE_DIR"])
    for _ in range(5):
        proc = case.spawn("pull", case.ref(), *sc.transport_args)
        if _kill_when(proc, lambda: any(cache.glob("*.lock")), timeout=120):
            break
        ended = f"exit {proc.returncode}: {proc.stderr.read()[-2000:] if proc.stderr else ''}"
        shutil.rmtree(case.store, ignore_errors=True)
        shutil.rmtree(cache, ignore_errors=True)
    else:
        pytest.fail(f"the pull ended before the kill could land, five times out of five ({ended})")
    case.outcome = "killed"
    assert not manifests(case.store)
    started = time.monotonic()
    try:
        again = case.run("pull", case.ref(), *sc.transport_args, timeout=30)
    except subprocess.TimeoutExpired:
        pytest.fail(
            f"the next run still waited after 30 s: the dead process's lock "
            f"{[p.name for p in cache.glob('*.lock')]} blocks it"
        )
    waited = time.monotonic() - started
    assert again.returncode == 0, again.stderr[-2000:]
    assert waited < 20, f"the next run waited {waited:.0f} s for the dead process's lock"
    assert _assert_success(case) == 0


def test_shaped_link_makes_modelhub_go_parallel(make_case) -> None:
    """On the shaped link (one connection capped, a round trip per request) the ranged probe
    finds one connection slow and the rest worth splitting: several ranged requests over
    several connections (on loopback one connection outruns the disk: tests/test_transfer.py)."""
    case = make_case("onnx", path="shaped")
    sc = case.scenario
    code, _, err = case.cli("pull", case.ref(), *sc.transport_args)
    assert code == 0, err
    ranges = [e.headers.get("range") for e in case.proxy.exchanges(sc.target, "GET")]
    assert len(ranges) >= 3 and all(r and r.startswith("bytes=") for r in ranges), ranges
    _assert_success(case)

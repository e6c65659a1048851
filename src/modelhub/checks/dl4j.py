"""``modelhub check --importer dl4j``: import staged models with Deeplearning4j's real importers.

The Java harness (``interop/dl4j/``, Maven, the newest DL4J release on Maven Central) imports
each staged artifact — ``.onnx`` with SameDiff's ONNX framework importer, ``.pb`` with its
TensorFlow framework importer, ``.h5`` with ``KerasModelImport`` — runs it on the staging's
parity fixture (the seeded inputs and the *source's* outputs, ``<staged>.fixture.npz``) and
reports per artifact: imported?, the importer's first error line, the max abs difference.

The harness is built once per version of its sources, under the store's
``.modelhub/cache/dl4j/<digest>/`` (Maven's own cache, ``~/.m2``, holds the dependencies), and
runs in its own JVM. Each result is recorded in the model's manifest, on its staged entry:
``imports: {dl4j: {version, ok, max_abs_diff, error, checked_on}}``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ..errors import MissingToolError, StagingError, UsageError
from ..refs import ModelRef, parse
from ..store import Manifest, StagedEntry, Store
from ..store.locking import file_lock
from ..store.manifest import utc_now

IMPORTER = "dl4j"
#: Staged formats DL4J has an importer for.
FORMATS = ("onnx", "pb", "h5")
BUILD_TIMEOUT = 3600.0
RUN_TIMEOUT = 3600.0
JAR = "modelhub-dl4j-harness.jar"


@dataclass(frozen=True)
class ImportResult:
    """One staged artifact as DL4J saw it."""

    ref: str
    path: str
    format: str
    ok: bool
    max_abs_diff: float | None
    error: str | None
    stage: str


def harness_source() -> Path:
    """The harness's Maven project: ``$MODELHUB_DL4J_HARNESS``, else ``interop/dl4j`` of the
    modelhub checkout this package runs from. Raises UsageError when there is none."""
    env = os.environ.get("MODELHUB_DL4J_HARNESS", "").strip()
    candidates = [Path(env)] if env else []
    candidates.append(Path(__file__).resolve().parents[3] / "interop" / "dl4j")
    for folder in candidates:
        if (folder / "pom.xml").is_file():
            return folder
    raise UsageError(
        "the DL4J harness (interop/dl4j, a Maven project) is not here: set "
        "MODELHUB_DL4J_HARNESS to its folder in a modelhub checkout"
    )


def _digest(source: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted([source / "pom.xml", *source.rglob("src/**/*")]):
        if path.is_file():
            digest.update(path.relative_to(source).as_posix().encode() + b"\0")
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def _tools() -> tuple[str, str]:
    java, mvn = shutil.which("java"), shutil.which("mvn")
    if not java or not mvn:
        missing = " and ".join(n for n, p in (("java", java), ("mvn", mvn)) if not p)
        raise MissingToolError(
            f"modelhub check --importer dl4j needs a Java 17 JDK and Maven on PATH ({missing} "
            "not found): e.g. apt-get install openjdk-17-jdk-headless maven"
        )
    return java, mvn


def build(store: Store) -> tuple[Path, str]:
    """The harness jar and its class path, built now unless this version of its sources was
    built before in ``store``'s cache. Raises MissingToolError, StagingError (build failed)."""
    _, mvn = _tools()
    source = harness_source()
    home = store.cache_dir(IMPORTER, _digest(source))
    jar, classpath = home / "target" / JAR, home / "target" / "classpath.txt"
    if jar.is_file() and classpath.is_file():
        return jar, classpath.read_text(encoding="utf-8").strip()
    home.mkdir(parents=True, exist_ok=True)
    with file_lock(home / ".build.lock"):  # two checks at once: one builds, one waits
        if jar.is_file() and classpath.is_file():
            return jar, classpath.read_text(encoding="utf-8").strip()
        return _build(mvn, source, home, jar, classpath)


def _build(mvn: str, source: Path, home: Path, jar: Path, classpath: Path) -> tuple[Path, str]:
    work = home / "project"
    shutil.rmtree(work, ignore_errors=True)
    shutil.copytree(source, work, ignore=shutil.ignore_patterns("target", "*.iml", ".idea"))
    proc = subprocess.run(
        [mvn, "-q", "-B", "-f", str(work / "pom.xml"), "package", "-DskipTests"],
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT,
        stdin=subprocess.DEVNULL,
    )
    built_jar = work / "target" / JAR
    built_cp = work / "target" / "classpath.txt"
    if proc.returncode != 0 or not built_jar.is_file() or not built_cp.is_file():
        lines = [ln for ln in (proc.stdout + proc.stderr).splitlines() if "ERROR" in ln]
        first = (lines or (proc.stdout + proc.stderr).strip().splitlines() or ["no output"])[0]
        raise StagingError(
            f"building the DL4J harness failed (mvn exit {proc.returncode}): {first}"
        )
    (home / "target").mkdir(exist_ok=True)
    shutil.copyfile(built_cp, classpath)
    os.replace(built_jar, jar)
    return jar, classpath.read_text(encoding="utf-8").strip()


def _job_id(ref: str, path: str) -> str:
    """A job's id: the model and the staged file's path (not its index: the manifest may be
    staged again between the run and the recording, which happen under separate locks)."""
    return f"{ref}#{path}"


def _jobs(
    store: Store, manifest: Manifest
) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]]]:
    """The harness's jobs for ``manifest``'s staged files that DL4J imports and that have a
    fixture, and failed records (by job id) for those whose fixture no longer has the sha256
    the manifest recorded: not sent, the numbers would be checked against something else."""
    from ..store.files import sha256_file

    jobs, damaged = [], {}
    for staged in manifest.staged:
        if staged.format not in FORMATS or not staged.fixture:
            continue
        job_id, fixture = _job_id(manifest.ref, staged.path), staged.fixture["path"]
        tolerance = (staged.parity or {}).get("tolerance", 1e-4)
        jobs.append(
            {
                "id": job_id,
                "format": staged.format,
                "path": staged.path,
                "fixture": fixture,
                "inputs": list(staged.inputs),
                "outputs": list(staged.outputs),
                "tolerance": float(tolerance),
            }
        )
        try:
            sha, _ = sha256_file(store.abspath(fixture))
        except OSError:
            sha = None
        if sha != staged.fixture.get("sha256"):
            damaged[job_id] = {
                "id": job_id,
                "ok": False,
                "stage": "fixture",
                "max_abs_diff": None,
                "error": (
                    f"the parity fixture {fixture} is missing or changed since staging "
                    "(sha256): modelhub verify --repair"
                ),
            }
    return jobs, damaged


def _no_fixture(entry: StagedEntry) -> str:
    """Why ``entry`` has no parity fixture, and what to do."""
    reason = entry.details.get("fixture_error")
    if reason:
        first = str(reason).strip().splitlines()[0]
        return (
            "no parity fixture, DL4J not run: the source failed on the staging's seeded "
            f"inputs ({first})"
        )
    return "no parity fixture (staged before fixtures existed): stage it again (pull --force)"


def run(store: Store, manifests: Sequence[Manifest]) -> tuple[str, list[dict[str, Any]]]:
    """Run the harness over every DL4J-importable staged artifact of ``manifests``; return
    (DL4J version, the harness's result records by job)."""
    java, _ = _tools()
    jar, classpath = build(store)
    every: list[dict[str, Any]] = []
    damaged: dict[str, dict[str, Any]] = {}
    for manifest in manifests:
        found, bad = _jobs(store, manifest)
        every += found
        damaged.update(bad)
    jobs = [job for job in every if job["id"] not in damaged]
    if not jobs:
        return "", list(damaged.values())
    work = store.tmp_dir / f"dl4j-{os.getpid()}-{os.urandom(4).hex()}"
    work.mkdir(parents=True)
    try:
        (work / "jobs.json").write_text(
            json.dumps({"store": str(store.root), "jobs": jobs}), encoding="utf-8"
        )
        proc = subprocess.run(
            [
                java,
                "-cp",
                f"{jar}{os.pathsep}{classpath}",
                "org.modelhub.dl4j.Harness",
                str(work / "jobs.json"),
                str(work / "out.json"),
            ],
            capture_output=True,
            text=True,
            timeout=RUN_TIMEOUT,
            stdin=subprocess.DEVNULL,
        )
        try:
            out = json.loads((work / "out.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            raise StagingError(
                f"the DL4J harness wrote no results (java exit {proc.returncode}): {tail}"
            ) from None
    finally:
        shutil.rmtree(work, ignore_errors=True)
    by_id = {r.get("id"): r for r in out.get("results") or [] if isinstance(r, dict)}
    # A job the JVM died in (a native crash) has no result: it failed, and says so.
    by_id.update(damaged)
    results = [
        by_id.get(job["id"])
        or {
            "id": job["id"],
            "ok": False,
            "stage": "import",
            "max_abs_diff": None,
            "error": f"the JVM died (exit {proc.returncode}) importing {job['path']}",
        }
        for job in every
    ]
    return str(out.get("dl4j_version") or ""), results


def check(store: Store, refs: Sequence[ModelRef]) -> list[ImportResult]:
    """Import every staged artifact of ``refs`` into DL4J and record each result in its
    manifest (under the model's lock). Staged files with no fixture (staged before fixtures
    existed) are recorded as failed, saying to stage again."""
    manifests = [store.require(ref) for ref in refs]
    version, records = run(store, manifests)
    by_id = {r["id"]: r for r in records}
    found: list[ImportResult] = []
    for ref in refs:
        with store.lock(ref):
            current = store.require(ref)
            staged: list[StagedEntry] = []
            for entry in current.staged:
                record = by_id.get(_job_id(current.ref, entry.path))
                if record is None and entry.format in FORMATS and not entry.fixture:
                    record = {
                        "ok": False,
                        "stage": "fixture",
                        "max_abs_diff": None,
                        "error": _no_fixture(entry),
                    }
                if record is None:
                    staged.append(entry)
                    continue
                ok = bool(record.get("ok"))
                diff = record.get("max_abs_diff")
                diff = float(diff) if isinstance(diff, int | float) else None
                error = str(record["error"]) if record.get("error") else None
                result = {
                    "version": version,
                    "ok": ok,
                    "max_abs_diff": diff,
                    "error": error,
                    "checked_on": utc_now(),
                }
                staged.append(replace(entry, imports={**entry.imports, IMPORTER: result}))
                found.append(
                    ImportResult(
                        current.ref,
                        entry.path,
                        entry.format,
                        ok,
                        diff,
                        error,
                        str(record.get("stage") or ""),
                    )
                )
            store.write_manifest(replace(current, staged=staged), ref)
    return found


def all_refs(store: Store) -> list[ModelRef]:
    """Every model in ``store`` with a staged artifact DL4J can import."""
    return sorted(
        (parse(m.ref) for _, m in store.manifests() if any(s.format in FORMATS for s in m.staged)),
        key=lambda r: r.canonical,
    )

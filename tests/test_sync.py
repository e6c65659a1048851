"""``modelhub sync``: a model set across four hubs through ``modelhub serve``, and its lock.

The upstream is a seed store served by the mirror (onnx:, hf:, tfhub: in the hubs' own
protocols) plus a plain HTTP server for url: files. "Upstream changed" is real: a model is
imported again into the seed store with other content (the mirror re-reads its manifests), or
the HTTP server is given other bytes.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from modelhub.cli.main import main
from modelhub.errors import EXIT_CHANGES, LockMismatchError
from modelhub.importer import import_path
from modelhub.lockfile import LOCK_NAME, read_lock
from modelhub.mirror.app import BackgroundMirror
from modelhub.modelset import load_specs
from modelhub.refs import parse
from modelhub.store import Store
from modelhub.sync import sync
from modelhub.sync_order import Picker, schedule
from tests.support.httpserver import HTTPTestServer
from tests.support.mirror_fixtures import make_hf_snapshot, make_savedmodel_folder
from tests.support.onnx_models import make_mlp

ONNX = [f"onnx:mlp-{i}" for i in range(4)]
HF = [f"hf:test-org/tiny-{i}" for i in range(3)]
TFHUB = [f"tfhub:test/sm-{i}/1" for i in range(2)]
URL_FILES = {"/models/u0.onnx": "onnx", "/models/u1.tflite": "tflite", "/models/u2.bin": "bin"}


@dataclass
class Upstream:
    """The seed store behind a running mirror, an HTTP file server, and the model set."""

    tmp: Path
    seed: Store
    mirror: BackgroundMirror
    files: HTTPTestServer
    refs: list[str] = field(default_factory=list)

    def url_ref(self, path: str) -> str:
        return f"url:{self.files.url}{path}"

    def reimport(self, ref: str, seed: int) -> None:
        """Publish other content for ``ref`` upstream (as a force-push or re-quantisation)."""
        mref = parse(ref)
        src = self.tmp / "changed" / f"{mref.hub}-{seed}"
        if mref.hub == "onnx":
            src = make_mlp(src / f"{mref.name}-13.onnx", seed=seed, opset=13)
        elif mref.hub == "hf":
            make_hf_snapshot(src, seed=seed)
        else:
            make_savedmodel_folder(src, seed=seed)
        with self.seed.lock(mref):
            import_path(self.seed, src, mref, force=True)

    def toml(self, folder: Path, refs: list[str] | None = None, extra: str = "") -> Path:
        """Write modelhub.toml for ``refs`` (default: all) into ``folder``; return its path."""
        lines = []
        for ref in refs if refs is not None else self.refs:
            lines += ["[[model]]", f'ref = "{ref}"']
            if ref.startswith("tfhub:"):
                lines.append('stage = "none"')  # freezing needs TensorFlow; fetching does not
            lines.append("")
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / "modelhub.toml"
        path.write_text("\n".join(lines) + extra, encoding="utf-8")
        return path


def _import(store: Store, src: Path, ref: str) -> None:
    mref = parse(ref)
    with store.lock(mref):
        import_path(store, src, mref)


@pytest.fixture
def upstream(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Upstream]:
    """12 models on four hubs: 4 onnx:, 3 hf:, 2 tfhub: through the mirror; 3 url: files."""
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.setenv("TFHUB_CACHE_DIR", str(tmp_path / "tfhub-cache"))
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    monkeypatch.setenv("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    monkeypatch.setenv("MODELHUB_LINK_MODE", "hardlink")
    src = tmp_path / "src"
    seed = Store(tmp_path / "seed")
    for i, ref in enumerate(ONNX):
        _import(seed, make_mlp(src / f"mlp-{i}-13.onnx", seed=i, opset=13), ref)
    for i, ref in enumerate(HF):
        make_hf_snapshot(src / f"hf-{i}", seed=i)
        _import(seed, src / f"hf-{i}", ref)
    for i, ref in enumerate(TFHUB):
        make_savedmodel_folder(src / f"sm-{i}", seed=i)
        _import(seed, src / f"sm-{i}", ref)
    files = HTTPTestServer()
    files.add("/models/u0.onnx", make_mlp(src / "u0.onnx", seed=20).read_bytes())
    files.add("/models/u1.tflite", bytes(range(256)) * 20)
    files.add("/models/u2.bin", b"PK\x03\x04" + bytes(range(200)) * 10)
    mirror = BackgroundMirror(seed.root, record=True)
    with files:
        url = mirror.start()
        try:
            monkeypatch.setenv("MODELHUB_MIRROR", url)
            up = Upstream(tmp_path, seed, mirror, files)
            up.refs = ONNX + HF + TFHUB + [up.url_ref(p) for p in URL_FILES]
            yield up
        finally:
            mirror.stop()


def _fresh_store(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, name: str) -> Path:
    """Point the test at a new empty store and empty SDK caches (another machine)."""
    root = tmp_path / name
    monkeypatch.setenv("MODELHUB_PATH", str(root / "store"))
    monkeypatch.setenv("HF_HUB_CACHE", str(root / "hf-cache"))
    monkeypatch.setenv("TFHUB_CACHE_DIR", str(root / "tfhub-cache"))
    return root / "store"


def _sync_json(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict]:
    capsys.readouterr()
    code = main(["sync", *args, "--json"])
    return code, json.loads(capsys.readouterr().out)


def test_sync_twelve_models_four_hubs(
    upstream: Upstream, tmp_path: Path, store_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    toml = upstream.toml(tmp_path / "project")
    code, doc = _sync_json(capsys, str(toml), "--jobs", "4")
    assert code == 0, doc
    assert [m["ref"] for m in doc["models"]] == [parse(r).canonical for r in upstream.refs]
    assert {m["status"] for m in doc["models"]} == {"ok"}
    assert doc["lock_written"] is True
    assert len({parse(r).hub for r in upstream.refs}) == 4

    lock = read_lock(toml.parent / LOCK_NAME)
    assert lock is not None and sorted(lock) == sorted(parse(r).canonical for r in upstream.refs)
    store = Store(store_root)
    for ref, entry in lock.items():
        manifest = store.require(parse(ref))
        assert entry.revision == manifest.revision
        assert entry.files and not entry.differences(manifest)
        for f in entry.files:  # the store holds exactly the locked bytes
            assert store.abspath(f["path"]).is_file()
        assert not store.verify(manifest)
    # Staged artifacts are locked too (ONNX files validated as staged).
    assert lock["onnx:mlp-0"].staged[0]["format"] == "onnx"
    # The hubs' immutable revisions: the zoo's model sha256, the HF commit, the served bytes.
    seed_hf = upstream.seed.require(parse(HF[0]))
    assert lock[HF[0]].revision == seed_hf.revision and len(seed_hf.revision) == 40
    onnx_sha = upstream.seed.require(parse(ONNX[0])).files[0].sha256
    assert lock[ONNX[0]].revision == onnx_sha
    # Same bytes as upstream, under the original names.
    assert (store_root / "huggingface/test-org/tiny-1/model.safetensors").read_bytes() == (
        upstream.seed.root / "huggingface/test-org/tiny-1/model.safetensors"
    ).read_bytes()


def test_lock_is_byte_identical_and_second_sync_is_offline(
    upstream: Upstream,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    toml = upstream.toml(tmp_path / "project")
    assert main(["sync", str(toml)]) == 0
    first = (toml.parent / LOCK_NAME).read_bytes()
    seen = len(upstream.mirror.requests), len(upstream.files.requests)
    code, doc = _sync_json(capsys, str(toml))
    assert code == 0
    assert {m["status"] for m in doc["models"]} == {"cached"}
    assert doc["lock_written"] is False
    assert (toml.parent / LOCK_NAME).read_bytes() == first
    assert (len(upstream.mirror.requests), len(upstream.files.requests)) == seen
    # Deterministic: sorted by reference, sorted keys, no time stamps, no mirror address.
    text = first.decode()
    models = json.loads(text)["models"]
    assert [m["ref"] for m in models] == sorted(m["ref"] for m in models)
    assert "created" not in text and upstream.mirror.url not in text

    # Another machine, same upstream: the same lock, byte for byte.
    _fresh_store(monkeypatch, tmp_path, "other")
    other = upstream.toml(tmp_path / "other-project")
    shutil.copy(toml.parent / LOCK_NAME, other.parent / LOCK_NAME)
    assert main(["sync", str(other), "--locked"]) == 0
    assert main(["sync", str(other)]) == 0
    assert (other.parent / LOCK_NAME).read_bytes() == first


def test_locked_installs_the_lock_on_a_fresh_store(
    upstream: Upstream,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    toml = upstream.toml(tmp_path / "project")
    assert main(["sync", str(toml)]) == 0
    lock_bytes = (toml.parent / LOCK_NAME).read_bytes()
    root = _fresh_store(monkeypatch, tmp_path, "fresh")
    code, doc = _sync_json(capsys, str(toml), "--locked", "-j", "3")
    assert code == 0, doc
    assert {m["status"] for m in doc["models"]} == {"ok"}
    assert (toml.parent / LOCK_NAME).read_bytes() == lock_bytes
    lock = read_lock(toml.parent / LOCK_NAME)
    assert lock is not None
    store = Store(root)
    for ref, entry in lock.items():
        assert not entry.differences(store.require(parse(ref)))


def test_locked_and_check_catch_changed_upstream(
    upstream: Upstream,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    toml = upstream.toml(tmp_path / "project")
    assert main(["sync", str(toml)]) == 0
    lock_file = toml.parent / LOCK_NAME
    lock_bytes = lock_file.read_bytes()
    code, doc = _sync_json(capsys, str(toml), "--check")
    assert code == 0 and {m["state"] for m in doc["models"]} == {"current"}, doc

    # Upstream changes: a re-exported ONNX model, a force-pushed HF repo, a new url: file,
    # a re-published SavedModel.
    upstream.reimport(ONNX[1], seed=101)
    upstream.reimport(HF[2], seed=102)
    upstream.reimport(TFHUB[0], seed=103)
    changed_url = upstream.url_ref("/models/u1.tflite")
    upstream.files.add("/models/u1.tflite", bytes(range(255, -1, -1)) * 20)
    changed = {ONNX[1], HF[2], TFHUB[0], parse(changed_url).canonical}

    capsys.readouterr()
    assert main(["sync", str(toml), "--check"]) == EXIT_CHANGES
    out = capsys.readouterr().out
    assert all(ref in out for ref in changed)
    code, doc = _sync_json(capsys, str(toml), "--check")
    assert code == EXIT_CHANGES
    assert {m["ref"] for m in doc["models"] if m["state"] == "changed"} == changed

    # The store that already holds the locked bytes still satisfies --locked (no network).
    assert main(["sync", str(toml), "--locked"]) == 0
    # A fresh machine cannot get the locked bytes any more: exit 5, others still installed.
    _fresh_store(monkeypatch, tmp_path, "fresh")
    capsys.readouterr()
    code, doc = _sync_json(capsys, str(toml), "--locked", "-j", "4")
    assert code == 5
    failed = {m["ref"] for m in doc["models"] if m["status"] == "failed"}
    assert failed == changed
    assert all(m["exit_code"] == 5 for m in doc["models"] if m["status"] == "failed")
    assert {m["status"] for m in doc["models"] if m["ref"] not in changed} == {"ok"}
    assert lock_file.read_bytes() == lock_bytes  # --locked never writes the lock
    # Nothing of the changed url: file was kept: its download was checked against the lock.
    assert not (Path(os.environ["MODELHUB_PATH"]) / "tensorflow" / "u1.tflite").exists()
    # Nor any other model the lock does not vouch for; the others are installed.
    fresh = Store(Path(os.environ["MODELHUB_PATH"]))
    assert [ref for ref in changed if fresh.manifest(parse(ref)) is not None] == []
    assert all(fresh.manifest(parse(m["ref"])) for m in doc["models"] if m["ref"] not in changed)

    # A plain sync on this machine fails the same way (the lock pins); --update accepts.
    assert main(["sync", str(toml)]) == 5
    capsys.readouterr()
    code, doc = _sync_json(capsys, str(toml), "--update")
    assert code == 0, doc
    new = read_lock(lock_file)
    old = json.loads(lock_bytes)["models"]
    assert new is not None
    for entry in old:
        moved = new[entry["ref"]].revision != entry["revision"]
        assert moved == (entry["ref"] in changed), entry["ref"]
    assert main(["sync", str(toml), "--check"]) == 0


def test_update_refetches_only_what_changed(
    upstream: Upstream, tmp_path: Path, store_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    toml = upstream.toml(tmp_path / "project", refs=[ONNX[0], ONNX[1], HF[0]])
    assert main(["sync", str(toml)]) == 0
    upstream.reimport(ONNX[1], seed=77)
    before = len(upstream.mirror.requests)
    code, doc = _sync_json(capsys, str(toml), "--update")
    assert code == 0
    status = {m["ref"]: m["status"] for m in doc["models"]}
    assert status == {ONNX[0]: "cached", ONNX[1]: "ok", HF[0]: "cached"}
    fetched = [p for m, p in upstream.mirror.requests[before:] if m == "GET" and "mlp-" in p]
    assert fetched == ["/hf/onnxmodelzoo/legacy_models/resolve/main/mlp-1-13.onnx"]
    seed_sha = upstream.seed.require(parse(ONNX[1])).files[0].sha256
    assert Store(store_root).require(parse(ONNX[1])).files[0].sha256 == seed_sha


def test_update_refreshes_a_stale_sdk_cache(
    upstream: Upstream, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # tensorflow_hub never refreshes a handle it has; a forced re-pull (what --update does for a
    # changed model) must bypass its cache and lock the new version.
    toml = upstream.toml(tmp_path / "project", refs=[TFHUB[0], ONNX[0]])
    assert main(["sync", str(toml)]) == 0
    before = read_lock(toml.parent / LOCK_NAME)
    upstream.reimport(TFHUB[0], seed=55)
    capsys.readouterr()
    assert main(["sync", str(toml), "--check"]) == EXIT_CHANGES
    capsys.readouterr()
    assert main(["sync", str(toml), "--update"]) == 0, capsys.readouterr().err
    after = read_lock(toml.parent / LOCK_NAME)
    assert before is not None and after is not None
    assert after[TFHUB[0]] != before[TFHUB[0]]
    assert after[ONNX[0]] == before[ONNX[0]]
    assert main(["sync", str(toml), "--check"]) == 0


def test_one_failure_does_not_stop_the_others(
    upstream: Upstream, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    refs = [ONNX[0], "onnx:no-such-model", HF[0], "hf:test-org/missing", upstream.refs[-1]]
    toml = upstream.toml(tmp_path / "project", refs=refs)
    code = main(["sync", str(toml), "-j", "2"])
    captured = capsys.readouterr()
    assert code == 3
    assert "onnx:no-such-model" in captured.err and "hf:test-org/missing" in captured.err
    lock = read_lock(toml.parent / LOCK_NAME)
    assert lock is not None
    assert sorted(lock) == sorted([ONNX[0], HF[0], parse(upstream.refs[-1]).canonical])


def test_progress_lines_and_summary_table(
    upstream: Upstream,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("MODELHUB_QUIET", "0")
    toml = upstream.toml(tmp_path / "project", refs=[ONNX[0], HF[0], TFHUB[1]])
    assert main(["sync", str(toml)]) == 0
    out, err = capsys.readouterr()
    progress = [ln for ln in err.splitlines() if ln.startswith("[")]
    assert len(progress) == 3 and all("/3]" in ln for ln in progress)
    assert "synced 3/3 models" in err
    header, *rows = out.strip().splitlines()
    assert header.split() == ["MODEL", "STATUS", "REVISION", "SIZE", "STAGED", "PARITY", "TIME"]
    assert [r.split()[0] for r in rows] == [ONNX[0], HF[0], TFHUB[1]]
    assert rows[0].split()[1] == "ok"
    assert " onnx " in rows[0] and " - " in rows[1]  # STAGED: validated ONNX; a snapshot as is


def test_locked_refuses_a_lock_that_does_not_cover_the_set(
    upstream: Upstream, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "project"
    toml = upstream.toml(folder, refs=[ONNX[0]])
    assert main(["sync", str(toml), "--locked"]) == 5  # no lock at all
    assert main(["sync", str(toml)]) == 0
    upstream.toml(folder, refs=[ONNX[0], ONNX[2]])
    before = len(upstream.mirror.requests)
    capsys.readouterr()
    assert main(["sync", str(toml), "--locked"]) == 5
    assert "onnx:mlp-2 is not in the lock" in capsys.readouterr().err
    assert len(upstream.mirror.requests) == before  # refused before any pull
    # Edited settings are a different request: the lock must be refreshed first.
    toml.write_text('[[model]]\nref = "onnx:mlp-0"\nstage = "none"\n', encoding="utf-8")
    with pytest.raises(LockMismatchError):
        sync(toml, mode="locked")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[[model]]\nstage = "onnx"\n', "'ref'"),
        ('[[model]]\nref = "onnx:a"\nstaging = "onnx"\n', "unknown key(s) staging"),
        ('[[model]]\nref = "onnx:a"\nstage = "coreml"\n', "stage 'coreml'"),
        ('[[model]]\nref = "onnx:a"\n[[model]]\nref = "onnx:a"\n', "repeats model #1"),
        ('[[model]]\nref = "hf:../x"\n', "invalid reference"),
        ('[[model]]\nref = "url:http://h/x.onnx"\nsha256 = "abc"\n', "64 hex"),
        ('[[model]]\nref = "hf:a/b"\ninclude = [1]\n', "include"),
        ("[model]\nref = 'x'\n", "array of tables"),
        ("models = 1\n", "unknown top-level"),
        ("[[model]\n", "not valid TOML"),
    ],
)
def test_bad_model_sets_are_usage_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, message: str
) -> None:
    toml = tmp_path / "modelhub.toml"
    toml.write_text(text, encoding="utf-8")
    assert main(["sync", str(toml)]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / LOCK_NAME).exists()


def test_spec_options_and_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    toml = tmp_path / "modelhub.toml"
    toml.write_text(
        '[[model]]\nref = "hf:org/name"\nrevision = "v1"\ninclude = "*.json"\n'
        'exclude = ["*.bin"]\n\n[[model]]\nref = "tfhub:a/b/1"\nstorage = "compressed"\n',
        encoding="utf-8",
    )
    spec, archive = load_specs(toml)
    assert spec.name == "hf:org/name@v1"
    assert spec.pull_options() == {"include": ["*.json"], "exclude": ["*.bin"]}
    assert spec.request()["storage"] == "uncompressed"
    assert archive.request()["storage"] == "compressed"
    assert main(["sync", str(tmp_path / "nope.toml")]) == 3


def test_schedule_mixes_hubs_first_then_longest_first(tmp_path: Path) -> None:
    refs = ["onnx:a", "onnx:b", "url:http://h/x.onnx", "hf:o/a", "hf:o/b", "tfhub:t/m/1"]
    toml = tmp_path / "modelhub.toml"
    toml.write_text("".join(f'[[model]]\nref = "{r}"\n' for r in refs), encoding="utf-8")
    specs = load_specs(toml)
    order = [specs[i].name for i in schedule(specs)]
    assert order == ["hf:o/a", "tfhub:t/m/1", "onnx:a", refs[2], "hf:o/b", "onnx:b"]


def test_picker_holds_back_a_hub_until_it_is_warm(tmp_path: Path) -> None:
    """While hf's first model sets the SDK up, free workers take other hubs' models; the
    second hf model goes first once hf is warm; with only cold hubs left, they go anyway."""
    refs = ["hf:o/a", "hf:o/b", "hf:o/c", "onnx:a", "onnx:b", "url:http://h/x.onnx"]
    toml = tmp_path / "modelhub.toml"
    toml.write_text("".join(f'[[model]]\nref = "{r}"\n' for r in refs), encoding="utf-8")
    specs = load_specs(toml)
    picker = Picker(specs)

    def take() -> tuple[str, bool]:
        picked = picker.next()
        assert picked is not None
        return specs[picked[0]].name, picked[1]

    assert take() == ("hf:o/a", True)
    assert take() == ("onnx:a", True)
    assert take() == (refs[5], True)
    assert take() == ("hf:o/b", False)  # only cold hubs left: the first of them, not idling
    picker.warm(0)  # hf:o/a set the SDK up
    assert take() == ("hf:o/c", False)
    assert take() == ("onnx:b", False)
    assert picker.next() is None


_WARM_UP = """
import sys
from modelhub.hubs.hf import HuggingFaceHub
assert "huggingface_hub._snapshot_download" not in sys.modules
HuggingFaceHub(None).warm_up()
assert "huggingface_hub._snapshot_download" in sys.modules
"""


def test_hf_warm_up_imports_what_a_snapshot_download_needs() -> None:
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-c", _WARM_UP], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-800:]


_IN_PROCESSES = """
import json, sys
from modelhub.sync import sync

if __name__ == "__main__":
    report = sync(sys.argv[1], jobs=int(sys.argv[2]), stage_in_processes=True)
    print(json.dumps({
        "status": [r.status for r in report.results],
        "errors": [str(r.error) for r in report.results if r.error],
        "sdk_here": "huggingface_hub" in sys.modules,
    }))
"""


@pytest.mark.parametrize("jobs", [1, 3])
def test_parallel_sync_does_the_hf_sdk_work_in_a_helper_process(
    upstream: Upstream, tmp_path: Path, store_root: Path, jobs: int
) -> None:
    import subprocess
    import sys

    toml = upstream.toml(tmp_path / "project", [*HF, ONNX[0]])
    script = tmp_path / "run_sync.py"
    script.write_text(_IN_PROCESSES, encoding="utf-8")
    done = subprocess.run(
        [sys.executable, str(script), str(toml), str(jobs)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-800:]
    doc = json.loads(done.stdout)
    assert doc["status"] == ["ok"] * 4, doc["errors"]
    # With one job the SDK runs in the process itself; in parallel, in the helper only.
    assert doc["sdk_here"] is (jobs == 1)
    store = Store(store_root)
    for ref in HF:  # what the helper downloaded and checked is linked into this store
        manifest = store.require(parse(ref))
        assert manifest.sdk_cache and manifest.revision in manifest.sdk_cache
        assert not store.verify(manifest)
    assert read_lock(toml.parent / LOCK_NAME) is not None


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # a process that ended while we looked
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="finds the helper in /proc")
def test_a_killed_helper_fails_the_hf_models_only(
    upstream: Upstream, tmp_path: Path, store_root: Path
) -> None:
    import signal
    import subprocess
    import sys
    import time

    from tests.faults.proxy import FaultProxy

    toml = upstream.toml(tmp_path / "project", [*HF[:2], ONNX[0]])
    hf_files = "/hf/test-org/tiny-*/resolve/*"  # not the zoo's, which are below /hf too
    with FaultProxy(os.environ["MODELHUB_MIRROR"]) as proxy:
        proxy.add("stall", hf_files, times=-1, seconds=60)  # every hf model's file body hangs
        env = {**os.environ, "MODELHUB_MIRROR": proxy.url}
        sync_cli = subprocess.Popen(
            [sys.executable, "-m", "modelhub", "sync", str(toml), "--jobs", "2", "--json"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            deadline = time.monotonic() + 60
            while not proxy.exchanges(hf_files, "GET") and time.monotonic() < deadline:
                time.sleep(0.05)
            helpers = _children(sync_cli.pid)
            assert len(helpers) == 1, helpers  # the hf helper (nothing heavy to stage)
            os.kill(helpers[0], signal.SIGKILL)
            out, err = sync_cli.communicate(timeout=120)
        finally:
            if sync_cli.poll() is None:
                sync_cli.kill()
                sync_cli.wait()
    assert sync_cli.returncode == 1, err[-800:]
    doc = json.loads(out)
    status = {m["ref"]: (m["status"], m["error"] or "") for m in doc["models"]}
    assert status[ONNX[0]] == ("ok", "")  # the other hubs' models are not affected
    for ref in HF[:2]:
        assert status[ref] == (
            "failed",
            f"{ref}: the hf helper process {helpers[0]} died: killed by SIGKILL",
        )
    store = Store(store_root)
    assert all(store.manifest(parse(ref)) is None for ref in HF[:2])
    assert not (store_root / "huggingface").exists() or not any(
        p.is_file() for p in (store_root / "huggingface").rglob("*")
    )


def test_locked_restages_without_downloading_again(
    upstream: Upstream, tmp_path: Path, store_root: Path
) -> None:
    import dataclasses

    toml = upstream.toml(tmp_path / "project", refs=[ONNX[0]])
    assert main(["sync", str(toml)]) == 0
    store = Store(store_root)
    ref = parse(ONNX[0])
    store.write_manifest(dataclasses.replace(store.require(ref), staged=[]), ref)
    before = len(upstream.mirror.requests)
    assert main(["sync", str(toml), "--locked"]) == 0
    assert store.require(ref).staged  # validated again, from the bytes already here
    assert len(upstream.mirror.requests) == before

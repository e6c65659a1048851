"""``modelhub du`` (hard links once), ``modelhub gc`` (never a file a manifest owns), ``rm``."""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from modelhub.cli.main import main
from modelhub.importer import import_path
from modelhub.mirror.app import BackgroundMirror
from modelhub.refs import parse
from modelhub.store import Store, layout
from modelhub.store.gc import plan_gc, run_gc
from tests.support.mirror_fixtures import make_hf_snapshot
from tests.support.onnx_models import make_mlp

MLP = "onnx/tiny-mlp-13.onnx"
OTHER = "onnx/other-mlp-13.onnx"


def _json(capsys: pytest.CaptureFixture[str], *argv: str) -> dict:
    capsys.readouterr()
    assert main(list(argv)) == 0
    return json.loads(capsys.readouterr().out)


def _owned(store: Store) -> dict[str, bytes]:
    """Every path a manifest lists, with its bytes now."""
    return {
        rel: store.abspath(rel).read_bytes() for _, m in store.manifests() for rel in m.all_paths()
    }


@pytest.fixture
def pulled(zoo, store_root: Path) -> Store:
    """The zoo's two models pulled (validated ONNX) into the test's store."""
    assert main(["pull", "onnx:tiny-mlp", "onnx:other-mlp"]) == 0
    return Store(store_root)


# --- du -----------------------------------------------------------------------------------------
def test_du_counts_a_hard_link_once(pulled: Store, capsys: pytest.CaptureFixture[str]) -> None:
    size = pulled.abspath(MLP).stat().st_size
    other = pulled.abspath(OTHER).stat().st_size
    # Each staged model's parity fixture (``<model>.fixture.npz``) lies beside it.
    fixtures = [s.fixture for _, m in pulled.manifests() for s in m.staged if s.fixture]
    fixture_bytes = sum(pulled.abspath(f["path"]).stat().st_size for f in fixtures)
    os.link(pulled.abspath(MLP), pulled.root / "onnx" / "alias.onnx")
    doc = _json(capsys, "du", "--json")
    onnx = next(f for f in doc["frameworks"] if f["name"] == "onnx")
    files = 3 + len(fixtures)
    assert onnx == {"name": "onnx", "files": files, "bytes": size + other + fixture_bytes}
    meta = next(f for f in doc["frameworks"] if f["name"] == ".modelhub")
    assert doc["total"] == size + other + fixture_bytes + meta["bytes"]
    # The alias is listed by no manifest, but removing it frees nothing: its inode is owned.
    assert doc["unowned"] == {"files": 1, "bytes": 0}
    models = {m["ref"]: m for m in doc["models"]}
    assert models["onnx:tiny-mlp"]["stored"] == size
    assert models["onnx:tiny-mlp"]["size"] == size  # the staged entry is the same file
    assert models["onnx:tiny-mlp"]["files"] == 1
    assert main(["du"]) == 0
    out = capsys.readouterr().out
    assert "hard links counted once" in out and "onnx:other-mlp" in out


@pytest.fixture
def hf_mirror(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """hf:test-org/shared at main and v1, same weights file, other config; served."""
    seed = Store(tmp_path / "seed")
    main_dir, v1_dir = tmp_path / "src" / "main", tmp_path / "src" / "v1"
    make_hf_snapshot(main_dir, seed=1)
    shutil.copytree(main_dir, v1_dir)
    (v1_dir / "config.json").write_text('{"model_type": "tiny", "v": 1}')
    for src, ref in ((main_dir, "hf:test-org/shared"), (v1_dir, "hf:test-org/shared@v1")):
        mref = parse(ref)
        with seed.lock(mref):
            import_path(seed, src, mref)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    monkeypatch.setenv("MODELHUB_LINK_MODE", "hardlink")
    with BackgroundMirror(seed.root) as url:
        monkeypatch.setenv("MODELHUB_MIRROR", url)
        yield url


def test_du_two_revisions_sharing_a_blob(
    hf_mirror: str, store_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Both revisions link the one blob of the Hugging Face cache: 70 kB of weights, once.
    assert main(["pull", "hf:test-org/shared", "hf:test-org/shared@v1"]) == 0
    a = store_root / "huggingface/test-org/shared/model.safetensors"
    b = store_root / "huggingface/test-org/shared@v1/model.safetensors"
    assert a.stat().st_ino == b.stat().st_ino and a.stat().st_nlink == 3  # + the cache's blob
    doc = _json(capsys, "du", "--json")
    hf = next(f for f in doc["frameworks"] if f["name"] == "huggingface")
    files = [p for p in (store_root / "huggingface").rglob("*") if p.is_file()]
    naive = sum(p.stat().st_size for p in files)
    main_dir = store_root / "huggingface/test-org/shared"
    v1_dir = store_root / "huggingface/test-org/shared@v1"
    # Identical files of the two revisions are one blob (weights, tokenizer, readme).
    same = [
        p.stat().st_size
        for p in v1_dir.rglob("*")
        if p.is_file() and (main_dir / p.relative_to(v1_dir)).read_bytes() == p.read_bytes()
    ]
    assert len(same) == 3 and a.stat().st_size in same
    assert hf["files"] == len(files) == 8
    assert hf["bytes"] == naive - sum(same)
    models = {m["ref"]: m for m in doc["models"]}
    for ref in ("hf:test-org/shared", "hf:test-org/shared@v1"):
        assert models[ref]["shared"] == sum(same)
        assert models[ref]["stored"] == models[ref]["size"]
    assert doc["linked_outside"] == hf["bytes"]  # all of it also lives in the HF cache


# --- rm -----------------------------------------------------------------------------------------
def test_rm_refuses_shared_files_without_force(
    zoo, store_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The model at its opset named (another reference) is the same file: shared. (A url: of
    # that file is filed under its source, so it shares nothing with the zoo's.)
    url_ref = "onnx:tiny-mlp@13"
    assert main(["pull", "onnx:tiny-mlp", url_ref]) == 0
    capsys.readouterr()
    assert main(["rm", "onnx:tiny-mlp"]) == 1
    err = capsys.readouterr().err
    # Both stage the same file in place: the model and its parity fixture are shared.
    assert (store_root / f"{MLP}.fixture.npz").is_file()
    assert "shares 2 file(s)" in err and "--force" in err
    store = Store(store_root)
    assert store.manifest(parse("onnx:tiny-mlp")) is not None
    assert main(["rm", "onnx:tiny-mlp", "--force"]) == 0
    assert store.manifest(parse("onnx:tiny-mlp")) is None
    assert (store_root / MLP).is_file() and not store.verify(store.require(parse(url_ref)))
    assert main(["rm", url_ref]) == 0  # now the only owner: no refusal, the files go
    assert not (store_root / MLP).exists() and not (store_root / f"{MLP}.fixture.npz").exists()


# --- gc -----------------------------------------------------------------------------------------
def _litter(store: Store) -> dict[str, Path]:
    """Leftovers of every kind gc knows, plus things it must keep."""
    root = store.root
    tmp = root / layout.TMP
    dead_key = layout.ref_key(parse("onnx:crashed"))
    (tmp / dead_key).mkdir(parents=True)
    (tmp / dead_key / "crashed.onnx.part").write_bytes(b"x" * 1000)
    (tmp / dead_key / "crashed.onnx.part.json").write_text("{}")
    (tmp / f"import-{dead_key}-0badc0de").mkdir()
    (tmp / f"import-{dead_key}-0badc0de" / "f").write_bytes(b"y" * 10)
    (tmp / ".link.999999999.0123abcd").write_bytes(b"z" * 7)
    (tmp / f".link.{os.getpid()}.0123abcd").write_bytes(b"live")
    (tmp / "mystery.bin").write_bytes(b"recent")
    old = tmp / "ancient.bin"
    old.write_bytes(b"o" * 5)
    os.utime(old, (time.time() - 7200, time.time() - 7200))
    stray = root / "onnx" / "stray.onnx"
    stray.write_bytes(b"s" * 300)
    nested = root / "huggingface" / "org" / "gone" / "weights.bin"
    nested.parent.mkdir(parents=True)
    nested.write_bytes(b"w" * 50)
    alias = root / "onnx" / "alias.onnx"
    os.link(store.abspath(MLP), alias)
    link = root / "onnx" / "pointer.onnx"
    link.symlink_to(store.abspath(MLP))
    keep = root / "notes.txt"  # not under a framework folder: never gc's business
    keep.write_text("mine")
    return {"stray": stray, "nested": nested, "alias": alias, "link": link, "keep": keep}


def test_gc_dry_run_then_gc(pulled: Store, capsys: pytest.CaptureFixture[str]) -> None:
    litter = _litter(pulled)
    owned = _owned(pulled)
    doc = _json(capsys, "gc", "--dry-run", "--json")
    planned = {(i["kind"], i["rel"]) for i in doc["items"]}
    tmp = layout.TMP
    dead_key = layout.ref_key(parse("onnx:crashed"))
    assert planned == {
        ("tmp", f"{tmp}/{dead_key}"),
        ("tmp", f"{tmp}/import-{dead_key}-0badc0de"),
        ("tmp", f"{tmp}/.link.999999999.0123abcd"),
        ("tmp", f"{tmp}/ancient.bin"),
        ("orphan", "onnx/stray.onnx"),
        ("orphan", "onnx/alias.onnx"),
        ("orphan", "onnx/pointer.onnx"),
        ("orphan", "huggingface/org/gone/weights.bin"),
    }
    assert doc["bytes"] == 1000 + 2 + 10 + 7 + 5 + 300 + 50  # alias and symlink free nothing
    kept = {k["path"].rsplit("/", 1)[-1]: k["why"] for k in doc["kept"]}
    assert kept == {
        f".link.{os.getpid()}.0123abcd": f"process {os.getpid()} is running",
        "mystery.bin": "recently modified, owner unknown",
    }
    assert all(p.exists() or p.is_symlink() for p in litter.values())  # dry run: nothing gone

    capsys.readouterr()
    assert main(["gc"]) == 0
    out, err = capsys.readouterr()
    # What it frees is printed before it is freed, then the total.
    assert "removing orphan" in err and "freeing 1.3 KiB in 8 item(s)" in err
    assert out.strip() == "freed 1.3 KiB (8 item(s))"
    for name in ("stray", "nested", "alias", "link"):
        assert not os.path.lexists(litter[name]), name
    assert not (pulled.root / "huggingface").exists()  # emptied folders pruned
    assert litter["keep"].read_text() == "mine"
    assert _owned(pulled) == owned
    assert all(not pulled.verify(m) for _, m in pulled.manifests())
    assert main(["pull", "onnx:tiny-mlp"]) == 0 and main(["verify"]) == 0


def test_gc_keeps_tmp_of_a_running_pull_and_orphans_meanwhile(pulled: Store) -> None:
    from filelock import FileLock

    _litter(pulled)
    ref = parse("onnx:crashed")
    lock = FileLock(str(pulled.root / layout.lock_path(ref)))
    acquired, release = threading.Event(), threading.Event()

    def hold() -> None:  # another thread = another open file: flock conflicts as across processes
        with lock:
            acquired.set()
            release.wait(30)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert acquired.wait(10)
        plan = plan_gc(pulled)
        kinds = {(i.kind, i.path.rsplit("/", 1)[-1]) for i in plan.items}
        assert not any(k == "orphan" for k, _ in kinds)
        key = layout.ref_key(ref)
        assert ("tmp", key) not in kinds and ("tmp", f"import-{key}-0badc0de") not in kinds
        whys = dict(plan.kept)
        assert whys[f"{layout.TMP}/{key}"] == "a pull of this model is running"
        assert whys["onnx/stray.onnx"].startswith("a pull is running")
        result = run_gc(pulled, plan)
        assert (pulled.root / layout.TMP / key).is_dir()
        assert (pulled.root / "onnx" / "stray.onnx").exists()
        assert {i.path.rsplit("/", 1)[-1] for i in result.removed} == {
            ".link.999999999.0123abcd",
            "ancient.bin",
        }
    finally:
        release.set()
        holder.join()
    result = run_gc(pulled, plan_gc(pulled))
    assert not (pulled.root / layout.TMP / layout.ref_key(ref)).exists()
    assert not (pulled.root / "onnx" / "stray.onnx").exists()
    assert not result.skipped


def test_gc_never_deletes_what_a_manifest_owns_by_the_time_it_acts(
    pulled: Store, tmp_path: Path
) -> None:
    # An orphan when planned; then a model is imported whose file is exactly that path.
    late = pulled.root / "onnx" / "late-13.onnx"
    late.write_bytes(b"leftover of a crashed pull")
    plan = plan_gc(pulled)
    assert ("orphan", "onnx/late-13.onnx") in {(i.kind, i.path) for i in plan.items}
    src = make_mlp(tmp_path / "late-13.onnx", seed=9, opset=13)
    ref = parse("onnx:late")
    with pulled.lock(ref):
        import_path(pulled, src, ref)
    owned = _owned(pulled)
    result = run_gc(pulled, plan)
    assert [(i.path, why) for i, why in result.skipped] == [
        ("onnx/late-13.onnx", "listed by onnx:late")
    ]
    assert _owned(pulled) == owned and late.read_bytes() == src.read_bytes()
    assert all(not pulled.verify(m) for _, m in pulled.manifests())


def test_gc_keep_lock_removes_models_not_in_it(
    zoo, store_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url_ref = "onnx:tiny-mlp@13"  # the same file as onnx:tiny-mlp, under another reference
    project = tmp_path / "project"
    project.mkdir()
    (project / "modelhub.toml").write_text(f'[[model]]\nref = "{url_ref}"\n')
    assert main(["sync", str(project / "modelhub.toml")]) == 0
    assert main(["pull", "onnx:tiny-mlp", "onnx:other-mlp"]) == 0
    doc = _json(capsys, "gc", "--dry-run", "--json", "--keep-lock", str(project / "modelhub.lock"))
    models = {i["ref"]: i["bytes"] for i in doc["items"] if i["kind"] == "model"}
    other_fixture = store_root / f"{OTHER}.fixture.npz"  # its parity fixture goes with it
    other = (store_root / OTHER).stat().st_size + other_fixture.stat().st_size
    assert models == {"onnx:tiny-mlp": 0, "onnx:other-mlp": other}  # the shared files stay
    doc = _json(capsys, "gc", "--json", "--keep-lock", str(project / "modelhub.lock"))
    assert doc["freed"] == other and not doc["skipped"]
    store = Store(store_root)
    assert [m.ref for _, m in store.manifests()] == [parse(url_ref).canonical]
    assert (store_root / MLP).is_file() and (store_root / f"{MLP}.fixture.npz").is_file()
    assert not (store_root / OTHER).exists() and not other_fixture.exists()
    assert main(["verify"]) == 0
    assert main(["gc", "--keep-lock", str(tmp_path / "missing.lock")]) == 3

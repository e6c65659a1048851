"""``modelhub import``: every kind lands where a pull puts it, manifest last, nothing outside."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from modelhub.errors import (
    ArchiveError,
    HashMismatchError,
    IntegrityError,
    LFSPointerError,
    NotFoundError,
    StoreConflictError,
    UnsupportedError,
)
from modelhub.staging.onnx_check import CONVERTER
from modelhub.store import Manifest, Store
from modelhub.store.layout import manifest_path
from tests.mirror.conftest import do_import
from tests.support.mirror_fixtures import make_hf_snapshot, make_savedmodel_folder, make_tar
from tests.support.onnx_models import make_mlp

REQUIRED = {
    "ref",
    "hub",
    "framework",
    "revision",
    "source",
    "storage",
    "sdk_cache",
    "files",
    "staged",
    "created",
}


def _snapshot_fs(*roots: Path) -> dict[str, tuple[int, int]]:
    found = {}
    for root in roots:
        for dirpath, _, names in os.walk(root):
            for name in names:
                path = Path(dirpath) / name
                st = path.lstat()
                found[str(path)] = (st.st_size, st.st_mtime_ns)
    return found


def _assert_manifest(store: Store, manifest: Manifest) -> None:
    from modelhub.refs import parse

    doc = json.loads((store.root / manifest_path(parse(manifest.ref))).read_text())
    assert set(doc) >= REQUIRED
    assert store.verify(manifest) == []
    for entry in manifest.files:
        assert not entry.path.startswith((".modelhub", "/"))


def _tmp_is_clean(store: Store) -> None:
    assert [p.name for p in store.tmp_dir.iterdir()] == []


def test_onnx(store: Store, tmp_path: Path) -> None:
    src = make_mlp(tmp_path / "src" / "tiny-mlp-13.onnx", seed=1, opset=13)
    manifest = do_import(store, src, "onnx:tiny-mlp")
    sha = hashlib.sha256(src.read_bytes()).hexdigest()
    assert manifest.hub == "onnx" and manifest.framework == "onnx"
    assert manifest.revision == sha
    assert [(f.path, f.sha256) for f in manifest.files] == [("onnx/tiny-mlp-13.onnx", sha)]
    (staged,) = manifest.staged
    assert (staged.path, staged.format, staged.sha256, staged.converter) == (
        "onnx/tiny-mlp-13.onnx",
        "onnx",
        sha,
        CONVERTER,
    )
    assert staged.inputs == ["x"] and staged.outputs == ["y"]
    assert manifest.details["model"] == "tiny-mlp"
    assert manifest.details["model_path"] == "tiny-mlp-13.onnx"
    assert manifest.details["opset"] == 13
    assert manifest.details["io_ports"]["inputs"][0]["name"] == "x"
    _assert_manifest(store, manifest)
    _tmp_is_clean(store)


def test_onnx_with_external_data(store: Store, tmp_path: Path) -> None:
    import onnx

    src = make_mlp(tmp_path / "src" / "big.onnx", seed=2, width=300)
    model = onnx.load(str(src))
    onnx.save(
        model, str(src), save_as_external_data=True, location="big.onnx.data", size_threshold=0
    )
    manifest = do_import(store, src, "onnx:big")
    assert sorted(f.path for f in manifest.files) == ["onnx/big.onnx", "onnx/big.onnx.data"]
    assert manifest.staged[0].path == "onnx/big.onnx"
    _assert_manifest(store, manifest)


def test_invalid_onnx_writes_nothing(store: Store, tmp_path: Path) -> None:
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    with pytest.raises(IntegrityError):
        do_import(store, bad, "onnx:bad")
    pointer = tmp_path / "pointer.onnx"
    pointer.write_bytes(b"version https://git-lfs.github.com/spec/v1\noid sha256:00\nsize 1\n")
    with pytest.raises(LFSPointerError):
        do_import(store, pointer, "onnx:pointer")
    assert not (store.root / "onnx").exists()
    assert list(store.manifests()) == []
    _tmp_is_clean(store)


def test_hf_snapshot(store: Store, tmp_path: Path) -> None:
    src = tmp_path / "snap"
    files = make_hf_snapshot(src, seed=3)
    (src / ".git").mkdir()
    (src / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    manifest = do_import(store, src, "hf:org/name")
    assert manifest.hub == "hf" and manifest.framework == "huggingface"
    assert sorted(f.path for f in manifest.files) == sorted(
        f"huggingface/org/name/{p}" for p in files
    )
    assert len(manifest.revision) == 40 and int(manifest.revision, 16) >= 0
    assert manifest.details["folder"] == "huggingface/org/name"
    assert manifest.details["branch"] == "main"
    for rel, data in files.items():
        assert (store.root / "huggingface/org/name" / rel).read_bytes() == data
    # Deterministic: the same files give the same commit id (a second store, same input).
    other = Store(tmp_path / "other")
    assert do_import(other, src, "hf:org/name").revision == manifest.revision
    tagged = do_import(store, src, "hf:org/name@v2")
    assert tagged.details["branch"] == "v2"
    assert tagged.files[0].path.startswith("huggingface/org/name@v2/")
    _assert_manifest(store, manifest)


def test_hf_cache_snapshot_keeps_its_commit(store: Store, tmp_path: Path) -> None:
    commit = "0123456789abcdef0123456789abcdef01234567"
    blobs = tmp_path / "models--org--name" / "blobs"
    snap = tmp_path / "models--org--name" / "snapshots" / commit
    blobs.mkdir(parents=True)
    snap.mkdir(parents=True)
    (blobs / "abc").write_bytes(b'{"a": 1}')
    (snap / "config.json").symlink_to("../../blobs/abc")
    manifest = do_import(store, snap, "hf:org/name")
    assert manifest.revision == commit
    assert manifest.details["commit_source"] == "hf-cache"
    assert (store.root / "huggingface/org/name/config.json").read_bytes() == b'{"a": 1}'
    assert not (store.root / "huggingface/org/name/config.json").is_symlink()


def test_savedmodel_folder_and_tar(store: Store, tmp_path: Path) -> None:
    folder = tmp_path / "sm"
    files = make_savedmodel_folder(folder, seed=4)
    manifest = do_import(store, folder, "tfhub:google/tiny/classification/5")
    base = "tensorflow/tfhub/google/tiny/classification/5"
    assert manifest.framework == "tensorflow" and manifest.revision == "5"
    assert sorted(f.path for f in manifest.files) == sorted(f"{base}/{p}" for p in files)
    assert manifest.details["folder"] == base
    _assert_manifest(store, manifest)

    members = [("model", None, None)] + [(f"model/{p}", d, None) for p, d in files.items()]
    archive = make_tar(tmp_path / "kaggle.tar.gz", members)
    outside = _snapshot_fs(tmp_path / "sm")
    kaggle = do_import(store, archive, "kaggle:owner/tiny/tensorFlow2/default/1")
    kbase = "tensorflow/kaggle/owner/tiny/default/1"
    assert sorted(f.path for f in kaggle.files) == sorted(f"{kbase}/{p}" for p in files)
    assert {f.sha256 for f in kaggle.files} == {f.sha256 for f in manifest.files}
    assert _snapshot_fs(tmp_path / "sm") == outside
    _tmp_is_clean(store)


@pytest.mark.parametrize(
    ("members", "why"),
    [
        ([("saved_model.pb", b"x", None), ("../evil.txt", b"pwned", None)], "outside"),
        ([("saved_model.pb", b"x", None), ("a/../../evil.txt", b"pwned", None)], "outside"),
        ([("saved_model.pb", b"x", None), ("/tmp/evil-abs.txt", b"pwned", None)], "outside"),
        ([("saved_model.pb", b"x", None), ("link", None, "/etc/passwd")], "link"),
        ([("saved_model.pb", b"x", None), ("link", None, "../../../../etc")], "link"),
        ([("saved_model.pb", b"x", None), ("hard", None, "hard:/etc/passwd")], "link"),
    ],
)
def test_hostile_archives_are_refused(
    store: Store, tmp_path: Path, members: list[tuple[str, bytes | None, str | None]], why: str
) -> None:
    archive = make_tar(tmp_path / "evil.tar.gz", members)
    before = _snapshot_fs(tmp_path.parent)
    with pytest.raises(ArchiveError, match=why):
        do_import(store, archive, "tfhub:evil/model/1")
    after = _snapshot_fs(tmp_path.parent)
    new = {p for p in set(after) - set(before) if ".modelhub/locks" not in p}
    assert new == set(), new
    assert not Path("/tmp/evil-abs.txt").exists()
    assert list(store.manifests()) == []
    _tmp_is_clean(store)


def test_corrupt_archive(store: Store, tmp_path: Path) -> None:
    archive = tmp_path / "broken.tar.gz"
    archive.write_bytes(b"\x1f\x8b\x08\x00garbage")
    with pytest.raises(ArchiveError):
        do_import(store, archive, "tfhub:broken/model/1")


def test_torch_keras_and_url(store: Store, tmp_path: Path) -> None:
    data = b"PK\x03\x04" + b"\x00" * 100
    sha = hashlib.sha256(data).hexdigest()
    pth = tmp_path / f"resnet-{sha[:8]}.pth"
    pth.write_bytes(data)
    torch = do_import(store, pth, "torch:resnet")
    assert [f.path for f in torch.files] == [f"pytorch/{pth.name}"]
    assert torch.revision == sha and torch.framework == "pytorch"

    h5 = tmp_path / "tiny_weights.h5"
    h5.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\x01" * 50)
    keras = do_import(store, h5, "keras:Tiny")
    assert [f.path for f in keras.files] == ["keras/tiny_weights.h5"]
    assert keras.framework == "keras"

    other = tmp_path / "downloaded.bin"
    other.write_bytes(b"anything")
    url = do_import(store, other, "url:https://example.com/files/weights.bin")
    assert [f.path for f in url.files] == ["other/example.com/files/weights.bin"]
    assert url.source == ["https://example.com/files/weights.bin"]
    onnx_url = do_import(
        store, make_mlp(tmp_path / "m.onnx", seed=7), "url:https://example.com/zoo/net.onnx"
    )
    assert onnx_url.files[0].path == "onnx/example.com/zoo/net.onnx"
    assert onnx_url.staged[0].format == "onnx"
    for manifest in (torch, keras, url, onnx_url):
        _assert_manifest(store, manifest)


def test_content_checks(store: Store, tmp_path: Path) -> None:
    wrong = tmp_path / "resnet-deadbeef.pth"
    wrong.write_bytes(b"PK\x03\x04 not matching")
    with pytest.raises(HashMismatchError):
        do_import(store, wrong, "torch:resnet")
    not_h5 = tmp_path / "x.h5"
    not_h5.write_bytes(b"<html>")
    with pytest.raises(IntegrityError):
        do_import(store, not_h5, "keras:X")
    assert list(store.manifests()) == []


def test_kind_mismatch_and_missing(store: Store, tmp_path: Path) -> None:
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "a.txt").write_text("a")
    with pytest.raises(UnsupportedError):
        do_import(store, folder, "onnx:x")
    with pytest.raises(UnsupportedError):
        do_import(store, folder / "a.txt", "hf:org/x")
    with pytest.raises(UnsupportedError):
        do_import(store, folder / "a.txt", "torch:owner/repo/entry")
    with pytest.raises(NotFoundError):
        do_import(store, tmp_path / "nope.onnx", "onnx:nope")


def test_reimport_same_is_noop_other_needs_force(store: Store, tmp_path: Path) -> None:
    src = tmp_path / "snap"
    make_hf_snapshot(src, seed=5)
    first = do_import(store, src, "hf:org/name")
    assert do_import(store, src, "hf:org/name") == first
    (src / "config.json").write_text('{"changed": true}')
    (src / "extra.txt").write_text("new")
    (src / "tokenizer.json").unlink()
    with pytest.raises(StoreConflictError):
        do_import(store, src, "hf:org/name")
    assert store.verify(first) == []
    replaced = do_import(store, src, "hf:org/name", force=True)
    assert replaced.revision != first.revision
    folder = store.root / "huggingface/org/name"
    assert not (folder / "tokenizer.json").exists()  # no stale file left in the snapshot
    assert (folder / "extra.txt").read_text() == "new"
    assert store.verify(replaced) == []


def test_path_owned_by_another_reference(store: Store, tmp_path: Path) -> None:
    a = tmp_path / "a" / "weights.pth"
    b = tmp_path / "b" / "weights.pth"
    a.parent.mkdir()
    b.parent.mkdir()
    a.write_bytes(b"PK\x03\x04 first")
    b.write_bytes(b"PK\x03\x04 second")
    do_import(store, a, "torch:first")
    with pytest.raises(StoreConflictError):
        do_import(store, b, "torch:second")
    assert (store.root / "pytorch/weights.pth").read_bytes() == a.read_bytes()

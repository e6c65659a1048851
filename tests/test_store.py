"""The store: atomic publication, conflicts, link modes, verification, removal, manifests."""

from __future__ import annotations

import errno
import hashlib
import os
from pathlib import Path

import pytest

from modelhub.errors import IntegrityError, InvalidReferenceError, StoreConflictError
from modelhub.refs import parse
from modelhub.store import FileEntry, Manifest, StagedEntry, Store, layout
from modelhub.store.files import link_or_copy
from modelhub.store.manifest import utc_now


def _manifest(ref: str, files: list[FileEntry]) -> Manifest:
    r = parse(ref)
    return Manifest(
        ref=r.canonical,
        hub=r.hub,
        framework=layout.framework_for(r),
        revision="r1",
        source=["http://x"],
        storage="uncompressed",
        sdk_cache=None,
        files=files,
        staged=[],
        created=utc_now(),
    )


def _put(store: Store, ref: str, rel: str, data: bytes) -> FileEntry:
    r = parse(ref)
    tmp = store.tmp_path(r, Path(rel).name)
    tmp.write_bytes(data)
    entry = store.publish(tmp, rel, r, hashlib.sha256(data).hexdigest(), len(data))
    store.write_manifest(_manifest(ref, [entry]), r)
    return entry


def test_default_root_and_env(store_root: Path, monkeypatch) -> None:
    assert Store().root == store_root
    monkeypatch.delenv("MODELHUB_PATH")
    assert Store().root == Path.home() / ".modelhub"


def test_layout_contract() -> None:
    assert (
        layout.file_path(parse("onnx:resnet50-v1-12"), "resnet50-v1-12.onnx")
        == "onnx/resnet50-v1-12.onnx"
    )
    assert (
        layout.file_path(parse("torch:resnet18"), "resnet18-f37072fd.pth")
        == "pytorch/resnet18-f37072fd.pth"
    )
    assert (
        layout.staged_path(parse("torch:resnet18"), "resnet18", "onnx") == "pytorch/resnet18.onnx"
    )
    assert layout.staged_path(parse("keras:ResNet50"), "resnet50", "h5") == "keras/resnet50.h5"
    assert layout.model_dir(parse("hf:org/name")) == "huggingface/org/name"
    # url: files are filed under their source: host[_port] and the URL's folders.
    assert layout.model_dir(parse("url:https://h/x/model.onnx")) == "onnx/h/x"
    assert layout.model_dir(parse("url:http://h:8080/model.onnx")) == "onnx/h_8080"
    assert layout.framework_for(parse("url:https://h/x/vocab.bin")) == "other"
    odd = layout.model_dir(parse("url:https://h/a%20b/m.onnx?v=1"))
    assert odd.startswith("onnx/h/_a_b/_") and odd != layout.model_dir(
        parse("url:https://h/a_b/m.onnx")
    )
    assert layout.framework_for(parse("url:https://h/x/w.safetensors")) == "pytorch"
    assert layout.framework_for(parse("url:https://h/x/m.tar.gz")) == "tensorflow"
    assert layout.manifest_path(parse("onnx:a")) != layout.manifest_path(parse("onnx:a@12"))


def test_resolve_in_store_refuses_planted_symlink(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "onnx").mkdir(parents=True)
    outside = tmp_path / "outside"
    outside.mkdir()
    (root / "evil").symlink_to(outside)
    with pytest.raises(InvalidReferenceError):
        layout.resolve_in_store(root, "evil/file.onnx")
    for bad in ("../x", "/etc/passwd", "a//b", "a/./b", "", "a\\b"):
        with pytest.raises(InvalidReferenceError):
            layout.resolve_in_store(root, bad)


def test_publish_is_atomic_and_conflicts_are_refused(store_root: Path) -> None:
    store = Store()
    _put(store, "url:https://a.example/model.onnx", "onnx/model.onnx", b"A" * 10)
    assert (store_root / "onnx/model.onnx").read_bytes() == b"A" * 10
    # Same path, other content, other reference: refused, original intact.
    with pytest.raises(StoreConflictError, match=r"already belongs to url:https://a\.example"):
        _put(store, "url:https://b.example/model.onnx", "onnx/model.onnx", b"B" * 10)
    assert (store_root / "onnx/model.onnx").read_bytes() == b"A" * 10
    # Same content from another reference: shared, not duplicated.
    _put(store, "url:https://c.example/model.onnx", "onnx/model.onnx", b"A" * 10)
    assert len(store.owners("onnx/model.onnx")) == 2
    leftovers = [p for p in (store_root / ".modelhub/tmp").rglob("*") if p.is_file()]
    assert leftovers == []


def test_verify_and_remove(store_root: Path) -> None:
    store = Store()
    _put(store, "url:https://a.example/shared.onnx", "onnx/shared.onnx", b"S" * 5)
    _put(store, "url:https://b.example/shared.onnx", "onnx/shared.onnx", b"S" * 5)
    _put(store, "url:https://a.example/own.onnx", "onnx/own.onnx", b"O" * 5)
    manifest = store.require(parse("url:https://a.example/own.onnx"))
    assert store.verify(manifest) == []
    (store_root / "onnx/own.onnx").write_bytes(b"X" * 5)
    assert "sha256" in store.verify(manifest)[0]
    (store_root / "onnx/own.onnx").write_bytes(b"X" * 6)
    assert "size" in store.verify(manifest)[0]
    removed = store.remove(parse("url:https://a.example/shared.onnx"))
    assert removed == [], "a file another manifest owns is kept"
    assert (store_root / "onnx/shared.onnx").exists()
    assert store.remove(parse("url:https://b.example/shared.onnx")) == ["onnx/shared.onnx"]
    assert not (store_root / "onnx/shared.onnx").exists()
    assert (store_root / "onnx/own.onnx").exists()


@pytest.mark.parametrize("mode", ["auto", "hardlink", "symlink", "copy", "reflink"])
def test_link_modes(tmp_path: Path, mode: str) -> None:
    src = tmp_path / "cache" / "blob"
    src.parent.mkdir()
    src.write_bytes(b"weights")
    dst = tmp_path / "dst"
    used = link_or_copy(src, dst, mode)
    assert dst.read_bytes() == b"weights"
    if mode == "hardlink":
        assert used == "hardlink" and os.stat(dst).st_ino == os.stat(src).st_ino
    if mode == "symlink":
        assert dst.is_symlink() and used == "symlink"
    if mode == "copy":
        assert used == "copy" and os.stat(dst).st_ino != os.stat(src).st_ino
    if mode in ("auto", "reflink"):
        assert used in ("reflink", "hardlink", "copy")
    assert src.read_bytes() == b"weights", "the source is never modified"


def test_a_filesystem_that_refused_a_reflink_is_not_asked_again(tmp_path: Path) -> None:
    from modelhub.store import files

    src = tmp_path / "blob"
    src.write_bytes(b"weights")
    device = os.stat(tmp_path).st_dev
    files._NO_REFLINK.discard(device)
    if link_or_copy(src, tmp_path / "first", "auto") == "reflink":
        assert device not in files._NO_REFLINK
        pytest.skip("this filesystem makes reflinks")
    assert device in files._NO_REFLINK
    with pytest.raises(OSError) as refused:
        files._reflink(src, tmp_path / "second")
    assert refused.value.errno == errno.EOPNOTSUPP
    assert not (tmp_path / "second").exists(), "not even created and removed this time"
    assert link_or_copy(src, tmp_path / "third", "auto") == "hardlink"
    assert (tmp_path / "third").read_bytes() == b"weights"


def test_link_in_hardlink_adds_no_bytes(tmp_path: Path, store_root: Path) -> None:
    store = Store(link_mode="hardlink")
    src = tmp_path / "sdk-cache" / "blob"
    src.parent.mkdir()
    src.write_bytes(os.urandom(4096))
    entry, used = store.link_in(src, "onnx/linked.onnx", parse("onnx:linked"))
    assert used == "hardlink"
    assert os.stat(store_root / "onnx/linked.onnx").st_nlink == 2
    assert entry.sha256 == hashlib.sha256(src.read_bytes()).hexdigest()


def test_link_mode_rejects_unknown(tmp_path: Path) -> None:
    from modelhub.errors import UsageError

    (tmp_path / "a").write_bytes(b"x")
    with pytest.raises(UsageError):
        link_or_copy(tmp_path / "a", tmp_path / "b", "teleport")


def test_manifest_round_trip_and_hostile_documents() -> None:
    entry = FileEntry("onnx/a.onnx", "0" * 64, 3)
    staged = StagedEntry("onnx/a.onnx", "onnx", "0" * 64, 3, "x", {"onnx": "1"}, ["x"], ["y"])
    m = _manifest("onnx:a", [entry])
    m = Manifest(**{**m.__dict__, "staged": [staged]})
    assert Manifest.from_json(m.to_json()) == m
    assert m.to_json() == Manifest.from_json(m.to_json()).to_json()
    good = m.to_json()
    for bad in (
        good.replace('"onnx/a.onnx"', '"../a.onnx"', 1),
        good.replace('"onnx/a.onnx"', '"/etc/passwd"', 1),
        good.replace('"size": 3', '"size": -1', 1),
        good.replace("0" * 64, "z" * 64, 1),
        "[]",
        "{not json",
        '{"ref": "x"}',
    ):
        with pytest.raises(IntegrityError):
            Manifest.from_json(bad)


def test_unreadable_manifests_are_skipped(store_root: Path) -> None:
    store = Store()
    _put(store, "url:https://a.example/ok.onnx", "onnx/ok.onnx", b"ok")
    bad = store_root / ".modelhub/manifests/url/broken.json"
    bad.write_text("{broken")
    assert [m.ref for _, m in store.manifests()] == ["url:https://a.example/ok.onnx"]

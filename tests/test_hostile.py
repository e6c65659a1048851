"""Hostile inputs, one test each: references, archives (tar and zip), manifests (ONNX zoo, HF
tree, the store's own), redirects, pickles, LFS pointers and planted links.

Every case must end in one clear error (for the CLI: the contract's exit code and one line on
stderr) and write nothing outside the store (and the hubs' own caches): each test watches a
sandbox around the store for new files and names the escape targets it aims at.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import posixpath
import stat
import tarfile
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import modelhub
from modelhub.cli.main import main
from modelhub.errors import ArchiveError, InsecureRedirectError, NetworkError
from modelhub.store.archives import extract_tar, extract_zip
from tests.support.httpserver import HTTPTestServer

MiB = 1 << 20
ESCAPE = "modelhub-hostile-escape.txt"  # the file every hostile input tries to create


# --- helpers ------------------------------------------------------------------------------------
def _files_under(root: Path) -> set[str]:
    if not root.exists():
        return set()
    return {
        p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file() or p.is_symlink()
    }


@pytest.fixture
def sandbox(
    tmp_path: Path, store_root: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[[], list[str]]]:
    """``new_outside()`` → files created under ``tmp_path`` outside the store and SDK caches
    since the test started (plus any escape target that appeared); [] is the only good answer."""
    caches = ("hf-cache", "torch-home", "tfhub-cache", "keras-home")
    for name, var in zip(
        caches, ("HF_HUB_CACHE", "TORCH_HOME", "TFHUB_CACHE_DIR", "KERAS_HOME"), strict=True
    ):
        monkeypatch.setenv(var, str(tmp_path / name))
    before = _files_under(tmp_path)
    targets = [tmp_path / ESCAPE, tmp_path.parent / ESCAPE, Path("/tmp") / ESCAPE]
    existed = {t for t in targets if t.exists()}

    def new_outside() -> list[str]:
        ignore = (store_root.name + "/", *(c + "/" for c in caches), "sandbox-input/")
        found = sorted(f for f in _files_under(tmp_path) - before if not f.startswith(ignore))
        return found + [str(t) for t in targets if t.exists() and t not in existed]

    yield new_outside


def _cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    """``modelhub ARGS`` in-process; returns (exit code, the one error line)."""
    capsys.readouterr()
    code = main(list(args))
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one line on stderr, got: {err!r}"
    assert lines[0].startswith("modelhub: error: "), lines[0]
    assert "Traceback" not in err
    return code, lines[0]


# --- references: exit 2 before any I/O ---------------------------------------------------------
BAD_REFERENCES = {
    "traversal-hf": "hf:../../etc/passwd",
    "traversal-dotdot-name": "hf:org/..",
    "traversal-onnx": f"onnx:../../{ESCAPE}",
    "absolute-tfhub": "tfhub:/etc/passwd",
    "encoded-separator": "hf:org%2F..%2F..%2Fetc/x",
    "encoded-dots": "onnx:evil%2e%2e",
    "nul": "hf:org/name\x00.onnx",
    "newline": "onnx:mnist\n--force",
    "backslashes": "keras:..\\..\\evil",
    "long-segment": "onnx:" + "a" * 300,
    "long-revision": "hf:org/name@" + "r" * 300,
    "long-reference": "url:http://127.0.0.1/" + "a" * 3000 + ".onnx",
    "git-ref-traversal": "torch:owner/repo:../../x/entry",
    "kaggle-dotdot": "kaggle:o/m/f/../1",
    "file-scheme": "url:file:///etc/passwd",
    "url-encoded-dotdot-name": "url:http://127.0.0.1/models/%2e%2e",
    "url-encoded-slash-name": f"url:http://127.0.0.1/models/..%2f{ESCAPE}",
    "revision-traversal": "hf:org/name@refs/../../x",
    "hub-url-traversal": "https://tfhub.dev/google/../../../etc/passwd",
    "hub-url-encoded-traversal": "https://huggingface.co/org/..%2F..%2Fetc",
    "unicode-override": "tfhub:a/b/\u202eexe.onnx",
}


@pytest.mark.parametrize("ref", BAD_REFERENCES.values(), ids=BAD_REFERENCES.keys())
def test_reference_refused_before_any_io(
    ref: str, capsys: pytest.CaptureFixture[str], store_root: Path, sandbox
) -> None:
    code, line = _cli(capsys, "pull", ref)
    assert code == 2, line
    assert "invalid reference" in line or "not an http" in line, line
    assert not store_root.exists(), "a refused reference must not even create the store"
    assert sandbox() == []


# --- archives: ArchiveError, the destination removed, nothing outside ----------------------------
def _tar(members: list[tarfile.TarInfo | tuple[tarfile.TarInfo, bytes]], gz: bool = True) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz" if gz else "w") as tar:
        ok = tarfile.TarInfo("saved_model.pb")
        ok.size = 3
        tar.addfile(ok, io.BytesIO(b"abc"))
        for item in members:
            info, data = item if isinstance(item, tuple) else (item, b"")
            if info.isreg():
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data else None)
    return buf.getvalue()


def _member(name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, link
    if kind in (tarfile.CHRTYPE, tarfile.BLKTYPE):
        info.devmajor, info.devminor = 1, 3
    return info


class _Zeros(io.RawIOBase):
    """``size`` zero bytes as a readable stream (no buffer of that size in memory)."""

    def __init__(self, size: int) -> None:
        self.left = size

    def readable(self) -> bool:
        return True

    def readinto(self, b: bytearray) -> int:  # type: ignore[override]
        n = min(len(b), self.left)
        b[:n] = bytes(n)
        self.left -= n
        return n


def _zeros_member(name: str, size: int) -> bytes:
    """A tar.gz with one member of ``size`` zero bytes (compresses ~1000:1)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        info = tarfile.TarInfo(name)
        info.size = size
        tar.addfile(info, io.BufferedReader(_Zeros(size), 1 << 20))
    return buf.getvalue()


TAR_CASES: dict[str, Callable[[], bytes]] = {
    "tar-dotdot": lambda: _tar([(_member(f"../../{ESCAPE}"), b"evil")]),
    "tar-absolute": lambda: _tar([(_member(f"/tmp/{ESCAPE}"), b"evil")]),
    "tar-symlink-absolute": lambda: _tar([_member("link", tarfile.SYMTYPE, "/etc")]),
    "tar-symlink-relative-out": lambda: _tar([_member("a/link", tarfile.SYMTYPE, "../../..")]),
    "tar-symlink-then-write-through": lambda: _tar(
        [_member("out", tarfile.SYMTYPE, ".."), (_member(f"out/{ESCAPE}"), b"evil")]
    ),
    "tar-symlink-chain": lambda: _tar(
        [_member("a", tarfile.SYMTYPE, "."), _member("a/b", tarfile.SYMTYPE, "..")]
    ),
    "tar-hardlink-out": lambda: _tar([_member("hard", tarfile.LNKTYPE, "../../etc/passwd")]),
    "tar-hardlink-absolute": lambda: _tar([_member("hard", tarfile.LNKTYPE, "/etc/passwd")]),
    "tar-hardlink-to-missing-member": lambda: _tar([_member("hard", tarfile.LNKTYPE, "gone")]),
    "tar-symlink-empty-target": lambda: _tar([_member("b//", tarfile.SYMTYPE, "")]),
    "tar-symlink-to-itself": lambda: _tar([_member("a", tarfile.SYMTYPE, "a//a")]),
    "tar-symlink-loop-of-two": lambda: _tar(
        [_member("a", tarfile.SYMTYPE, "b"), _member("b", tarfile.SYMTYPE, "a")]
    ),
    "tar-char-device": lambda: _tar([_member("null", tarfile.CHRTYPE)]),
    "tar-block-device": lambda: _tar([_member("sda", tarfile.BLKTYPE)]),
    "tar-fifo": lambda: _tar([_member("pipe", tarfile.FIFOTYPE)]),
    "tar-header-says-100-GiB": lambda: _header_bomb(),
    "tar-gz-bomb-256-MiB-of-zeros": lambda: _zeros_member("variables.data", 256 * MiB),
    "tar-not-an-archive": lambda: b"\x1f\x8b\x08\x00garbage" * 10,
}


def _header_bomb() -> bytes:
    info = _member("variables.data")
    info.size = 100 * 2**30
    raw = bytearray(info.tobuf(tarfile.GNU_FORMAT)) + bytes(4096)  # the data is not even there
    buf = io.BytesIO()
    import gzip

    with gzip.GzipFile(fileobj=buf, mode="wb") as gz:
        gz.write(bytes(raw))
    return buf.getvalue()


@pytest.mark.parametrize("make", TAR_CASES.values(), ids=TAR_CASES.keys())
def test_tar_archive_refused(make: Callable[[], bytes], tmp_path: Path, sandbox) -> None:
    src = tmp_path / "sandbox-input" / "model.tar.gz"
    src.parent.mkdir()
    src.write_bytes(make())
    dest = tmp_path / "box" / "dest"
    dest.parent.mkdir()
    with pytest.raises(ArchiveError) as info:
        extract_tar(src, dest)
    assert info.value.exit_code == 5
    assert "\n" not in str(info.value)
    assert not dest.exists(), "a refused archive leaves no partial folder"
    assert os.listdir(dest.parent) == []
    assert sandbox() == []


def _zip(entries: list[tuple[str, bytes, int | None]]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("repo-main/hubconf.py", "dependencies = []\n")
        for name, data, mode in entries:
            info = zipfile.ZipInfo(name)
            info.compress_type = zipfile.ZIP_DEFLATED
            if mode is not None:
                info.external_attr = mode << 16
            zf.writestr(info, data)
    return buf.getvalue()


ZIP_CASES: dict[str, Callable[[], bytes]] = {
    "zip-dotdot": lambda: _zip([(f"../../{ESCAPE}", b"evil", None)]),
    "zip-absolute": lambda: _zip([(f"/tmp/{ESCAPE}", b"evil", None)]),
    "zip-backslash-dotdot": lambda: _zip([(f"..\\..\\{ESCAPE}", b"evil", None)]),
    "zip-drive-letter": lambda: _zip([(f"C:{ESCAPE}", b"evil", None)]),
    "zip-symlink": lambda: _zip([("repo-main/link", b"/etc/passwd", stat.S_IFLNK | 0o777)]),
    "zip-char-device": lambda: _zip([("repo-main/null", b"", stat.S_IFCHR | 0o666)]),
    "zip-bomb-64-MiB-of-zeros": lambda: _zip([("repo-main/weights.bin", bytes(64 * MiB), None)]),
}


@pytest.mark.parametrize("make", ZIP_CASES.values(), ids=ZIP_CASES.keys())
def test_zip_archive_refused(make: Callable[[], bytes], tmp_path: Path, sandbox) -> None:
    src = tmp_path / "sandbox-input" / "repo.zip"
    src.parent.mkdir()
    src.write_bytes(make())
    dest = tmp_path / "box" / "dest"
    dest.parent.mkdir()
    with pytest.raises(ArchiveError) as info:
        extract_zip(src, dest)
    assert info.value.exit_code == 5
    assert not dest.exists()
    assert os.listdir(dest.parent) == []
    assert sandbox() == []


def test_tar_bomb_refused_by_an_explicit_limit(tmp_path: Path, sandbox) -> None:
    """The byte limit counts header sizes before anything is written."""
    src = tmp_path / "sandbox-input" / "model.tar.gz"
    src.parent.mkdir()
    src.write_bytes(_zeros_member("variables.data", 8 * MiB))
    dest = tmp_path / "box" / "dest"
    dest.parent.mkdir()
    with pytest.raises(ArchiveError, match="decompression bomb"):
        extract_tar(src, dest, max_bytes=4 * MiB)
    assert not dest.exists() and sandbox() == []


def test_hostile_zipball_through_the_torch_hub_pipeline(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, store_root: Path, sandbox
) -> None:
    """torch:OWNER/REPO/ENTRY --trust fetching a zipball whose member climbs out: exit 5."""
    data = _zip([(f"repo-main/../../../{ESCAPE}", b"evil", None)])
    # The default branch is probed first, as torch probes it (tree/main/ answers: main).
    with HTTPTestServer({"/evil/repo/zipball/main": data, "/evil/repo/tree/main/": b""}) as server:
        monkeypatch.setenv("MODELHUB_GITHUB_URL", server.url)
        code, line = _cli(capsys, "pull", "torch:evil/repo/entry", "--trust", "--stage", "none")
    assert code == 5, line
    assert "outside" in line, line
    assert sandbox() == []
    assert not list((store_root / ".modelhub" / "manifests").rglob("*.json"))
    from tests.faults.checks import final_files

    assert final_files(store_root) == {}, "the hostile zipball stayed under its final name"


# --- manifests: the ONNX zoo's, the HF tree, the store's own ----------------------------------
def _zoo(
    entries: list[dict[str, object]],
    files: dict[str, bytes],
    monkeypatch: pytest.MonkeyPatch,
    bait: dict[str, bytes] | None = None,
) -> HTTPTestServer:
    """A zoo as upstream serves it (one server standing in for both hosts): the manifest at
    ``/ONNX_HUB_MANIFEST.json``, each of ``files`` (model_path → bytes) at its Hugging Face copy
    ``/{ZOO_FILES}/{model_path}``, and ``bait`` at exactly the server paths given; modelhub is
    pointed at it (``MODELHUB_ONNX_URL`` for the manifest, ``MODELHUB_HF_URL`` for the files)."""
    from tests.conftest import ZOO_FILES

    server = HTTPTestServer({"/ONNX_HUB_MANIFEST.json": json.dumps(entries).encode()})
    for model_path, data in files.items():
        server.add(f"/{ZOO_FILES}/{model_path}", data)
    for path, data in (bait or {}).items():
        server.add(path, data)
    monkeypatch.setenv("MODELHUB_ONNX_URL", server.url)
    monkeypatch.setenv("MODELHUB_HF_URL", server.url)
    return server


def _entry(model_path: str, data: bytes, **meta: object) -> dict[str, object]:
    return {
        "model": "evil",
        "model_path": model_path,
        "opset_version": 13,
        "metadata": {
            "model_sha": hashlib.sha256(data).hexdigest(),
            "model_bytes": len(data),
            **meta,
        },
    }


@pytest.fixture(scope="module")
def onnx_bytes(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    pytest.importorskip("onnx")
    from tests.support.onnx_models import make_mlp

    return make_mlp(tmp_path_factory.mktemp("m") / "evil.onnx", seed=9).read_bytes()


ZOO_CASES: dict[str, tuple[Callable[[bytes], list[dict[str, object]]], int]] = {
    "zoo-path-dotdot": (lambda d: [_entry(f"../../{ESCAPE}", d)], 3),
    "zoo-path-absolute": (lambda d: [_entry(f"/tmp/{ESCAPE}", d)], 3),
    "zoo-path-backslash": (lambda d: [_entry(f"..\\..\\{ESCAPE}", d)], 3),
    "zoo-negative-size": (lambda d: [_entry("m/evil.onnx", d, model_bytes=-1)], 3),
    "zoo-huge-size": (lambda d: [_entry("m/evil.onnx", d, model_bytes=10**15)], 5),
    "zoo-sha-not-hex": (lambda d: [_entry("m/evil.onnx", d, model_sha="z" * 64)], 3),
}


@pytest.mark.parametrize("case", ZOO_CASES.values(), ids=ZOO_CASES.keys())
def test_hostile_zoo_manifest(
    case: tuple[Callable[[bytes], list[dict[str, object]]], int],
    onnx_bytes: bytes,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    store_root: Path,
    sandbox,
) -> None:
    from tests.conftest import ZOO_FILES

    entries, expected = case
    # Bait where an escaping model_path would land: the server's root (an absolute path) and
    # two levels above the zoo's files (../../).
    above = posixpath.normpath(f"/{ZOO_FILES}/../../{ESCAPE}")
    bait = {f"/{ESCAPE}": b"evil", f"/tmp/{ESCAPE}": b"evil", above: b"evil"}
    with _zoo(entries(onnx_bytes), {"m/evil.onnx": onnx_bytes}, monkeypatch, bait):
        code, line = _cli(capsys, "pull", "onnx:evil")
    assert code == expected, line
    assert sandbox() == []
    assert not list((store_root / ".modelhub" / "manifests").rglob("*.json"))
    from tests.faults.checks import final_files

    assert final_files(store_root) == {}


def test_zoo_duplicate_entries_with_conflicting_hashes(
    onnx_bytes: bytes, capsys: pytest.CaptureFixture[str], monkeypatch, store_root: Path, sandbox
) -> None:
    """Two entries for one model and opset, one lying about the sha256: whichever is chosen,
    the file in the store is the one its manifest records (or nothing is published)."""
    liar = _entry("m/evil.onnx", onnx_bytes, model_sha=hashlib.sha256(b"x").hexdigest())
    honest = _entry("m/evil.onnx", onnx_bytes)
    with _zoo([liar, honest], {"m/evil.onnx": onnx_bytes}, monkeypatch):
        capsys.readouterr()
        code = main(["pull", "onnx:evil"])
        err = capsys.readouterr().err
    assert code in (0, 5), err
    assert sandbox() == []
    if code == 0:
        manifest = modelhub.Store().require(modelhub.parse("onnx:evil"))
        assert modelhub.Store().verify(manifest) == []
    else:
        assert not list((store_root / ".modelhub" / "manifests").rglob("*.json"))


def test_store_manifest_listing_paths_outside_is_refused(
    capsys: pytest.CaptureFixture[str], store_root: Path, tmp_path: Path, sandbox
) -> None:
    """A planted manifest whose files climb out: `rm` and `verify` refuse it; nothing outside
    the store is touched (deleted or read)."""
    victim = tmp_path / ESCAPE
    victim.write_text("keep me")
    ref = modelhub.parse("onnx:planted")
    from modelhub.store import layout

    doc = {
        "ref": "onnx:planted",
        "hub": "onnx",
        "framework": "onnx",
        "revision": "0" * 64,
        "source": [],
        "storage": "uncompressed",
        "sdk_cache": None,
        "files": [{"path": f"../{ESCAPE}", "sha256": "0" * 64, "size": 7}],
        "staged": [],
        "created": "2026-01-01T00:00:00Z",
    }
    path = store_root / layout.manifest_path(ref)
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(doc))
    code, line = _cli(capsys, "rm", "onnx:planted")
    assert code == 5, line
    assert victim.read_text() == "keep me"
    code, line = _cli(capsys, "verify", "onnx:planted")
    assert code == 5, line


@pytest.mark.parametrize(
    "details",
    [["abc"], "[" * 50_000 + "]" * 50_000],
    ids=["mistyped-field", "nested-50000-deep"],
)
def test_one_corrupt_manifest_does_not_break_the_store(
    details: object, zoo, capsys: pytest.CaptureFixture[str], store_root: Path, sandbox
) -> None:
    """A manifest with a mistyped field (or absurd nesting) next to a good one: `list`, `du`,
    `verify` and `gc` skip it (they are store-wide) and keep working for the good model."""
    assert main(["pull", "onnx:tiny-mlp"]) == 0
    from modelhub.store import layout

    good = store_root / layout.manifest_path(modelhub.parse("onnx:tiny-mlp"))
    bad = store_root / layout.manifest_path(modelhub.parse("onnx:corrupt"))
    doc = json.loads(good.read_text())
    doc["ref"] = "onnx:corrupt"
    text = json.dumps({**doc, "details": details}) if isinstance(details, list) else details
    bad.write_text(str(text))
    for args in (["list"], ["du"], ["verify"], ["gc", "--dry-run"]):
        capsys.readouterr()
        code = main(args)
        _, err = capsys.readouterr()
        assert code == 0, (args, err)
        assert "Error" not in err, (args, err)
    assert good.is_file() and (store_root / "onnx" / "tiny-mlp-13.onnx").is_file()
    assert sandbox() == []


def test_planted_symlink_in_the_store_is_not_followed(
    zoo, capsys: pytest.CaptureFixture[str], store_root: Path, tmp_path: Path, sandbox
) -> None:
    """store/onnx is a symlink to a folder outside: the pull refuses to publish through it."""
    outside = tmp_path / "outside-target"
    outside.mkdir()
    store_root.mkdir()
    (store_root / "onnx").symlink_to(outside)
    code, line = _cli(capsys, "pull", "onnx:tiny-mlp")
    assert code == 2, line
    assert "leaves the store" in line, line
    assert list(outside.iterdir()) == []


# --- Hugging Face: hostile tree listings, and a redirect to another host ------------------------
COMMIT = "c" * 40


def _hf_server(tree: list[dict[str, object]], files: dict[str, bytes]) -> HTTPTestServer:
    """A Hub stand-in for hf:evil/repo answering with ``tree`` and serving ``files``."""
    info = {"id": "evil/repo", "sha": COMMIT, "siblings": [{"rfilename": e["path"]} for e in tree]}
    server = HTTPTestServer()
    server.add("/api/models/evil/repo/revision/main", json.dumps(info).encode())
    server.add(
        f"/api/models/evil/repo/tree/{COMMIT}",
        json.dumps(tree).encode(),
        headers={"X-Repo-Commit": COMMIT},
    )
    for path, data in files.items():
        server.add(
            f"/evil/repo/resolve/{COMMIT}/{path}",
            data,
            headers={"X-Repo-Commit": COMMIT, "X-Linked-Size": str(len(data))},
        )
    return server


def _tree_entry(path: str, data: bytes, size: int | None = None) -> dict[str, object]:
    sha = hashlib.sha256(data).hexdigest()
    n = len(data) if size is None else size
    return {
        "type": "file",
        "path": path,
        "size": n,
        "oid": hashlib.sha1(data).hexdigest(),
        "lfs": {"oid": sha, "size": n, "pointerSize": 130},
    }


CONFIG = b'{"model_type": "evil"}'
HF_CASES: dict[str, tuple[list[dict[str, object]], dict[str, bytes]]] = {
    "hf-tree-dotdot": (
        [_tree_entry("config.json", CONFIG), _tree_entry(f"../../{ESCAPE}", b"evil")],
        {"config.json": CONFIG, f"../../{ESCAPE}": b"evil"},
    ),
    "hf-tree-absolute": (
        [_tree_entry("config.json", CONFIG), _tree_entry(f"/tmp/{ESCAPE}", b"evil")],
        {"config.json": CONFIG},
    ),
    "hf-tree-negative-size": (
        [_tree_entry("config.json", CONFIG, size=-5)],
        {"config.json": CONFIG},
    ),
    "hf-tree-huge-size": (
        [_tree_entry("config.json", CONFIG, size=10**15)],
        {"config.json": CONFIG},
    ),
    "hf-tree-duplicates": (
        [_tree_entry("config.json", CONFIG), _tree_entry("config.json", b"{}", size=2)],
        {"config.json": CONFIG},
    ),
}


@pytest.mark.parametrize("case", HF_CASES.values(), ids=HF_CASES.keys())
def test_hostile_hf_tree(
    case: tuple[list[dict[str, object]], dict[str, bytes]],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    store_root: Path,
    sandbox,
) -> None:
    pytest.importorskip("huggingface_hub")
    tree, files = case
    with _hf_server(tree, files) as server:
        monkeypatch.setenv("MODELHUB_HF_URL", server.url)
        capsys.readouterr()
        code = main(["pull", "hf:evil/repo"])
        err = capsys.readouterr().err
    assert sandbox() == []
    lines = [line for line in err.splitlines() if line.startswith("modelhub: error: ")]
    if code == 0:
        # Accepted: then every file the manifest records must be what it says it is.
        manifest = modelhub.Store().require(modelhub.parse("hf:evil/repo"))
        assert modelhub.Store().verify(manifest) == []
        assert all(f.path.startswith("huggingface/evil/repo/") for f in manifest.files)
    else:
        assert len(lines) == 1, err
        assert not list((store_root / ".modelhub" / "manifests").rglob("*.json"))


def test_hf_redirect_to_another_host_drops_the_token(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, store_root: Path
) -> None:
    """The Hub on 127.0.0.1 redirects file downloads to a CDN on localhost (another origin):
    the files arrive, and the CDN never sees the token."""
    pytest.importorskip("huggingface_hub")
    from modelhub.importer import import_path
    from modelhub.mirror.app import BackgroundMirror
    from tests.faults.proxy import FaultProxy
    from tests.support.mirror_fixtures import make_hf_snapshot

    token = "hf_hostileRedirectToken0123456789"
    make_hf_snapshot(tmp_path / "src", seed=4)
    seed = modelhub.Store(tmp_path / "seed")
    import_path(seed, tmp_path / "src", modelhub.parse("hf:org/redirected"))
    with (
        BackgroundMirror(seed.root) as mirror,
        FaultProxy(mirror) as hub,
        FaultProxy(mirror) as cdn,
    ):
        cdn_url = cdn.url.replace("127.0.0.1", "localhost")
        hub.add("redirect", "*/resolve/*", times=-1, location=cdn_url, methods=("GET", "HEAD"))
        monkeypatch.setenv("MODELHUB_HF_URL", f"{hub.url}/hf")
        monkeypatch.setenv("HF_TOKEN", token)
        monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))
        model = modelhub.pull("hf:org/redirected")
        assert modelhub.Store().verify(model.manifest) == []
        served = cdn.exchanges("*/resolve/*", "GET")
        assert served, "the files must have come from the other host"
        assert all(e.headers.get("host", "").startswith("localhost") for e in served)
        assert hub.exchanges("/hf/api/"), "the API calls went to the Hub"
        assert all("authorization" in e.headers for e in hub.exchanges("/hf/api/"))
        leaked = [e.path for e in cdn.log if token in json.dumps(e.headers)]
        assert leaked == [], f"the token followed the redirect to another host: {leaked}"


def test_transfer_redirect_to_another_host_drops_the_token(tmp_path: Path) -> None:
    """modelhub's own transfer: a token for 127.0.0.1 is not sent to localhost after a 302."""
    from modelhub.transfer import download_file

    data = os.urandom(4096)
    with HTTPTestServer({"/weights.bin": data}) as other:
        with HTTPTestServer() as origin:
            target = other.url.replace("127.0.0.1", "localhost") + "/weights.bin"
            origin.redirect("/weights.bin", target)
            got = download_file(
                origin.url + "/weights.bin", tmp_path / "w.part", token="s3cr3t-token-value"
            )
        assert got.sha256 == hashlib.sha256(data).hexdigest()
        assert origin.requests[0].headers.get("authorization") == "Bearer s3cr3t-token-value"
        assert [r.headers.get("authorization") for r in other.requests] == [None]


@pytest.mark.parametrize(
    ("current", "location"),
    [
        ("https://huggingface.co/org/m/resolve/main/x", "http://cdn.example/x"),
        ("https://huggingface.co/org/m/resolve/main/x", "HTTP://cdn.example/x"),
    ],
    ids=["https-to-http", "https-to-http-uppercase-scheme"],
)
def test_https_to_http_redirect_refused(current: str, location: str) -> None:
    from modelhub._http import redirect_target

    with pytest.raises(InsecureRedirectError) as info:
        redirect_target(current, location, 302, "GET")
    assert info.value.exit_code == 6
    assert redirect_target("http://a/x", "https://b/y", 302, "GET") == ("https://b/y", "GET")


def test_redirect_to_another_scheme_refused() -> None:
    from modelhub._http import redirect_target

    with pytest.raises(NetworkError, match="unsupported"):
        redirect_target("https://a/x", "file:///etc/passwd", 302, "GET")


# --- pickles carrying code, LFS pointers --------------------------------------------------------
def test_torch_pickle_carrying_code_never_runs(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    store_root: Path,
    sandbox,
) -> None:
    pytest.importorskip("torch")
    pytest.importorskip("torchvision")
    from tests.support.torchvision_models import EVIL_NAME, register_evil

    marker = tmp_path / "pickle-ran"
    evil = register_evil(str(marker))
    with HTTPTestServer({f"/models/{evil.filename}": evil.data}) as server:
        monkeypatch.setenv("MODELHUB_TORCH_URL", server.url)
        code, line = _cli(capsys, "pull", f"torch:{EVIL_NAME}")
    assert code == 5, line
    assert not marker.exists(), "the pickle's code ran"
    assert not (store_root / "pytorch" / f"{EVIL_NAME}.onnx").exists()
    assert not list((store_root / ".modelhub" / "manifests").rglob("*.json"))


LFS_POINTER = (
    b"version https://git-lfs.github.com/spec/v1\noid sha256:" + b"a" * 64 + b"\nsize 123456789\n"
)


def test_lfs_pointer_served_as_an_onnx_zoo_model(
    capsys: pytest.CaptureFixture[str], monkeypatch, store_root: Path, sandbox
) -> None:
    entry = _entry("m/evil.onnx", b"the real model", model_bytes=None)
    with _zoo([entry], {"m/evil.onnx": LFS_POINTER}, monkeypatch):
        code, line = _cli(capsys, "pull", "onnx:evil")
    assert code == 5, line
    assert "LFS pointer" in line, line
    from tests.faults.checks import final_files

    assert final_files(store_root) == {} and sandbox() == []


def test_lfs_pointer_served_as_a_url_model(
    capsys: pytest.CaptureFixture[str], store_root: Path, sandbox
) -> None:
    with HTTPTestServer({"/models/big.onnx": LFS_POINTER}) as server:
        code, line = _cli(capsys, "pull", f"url:{server.url}/models/big.onnx")
    assert code == 5, line
    assert "LFS pointer" in line, line
    from tests.faults.checks import final_files

    assert final_files(store_root) == {} and sandbox() == []

"""Property-based fuzzing (hypothesis, bounded: part of the normal suite) of everything that
reads untrusted input: references (with revisions, and the CLI's fast path), the manifest
reader, the ONNX zoo manifest reader, the lock reader of ``sync``, and the tar and zip
extractors.

The contract each reader must keep: return a valid value or raise its one documented error
type — never another exception, never a path outside the store. The extractors: extract
strictly inside the destination, or raise ArchiveError and leave nothing.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import stat
import tarfile
import tempfile
import zipfile
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from modelhub.errors import ArchiveError, IntegrityError, InvalidReferenceError
from modelhub.refs import parse
from modelhub.store import layout
from modelhub.store.archives import extract_tar, extract_zip
from modelhub.store.manifest import Manifest

BUDGET = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
ROOT = Path("/tmp/modelhub-fuzz-store")

# --- JSON documents -----------------------------------------------------------------------------
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from(
        ["../x", "/etc/passwd", "a/../../b", "", ".", "0" * 64, "a" * 64, "onnx/m.onnx"]
    ),
)
JSON = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)


def _valid_manifest() -> dict[str, Any]:
    return {
        "ref": "onnx:m",
        "hub": "onnx",
        "framework": "onnx",
        "revision": "r",
        "source": ["https://h/m.onnx"],
        "storage": "uncompressed",
        "sdk_cache": None,
        "files": [{"path": "onnx/m.onnx", "sha256": "a" * 64, "size": 10}],
        "staged": [
            {
                "path": "onnx/m.onnx",
                "format": "onnx",
                "sha256": "a" * 64,
                "size": 10,
                "converter": "c",
                "versions": {"onnx": "1"},
                "inputs": ["x"],
                "outputs": ["y"],
                "parity": None,
                "details": {},
            }
        ],
        "created": "2026-01-01T00:00:00Z",
        "details": {},
    }


MANIFEST_FIELDS = [
    ("ref",),
    ("files",),
    ("files", 0),
    ("files", 0, "path"),
    ("files", 0, "size"),
    ("files", 0, "sha256"),
    ("staged",),
    ("staged", 0, "path"),
    ("staged", 0, "versions"),
    ("staged", 0, "inputs"),
    ("staged", 0, "details"),
    ("staged", 0, "size"),
    ("source",),
    ("details",),
    ("sdk_cache",),
]


def _replace(doc: Any, where: tuple[Any, ...], value: Any) -> Any:
    target = doc
    for key in where[:-1]:
        target = target[key]
    target[where[-1]] = value
    return doc


def _check_manifest(text: str | bytes) -> None:
    try:
        manifest = Manifest.from_json(text)
    except IntegrityError:
        return
    for rel in manifest.all_paths():
        assert ROOT in layout.resolve_in_store(ROOT, rel).parents
    for entry in [*manifest.files, *manifest.staged]:
        assert isinstance(entry.size, int) and entry.size >= 0


@BUDGET
@given(JSON)
def test_manifest_reader_on_any_json(doc: Any) -> None:
    _check_manifest(json.dumps(doc))


@BUDGET
@given(st.sampled_from(MANIFEST_FIELDS), JSON)
def test_manifest_reader_on_a_manifest_with_one_hostile_field(
    where: tuple[Any, ...], value: Any
) -> None:
    _check_manifest(json.dumps(_replace(_valid_manifest(), where, value)))


@BUDGET
@given(st.binary(max_size=64))
def test_manifest_reader_on_bytes(data: bytes) -> None:
    _check_manifest(data)


def test_manifest_reader_on_deep_nesting() -> None:
    """JSON nested deeper than the interpreter's recursion limit is refused like any other
    malformed manifest."""
    _check_manifest("[" * 100_000 + "]" * 100_000)


# --- the ONNX zoo manifest ----------------------------------------------------------------------
ZOO_ENTRY = st.fixed_dictionaries(
    {
        "model": st.one_of(st.text(max_size=8), JSON),
        "model_path": st.one_of(
            st.sampled_from(
                ["m/a.onnx", "../a.onnx", "/a.onnx", "a/../../b.onnx", "a\\b.onnx", "", "a/"]
            ),
            st.text(max_size=16),
            JSON,
        ),
        "opset_version": st.one_of(st.integers(-5, 30), JSON),
        "metadata": st.one_of(
            st.fixed_dictionaries(
                {
                    "model_sha": st.one_of(st.just("a" * 64), st.text(max_size=70), JSON),
                    "model_bytes": st.one_of(st.integers(-(2**64), 2**64), JSON),
                }
            ),
            JSON,
        ),
    }
)


@BUDGET
@given(st.one_of(JSON, st.lists(ZOO_ENTRY, max_size=5)))
def test_zoo_manifest_reader(doc: Any) -> None:
    from modelhub.hubs.onnx_zoo import parse_zoo_manifest

    try:
        entries = parse_zoo_manifest(json.dumps(doc).encode())
    except IntegrityError:
        return
    for entry in entries:
        assert ROOT in layout.resolve_in_store(ROOT, entry["model_path"]).parents
        size = entry["metadata"].get("model_bytes")
        assert size is None or (isinstance(size, int) and size >= 0)


def test_zoo_manifest_reader_on_deep_nesting() -> None:
    from modelhub.hubs.onnx_zoo import parse_zoo_manifest

    with pytest.raises(IntegrityError):
        parse_zoo_manifest(b"[" * 100_000 + b"]" * 100_000)


# --- the lock reader of sync --------------------------------------------------------------------
LOCK_ENTRY = st.fixed_dictionaries(
    {
        "ref": st.one_of(st.just("onnx:m"), JSON),
        "hub": st.one_of(st.just("onnx"), JSON),
        "revision": st.one_of(st.just("r"), JSON),
        "request": st.one_of(st.just({}), JSON),
        "files": st.one_of(
            st.lists(
                st.fixed_dictionaries(
                    {"path": JSON, "sha256": JSON, "size": st.one_of(st.integers(), JSON)}
                ),
                max_size=3,
            ),
            JSON,
        ),
    }
)


INFINITE_SIZE = {
    "lock_version": 1,
    "models": [
        {
            "ref": "onnx:m",
            "hub": "onnx",
            "revision": "r",
            "request": {},
            "files": [{"path": "onnx/m.onnx", "sha256": "a" * 64, "size": float("inf")}],
        }
    ],
}


@BUDGET
@given(
    st.one_of(
        JSON,
        st.fixed_dictionaries(
            {
                "lock_version": st.one_of(st.just(1), JSON),
                "models": st.lists(LOCK_ENTRY, max_size=3),
            }
        ),
    )
)
@example(INFINITE_SIZE)
def test_lock_reader(doc: Any) -> None:
    from modelhub.sync import read_lock

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "modelhub.lock"
        path.write_text(json.dumps(doc), encoding="utf-8")
        try:
            entries = read_lock(path)
        except IntegrityError:
            return
    assert entries is not None
    for entry in entries.values():
        assert all(isinstance(f["size"], int) for f in entry.files)


@BUDGET
@given(st.binary(max_size=64))
def test_lock_reader_on_bytes(data: bytes) -> None:
    from modelhub.sync import read_lock

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "modelhub.lock"
        path.write_bytes(data)
        with contextlib.suppress(IntegrityError):
            read_lock(path)


# --- references with revisions, and the CLI's fast path ---------------------------------------
REF_TEXT = st.one_of(
    st.text(max_size=40),
    st.tuples(
        st.sampled_from(["hf:", "onnx:", "torch:", "tfhub:", "kaggle:", "keras:", "url:http://h/"]),
        st.lists(
            st.sampled_from(["a", "B9", "..", ".", "/", "%2f", "@", ":", "\\", "é"]), max_size=10
        ),
    ).map(lambda t: t[0] + "".join(t[1])),
)


@BUDGET
@given(REF_TEXT, st.one_of(st.none(), st.text(max_size=20)))
def test_reference_with_revision(text: str, revision: str | None) -> None:
    from modelhub.pipeline import as_ref

    try:
        ref = as_ref(text, revision)
    except InvalidReferenceError:
        return
    assert parse(ref.canonical) == ref
    for rel in (layout.manifest_path(ref), layout.lock_path(ref), layout.model_dir(ref)):
        assert ROOT in layout.resolve_in_store(ROOT, rel).parents
    key = layout.ref_key(ref)
    assert "/" not in key and key not in (".", "..") and "\x00" not in key


@BUDGET
@given(st.sampled_from(["path", "pull"]), REF_TEXT)
def test_cli_fast_path_never_raises(command: str, text: str) -> None:
    """The stdlib-only fast path answers or hands over to the full CLI; it never raises."""
    from modelhub.cli.fast import fast_path

    assert fast_path([command, text]) in (None, 0)


# --- the archive extractors ---------------------------------------------------------------------
NAME_PART = st.sampled_from(["a", "b", "..", ".", "", "c.txt", "/", "\\", "é", "x" * 20, "C:"])
NAME = st.lists(NAME_PART, min_size=1, max_size=5).map("/".join)
LINK = st.one_of(NAME, st.sampled_from(["/etc/passwd", "../../..", ".", "..", "a", "a/b"]))
TAR_TYPES = {
    "file": tarfile.REGTYPE,
    "dir": tarfile.DIRTYPE,
    "symlink": tarfile.SYMTYPE,
    "hardlink": tarfile.LNKTYPE,
    "chardev": tarfile.CHRTYPE,
    "fifo": tarfile.FIFOTYPE,
}
TAR_MEMBER = st.tuples(NAME, st.sampled_from(sorted(TAR_TYPES)), LINK, st.binary(max_size=16))
# Archives of hostile members alone are nearly all refused (one bad member refuses the archive):
# half the examples are drawn from members that are each harmless (plain names, files, folders,
# links inside), so the extracting branch is exercised as often as the refusing one.
SAFE_NAME = st.lists(st.sampled_from(["a", "b", "c.txt", "x" * 20]), min_size=1, max_size=4).map(
    "/".join
)
SAFE_TAR_MEMBER = st.tuples(
    SAFE_NAME,
    st.sampled_from(["file", "file", "dir", "symlink"]),
    st.sampled_from(["a", "c.txt"]),
    st.binary(max_size=16),
)
TAR_MEMBERS = st.one_of(
    st.lists(TAR_MEMBER, min_size=1, max_size=6), st.lists(SAFE_TAR_MEMBER, min_size=1, max_size=6)
)


def _snapshot(folder: Path) -> set[tuple[str, bool]]:
    return {(p.relative_to(folder).as_posix(), p.is_symlink()) for p in folder.rglob("*")}


def _inside(path: Path, root: Path) -> bool:
    real = Path(os.path.realpath(path))
    real_root = Path(os.path.realpath(root))
    return real == real_root or real_root in real.parents


def _check_extracted(dest: Path) -> None:
    for path in dest.rglob("*"):
        assert _inside(path, dest), f"{path} resolves outside {dest}"
        mode = path.lstat().st_mode
        assert stat.S_ISREG(mode) or stat.S_ISDIR(mode) or stat.S_ISLNK(mode), path


def _extract(extract: Any, data: bytes, suffix: str) -> str:
    """Extract ``data`` and check the contract; return which way it went: "extracted" (at least
    one regular file written), "extracted nothing", or "refused" (ArchiveError)."""
    with tempfile.TemporaryDirectory() as tmp:
        box = Path(tmp)
        (box / "outside.txt").write_text("keep")
        src = box / f"in{suffix}"
        src.write_bytes(data)
        dest = box / "work" / "dest"
        before = _snapshot(box)
        try:
            extract(src, dest)
        except ArchiveError:
            assert not dest.exists(), "a refused archive leaves no partial folder"
            outcome = "refused"
        else:
            _check_extracted(dest)
            files = [p for p in dest.rglob("*") if p.is_file() and not p.is_symlink()]
            outcome = "extracted" if files else "extracted nothing"
        after = {(p, link) for p, link in _snapshot(box) if not p.startswith("work/dest")}
        assert after == before | {("work", False)} or after == before, after ^ before
        assert (box / "outside.txt").read_text() == "keep"
        return outcome


def _assert_both_outcomes(outcomes: Counter[str]) -> None:
    """The strategy reached both branches of the contract, so both were checked."""
    assert outcomes["extracted"] and outcomes["refused"], (
        f"the strategy never reached one of the outcomes: {dict(outcomes)}"
    )


def test_tar_extractor() -> None:
    """Any tar (gzip or not) of hostile names, links, devices and FIFOs: extracted strictly
    inside the destination, or refused leaving nothing. Both outcomes are counted over the
    examples and must both occur: a strategy that only ever built refused (or only benign)
    archives would check one branch and prove nothing about the other."""
    outcomes: Counter[str] = Counter()

    @BUDGET
    @given(TAR_MEMBERS, st.booleans())
    def any_tar(members: list[tuple[str, str, str, bytes]], gz: bool) -> None:
        buf = io.BytesIO()
        mode = "w:gz" if gz else "w"
        with tarfile.open(fileobj=buf, mode=mode, format=tarfile.PAX_FORMAT) as tar:
            for name, kind, link, data in members:
                assume(name)
                info = tarfile.TarInfo(name)
                info.type = TAR_TYPES[kind]
                if kind in ("symlink", "hardlink"):
                    info.linkname = link
                if kind == "chardev":
                    info.devmajor, info.devminor = 1, 3
                if kind == "file":
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
                else:
                    tar.addfile(info)
        outcomes[_extract(extract_tar, buf.getvalue(), ".tar.gz" if gz else ".tar")] += 1

    any_tar()
    _assert_both_outcomes(outcomes)


ZIP_MODES = st.sampled_from(
    [None, stat.S_IFREG | 0o644, stat.S_IFDIR | 0o755, stat.S_IFLNK | 0o777, stat.S_IFCHR, 0o4755]
)
ZIP_MEMBERS = st.one_of(
    st.lists(st.tuples(NAME, ZIP_MODES, st.binary(max_size=16)), min_size=1, max_size=6),
    st.lists(
        st.tuples(SAFE_NAME, st.sampled_from([None, stat.S_IFREG | 0o644]), st.binary(max_size=16)),
        min_size=1,
        max_size=6,
    ),
)


@pytest.mark.filterwarnings("ignore:Duplicate name:UserWarning")  # duplicates are on purpose
def test_zip_extractor() -> None:
    """Any zip of hostile names and modes (links, devices, setuid): extracted strictly inside
    the destination, or refused leaving nothing; both outcomes counted and required, as for
    tar."""
    outcomes: Counter[str] = Counter()

    @BUDGET
    @given(ZIP_MEMBERS)
    def any_zip(members: list[tuple[str, int | None, bytes]]) -> None:
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as zf:
            for name, mode, data in members:
                assume(name)
                info = zipfile.ZipInfo(name)
                if mode is not None:
                    info.external_attr = mode << 16
                zf.writestr(info, data)
        outcomes[_extract(extract_zip, buf.getvalue(), ".zip")] += 1

    any_zip()
    _assert_both_outcomes(outcomes)


@pytest.mark.parametrize(("name", "expected"), [("a/b.txt", "extracted"), ("../a", "refused")])
def test_the_outcome_count_tells_the_branches_apart(name: str, expected: str) -> None:
    """The counts above are only as good as ``_extract``'s account of what happened: a benign
    tar is "extracted", a member climbing out makes it "refused"."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo(name)
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
    assert _extract(extract_tar, buf.getvalue(), ".tar") == expected

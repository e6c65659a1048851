"""``modelhub import PATH --as REF``: local files into the store, as a pull would put them.

One pipeline for every kind, in the order a pull uses:

1. *decide* from the source and the reference alone which kind this is (nothing written);
2. *stage* every file into a private folder under ``.modelhub/tmp/`` (same filesystem), hashing
   while copying; a SavedModel ``.tar.gz`` is extracted there safely; an ONNX model is
   validated there, so an invalid model never gets a final name;
3. *compare* with the manifest already in the store: identical content is a no-op, different
   content needs ``force=True`` (the old entry is then removed through the Store first);
4. *publish* each file with :meth:`Store.publish` (atomic rename; the Store refuses a path that
   another reference owns with other content) and write the manifest last.

Kinds (the reference's hub decides which applies: ``ModelHub.import_kind``): ``onnx-model`` ← an
``.onnx`` zoo model (with its external-data files); ``onnx-file`` / ``file`` ← any file, stored
under the reference's file name (an ONNX one validated); ``snapshot`` ← a repository snapshot
folder; ``savedmodel-dir`` / ``savedmodel-tar`` ← a SavedModel folder or ``.tar.gz``/``.tgz``/
``.tar``; ``weights-file`` ← ``.pth``/``.pt`` weights (a sha256 prefix in the name is checked);
``keras-file`` ← ``.h5``/``.hdf5``/``.keras``; ``plain-file`` ← any file, stored under its own
name in the hub's folder; ``version-dir`` ← every file of a folder, as the numbered version the
reference names.

The caller holds ``store.lock(ref)`` (the CLI does): the lock is not reentrant.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import tarfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from .errors import (
    ArchiveError,
    HashMismatchError,
    IntegrityError,
    LFSPointerError,
    NotFoundError,
    StoreConflictError,
    UsageError,
)
from .refs import ModelRef, url_basename
from .store import FileEntry, Manifest, StagedEntry, Store, layout
from .store.manifest import utc_now

_CHUNK = 4 * 2**20
_HEX40 = re.compile(r"[0-9a-f]{40}")
_TORCH_HASH = re.compile(r"-([a-f0-9]{8,64})\.")
_LFS_PREFIX = b"version https://git-lfs.github.com/spec/"
_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
_SKIP_DIRS = {".git", ".cache", ".no_exist"}
_FILE_KINDS = ("onnx-model", "onnx-file", "weights-file", "keras-file", "file", "plain-file")


@dataclass
class _Staged:
    """Files copied into the private tmp folder, keyed by their final store path."""

    folder: Path
    files: dict[str, tuple[Path, str, int]] = field(default_factory=dict)

    def entries(self) -> list[FileEntry]:
        return [FileEntry(rel, sha, size) for rel, (_, sha, size) in sorted(self.files.items())]


def _copy_hashing(src: Path, dst: Path) -> tuple[str, int]:
    """Copy ``src`` to ``dst`` (which must not exist) and return (sha256, size)."""
    digest = hashlib.sha256()
    size = 0
    dst.parent.mkdir(parents=True, exist_ok=True)
    with open(src, "rb") as fin, open(dst, "xb") as fout:
        while block := fin.read(_CHUNK):
            digest.update(block)
            fout.write(block)
            size += len(block)
    return digest.hexdigest(), size


def _hash(path: Path) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as fh:
        while block := fh.read(_CHUNK):
            digest.update(block)
            size += len(block)
    return digest.hexdigest(), size


def _check_not_pointer(path: Path, shown: str) -> bytes:
    with open(path, "rb") as fh:
        head = fh.read(2048)
    if head.startswith(_LFS_PREFIX):
        raise LFSPointerError(f"{shown} is a Git LFS pointer file, not the model it points to")
    return head


def _stage_file(staged: _Staged, src: Path, rel: str) -> None:
    layout.check_relative(rel)
    dst = staged.folder / "files" / f"{len(staged.files):06d}-{PurePosixPath(rel).name}"
    sha, size = _copy_hashing(src, dst)
    staged.files[rel] = (dst, sha, size)


def _file_source(src: Path) -> list[str]:
    return [src.absolute().as_uri()]


# --- kinds --------------------------------------------------------------------------------------
def _kind(store: Store, src: Path, ref: ModelRef) -> str:
    """Decide what to do from the source and the reference alone (the hub's adapter says).
    Raises UnsupportedError."""
    from .hubs import get_hub

    return get_hub(ref.hub, store).import_kind(src, ref)


def _external_data(model_path: Path) -> list[str]:
    """File names of the external-data files an ONNX model refers to (validated)."""
    import onnx

    try:
        model = onnx.load(str(model_path), load_external_data=False)
    except Exception as exc:  # onnx raises several unrelated types
        raise IntegrityError(f"{model_path.name} is not a valid ONNX model: {exc}") from None
    locations: set[str] = set()

    def tensors(graph: Any) -> Any:
        yield from graph.initializer
        for node in graph.node:
            for attr in node.attribute:
                if attr.HasField("t"):
                    yield attr.t
                yield from attr.tensors
                if attr.HasField("g"):
                    yield from tensors(attr.g)
                for sub in attr.graphs:
                    yield from tensors(sub)

    for tensor in tensors(model.graph):
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            for item in tensor.external_data:
                if item.key == "location":
                    locations.add(item.value)
    for location in locations:
        try:
            layout.safe_filename(location)
        except Exception:
            raise IntegrityError(
                f"{model_path.name} refers to external data {location!r} outside its folder"
            ) from None
    return sorted(locations)


def _stage_onnx(
    staged: _Staged, src: Path, ref: ModelRef, filename: str, zoo: bool
) -> tuple[StagedEntry, dict[str, Any]]:
    """Copy an ONNX model (and its external data) and validate the copy."""
    from .staging.onnx_check import validate_entry

    _check_not_pointer(src, src.name)
    rel = layout.file_path(ref, filename)
    # Validate in a folder shaped like the final one, so external data resolves.
    model_dir = staged.folder / "onnx"
    model_dir.mkdir()
    model_tmp = model_dir / filename
    sha, size = _copy_hashing(src, model_tmp)
    staged.files[rel] = (model_tmp, sha, size)
    for location in _external_data(model_tmp):
        sidecar = src.parent / location
        if not sidecar.is_file():
            raise NotFoundError(f"{src.name} needs its external data file {location} beside it")
        side_tmp = model_dir / location
        side_sha, side_size = _copy_hashing(sidecar, side_tmp)
        staged.files[layout.file_path(ref, location)] = (side_tmp, side_sha, side_size)
    entry = validate_entry(model_tmp, rel, sha, size)
    details = {
        "model": ref.name if zoo else PurePosixPath(filename).stem,
        "model_path": rel.removeprefix("onnx/"),
        "opset": entry.details["opset"],
        "io_ports": entry.details["io_ports"],
    }
    return entry, details


def _walk_files(folder: Path) -> list[tuple[Path, str]]:
    """Regular files under ``folder`` (following file symlinks, as an SDK cache has them)."""
    found = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS)
        for name in sorted(filenames):
            path = Path(dirpath) / name
            rel = path.relative_to(folder).as_posix()
            if not path.is_file():
                raise NotFoundError(f"{rel} in {folder} is not a readable file (broken link?)")
            found.append((path, rel))
    if not found:
        raise UsageError(f"{folder} holds no files")
    return found


def _tree_commit(entries: list[FileEntry], prefix: str) -> str:
    """A deterministic 40-hex id of a snapshot: sha1 of its (path, sha256, size) list."""
    h = hashlib.sha1(b"modelhub-import-tree-v1\n", usedforsecurity=False)
    for e in sorted(entries, key=lambda e: e.path):
        h.update(f"{e.path.removeprefix(prefix)}\0{e.sha256}\0{e.size}\n".encode())
    return h.hexdigest()


def _hf_commit(src: Path) -> tuple[str | None, str]:
    """A real commit sha recorded beside a snapshot, if any: (commit, where it came from)."""
    if src.parent.name == "snapshots" and _HEX40.fullmatch(src.name):
        return src.name, "hf-cache"
    meta_dir = src / ".cache" / "huggingface" / "download"
    commits = set()
    if meta_dir.is_dir():
        for meta in meta_dir.rglob("*.metadata"):
            with contextlib.suppress(OSError, IndexError):
                first = meta.read_text(encoding="utf-8").splitlines()[0].strip()
                if _HEX40.fullmatch(first):
                    commits.add(first)
    if len(commits) == 1:
        return commits.pop(), "hf-local-dir"
    return None, "derived"


def _check_tar_member(member: tarfile.TarInfo, archive: str) -> None:
    name = member.name
    parts = PurePosixPath(name).parts
    if name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name) or ".." in parts:
        raise ArchiveError(f"{archive}: member {name!r} would be written outside the model folder")
    if "\\" in name or "\x00" in name:
        raise ArchiveError(f"{archive}: member {name!r} has an unsafe name")
    if not (member.isfile() or member.isdir()):
        kind = "link" if member.issym() or member.islnk() else "special file"
        raise ArchiveError(f"{archive}: member {name!r} is a {kind}; only files and folders")


def _extract(src: Path, dest: Path) -> None:
    """Extract a tar(.gz) into ``dest`` (empty, under the store's tmp), refusing hostile members."""
    try:
        with tarfile.open(src, mode="r|*") as tar:
            for member in tar:
                _check_tar_member(member, src.name)
                tar.extract(member, dest, filter="data")
    except tarfile.FilterError as exc:
        raise ArchiveError(f"{src.name}: {exc}") from None
    except (tarfile.TarError, EOFError, OSError) as exc:
        if isinstance(exc, ArchiveError):
            raise
        raise ArchiveError(f"{src.name} is not a readable tar archive: {exc}") from None


def _savedmodel_root(folder: Path, shown: str) -> Path:
    markers = ("saved_model.pb", "saved_model.pbtxt")
    if any((folder / m).is_file() for m in markers):
        return folder
    found = sorted({p.parent for m in markers for p in folder.rglob(m)})
    if len(found) == 1:
        return found[0]
    if not found:
        raise IntegrityError(f"{shown} holds no SavedModel (no saved_model.pb)")
    raise UsageError(f"{shown} holds {len(found)} SavedModels; import one folder")


def _check_magic(path: Path, kind: str) -> None:
    head = _check_not_pointer(path, path.name)
    lowered = path.name.lower()
    if kind == "keras-file" and lowered.endswith((".h5", ".hdf5")):
        with open(path, "rb") as fh:
            for offset in (0, 512, 1024, 2048):
                fh.seek(offset)
                if fh.read(8) == _HDF5_MAGIC:
                    return
        raise IntegrityError(f"{path.name} is not an HDF5 file")
    if kind == "keras-file" and lowered.endswith(".keras") and not zipfile.is_zipfile(path):
        raise IntegrityError(f"{path.name} is not a .keras (zip) archive")
    if kind == "weights-file" and not (head.startswith(b"PK") or head[:1] == b"\x80"):
        raise IntegrityError(f"{path.name} is neither a zip nor a pickle: not torch weights")


# --- the pipeline -------------------------------------------------------------------------------
def _collect(
    staged: _Staged, src: Path, ref: ModelRef, kind: str
) -> tuple[str, list[StagedEntry], dict[str, Any]]:
    """Stage the files of ``kind``; return (revision, staged entries, details)."""
    if kind in _FILE_KINDS:
        filename = url_basename(ref.name) if kind in ("onnx-file", "file") else src.name
        layout.safe_filename(filename)
        if kind in ("onnx-model", "onnx-file"):
            zoo = kind == "onnx-model"
            entry, details = _stage_onnx(staged, src, ref, filename, zoo)
            if zoo and ref.revision and int(ref.revision) != details["opset"]:
                raise UsageError(f"{src.name} is opset {details['opset']}, not {ref.revision}")
            return entry.sha256, [entry], details
        _check_magic(src, kind)
        _stage_file(staged, src, layout.file_path(ref, filename))
        [(_, sha, _)] = staged.files.values()
        match = _TORCH_HASH.search(filename)
        if kind == "weights-file" and match and not sha.startswith(match.group(1)):
            raise HashMismatchError(
                f"{filename}: sha256 {sha[:12]}… does not start with the "
                f"{match.group(1)} in its name"
            )
        return sha, [], {"file": filename}
    folder = layout.model_dir(ref)
    if kind == "snapshot":
        for path, rel in _walk_files(src):
            _stage_file(staged, path, f"{folder}/{rel}")
        commit, origin = _hf_commit(src)
        if ref.revision and _HEX40.fullmatch(ref.revision):
            commit, origin = ref.revision, "reference"
        entries = staged.entries()
        revision = commit or _tree_commit(entries, folder + "/")
        details = {"folder": folder, "branch": ref.revision or "main", "commit_source": origin}
        return revision, [], details
    if kind == "version-dir":
        # A hub's numbered version of any framework: every file, the version as revision.
        if not ref.revision:
            raise UsageError(f"import a version folder as a reference with its version: {ref}/N")
        for path, rel in _walk_files(src):
            _stage_file(staged, path, f"{folder}/{rel}")
        if not staged.files:
            raise UsageError(f"{src} holds no files")
        return ref.revision, [], {"folder": folder, "version": int(ref.revision)}
    source = src
    if kind == "savedmodel-tar":
        source = staged.folder / "extract"
        source.mkdir()
        _extract(src, source)
    root = _savedmodel_root(source, src.name)
    for path, rel in _walk_files(root):
        _stage_file(staged, path, f"{folder}/{rel}")
    last = ref.name.rsplit("/", 1)[-1]
    version = ref.revision if (ref.revision or "").isdigit() else None
    version = version or (last if last.isdigit() else None)
    revision = version or _tree_commit(staged.entries(), folder + "/")
    details = {"folder": folder, "handle": ref.name, "format": "saved_model"}
    if version:
        details["version"] = version
    return revision, [], details


def import_path(store: Store, src: Path, ref: ModelRef, *, force: bool = False) -> Manifest:
    """Put the local file or folder ``src`` into ``store`` as ``ref``; return its manifest.

    Files land where a pull of ``ref`` puts them (``store.layout``), the manifest is written
    last. Importing identical content again returns the existing manifest; other content for
    a reference already in the store needs ``force=True``. The caller holds ``store.lock(ref)``.

    Raises NotFoundError (no ``src``), UnsupportedError (this kind cannot be ``ref``),
    StoreConflictError (``ref`` holds other content and not ``force``, or a path belongs to
    another reference), ArchiveError (a hostile or broken archive), IntegrityError (not a
    valid model of its kind, LFS pointer, hash in the name does not match).
    """
    src = Path(src)
    if not src.exists():
        raise NotFoundError(f"no such file or folder: {src}")
    kind = _kind(store, src, ref)
    work = store.tmp_dir / f"import-{layout.ref_key(ref)}-{os.urandom(4).hex()}"
    work.mkdir(parents=True)
    try:
        staged = _Staged(work)
        revision, staged_entries, details = _collect(staged, src, ref, kind)
        files = staged.entries()
        existing = store.manifest(ref)
        if existing is not None:
            same = {(f.path, f.sha256) for f in existing.files} == {
                (f.path, f.sha256) for f in files
            }
            if same and existing.revision == revision:
                return existing
            if not force:
                raise StoreConflictError(
                    f"{ref} is already in the store with other content; use --force to replace it"
                )
            store.remove(ref)
        published = [
            store.publish(tmp, rel, ref, sha, size)
            for rel, (tmp, sha, size) in sorted(staged.files.items())
        ]
        manifest = Manifest(
            ref=ref.canonical,
            hub=ref.hub,
            framework=layout.framework_for(ref),
            revision=revision,
            source=[ref.name] if kind in ("onnx-file", "file") else _file_source(src),
            storage="uncompressed",
            sdk_cache=None,
            files=published,
            staged=staged_entries,
            created=utc_now(),
            details=details,
        )
        store.write_manifest(manifest, ref)
        return manifest
    finally:
        shutil.rmtree(work, ignore_errors=True)

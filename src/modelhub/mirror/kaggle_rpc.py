"""The Kaggle Models download protocol, server side: what each RPC answers, with no HTTP in it.

Read from kagglehub 1.0.3 (``http_resolver.py``, ``clients.py``, ``cache.py``, ``handle.py``,
``integrity.py``, ``enum.py``, ``exceptions.py``) and kagglesdk 0.1.38
(``kaggle_http_client.py``, ``kaggle_env.py``, ``kaggle_object.py``,
``models/types/model_api_service.py``, ``models/types/model_enums.py``,
``common/types/http_redirect.py``, ``common/types/file_download.py``), and kagglehub's test stub
``tests/server_stubs/model_download_stub.py``:

- Every call is ``POST {base}/v1/models.ModelApiService/<Method>`` with a JSON body of camelCase
  fields (``ownerSlug``, ``modelSlug``, ``framework``, ``instanceSlug``, ``versionNumber``,
  ``path``, ``pageSize``, ``pageToken``); fields at their default are left out. ``framework`` is
  the enum member's name (``MODEL_FRAMEWORK_PY_TORCH``); we accept any spelling a user writes
  (``PyTorch``, ``pyTorch``, ``pytorch``) and match slugs case-insensitively.
- ``GetModelInstance`` → an ``ApiModelInstance`` whose ``versionNumber`` is the newest version.
- ``ListModelInstanceVersionFiles`` → ``{"files": [{"name", "size", "creationDate"}],
  "nextPageToken"}``; kagglehub asks ``pageSize`` 25 and takes a non-empty ``nextPageToken`` to
  mean "more than 25 files": it then downloads the version as one archive.
- ``DownloadModelInstanceVersion`` → an HTTP redirect (the SDK's ``HttpRedirect``: requests
  follows it) to a plain GET URL: one file with ``path``, else the whole version as an archive
  (tar.gz or zip; kagglehub tells them apart by their bytes). The body's ``x-goog-hash:
  md5=<base64>`` is what kagglehub checks; ``Accept-Ranges: bytes`` + ``Content-Length`` let it
  resume with ``Range``.
- Errors: the status code and a JSON body ``{"code": <status>, "message": "..."}``; the SDK
  raises on ``code >= 400`` with that message, kagglehub words 401/403 as "not authenticated
  or no consent" and 404 as "resource not found".

:class:`Catalog` holds the versions a server knows; :func:`answer` turns one RPC into an
:class:`Answer` that the HTTP layer (the mirror's routes, the tests' upstream) sends. The
archive is written by :func:`write_archive`, deterministically, and :class:`ArchiveBuilder`
builds each version's archive once.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import os
import tarfile
import threading
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any
from urllib.parse import quote

SERVICE = "models.ModelApiService"
GET_INSTANCE = "GetModelInstance"
LIST_FILES = "ListModelInstanceVersionFiles"
DOWNLOAD = "DownloadModelInstanceVersion"
METHODS = (GET_INSTANCE, LIST_FILES, DOWNLOAD)
#: kagglehub 1.0.3 downloads a version file by file up to this many files, else as one archive.
DIRECT_DOWNLOAD_LIMIT = 25
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 500
ARCHIVE_FORMATS = ("tar.gz", "zip")
_ENUM_PREFIX = "MODEL_FRAMEWORK_"

# kagglesdk 0.1.38 ``ModelFramework`` members (without the prefix), in the enum's order.
_FRAMEWORK_MEMBERS = (
    "TENSOR_FLOW_1",
    "TENSOR_FLOW_2",
    "TF_LITE",
    "TF_JS",
    "PY_TORCH",
    "JAX",
    "FLAX",
    "PAX",
    "MAX_TEXT",
    "GEMMA_CPP",
    "GGML",
    "GGUF",
    "CORAL",
    "SCIKIT_LEARN",
    "MXNET",
    "ONNX",
    "KERAS",
    "TRANSFORMERS",
    "API",
    "OTHER",
    "TENSOR_RT_LLM",
    "TRITON",
    "VLLM",
)
_FRAMEWORKS = {m.replace("_", "").lower(): m for m in _FRAMEWORK_MEMBERS}


def framework_key(text: str) -> str | None:
    """The framework ``text`` names, in any spelling (``MODEL_FRAMEWORK_PY_TORCH``, ``pyTorch``,
    ``PyTorch``, ``pytorch``), as a lower-case key; None when it is no Kaggle framework."""
    if not isinstance(text, str):
        return None
    upper = text.strip().upper()
    upper = upper.removeprefix(_ENUM_PREFIX)
    key = upper.replace("_", "").replace("-", "").lower()
    return key if key in _FRAMEWORKS else None


def framework_enum(key: str) -> str:
    """The enum member name of a framework key (``pytorch`` → ``MODEL_FRAMEWORK_PY_TORCH``)."""
    return _ENUM_PREFIX + _FRAMEWORKS[key]


def framework_camel(key: str) -> str:
    """The spelling Kaggle's pages and kagglehub's ``enum_to_str`` use (``pyTorch``)."""
    words = _FRAMEWORKS[key].lower().split("_")
    return words[0] + "".join(w.capitalize() for w in words[1:])


def md5_b64_of(path: Path) -> str:
    """The base64 md5 of a file, as ``x-goog-hash`` carries it."""
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            digest.update(block)
    return base64.b64encode(digest.digest()).decode("ascii")


@dataclass(frozen=True)
class VersionFile:
    """One file of a version: its name inside the version, where it is, what it must be."""

    name: str
    path: Path
    size: int
    sha256: str = ""
    md5: str | None = None  # base64, as x-goog-hash carries it; None = compute when asked


@dataclass(frozen=True)
class KaggleVersion:
    """One version of a model variation (``owner/model/framework/variation/version``)."""

    owner: str
    model: str
    framework: str  # a framework key (see framework_key)
    variation: str
    version: int
    files: dict[str, VersionFile]
    created: str = "1970-01-01T00:00:00Z"

    @property
    def key(self) -> tuple[str, str, str, str]:
        """What a request is matched against (slugs lower-cased)."""
        return (self.owner.lower(), self.model.lower(), self.framework, self.variation.lower())

    @property
    def handle(self) -> str:
        """``owner/model/framework/variation/version``, the framework as Kaggle spells it."""
        fw = framework_camel(self.framework)
        return f"{self.owner}/{self.model}/{fw}/{self.variation}/{self.version}"

    @property
    def digest(self) -> str:
        """Identity of the version's contents (names, hashes, sizes)."""
        h = hashlib.sha256(b"modelhub-kaggle-version-v1\n")
        for name, f in sorted(self.files.items()):
            h.update(f"{name}\0{f.sha256 or f.path}\0{f.size}\n".encode())
        return h.hexdigest()

    def url_path(self, path: str | None = None, archive: str = "tar.gz") -> str:
        """The quoted URL path of a file (``path``) or of the archive, relative to a base:
        ``files/O/M/FW/VAR/N/PATH`` or ``archives/O/M/FW/VAR/N.tar.gz``."""
        parts = [self.owner, self.model, framework_camel(self.framework), self.variation]
        head = "/".join(quote(p, safe="") for p in parts)
        if path is None:
            return f"archives/{head}/{self.version}.{archive}"
        tail = "/".join(quote(p, safe="") for p in path.split("/"))
        return f"files/{head}/{self.version}/{tail}"

    def instance(self) -> dict[str, Any]:
        """The ``ApiModelInstance`` JSON of this version."""
        ident = int(hashlib.sha256("/".join(self.key).encode()).hexdigest()[:12], 16)
        fw = framework_camel(self.framework)
        return {
            "id": ident,
            "slug": self.variation,
            "framework": framework_enum(self.framework),
            "versionId": ident * 1000 + self.version,
            "versionNumber": self.version,
            "url": f"/models/{self.owner}/{self.model}/{fw}/{self.variation}/{self.version}",
            "modelInstanceType": "MODEL_INSTANCE_TYPE_BASE_MODEL",
            "totalUncompressedBytes": sum(f.size for f in self.files.values()),
        }


def split_url_path(parts: list[str]) -> tuple[tuple[str, str, str, str], str, list[str]] | None:
    """Decoded segments after ``files/`` or ``archives/`` → (owner, model, framework, variation),
    the version segment and the rest; None when too short."""
    if len(parts) < 5:
        return None
    owner, model, fw, variation, version, *rest = parts
    return (owner, model, fw, variation), version, rest


@dataclass
class Catalog:
    """The versions a server serves, by (owner, model, framework, variation) and number."""

    versions: dict[tuple[str, str, str, str], dict[int, KaggleVersion]] = field(
        default_factory=dict
    )

    def add(self, version: KaggleVersion) -> None:
        """Add a version; a second record of the same version adds nothing (first wins)."""
        self.versions.setdefault(version.key, {}).setdefault(version.version, version)

    def find(
        self, owner: str, model: str, framework: str, variation: str, version: int | None = None
    ) -> KaggleVersion | None:
        """The version asked for (None = the newest), or None when unknown."""
        key = framework_key(framework)
        if key is None:
            return None
        found = self.versions.get((owner.lower(), model.lower(), key, variation.lower()))
        if not found:
            return None
        if version is None:
            return found[max(found)]
        return found.get(version)

    def all(self) -> Iterable[KaggleVersion]:
        """Every version."""
        for versions in self.versions.values():
            yield from versions.values()


@dataclass(frozen=True)
class Answer:
    """What to send for one RPC: ``status`` and a JSON ``body``; for a download (302),
    ``version`` and ``path`` (None = the archive) name what the redirect must point at."""

    status: int
    body: dict[str, Any] | None = None
    version: KaggleVersion | None = None
    path: str | None = None

    @property
    def is_redirect(self) -> bool:
        """True for a download answer."""
        return self.status == 302


def error(status: int, message: str) -> Answer:
    """An error as Kaggle's API sends it: the status and ``{"code", "message"}``."""
    return Answer(status, {"code": status, "message": message})


def _creation_date(created: str) -> str:
    """ISO-8601 with milliseconds and 'Z', as kagglesdk's DateTimeSerializer writes them."""
    stamp = created.rstrip("Z").split("+", 1)[0].split(".", 1)[0]
    return f"{stamp}.000Z"


def _page_token(offset: int) -> str:
    return base64.urlsafe_b64encode(f"offset:{offset}".encode()).decode().rstrip("=")


def _offset(token: str) -> int | None:
    try:
        text = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
    except (ValueError, UnicodeDecodeError):
        return None
    kind, _, number = text.partition(":")
    return int(number) if kind == "offset" and number.isdigit() else None


def _int_field(body: dict[str, Any], name: str) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool):
        raise ValueError(name)
    if isinstance(value, str) and value.isdigit():
        return int(value)
    if isinstance(value, int) and value >= 0:
        return value
    raise ValueError(name)


def parse_body(raw: bytes) -> dict[str, Any] | None:
    """The JSON object of a request body (empty body = {}); None when it is not one."""
    if not raw.strip():
        return {}
    try:
        doc = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    return doc if isinstance(doc, dict) else None


def answer(
    method: str, body: dict[str, Any], catalog: Catalog, *, default_page: int = DEFAULT_PAGE_SIZE
) -> Answer:
    """Answer one RPC ``method`` with request ``body`` from ``catalog``."""
    if method not in METHODS:
        return error(404, f"Unknown method {SERVICE}/{method}")
    slugs = [body.get(k) for k in ("ownerSlug", "modelSlug", "framework", "instanceSlug")]
    if not all(isinstance(s, str) and s for s in slugs):
        return error(400, "ownerSlug, modelSlug, framework and instanceSlug are required")
    owner, model, fw, variation = (str(s) for s in slugs)
    try:
        number = _int_field(body, "versionNumber") or None
        page_size = _int_field(body, "pageSize") or default_page
    except ValueError as exc:
        return error(400, f"{exc} must be a non-negative integer")
    handle = f"{owner}/{model}/{fw}/{variation}"
    if framework_key(fw) is None:
        return error(404, f"Model instance {handle} not found (unknown framework {fw!r})")
    if method == GET_INSTANCE:
        number = None
    found = catalog.find(owner, model, fw, variation, number)
    if found is None:
        what = handle if number is None else f"{handle}/{number}"
        return error(404, f"Model instance version {what} not found")
    if method == GET_INSTANCE:
        return Answer(200, found.instance())
    if method == LIST_FILES:
        token = body.get("pageToken") or ""
        offset = _offset(token) if isinstance(token, str) and token else 0
        if offset is None:
            return error(400, "Invalid pageToken")
        size = max(1, min(page_size, MAX_PAGE_SIZE))
        names = sorted(found.files)
        files = [
            {
                "name": name,
                "size": found.files[name].size,
                "creationDate": _creation_date(found.created),
            }
            for name in names[offset : offset + size]
        ]
        more = offset + size < len(names)
        token = _page_token(offset + size) if more else ""
        return Answer(200, {"files": files, "nextPageToken": token})
    path = body.get("path")
    if path is None or path == "":
        return Answer(302, version=found)
    if not isinstance(path, str) or path not in found.files:
        return error(404, f"File {path!r} not found in model instance version {found.handle}")
    return Answer(302, version=found, path=path)


# --- archives ---------------------------------------------------------------------------------
def _epoch(created: str) -> int:
    import datetime as _dt

    try:
        return int(_dt.datetime.fromisoformat(created.replace("Z", "+00:00")).timestamp())
    except ValueError:
        return 0


def write_archive(version: KaggleVersion, out: IO[bytes], fmt: str = "tar.gz") -> None:
    """Write ``version``'s files to ``out`` as a deterministic tar.gz or zip (sorted members,
    fixed modes, owners and times, no gzip name or time). Raises OSError when a file is
    missing or no longer has its recorded size."""
    mtime = _epoch(version.created)
    names = sorted(version.files)
    if fmt == "zip":
        stamp = (1980, 1, 1, 0, 0, 0)
        with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
            for name in names:
                zinfo = zipfile.ZipInfo(name, stamp)
                zinfo.compress_type = zipfile.ZIP_DEFLATED
                zinfo.external_attr = 0o644 << 16
                with open(version.files[name].path, "rb") as src, zf.open(zinfo, "w") as dst:
                    _copy(src, dst, version.files[name])
        return
    if fmt != "tar.gz":
        raise ValueError(f"archive format {fmt!r} is not one of {ARCHIVE_FORMATS}")
    folders = sorted({n.rsplit("/", i)[0] for n in names for i in range(1, n.count("/") + 1)})
    with (
        gzip.GzipFile(filename="", mode="wb", fileobj=out, compresslevel=1, mtime=0) as gz,
        tarfile.open(fileobj=gz, mode="w|", format=tarfile.PAX_FORMAT) as tar,
    ):
        for folder in folders:
            info = tarfile.TarInfo(folder)
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, mtime
            tar.addfile(info)
        for name in names:
            entry = version.files[name]
            with open(entry.path, "rb") as fh:
                if os.fstat(fh.fileno()).st_size != entry.size:
                    raise OSError(f"{entry.path} changed size since it was recorded")
                info = tarfile.TarInfo(name)
                info.size, info.mode, info.mtime = entry.size, 0o644, mtime
                tar.addfile(info, fh)


def _copy(src: IO[bytes], dst: IO[bytes], entry: VersionFile) -> None:
    copied = 0
    while block := src.read(1 << 20):
        dst.write(block)
        copied += len(block)
    if copied != entry.size:
        raise OSError(f"{entry.path} changed size since it was recorded")


class _Hashing:
    """A write-only file that hashes (md5) what it passes on."""

    def __init__(self, out: IO[bytes]) -> None:
        self.out, self.md5, self.size = out, hashlib.md5(usedforsecurity=False), 0

    def write(self, data: bytes) -> int:
        self.md5.update(data)
        self.size += len(data)
        return self.out.write(data)

    def flush(self) -> None:
        self.out.flush()

    def tell(self) -> int:
        return self.size


@dataclass(frozen=True)
class BuiltArchive:
    """A finished archive file and its base64 md5."""

    path: Path
    md5: str
    size: int


class ArchiveBuilder:
    """Builds each version's archive once into ``folder`` (atomic rename; md5 kept beside it
    in a ``.md5`` file) and hands out the finished file. Thread-safe; blocking."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def name(self, version: KaggleVersion, fmt: str) -> str:
        """The archive's file name: a readable key plus the content digest."""
        readable = "".join(c if c.isalnum() or c in "-_." else "_" for c in version.handle)
        return f"{readable[:80]}-{version.digest[:32]}.{fmt}"

    def get(self, version: KaggleVersion, fmt: str = "tar.gz") -> BuiltArchive:
        """The archive of ``version`` (built now if it is not yet). Raises OSError."""
        name = self.name(version, fmt)
        with self._guard:
            lock = self._locks.setdefault(name, threading.Lock())
        with lock:
            final = self.folder / name
            sidecar = self.folder / f"{name}.md5"
            if final.is_file() and sidecar.is_file():
                md5 = sidecar.read_text(encoding="ascii").strip()
                return BuiltArchive(final, md5, final.stat().st_size)
            self.folder.mkdir(parents=True, exist_ok=True)
            tmp = self.folder / f".{name}.{os.getpid()}.{os.urandom(4).hex()}.tmp"
            try:
                with open(tmp, "wb") as fh:
                    hashing = _Hashing(fh)
                    write_archive(version, hashing, fmt)  # type: ignore[arg-type]
                    fh.flush()
                    os.fsync(fh.fileno())
                md5 = base64.b64encode(hashing.md5.digest()).decode("ascii")
                sidecar.write_text(md5 + "\n", encoding="ascii")
                os.replace(tmp, final)
            finally:
                tmp.unlink(missing_ok=True)
            return BuiltArchive(final, md5, final.stat().st_size)

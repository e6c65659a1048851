"""A Kaggle Models stand-in on 127.0.0.1: the RPCs kagglehub 1.0.3 / kagglesdk 0.1.38 call, from a
folder tree, with the faults and gates tests need; plus helpers to build stores and trees.

The protocol is :mod:`modelhub.mirror.kaggle_rpc` (read from kagglehub's ``http_resolver.py``,
``clients.py``, ``cache.py``, ``handle.py``, ``integrity.py`` and kagglesdk's
``kaggle_http_client.py``, ``kaggle_env.py``, ``models/types/model_api_service.py``,
``models/types/model_enums.py``, ``common/types/http_redirect.py``); this server only adds what
upstream does around it::

    write_version(tree, "google/tiny/pyTorch/default/1", {"model.pt": data})
    with KaggleUpstream(tree, gated={"google/tiny/pyTorch/default"}, tokens={"t0k"}) as up:
        up.url          # the API origin: POST {url}/v1/models.ModelApiService/<Method>, and
                        # {url}/api/v1/... (kagglesdk's TEST environment shape)
        up.storage_url  # a second origin (port) the downloads redirect to, as Kaggle's signed
                        # storage URLs: GET /storage/<files|archives>/...?expires=..&signature=..

The tree is ``root/<owner>/<model>/<framework>/<variation>/<version>/<files>`` (framework as a
user writes it; matched in any spelling, slugs without case) and is read again on every request,
so a test may add a version while the server runs. Knobs (attributes, changeable at any time):

- ``gated``: handles ``owner/model/framework/variation`` whose RPCs need credentials: a Bearer
  token in ``tokens`` or HTTP Basic ``username:key`` in ``keys``; none → 403, any wrong
  credential (on any handle) → 401, both as ``{"code", "message"}``.
- ``lying_md5``: ``owner/model/framework/variation/version/path`` (a file) or ``.../version``
  (the archive) whose ``x-goog-hash`` names another md5.
- ``archive_format``: ``{handle with version: "zip"}`` (default ``"tar.gz"``);
  ``broken_archives``: versions whose archive is garbage (with a true md5 of that garbage).
- ``direct``: answer DownloadModelInstanceVersion with the bytes themselves, no redirect.
- ``page_size``: the default page of ListModelInstanceVersionFiles.

:attr:`seen` records every request: method, target, the ``Host`` it named, the port it reached
and whether it carried ``Authorization`` (never the value). Behind a
:class:`~tests.support.recorder.Recorder` (also as kagglehub's forward proxy) the storage URLs
still work: the API port serves ``/storage/`` too.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import os
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

from modelhub.mirror.http_files import not_found, send_file
from modelhub.mirror.index import ServedFile
from modelhub.mirror.kaggle_rpc import (
    SERVICE,
    ArchiveBuilder,
    Catalog,
    KaggleVersion,
    VersionFile,
    answer,
    error,
    framework_camel,
    framework_key,
    md5_b64_of,
    parse_body,
    split_url_path,
)
from modelhub.mirror.urlpath import segments
from modelhub.refs import ModelRef
from modelhub.store import Manifest, Store, layout
from modelhub.store.files import sha256_file
from modelhub.store.manifest import utc_now

__all__ = [
    "KaggleUpstream",
    "Seen",
    "kaggle_ref",
    "md5_b64",
    "store_version",
    "write_version",
]

GOOG_HASH = "x-goog-hash"


def md5_b64(data: bytes) -> str:
    """The base64 md5 of ``data`` (what ``x-goog-hash: md5=`` carries)."""
    return base64.b64encode(hashlib.md5(data).digest()).decode()


def _key(handle: str) -> tuple[str, ...]:
    """A handle (with or without version, path) normalised as the server matches it."""
    parts = handle.strip("/").split("/")
    if len(parts) < 4:
        raise ValueError(f"not a Kaggle handle: {handle!r}")
    fw = framework_key(parts[2])
    if fw is None:
        raise ValueError(f"no Kaggle framework {parts[2]!r}")
    return (parts[0].lower(), parts[1].lower(), fw, parts[3].lower(), *parts[4:])


def write_version(root: Path, handle: str, files: Mapping[str, bytes]) -> Path:
    """Write ``files`` as version ``handle`` (``owner/model/framework/variation/version``) of the
    upstream tree at ``root``; return the version's folder."""
    parts = handle.strip("/").split("/")
    assert len(parts) == 5 and parts[4].isdigit(), handle
    folder = root.joinpath(*parts)
    for name, data in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return folder


def kaggle_ref(handle: str) -> ModelRef:
    """The reference of ``owner/model/framework/variation[/version]`` (version as revision)."""
    parts = handle.strip("/").split("/")
    return ModelRef("kaggle", "/".join(parts[:4]), parts[4] if len(parts) == 5 else None)


def store_version(
    store: Store,
    handle: str,
    files: Mapping[str, bytes],
    *,
    refs: Iterable[ModelRef] | None = None,
) -> list[Manifest]:
    """Put version ``handle`` (``owner/model/framework/variation/version``) into ``store`` as the
    ``kaggle:`` adapter does: files at ``<framework folder>/kaggle/<owner>/<model>/<variation>/
    <version>/``, one manifest per reference in ``refs`` (default: the versioned one) with
    ``details`` ``{owner, model, framework, kaggle_framework, variation, version, folder, md5}``.
    Return the manifests."""
    owner, model, fw, variation, number = handle.strip("/").split("/")
    versioned = kaggle_ref(handle)
    folder = layout.model_dir(versioned)
    key = framework_key(fw)
    assert key is not None, fw
    details: dict[str, Any] = {
        "owner": owner,
        "model": model,
        "framework": fw,
        "kaggle_framework": framework_camel(key),
        "variation": variation,
        "version": int(number),
        "folder": folder,
        "md5": {name: md5_b64(data) for name, data in files.items()},
    }
    out = []
    for ref in refs or [versioned]:
        entries = []
        with store.lock(ref):
            for name, data in sorted(files.items()):
                tmp = store.tmp_dir / f"kaggle-test-{os.getpid()}-{os.urandom(4).hex()}"
                tmp.write_bytes(data)
                sha = hashlib.sha256(data).hexdigest()
                entries.append(store.publish(tmp, f"{folder}/{name}", ref, sha, len(data)))
            manifest = Manifest(
                ref=ref.canonical,
                hub="kaggle",
                framework=folder.split("/", 1)[0],
                revision=number,
                source=[f"https://www.kaggle.com/models/{owner}/{model}/{fw}/{variation}/{number}"],
                storage="uncompressed",
                sdk_cache=None,
                files=entries,
                staged=[],
                created=utc_now(),
                details=dict(details),
            )
            store.write_manifest(manifest, ref)
        out.append(manifest)
    return out


@dataclass(frozen=True)
class Seen:
    """One request the upstream answered (never a credential's value)."""

    method: str
    target: str
    host: str
    port: int
    authorization: bool
    status: int


def _catalog(root: Path) -> Catalog:
    """Every version under ``root`` (read now)."""
    catalog = Catalog()
    if not root.is_dir():
        return catalog
    for folder in sorted(root.glob("*/*/*/*/*")):
        owner, model, fw, variation, number = folder.relative_to(root).parts
        key = framework_key(fw)
        if key is None or not number.isdigit() or not folder.is_dir():
            continue
        files = {}
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            name = path.relative_to(folder).as_posix()
            sha, size = sha256_file(path)
            files[name] = VersionFile(name, path, size, sha, md5_b64_of(path))
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(int(folder.stat().st_mtime)))
        catalog.add(KaggleVersion(owner, model, key, variation, int(number), files, stamp))
    return catalog


class KaggleUpstream:
    """The Kaggle stand-in (see the module docstring); a context manager yielding itself."""

    def __init__(
        self,
        root: Path,
        *,
        gated: Iterable[str] = (),
        tokens: Iterable[str] = (),
        keys: Mapping[str, str] | None = None,
        lying_md5: Iterable[str] = (),
        archive_format: Mapping[str, str] | None = None,
        broken_archives: Iterable[str] = (),
        direct: bool = False,
        page_size: int = 50,
    ) -> None:
        self.root = Path(root)
        self.gated = set(gated)
        self.tokens = set(tokens)
        self.keys = dict(keys or {})
        self.lying_md5 = set(lying_md5)
        self.archive_format = dict(archive_format or {})
        self.broken_archives = set(broken_archives)
        self.direct = direct
        self.page_size = page_size
        self.seen: list[Seen] = []
        self.url = self.storage_url = ""
        self._secret = os.urandom(16)
        self._archives = ArchiveBuilder(self.root.parent / f".{self.root.name}-archives")
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    # --- knobs, normalised ---------------------------------------------------------------------
    def _in(self, knob: Iterable[str], *parts: str) -> bool:
        wanted = _key("/".join(parts))
        return any(_key(entry) == wanted for entry in knob)

    def _fmt(self, version: KaggleVersion) -> str:
        for handle, fmt in self.archive_format.items():
            if _key(handle) == _key(version.handle):
                return fmt
        return "tar.gz"

    # --- auth ------------------------------------------------------------------------------------
    def _auth(self, request: web.Request, handle: str) -> web.Response | None:
        """None when the request may go on, else the 401/403 Kaggle answers."""
        header = request.headers.get("Authorization", "")
        valid = None
        if header:
            scheme, _, value = header.partition(" ")
            if scheme.lower() == "bearer":
                valid = value.strip() in self.tokens
            elif scheme.lower() == "basic":
                try:
                    user, _, key = base64.b64decode(value.strip()).decode().partition(":")
                except (ValueError, UnicodeDecodeError):
                    user = key = ""
                valid = bool(user) and self.keys.get(user) == key
            else:
                valid = False
            if not valid:
                result = error(401, "Unauthenticated: the credentials sent are not valid")
                return web.json_response(result.body, status=result.status)
        if self._in(self.gated, handle) and not valid:
            result = error(
                403,
                f"Permission 'models.get' was denied: {handle} needs its license accepted "
                "on its Kaggle page",
            )
            return web.json_response(result.body, status=result.status)
        return None

    # --- signed storage URLs ---------------------------------------------------------------------
    def _sign(self, path: str, expires: int) -> str:
        return hmac.new(self._secret, f"{path}\n{expires}".encode(), "sha256").hexdigest()

    def _storage_location(self, version: KaggleVersion, path: str | None) -> str:
        target = "/storage/" + version.url_path(path, self._fmt(version))
        expires = int(time.time()) + 3600
        query = f"expires={expires}&signature={self._sign(target, expires)}"
        return f"{self.storage_url}{target}?{query}"

    def _signed(self, request: web.Request) -> bool:
        expires = request.query.get("expires", "")
        if not expires.isdigit() or int(expires) < time.time():
            return False
        target = request.raw_path.split("?", 1)[0]
        return hmac.compare_digest(
            self._sign(target, int(expires)), request.query.get("signature", "")
        )

    # --- handlers ------------------------------------------------------------------------------
    async def rpc(self, request: web.Request) -> web.StreamResponse:
        """One RPC, as Kaggle answers it (after the credentials check)."""
        body = parse_body(await request.read())
        if body is None:
            result = error(400, "The request body is not a JSON object")
            return web.json_response(result.body, status=result.status)
        slugs = [
            str(body.get(k) or "?") for k in ("ownerSlug", "modelSlug", "framework", "instanceSlug")
        ]
        if framework_key(slugs[2]) is not None:
            refused = self._auth(request, "/".join(slugs))
            if refused is not None:
                return refused
        loop = asyncio.get_running_loop()
        catalog = await loop.run_in_executor(None, _catalog, self.root)
        result = answer(request.match_info["method"], body, catalog, default_page=self.page_size)
        if result.is_redirect and result.version is not None:
            if self.direct:
                return await self._bytes(request, result.version, result.path)
            location = self._storage_location(result.version, result.path)
            return web.Response(status=302, headers={"Location": location})
        return web.json_response(result.body, status=result.status)

    async def storage(self, request: web.Request) -> web.StreamResponse:
        """``/storage/files/...`` and ``/storage/archives/...``: a signed URL's bytes."""
        if not self._signed(request):
            return web.Response(status=403, text="SignatureDoesNotMatch")
        parts = segments(request.raw_path, 1) or []
        kind, rest = (parts[0], parts[1:]) if parts else ("", [])
        split = split_url_path(rest)
        if kind not in ("files", "archives") or split is None:
            return not_found()
        (owner, model, fw, variation), last, tail = split
        path = "/".join(tail) if kind == "files" else None
        number = last if kind == "files" else last.split(".", 1)[0]
        if not number.isdigit() or (kind == "files" and not path):
            return not_found()
        loop = asyncio.get_running_loop()
        catalog = await loop.run_in_executor(None, _catalog, self.root)
        version = catalog.find(owner, model, fw, variation, int(number))
        if version is None or (path is not None and path not in version.files):
            return not_found()
        return await self._bytes(request, version, path)

    async def _bytes(
        self, request: web.Request, version: KaggleVersion, path: str | None
    ) -> web.StreamResponse:
        handle = version.handle
        if path is not None:
            entry = version.files[path]
            served = ServedFile(path, entry.path, entry.sha256, entry.size)
            md5, kind = entry.md5 or "", "application/octet-stream"
            lie = self._in(self.lying_md5, handle, path)
        else:
            fmt = self._fmt(version)
            loop = asyncio.get_running_loop()
            if self._in(self.broken_archives, handle):
                garbage = self._archives.folder / f"broken-{version.digest[:16]}.{fmt}"
                garbage.parent.mkdir(parents=True, exist_ok=True)
                garbage.write_bytes(b"this is not an archive\n" * 64)
                md5, size = md5_b64_of(garbage), garbage.stat().st_size
                served = ServedFile(garbage.name, garbage, "broken", size)
            else:
                built = await loop.run_in_executor(None, self._archives.get, version, fmt)
                served = ServedFile(built.path.name, built.path, version.digest + fmt, built.size)
                md5 = built.md5
            kind = "application/zip" if fmt == "zip" else "application/gzip"
            lie = self._in(self.lying_md5, handle)
        if lie:
            md5 = md5_b64(b"not these bytes")
        return await send_file(
            request, served, headers={GOOG_HASH: f"md5={md5}"}, content_type=kind
        )

    # --- the server ----------------------------------------------------------------------------
    def _app(self) -> web.Application:
        @web.middleware
        async def note(request: web.Request, handler: Any) -> web.StreamResponse:
            sock = request.transport.get_extra_info("sockname") if request.transport else None
            response: web.StreamResponse = await handler(request)
            self.seen.append(
                Seen(
                    request.method,
                    request.path_qs,
                    request.host,
                    int(sock[1]) if sock else 0,
                    "Authorization" in request.headers,
                    response.status,
                )
            )
            return response

        app = web.Application(middlewares=[note])
        for base in ("", "/api"):
            app.router.add_post(f"{base}/v1/{SERVICE}/{{method}}", self.rpc)
        app.router.add_get("/storage/{tail:.*}", self.storage)
        return app

    def _run(self) -> None:
        async def main() -> None:
            self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
            runner = web.AppRunner(self._app(), access_log=None, handle_signals=False)
            try:
                await runner.setup()
                for _ in range(2):
                    await web.TCPSite(runner, "127.0.0.1", 0).start()
                api, storage = (int(address[1]) for address in runner.addresses)
                self.url = f"http://127.0.0.1:{api}"
                self.storage_url = f"http://127.0.0.1:{storage}"
            except BaseException as exc:
                self._error = exc
                self._ready.set()
                return
            self._ready.set()
            try:
                await self._stop.wait()
            finally:
                await runner.cleanup()

        asyncio.run(main())

    def start(self) -> KaggleUpstream:
        """Start serving (a daemon thread); return self."""
        self._thread = threading.Thread(target=self._run, name="kaggle-upstream", daemon=True)
        self._thread.start()
        self._ready.wait(30)
        if self._error is not None:
            raise self._error
        return self

    def stop(self) -> None:
        """Stop serving."""
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(30)

    def __enter__(self) -> KaggleUpstream:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def storage_requests(self) -> list[Seen]:
        """The requests for storage URLs (``/storage/...``)."""
        return [s for s in self.seen if s.target.startswith("/storage/")]

"""Who may read the mirror (README, "Who may read the mirror"): ``--auth-tokens``, ``--public``,
models of gated or private sources served only with a token, in each hub's own error shape, with
the hubs' own clients (huggingface_hub, kagglehub); tokens never logged; the pulls record the
access they learned."""

from __future__ import annotations

import dataclasses
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

import modelhub
from modelhub.mirror import BackgroundMirror
from modelhub.mirror.access import Access, load_tokens
from modelhub.refs import parse
from modelhub.store import Manifest, Store
from tests.mirror.conftest import do_import
from tests.support.mirror_fixtures import make_hf_snapshot

hf = pytest.importorskip("huggingface_hub")
from huggingface_hub.errors import (  # noqa: E402
    GatedRepoError,
    HfHubHTTPError,
    RepositoryNotFoundError,
)

TOKEN = "mirror-token-7f3a9c0e5b2d4e61"
SERVE = (sys.executable, "-m", "modelhub", "serve")
OTHER = "mirror-token-of-someone-else-000"


def mark(store: Store, manifest: Manifest, access: str) -> Manifest:
    """Record ``access`` in ``manifest`` as a pull would have."""
    marked = dataclasses.replace(manifest, details={**manifest.details, "access": access})
    store.write_manifest(marked, parse(manifest.ref))
    return marked


@pytest.fixture
def stocked(store: Store, tmp_path: Path) -> dict[str, dict[str, bytes]]:
    """hf:acme/open (public), hf:acme/llama (gated), hf:acme/internal (private)."""
    files = {}
    for name, access in (("open", "public"), ("llama", "gated"), ("internal", "private")):
        files[name] = make_hf_snapshot(tmp_path / "src" / name, seed=len(name))
        manifest = do_import(store, tmp_path / "src" / name, f"hf:acme/{name}")
        if access != "public":
            mark(store, manifest, access)
    return files


def tokens_file(tmp_path: Path, *tokens: str) -> Path:
    path = tmp_path / "tokens.txt"
    path.write_text("# mirror tokens\n\n" + "".join(f"{t}\n" for t in tokens), encoding="utf-8")
    return path


@pytest.fixture
def serving(store: Store, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[str]:
    """The store served with TOKEN; ``public`` from the test's parameter (default True)."""
    public = getattr(request, "param", True)
    access = load_tokens(tokens_file(tmp_path, TOKEN), public=public)
    with BackgroundMirror(store.root, access=access) as url:
        yield url


def download(url: str, tmp_path: Path, repo: str, token: str | bool, **kw: object) -> Path:
    cache = tmp_path / "hf-cache"
    if "filename" in kw:
        return Path(
            hf.hf_hub_download(repo, endpoint=f"{url}/hf", cache_dir=cache, token=token, **kw)
        )
    return Path(
        hf.snapshot_download(repo, endpoint=f"{url}/hf", cache_dir=cache, token=token, **kw)
    )


def no_blobs(tmp_path: Path) -> bool:
    return not [p for p in (tmp_path / "hf-cache").rglob("blobs/*") if p.is_file()]


def test_gated_model_needs_a_token_with_huggingface_hub(
    stocked: dict[str, dict[str, bytes]], serving: str, tmp_path: Path
) -> None:
    with pytest.raises(GatedRepoError) as err:
        download(serving, tmp_path, "acme/llama", False, filename="config.json")
    assert err.value.response.status_code == 401
    assert err.value.response.headers["X-Error-Code"] == "GatedRepo"
    with pytest.raises(GatedRepoError) as err:
        download(serving, tmp_path, "acme/llama", OTHER, filename="config.json")
    assert err.value.response.status_code == 403
    with pytest.raises(GatedRepoError):
        download(serving, tmp_path, "acme/llama", False)
    assert no_blobs(tmp_path)
    got = download(serving, tmp_path, "acme/llama", TOKEN, filename="config.json")
    assert got.read_bytes() == stocked["llama"]["config.json"]
    folder = download(serving, tmp_path, "acme/llama", TOKEN)
    assert {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()} == set(
        stocked["llama"]
    )


def test_private_model_is_repo_not_found_without_a_token(
    stocked: dict[str, dict[str, bytes]], serving: str, tmp_path: Path
) -> None:
    with pytest.raises(RepositoryNotFoundError) as err:
        download(serving, tmp_path, "acme/internal", False)
    assert err.value.response.status_code == 401
    with pytest.raises(RepositoryNotFoundError):
        download(serving, tmp_path, "acme/internal", False, filename="config.json")
    assert no_blobs(tmp_path)
    folder = download(serving, tmp_path, "acme/internal", TOKEN)
    assert (folder / "config.json").read_bytes() == stocked["internal"]["config.json"]


def test_public_model_needs_no_token_with_public(
    stocked: dict[str, dict[str, bytes]], serving: str, tmp_path: Path
) -> None:
    folder = download(serving, tmp_path, "acme/open", False)
    assert (folder / "config.json").read_bytes() == stocked["open"]["config.json"]


def test_no_bytes_of_a_withheld_model_on_any_route(
    stocked: dict[str, dict[str, bytes]], serving: str, store: Store
) -> None:
    """Every route by which a file could leave: the hub's, /omnihub's, the front page."""
    manifest = store.manifest(parse("hf:acme/llama"))
    assert manifest is not None
    rel = manifest.files[0].path
    for path in (f"/omnihub/{rel}", "/hf/acme/llama/resolve/main/config.json"):
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(serving + path)
        assert err.value.code == 401 and err.value.read() != stocked["llama"]["config.json"]
        assert err.value.headers["WWW-Authenticate"].startswith("Bearer")
    req = urllib.request.Request(serving + "/", headers={"Accept": "application/json"})
    doc = urllib.request.urlopen(req).read().decode()
    assert "acme/open" in doc and "acme/llama" not in doc and "acme/internal" not in doc
    req.add_header("Authorization", f"Bearer {TOKEN}")
    assert "acme/llama" in urllib.request.urlopen(req).read().decode()


@pytest.mark.parametrize("serving", [False], indirect=True)
def test_with_tokens_and_no_public_every_model_needs_one(
    stocked: dict[str, dict[str, bytes]], serving: str, tmp_path: Path
) -> None:
    with pytest.raises(RepositoryNotFoundError) as err:
        download(serving, tmp_path, "acme/open", False, filename="config.json")
    assert err.value.response.status_code == 401
    with pytest.raises(HfHubHTTPError) as denied:
        download(serving, tmp_path, "acme/open", OTHER, filename="config.json")
    assert denied.value.response.status_code == 403
    got = download(serving, tmp_path, "acme/open", TOKEN, filename="config.json")
    assert got.read_bytes() == stocked["open"]["config.json"]
    with urllib.request.urlopen(serving + "/healthz") as health:  # always open
        assert health.status == 200


def test_without_tokens_gated_models_are_served_to_nobody(
    stocked: dict[str, dict[str, bytes]], store: Store, tmp_path: Path
) -> None:
    with BackgroundMirror(store.root, access=Access()) as url:
        with pytest.raises(GatedRepoError):
            download(url, tmp_path, "acme/llama", TOKEN, filename="config.json")
        folder = download(url, tmp_path, "acme/open", False)
    assert (folder / "config.json").is_file()


# --- kagglehub ------------------------------------------------------------------------------
kagglehub = pytest.importorskip("kagglehub")


def test_gated_kaggle_model_with_kagglehub(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from kagglehub.exceptions import KaggleApiHTTPError

    from tests.protocol.test_kaggle_client import use_kagglehub
    from tests.support.kaggle_upstream import store_version
    from tests.support.recorder import Recorder

    files = {"config.json": b'{"gated": true}', "model.weights.h5": b"\x89HDF" + b"w" * 5000}
    for manifest in store_version(store, "google/gemma-tiny/keras/en/1", files):
        mark(store, manifest, "gated")
    access = load_tokens(tokens_file(tmp_path, TOKEN), public=True)
    with BackgroundMirror(store.root, access=access) as url, Recorder(url) as rec:
        cache = use_kagglehub(monkeypatch, rec.origin, tmp_path / "home", no_proxy="")
        with pytest.raises(KaggleApiHTTPError) as err:
            kagglehub.model_download("google/gemma-tiny/keras/en/1")
        assert err.value.response is not None
        assert err.value.response.status_code == 401
        assert err.value.response.json()["code"] == 401
        assert not (cache / "models/google").exists()
        monkeypatch.setenv("KAGGLE_API_TOKEN", OTHER)
        with pytest.raises(KaggleApiHTTPError, match="403"):
            kagglehub.model_download("google/gemma-tiny/keras/en/1")
        monkeypatch.setenv("KAGGLE_API_TOKEN", TOKEN)
        path = Path(kagglehub.model_download("google/gemma-tiny/keras/en/1"))
    assert (path / "config.json").read_bytes() == files["config.json"]


# --- the pulls record what they learned -------------------------------------------------------
def test_hf_pull_records_gated_and_the_mirror_passes_it_on(
    stocked: dict[str, dict[str, bytes]],
    serving: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A pull through a mirror learns "gated" from the model info, as from the Hub itself."""
    monkeypatch.setenv("MODELHUB_PATH", str(tmp_path / "second-store"))
    monkeypatch.setenv("MODELHUB_MIRROR", serving)
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "fresh-hf-cache"))
    pulled = modelhub.pull("hf:acme/llama")
    assert pulled.manifest.details["access"] == "gated"
    assert modelhub.pull("hf:acme/open").manifest.details["access"] == "public"
    text = " ".join(p.read_text() for p in (tmp_path / "second-store").rglob("*.json"))
    assert TOKEN not in text


def test_kaggle_pull_that_needed_credentials_is_gated(
    tmp_path: Path, store_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.support.kaggle_upstream import KaggleUpstream, write_version

    tree = tmp_path / "tree"
    write_version(tree, "acme/gated/other/default/1", {"weights.dat": b"g" * 100})
    write_version(tree, "acme/open/other/default/1", {"weights.dat": b"o" * 100})
    up_token = "kaggle-upstream-token-123456"
    monkeypatch.setenv("KAGGLE_API_TOKEN", up_token)
    with KaggleUpstream(tree, gated={"acme/gated/other/default"}, tokens={up_token}) as up:
        monkeypatch.setenv("MODELHUB_KAGGLE_URL", up.url)
        gated = modelhub.pull("kaggle:acme/gated/other/default/1", stage="none")
        public = modelhub.pull("kaggle:acme/open/other/default/1", stage="none")
    assert gated.manifest.details["access"] == "gated"
    assert public.manifest.details["access"] == "public"


# --- the command line ---------------------------------------------------------------------------
def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    """``modelhub ARGS`` in a process, its output captured."""
    return subprocess.run(
        [sys.executable, "-m", "modelhub", *args], capture_output=True, text=True, timeout=60
    )


def test_network_host_without_tokens_is_refused(store: Store) -> None:
    store.root.mkdir(parents=True, exist_ok=True)
    done = run_cli("serve", "--root", str(store.root), "--host", "0.0.0.0", "--port", "0")
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "--auth-tokens" in lines[0] and "--public" in lines[0]


@pytest.mark.parametrize("content", [None, "", "# only a comment\n", "two words\n"])
def test_bad_tokens_file_is_one_line(store: Store, tmp_path: Path, content: str | None) -> None:
    store.root.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "tokens.txt"
    if content is not None:
        path.write_text(content, encoding="utf-8")
    done = run_cli("serve", "--root", str(store.root), "--port", "0", "--auth-tokens", str(path))
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1
    assert "--auth-tokens" in done.stderr and "Traceback" not in done.stderr


def test_tokens_never_logged(
    stocked: dict[str, dict[str, bytes]], store: Store, tmp_path: Path
) -> None:
    """The served process's whole stderr (access log included) never shows a token."""
    tokens = tokens_file(tmp_path, TOKEN)
    proc = subprocess.Popen(
        [*SERVE, "--root", str(store.root), "--port", "0", "--auth-tokens", str(tokens), "-v"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        for token in (TOKEN, OTHER):
            req = urllib.request.Request(
                f"{url}/hf/acme/llama/resolve/main/config.json",
                headers={"Authorization": f"Bearer {token}", "User-Agent": "t"},
            )
            try:
                urllib.request.urlopen(req).read()
            except urllib.error.HTTPError as exc:
                assert exc.code == 403 and token == OTHER
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
    assert '"GET /hf/acme/llama/resolve/main/config.json HTTP/1.1" 200' in err
    assert '"GET /hf/acme/llama/resolve/main/config.json HTTP/1.1" 403' in err
    assert TOKEN not in err and OTHER not in err

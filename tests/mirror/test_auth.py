"""Who may read the mirror (README, "Who may read the mirror"): ``--auth-tokens``, ``--public``,
models of gated or private sources served only with a token, in each hub's own error shape, with
the hubs' own clients (huggingface_hub, kagglehub); tokens never logged; the pulls record the
access they learned, ``unknown`` where they asked the hub nothing (withheld as gated), and a file
is withheld whatever other manifest or path lists it."""

from __future__ import annotations

import dataclasses
import os
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


# --- fail closed: pulls that learn nothing, files two manifests share (README, "Who may read the
# mirror"). The store is pulled from a mirror of `stocked` acting as the Hub, then served. ------
def fetch_file(url: str, cache: Path, repo: str, filename: str, token: str | bool) -> bytes:
    """``filename`` of ``repo`` by huggingface_hub from the mirror at ``url``."""
    got = hf.hf_hub_download(
        repo, filename, endpoint=f"{url}/hf", cache_dir=cache, token=token, etag_timeout=5
    )
    return Path(got).read_bytes()


def served_only_with_a_token(
    root: Path, tmp_path: Path, repo: str, filename: str, expected: bytes, revision: str = "main"
) -> None:
    """``root`` served: without tokens nobody gets ``repo``'s file (a bare GET, the SDK); with
    them, no token is a 401 GatedRepoError and TOKEN gets the bytes."""
    clients = tmp_path / "clients"
    path = f"/hf/{repo}/resolve/{revision}/{filename}"
    with BackgroundMirror(root, access=Access()) as url:
        with pytest.raises(urllib.error.HTTPError) as bare:
            urllib.request.urlopen(url + path)
        assert bare.value.code == 401 and bare.value.read() != expected
        with pytest.raises(GatedRepoError):
            hf.hf_hub_download(
                repo,
                filename,
                revision=revision,
                endpoint=f"{url}/hf",
                cache_dir=clients / "a",
                token=False,
            )
    access = load_tokens(tokens_file(tmp_path, TOKEN), public=True)
    with BackgroundMirror(root, access=access) as url:
        with pytest.raises(GatedRepoError) as err:
            hf.hf_hub_download(
                repo,
                filename,
                revision=revision,
                endpoint=f"{url}/hf",
                cache_dir=clients / "b",
                token=False,
            )
        assert err.value.response.status_code == 401
        got = hf.hf_hub_download(
            repo,
            filename,
            revision=revision,
            endpoint=f"{url}/hf",
            cache_dir=clients / "c",
            token=TOKEN,
        )
        assert Path(got).read_bytes() == expected
    assert not [p for p in (clients / "a").rglob("blobs/*") if p.is_file()]


@pytest.fixture
def hub(stocked: dict[str, dict[str, bytes]], store: Store, tmp_path: Path) -> Iterator[str]:
    """`stocked` served with TOKEN (public models to anyone): the Hub of the pulls below."""
    access = load_tokens(tokens_file(tmp_path, TOKEN), public=True)
    with BackgroundMirror(store.root, access=access) as url:
        yield url


def pull_into(monkeypatch: pytest.MonkeyPatch, root: Path, hub_url: str, hf_cache: Path) -> None:
    """Point modelhub's pulls at the store ``root``, the Hub ``hub_url`` and ``hf_cache``."""
    monkeypatch.setenv("MODELHUB_PATH", str(root))
    monkeypatch.setenv("MODELHUB_MIRROR", hub_url)
    monkeypatch.setenv("HF_HUB_CACHE", str(hf_cache))


def test_single_file_pull_with_a_token_records_gated(
    stocked: dict[str, dict[str, bytes]],
    hub: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A file reference learns the repo's access: public with no token, else its model info."""
    mine = tmp_path / "mine"
    pull_into(monkeypatch, mine, hub, tmp_path / "user-hf-cache")
    assert modelhub.pull("hf:acme/open:config.json").manifest.details["access"] == "public"
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    pulled = modelhub.pull("hf:acme/llama:config.json")
    assert pulled.manifest.details["access"] == "gated"
    assert modelhub.pull("hf:acme/internal:config.json").manifest.details["access"] == "private"
    expected = stocked["llama"]["config.json"]
    served_only_with_a_token(mine, tmp_path, "acme/llama", "config.json", expected)


def test_snapshot_from_the_hf_cache_is_unknown_then_withheld(
    stocked: dict[str, dict[str, bytes]],
    store: Store,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A pull answered wholly from the HF cache asks nothing: a fresh store records "unknown"
    (withheld); a store that pulled the model before carries "gated" over, also to another
    reference of the same repo (a file of it)."""
    first, second = tmp_path / "first", tmp_path / "second"
    access = load_tokens(tokens_file(tmp_path, TOKEN), public=True)
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    with BackgroundMirror(store.root, access=access) as hub_url:
        pull_into(monkeypatch, first, hub_url, tmp_path / "user-hf-cache")
        assert modelhub.pull("hf:acme/llama").manifest.details["access"] == "gated"
    # The Hub is gone: only a pull that makes no request can succeed now.
    monkeypatch.setenv("MODELHUB_PATH", str(second))
    cached = modelhub.pull("hf:acme/llama")
    assert cached.manifest.details["cache_hit"] is True
    assert cached.manifest.details["access"] == "unknown"
    monkeypatch.setenv("MODELHUB_PATH", str(first))
    again = modelhub.pull("hf:acme/llama:config.json")
    assert again.manifest.details["cache_hit"] is True
    assert again.manifest.details["access"] == "gated"  # as the snapshot pull learned
    expected = stocked["llama"]["config.json"]
    served_only_with_a_token(second, tmp_path, "acme/llama", "config.json", expected)
    env = {**os.environ, "MODELHUB_PATH": str(second)}
    info = subprocess.run(
        [sys.executable, "-m", "modelhub", "info", "hf:acme/llama"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert info.returncode == 0
    access = [line.split()[1:2] for line in info.stdout.splitlines() if line.startswith("access:")]
    assert access == [["unknown"]]


def test_private_repo_pulled_offline_is_withheld(
    stocked: dict[str, dict[str, bytes]],
    hub: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The user's own HF cache (filled by huggingface_hub with their token), pulled --offline."""
    user_cache = tmp_path / "user-hf-cache"
    hf.snapshot_download("acme/internal", endpoint=f"{hub}/hf", cache_dir=user_cache, token=TOKEN)
    mine = tmp_path / "mine"
    pull_into(monkeypatch, mine, "http://127.0.0.1:9", user_cache)  # nothing listens there
    pulled = modelhub.pull("hf:acme/internal", offline=True)
    assert pulled.manifest.details["access"] == "unknown"
    expected = stocked["internal"]["config.json"]
    served_only_with_a_token(mine, tmp_path, "acme/internal", "config.json", expected)
    # Pulled on from this store's mirror with a token: still not public downstream.
    access = load_tokens(tokens_file(tmp_path, TOKEN), public=True)
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    with BackgroundMirror(mine, access=access) as url:
        pull_into(monkeypatch, tmp_path / "downstream", url, tmp_path / "downstream-hf-cache")
        onward = modelhub.pull("hf:acme/internal")
    assert onward.manifest.details["access"] == "gated"


def test_a_file_of_a_gated_model_is_withheld_whatever_else_lists_it(
    stocked: dict[str, dict[str, bytes]], store: Store, tmp_path: Path
) -> None:
    """The gated snapshot beside a public single-file manifest of the same file, and one of
    another path linked to it: neither serves the file without a token."""
    gated = store.manifest(parse("hf:acme/llama"))
    assert gated is not None
    entry = next(f for f in gated.files if f.path.endswith("/config.json"))
    same = parse("hf:acme/llama:config.json")
    store.write_manifest(
        dataclasses.replace(
            gated,
            ref=same.canonical,
            files=[entry],
            details={"branch": "main", "access": "public"},
        ),
        same,
    )
    linked = parse("hf:acme/llama@v2:config.json")
    target = store.abspath(entry.path.replace("/llama/", "/llama@v2/"))
    assert not target.exists()
    target.parent.mkdir(parents=True)
    target.symlink_to(store.abspath(entry.path))
    rel = target.relative_to(store.root).as_posix()
    store.write_manifest(
        dataclasses.replace(
            gated,
            ref=linked.canonical,
            revision="2" * 40,
            files=[dataclasses.replace(entry, path=rel)],
            details={"branch": "v2", "access": "public"},
        ),
        linked,
    )
    expected = stocked["llama"]["config.json"]
    served_only_with_a_token(store.root, tmp_path, "acme/llama", "config.json", expected)
    served_only_with_a_token(store.root, tmp_path, "acme/llama", "config.json", expected, "v2")


def test_kagglehub_cache_hit_is_unknown_then_withheld(
    tmp_path: Path, store_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A gated version pulled once (kagglehub's cache filled), then into a fresh store from that
    cache with no RPC: "unknown", which the fresh store's mirror serves only with a token."""
    from kagglehub.exceptions import KaggleApiHTTPError

    from tests.protocol.test_kaggle_client import use_kagglehub
    from tests.support.kaggle_upstream import KaggleUpstream, write_version
    from tests.support.recorder import Recorder

    handle = "acme/gated/other/default/1"
    files = {"weights.dat": b"g" * 100}
    tree = tmp_path / "tree"
    write_version(tree, handle, files)
    up_token = "kaggle-upstream-token-123456"
    monkeypatch.setenv("KAGGLE_API_TOKEN", up_token)
    with KaggleUpstream(tree, gated={"acme/gated/other/default"}, tokens={up_token}) as up:
        monkeypatch.setenv("MODELHUB_KAGGLE_URL", up.url)
        first = modelhub.pull(f"kaggle:{handle}", stage="none")
    assert first.manifest.details["access"] == "gated"
    fresh = tmp_path / "fresh"
    monkeypatch.setenv("MODELHUB_PATH", str(fresh))
    cached = modelhub.pull(f"kaggle:{handle}", stage="none")  # the upstream is gone
    assert cached.manifest.details["transport"] == "kagglehub-cache"
    assert cached.manifest.details["access"] == "unknown"
    access = load_tokens(tokens_file(tmp_path, TOKEN), public=True)
    with BackgroundMirror(fresh, access=access) as url, Recorder(url) as rec:
        use_kagglehub(monkeypatch, rec.origin, tmp_path / "home", no_proxy="")
        with pytest.raises(KaggleApiHTTPError) as err:
            kagglehub.model_download(handle)
        assert err.value.response is not None and err.value.response.status_code == 401
        monkeypatch.setenv("KAGGLE_API_TOKEN", TOKEN)
        path = Path(kagglehub.model_download(handle))
    assert (path / "weights.dat").read_bytes() == files["weights.dat"]


def test_torch_repo_from_torchs_cache_is_unknown_then_withheld(
    tmp_path: Path, store_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A private GitHub repository torch.hub has (cloned with the user's GITHUB_TOKEN), pulled
    --offline from torch.hub's folder: "unknown"; its zipball only with a token."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    folder = tmp_path / "torch-home" / "hub" / "acme_secret_main"
    folder.mkdir(parents=True)
    (folder / "hubconf.py").write_text("dependencies = []\n", encoding="utf-8")
    pulled = modelhub.pull(
        "torch:acme/secret:main/tiny", stage="none", offline=True, options={"trust": True}
    )
    assert pulled.manifest.details["access"] == "unknown"
    zipball = pulled.path.read_bytes()
    path = "/torch/github/acme/secret/zipball/main"
    access = load_tokens(tokens_file(tmp_path, TOKEN), public=True)
    for served in (Access(), access):
        with BackgroundMirror(store_root, access=served) as url:
            with pytest.raises(urllib.error.HTTPError) as err:
                urllib.request.urlopen(url + path)
            assert err.value.code == 401 and err.value.read() != zipball
    with BackgroundMirror(store_root, access=access) as url:
        req = urllib.request.Request(url + path, headers={"Authorization": f"Bearer {TOKEN}"})
        assert urllib.request.urlopen(req).read() == zipball

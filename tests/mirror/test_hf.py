"""``/hf/``: proven by huggingface_hub's own snapshot_download / hf_hub_download / HfApi."""

from __future__ import annotations

import json
import os
import urllib.request
from pathlib import Path

import pytest

from modelhub.store import Manifest

pytest.importorskip("huggingface_hub")

REPO = "test-org/tiny-model"


@pytest.fixture(autouse=True)
def _quiet_hf(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")


def _tree(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_snapshot_download_is_byte_identical(
    mirror: str, tmp_path: Path, hf_files: dict[str, bytes], populated: dict[str, Manifest]
) -> None:
    from huggingface_hub import snapshot_download

    folder = Path(snapshot_download(REPO, endpoint=f"{mirror}/hf", cache_dir=tmp_path / "hf"))
    assert _tree(folder) == hf_files
    commit = populated["hf"].revision
    assert folder.name == commit
    cache = tmp_path / "hf" / "models--test-org--tiny-model"
    assert (cache / "refs" / "main").read_text() == commit
    # Blobs are named by the ETag: the sha256, as the Hub does for LFS files.
    blobs = {p.name for p in (cache / "blobs").iterdir()}
    assert blobs == {f.sha256 for f in populated["hf"].files}


def test_snapshot_by_branch_and_by_commit(
    mirror: str, tmp_path: Path, populated: dict[str, Manifest]
) -> None:
    from huggingface_hub import snapshot_download

    ep = f"{mirror}/hf"
    v1 = Path(snapshot_download(REPO, revision="v1", endpoint=ep, cache_dir=tmp_path / "a"))
    assert v1.name == populated["hf@v1"].revision
    assert json.loads((v1 / "config.json").read_bytes())["seed"] == 2
    commit = populated["hf"].revision
    main = Path(snapshot_download(REPO, revision=commit, endpoint=ep, cache_dir=tmp_path / "b"))
    assert main.name == commit
    assert json.loads((main / "config.json").read_bytes())["seed"] == 1


def test_hf_hub_download_and_allow_patterns(
    mirror: str, tmp_path: Path, hf_files: dict[str, bytes]
) -> None:
    from huggingface_hub import hf_hub_download, snapshot_download

    ep = f"{mirror}/hf"
    got = hf_hub_download(REPO, "model.safetensors", endpoint=ep, cache_dir=tmp_path / "c")
    assert Path(got).read_bytes() == hf_files["model.safetensors"]
    nested = hf_hub_download(REPO, "sub/dir/readme.txt", endpoint=ep, cache_dir=tmp_path / "c")
    assert Path(nested).read_bytes() == hf_files["sub/dir/readme.txt"]
    only = Path(
        snapshot_download(REPO, endpoint=ep, cache_dir=tmp_path / "d", allow_patterns=["*.json"])
    )
    assert sorted(_tree(only)) == ["config.json", "tokenizer.json"]


def test_sdk_errors_for_missing_repo_revision_entry(mirror: str, tmp_path: Path) -> None:
    from huggingface_hub import hf_hub_download, snapshot_download
    from huggingface_hub.errors import (
        EntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    ep, cache = f"{mirror}/hf", tmp_path / "e"
    with pytest.raises(RepositoryNotFoundError):
        hf_hub_download("test-org/nope", "config.json", endpoint=ep, cache_dir=cache)
    with pytest.raises(RepositoryNotFoundError):
        snapshot_download("test-org/nope", endpoint=ep, cache_dir=cache)
    with pytest.raises(RevisionNotFoundError):
        hf_hub_download(REPO, "config.json", revision="v9", endpoint=ep, cache_dir=cache)
    with pytest.raises(RevisionNotFoundError):
        snapshot_download(REPO, revision="v9", endpoint=ep, cache_dir=cache)
    with pytest.raises(EntryNotFoundError):
        hf_hub_download(REPO, "missing.bin", endpoint=ep, cache_dir=cache)
    # The absence is cached under the commit, as with the Hub.
    no_exist = cache / "models--test-org--tiny-model" / ".no_exist"
    assert any(p.name == "missing.bin" for p in no_exist.rglob("*"))


def test_model_info_and_paginated_tree(
    mirror: str, hf_files: dict[str, bytes], populated: dict[str, Manifest]
) -> None:
    from huggingface_hub import HfApi
    from huggingface_hub.hf_api import RepoFile, RepoFolder

    api = HfApi(endpoint=f"{mirror}/hf")
    info = api.model_info(REPO)
    assert info.id == REPO and info.sha == populated["hf"].revision
    assert info.private is False and info.gated is False and info.disabled is False
    assert sorted(s.rfilename for s in info.siblings or []) == sorted(hf_files)
    detailed = api.model_info(REPO, files_metadata=True)
    sizes = {s.rfilename: s.size for s in detailed.siblings or []}
    assert sizes == {name: len(data) for name, data in hf_files.items()}
    assert {s.lfs.sha256 for s in detailed.siblings or [] if s.lfs} == {
        f.sha256 for f in populated["hf"].files
    }

    # 19 entries (16 files, 3 folders) at 5 per page: the client must follow Link 3 times.
    entries = list(api.list_repo_tree(REPO, recursive=True))
    files = {e.path: e for e in entries if isinstance(e, RepoFile)}
    folders = {e.path for e in entries if isinstance(e, RepoFolder)}
    assert sorted(files) == sorted(hf_files)
    assert folders == {"extra", "sub", "sub/dir"}
    assert all(files[p].size == len(d) for p, d in hf_files.items())
    top = {e.path for e in api.list_repo_tree(REPO)}
    assert top == {"config.json", "tokenizer.json", "model.safetensors", "extra", "sub"}
    sub = [e.path for e in api.list_repo_tree(REPO, path_in_repo="sub/dir", revision="main")]
    assert sub == ["sub/dir/readme.txt"]
    expanded = list(api.list_repo_tree(REPO, recursive=True, expand=True))
    assert len(expanded) == len(entries)
    assert all(e.last_commit is not None for e in expanded)


def test_resolve_headers_for_head(mirror: str, populated: dict[str, Manifest]) -> None:
    manifest = populated["hf"]
    entry = next(f for f in manifest.files if f.path.endswith("model.safetensors"))
    request = urllib.request.Request(
        f"{mirror}/hf/{REPO}/resolve/main/model.safetensors", method="HEAD"
    )
    with urllib.request.urlopen(request) as response:
        headers = response.headers
        assert response.read() == b""
    assert headers["X-Repo-Commit"] == manifest.revision
    assert headers["ETag"] == f'"{entry.sha256}"'
    assert headers["X-Linked-Etag"] == f'"{entry.sha256}"'
    assert headers["X-Linked-Size"] == str(entry.size)
    assert headers["Content-Length"] == str(entry.size)
    assert headers["Accept-Ranges"] == "bytes"
    assert "Content-Encoding" not in headers
    assert not [h for h in headers if h.lower().startswith("x-xet")]


def test_revision_with_encoded_slash_is_looked_up_not_traversed(mirror: str) -> None:
    from tests.support.mirror_fixtures import raw_request

    status, headers, _ = raw_request(mirror, f"/hf/{REPO}/resolve/refs%2Fpr%2F1/config.json")
    assert status == 404 and headers["x-error-code"] == "RevisionNotFound"
    status, headers, _ = raw_request(mirror, f"/hf/{REPO}/resolve/main/sub%2Fdir%2Freadme.txt")
    assert status == 404 and headers["x-error-code"] == "EntryNotFound"


def test_import_while_serving_appears(
    mirror: str, store_root: Path, tmp_path: Path, hf_files: dict[str, bytes]
) -> None:
    from huggingface_hub import snapshot_download

    from modelhub.store import Store
    from tests.mirror.conftest import do_import

    ep = f"{mirror}/hf"
    from huggingface_hub.errors import RepositoryNotFoundError

    with pytest.raises(RepositoryNotFoundError):
        snapshot_download("late/arrival", endpoint=ep, cache_dir=tmp_path / "f")
    do_import(Store(store_root), tmp_path / "src" / "hf-snapshot", "hf:late/arrival")
    folder = Path(snapshot_download("late/arrival", endpoint=ep, cache_dir=tmp_path / "f"))
    assert _tree(folder) == hf_files
    assert os.path.isdir(folder)


def test_a_legacy_id_is_served_under_both_ids(store_root: Path, tmp_path: Path) -> None:
    """A store pulled from the Hub holds hf:gpt2 recorded as openai-community/gpt2: the mirror
    answers both, with the Hub's id in the model info, as the Hub does."""
    import dataclasses

    from huggingface_hub import HfApi, snapshot_download

    from modelhub.importer import import_path
    from modelhub.mirror import running
    from modelhub.refs import parse
    from modelhub.store import Store
    from tests.support.mirror_fixtures import make_hf_snapshot

    files = make_hf_snapshot(tmp_path / "src", seed=4)
    store = Store(store_root)
    ref = parse("hf:gpt2")
    manifest = import_path(store, tmp_path / "src", ref)
    details = {**manifest.details, "repo_id": "openai-community/gpt2"}
    store.write_manifest(dataclasses.replace(manifest, details=details), ref)
    with running(store.root) as url:
        ep = f"{url}/hf"
        for repo in ("gpt2", "openai-community/gpt2"):
            info = HfApi(endpoint=ep).model_info(repo)
            assert (info.id, info.sha) == ("openai-community/gpt2", manifest.revision)
            folder = snapshot_download(repo, endpoint=ep, cache_dir=tmp_path / repo)
            assert _tree(Path(folder)) == files
        assert (
            urllib.request.urlopen(f"{ep}/gpt2/resolve/main/config.json").read()
            == (files["config.json"])
        )


def test_file_and_folder_references_serve_their_commit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Files pulled one by one (hf:ORG/NAME:PATH) are served as their commit of the repo."""
    from huggingface_hub import snapshot_download

    import modelhub
    from modelhub.importer import import_path
    from modelhub.mirror import running
    from modelhub.refs import parse
    from modelhub.store import Store
    from tests.support.mirror_fixtures import make_hf_snapshot

    files = make_hf_snapshot(tmp_path / "src", seed=5)
    upstream = Store(tmp_path / "upstream")
    commit = import_path(upstream, tmp_path / "src", parse(f"hf:{REPO}")).revision
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    local = Store(tmp_path / "local")
    with running(upstream.root) as url:
        monkeypatch.setenv("MODELHUB_HF_URL", f"{url}/hf")
        modelhub.pull(f"hf:{REPO}:config.json", store=local)
        modelhub.pull(f"hf:{REPO}:sub/", store=local)
    with running(local.root) as url:
        folder = Path(snapshot_download(REPO, endpoint=f"{url}/hf", cache_dir=tmp_path / "c"))
    assert folder.name == commit
    assert _tree(folder) == {n: files[n] for n in ("config.json", "sub/dir/readme.txt")}

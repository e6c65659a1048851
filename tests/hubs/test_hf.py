"""hf: through `modelhub serve` and the real huggingface_hub client: the SDK's cache reused and
kept intact, links into the store, errors, and staging to ONNX with parity.

The download and cache tests need only huggingface_hub; the staging tests build tiny BERT,
GPT-2 and DistilBERT models from configs and skip without torch + transformers.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

pytest.importorskip("huggingface_hub")

import modelhub
from modelhub.errors import (
    AuthError,
    ModelNotFoundError,
    NetworkError,
    OfflineError,
    UsageError,
)
from modelhub.importer import import_path
from modelhub.mirror.app import BackgroundMirror
from modelhub.store import Manifest
from tests.support.hf_models import GatedHub, tree_bytes
from tests.support.mirror_fixtures import make_hf_snapshot

REPO = "test-org/tiny-model"
REF = f"hf:{REPO}"
REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Served:
    """A seed store served by a mirror: the repo's files and the seed manifests."""

    server: BackgroundMirror
    url: str
    files: dict[str, bytes]
    main: Manifest
    v1: Manifest
    cache: Path

    @property
    def endpoint(self) -> str:
        return f"{self.url}/hf"

    def count(self) -> int:
        return len(self.server.requests)


@pytest.fixture
def served(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Served]:
    """hf:test-org/tiny-model (main, 7 files) and its v1 branch, served; a fresh HF cache."""
    files = make_hf_snapshot(tmp_path / "src" / "main", seed=1, extra_files=3)
    make_hf_snapshot(tmp_path / "src" / "v1", seed=2)
    seed = modelhub.Store(tmp_path / "seed")
    main = import_path(seed, tmp_path / "src" / "main", modelhub.parse(REF))
    v1 = import_path(seed, tmp_path / "src" / "v1", modelhub.parse(f"{REF}@v1"))
    cache = tmp_path / "hf-cache"
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    server = BackgroundMirror(seed.root)
    url = server.start()
    monkeypatch.setenv("MODELHUB_MIRROR", url)
    try:
        yield Served(server, url, files, main, v1, cache)
    finally:
        server.stop()


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _blobs(cache: Path) -> dict[Path, tuple[str, float]]:
    """Every blob of the HF cache: (sha256 of its bytes, mtime)."""
    return {
        p: (_sha(p.read_bytes()), p.stat().st_mtime)
        for p in sorted(cache.glob("models--*/blobs/*"))
    }


def _snapshot_dir(served: Served, commit: str) -> Path:
    return served.cache / f"models--{REPO.replace('/', '--')}" / "snapshots" / commit


# --------------------------------------------------------------------------- pull


@pytest.mark.parametrize("threads", [False, True], ids=["verified-inline", "verified-in-threads"])
def test_pull_links_the_sdk_snapshot_into_the_store(
    served: Served, store_root: Path, monkeypatch: pytest.MonkeyPatch, threads: bool
) -> None:
    from huggingface_hub import HfApi

    if threads:  # as for a snapshot of 64 MiB or more: blobs checked by a thread pool
        monkeypatch.setattr("modelhub.hubs.hf.PARALLEL_VERIFY_MIN", 0)
    model = modelhub.pull(REF)
    commit = HfApi(endpoint=served.endpoint).model_info(REPO).sha
    assert commit == served.main.revision
    manifest = model.manifest
    folder = store_root / "huggingface" / "test-org" / "tiny-model"
    assert tree_bytes(folder) == served.files
    assert model.path == folder == modelhub.path(REF)
    assert manifest.ref == REF and manifest.hub == "hf" and manifest.framework == "huggingface"
    assert manifest.revision == commit
    assert manifest.source == [f"{served.endpoint}/{REPO}"]
    assert manifest.sdk_cache == str(_snapshot_dir(served, commit).resolve())
    assert tree_bytes(Path(manifest.sdk_cache)) == served.files
    assert manifest.staged == [] and manifest.details["cache_hit"] is False
    recorded = {f.path: (f.sha256, f.size) for f in manifest.files}
    assert recorded == {
        f"huggingface/{REPO}/{name}": (_sha(data), len(data)) for name, data in served.files.items()
    }
    # Not staged: load() gives the snapshot folder, ready for from_pretrained.
    assert modelhub.load(REF) == folder


def test_include_exclude_and_partial_caches(served: Served, tmp_path: Path) -> None:
    include, exclude = ["*.json", "sub/*"], ["tokenizer.json"]
    model = modelhub.pull(REF, options={"include": include, "exclude": exclude})
    wanted = {"config.json", "sub/dir/readme.txt"}
    folder = model.original
    assert set(tree_bytes(folder)) == wanted
    assert {f.path.rsplit(f"{REPO}/", 1)[1] for f in model.manifest.files} == wanted
    assert model.manifest.details["include"] == include
    assert model.manifest.details["exclude"] == exclude
    # The SDK fetched only those files.
    assert set(tree_bytes(Path(model.manifest.sdk_cache))) == wanted

    # A partial snapshot in the cache is not taken for the whole repo: the rest is fetched.
    full = modelhub.pull(REF, store=modelhub.Store(tmp_path / "full"))
    assert tree_bytes(full.original) == served.files
    assert full.manifest.details["cache_hit"] is False

    # From a complete cache, patterns still select: nothing asked, only the JSON files linked.
    before = served.count()
    only = modelhub.pull(
        REF, store=modelhub.Store(tmp_path / "only"), options={"include": "*.json"}
    )
    assert served.count() == before
    assert set(tree_bytes(only.original)) == {"config.json", "tokenizer.json"}

    with pytest.raises(ModelNotFoundError, match="matches"):
        modelhub.pull(REF, store=modelhub.Store(tmp_path / "none"), options={"include": ["*.h5"]})


def test_snapshot_of_single_file_downloads_is_completed(served: Served) -> None:
    """hf_hub_download leaves a snapshot folder with no tree listing: it may be partial."""
    from huggingface_hub import hf_hub_download

    hf_hub_download(REPO, "config.json", endpoint=served.endpoint, cache_dir=served.cache)
    model = modelhub.pull(REF)
    assert tree_bytes(model.original) == served.files


def test_revision_by_branch_commit_and_url(
    served: Served, store_root: Path, tmp_path: Path
) -> None:
    v1 = modelhub.pull(f"{REF}@v1")
    assert v1.manifest.revision == served.v1.revision
    assert v1.original == store_root / "huggingface" / "test-org" / "tiny-model@v1"
    assert json.loads((v1.original / "config.json").read_bytes())["seed"] == 2
    assert v1.manifest.details["branch"] == "v1"

    commit = served.main.revision
    pinned = modelhub.pull(f"{REF}@{commit}")
    assert pinned.manifest.revision == commit
    assert pinned.original == store_root / "huggingface" / "test-org" / f"tiny-model@{commit}"
    assert tree_bytes(pinned.original) == served.files

    url = f"https://huggingface.co/{REPO}"
    assert modelhub.parse(url) == modelhub.parse(REF)
    by_url = modelhub.pull(url, store=modelhub.Store(tmp_path / "by-url"))
    assert by_url.manifest.ref == REF and by_url.manifest.revision == commit
    tree_url = modelhub.parse(f"https://huggingface.co/{REPO}/tree/v1")
    assert tree_url == modelhub.parse(f"{REF}@v1")


# --------------------------------------------------------------------------- the SDK cache


def test_second_store_makes_no_request_and_adds_no_bytes(
    served: Served, store_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MODELHUB_LINK_MODE", "hardlink")
    first = modelhub.pull(REF)
    assert served.count() > 0
    blobs = _blobs(served.cache)
    assert len(blobs) == len(served.files)

    before = served.count()
    other = modelhub.Store(tmp_path / "second-store")
    second = modelhub.pull(REF, store=other)
    assert served.count() == before, served.server.requests[before:]
    assert second.manifest.details["cache_hit"] is True
    assert second.manifest.details["link_modes"] == ["hardlink"]
    assert second.manifest.revision == first.manifest.revision
    assert second.manifest.files == first.manifest.files

    blob_inodes = {(p.stat().st_dev, p.stat().st_ino) for p in blobs}
    extra_bytes = 0
    for path in second.files:
        st = path.stat()
        assert not path.is_symlink()
        if (st.st_dev, st.st_ino) in blob_inodes:
            assert st.st_nlink >= 3  # the blob, the first store, this store
        else:
            extra_bytes += st.st_blocks * 512
    assert extra_bytes == 0
    assert tree_bytes(second.original) == served.files
    # Blobs are untouched: same bytes, same mtime.
    assert _blobs(served.cache) == blobs


def test_repo_downloaded_by_the_sdk_itself_is_reused(served: Served) -> None:
    from huggingface_hub import snapshot_download

    snapshot = snapshot_download(REPO, endpoint=served.endpoint, cache_dir=served.cache)
    blobs = _blobs(served.cache)
    before = served.count()
    model = modelhub.pull(REF)
    assert served.count() == before
    assert model.manifest.sdk_cache == snapshot
    assert tree_bytes(model.original) == served.files
    assert _blobs(served.cache) == blobs


def test_force_downloads_again_without_touching_earlier_links(
    served: Served, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MODELHUB_LINK_MODE", "hardlink")
    first = modelhub.pull(REF)
    inodes = {p: p.stat().st_ino for p in first.files}
    before = served.count()
    again = modelhub.pull(REF, store=modelhub.Store(tmp_path / "forced"), force=True)
    gets = [path for method, path in served.server.requests[before:] if method == "GET"]
    assert len([p for p in gets if "/resolve/" in p]) == len(served.files)
    assert again.manifest.details["cache_hit"] is False
    assert tree_bytes(again.original) == tree_bytes(first.original) == served.files
    # The first store still holds its own (old) inodes, bytes intact.
    assert {p: p.stat().st_ino for p in first.files} == inodes
    assert {p.stat().st_ino for p in again.files}.isdisjoint(inodes.values())


def test_offline_never_calls_out(
    served: Served, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(OfflineError) as info:
        modelhub.pull(REF, offline=True)
    assert info.value.exit_code == 6
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(OfflineError):
        modelhub.pull(REF)
    with pytest.raises(OfflineError):
        modelhub.pull(REF, force=True)
    assert served.count() == 0
    assert modelhub.Store().manifest(modelhub.parse(REF)) is None

    # A partial snapshot is not enough offline either.
    monkeypatch.delenv("HF_HUB_OFFLINE")
    modelhub.pull(REF, store=modelhub.Store(tmp_path / "json"), options={"include": ["*.json"]})
    before = served.count()
    with pytest.raises(OfflineError, match="not complete"):
        modelhub.pull(REF, offline=True)
    assert served.count() == before

    # Once complete in the cache, offline works from it.
    modelhub.pull(REF, store=modelhub.Store(tmp_path / "online"))
    before = served.count()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model = modelhub.pull(REF)
    assert tree_bytes(model.original) == served.files
    assert served.count() == before


# --------------------------------------------------------------------------- errors


def test_missing_repo_and_revision_exit_3(served: Served) -> None:
    with pytest.raises(ModelNotFoundError) as info:
        modelhub.pull("hf:test-org/no-such-model")
    assert info.value.exit_code == 3
    with pytest.raises(ModelNotFoundError, match="v9") as info:
        modelhub.pull(f"{REF}@v9")
    assert info.value.exit_code == 3
    assert list(modelhub.Store().manifests()) == []


def test_unreachable_hub_exit_6(served: Served, monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    with socket.socket() as sock:  # a port that was free a moment ago: nothing listens there
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("MODELHUB_HF_URL", f"http://127.0.0.1:{port}")
    with pytest.raises(NetworkError, match="cannot reach") as info:
        modelhub.pull(REF)
    assert info.value.exit_code == 6 and not isinstance(info.value, OfflineError)


def test_unknown_task_is_refused_before_any_request(served: Served) -> None:
    with pytest.raises(UsageError, match="unknown --task") as info:
        modelhub.pull(REF, stage="onnx", options={"task": "image-painting"})
    assert info.value.exit_code == 2
    assert served.count() == 0


@pytest.mark.parametrize("mode", ["gated", "private"])
def test_gated_and_private_need_a_token(
    mode: str, served: Served, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = "hf_rightTokenValue123"
    wrong = "hf_wrongTokenValue456"
    with GatedHub(served.endpoint, secret, mode) as hub:
        monkeypatch.setenv("MODELHUB_HF_URL", hub.url)
        with pytest.raises(AuthError) as info:
            modelhub.pull(REF)
        assert info.value.exit_code == 4
        assert "HF_TOKEN" in str(info.value)

        monkeypatch.setenv("HF_TOKEN", wrong)
        with pytest.raises((AuthError, ModelNotFoundError)) as info:
            modelhub.pull(REF)
        # The Hub answers 404 to a wrong token for a private repo, 403 for a gated one.
        assert info.value.exit_code == (4 if mode == "gated" else 3)
        assert wrong not in str(info.value)
        assert modelhub.Store().manifest(modelhub.parse(REF)) is None

        monkeypatch.setenv("HF_TOKEN", secret)
        model = modelhub.pull(REF)
        assert tree_bytes(model.original) == served.files
        assert ("HEAD" if mode == "gated" else "GET", f"Bearer {secret}") in {
            (m, a) for m, _, a in hub.requests
        }
    for path in (model.store.root / ".modelhub").rglob("*"):
        assert not path.is_file() or secret.encode() not in path.read_bytes()


def _cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    paths = [os.environ.get("PYTHONPATH", ""), str(REPO_ROOT / "src")]
    full = {**os.environ, **env, "PYTHONPATH": os.pathsep.join(p for p in paths if p)}
    return subprocess.run(
        [sys.executable, "-m", "modelhub", *args],
        capture_output=True,
        text=True,
        env=full,
        timeout=120,
        cwd=REPO_ROOT,
    )


def test_cli_pull_json_and_token_kept_out_of_stderr(served: Served, store_root: Path) -> None:
    proc = _cli(["pull", REF, "--json", "--include", "*.safetensors"], {})
    assert proc.returncode == 0, proc.stderr
    [doc] = json.loads(proc.stdout)
    assert doc["revision"] == served.main.revision
    assert doc["path"] == str(store_root / "huggingface" / "test-org" / "tiny-model")
    assert [f["path"] for f in doc["files"]] == [f"huggingface/{REPO}/model.safetensors"]
    assert doc["files"][0]["sha256"] == _sha(served.files["model.safetensors"])
    assert doc["sdk_cache"].startswith(str(served.cache.resolve()))

    secret = "hf_cliSecretTokenValue789"
    with GatedHub(served.endpoint, "hf_other", "gated") as hub:
        proc = _cli(["pull", f"{REF}@v1"], {"MODELHUB_HF_URL": hub.url, "HF_TOKEN": secret})
    assert proc.returncode == 4, proc.stderr
    assert "HF_TOKEN" in proc.stderr and secret not in proc.stderr + proc.stdout
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_a_pull_with_other_patterns_is_not_a_cache_hit(served: Served, tmp_path: Path) -> None:
    modelhub.pull(REF, options={"include": ["*.json"]})
    proc = _cli(["pull", REF], {})  # the CLI's stdlib fast path
    assert proc.returncode == 0, proc.stderr
    assert tree_bytes(Path(proc.stdout.strip())) == served.files

    other = modelhub.Store(tmp_path / "other")
    modelhub.pull(REF, store=other, options={"include": ["*.json"]})
    model = modelhub.pull(REF, store=other)
    assert tree_bytes(model.original) == served.files


# --------------------------------------------------------------------------- staging


@pytest.fixture(scope="module")
def transformers_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Tiny BERT, GPT-2, DistilBERT and a BERT with a classification head, saved once."""
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    pytest.importorskip("onnxruntime")
    from tests.support.hf_models import ARCHITECTURES, make_transformers_model

    base = tmp_path_factory.mktemp("hf-models")
    return {kind: make_transformers_model(kind, base / kind) for kind in ARCHITECTURES}


@pytest.fixture
def served_models(
    transformers_models: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[str]:
    seed = modelhub.Store(tmp_path / "seed")
    for kind, folder in transformers_models.items():
        import_path(seed, folder, modelhub.parse(f"hf:tiny/{kind}"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    with BackgroundMirror(seed.root) as url:
        monkeypatch.setenv("MODELHUB_MIRROR", url)
        yield url


def _feeds(batch: int, seq: int, names: list[str]) -> dict[str, object]:
    import numpy as np

    rng = np.random.default_rng(7)
    feeds: dict[str, object] = {"input_ids": rng.integers(0, 99, (batch, seq), dtype=np.int64)}
    if "attention_mask" in names:
        mask = np.ones((batch, seq), np.int64)
        mask[0, seq - 2 :] = 0
        feeds["attention_mask"] = mask
    if "token_type_ids" in names:
        feeds["token_type_ids"] = np.zeros((batch, seq), np.int64)
    return feeds


def _transformers_outputs(folder: Path, auto: str, feeds: dict[str, object]) -> dict[str, object]:
    import torch
    import transformers
    from transformers.utils import logging as tf_logging

    tf_logging.disable_progress_bar()
    try:
        model = getattr(transformers, auto).from_pretrained(str(folder)).eval()
    finally:
        tf_logging.enable_progress_bar()
    with torch.no_grad():
        out = model(**{k: torch.from_numpy(v) for k, v in feeds.items()}, return_dict=True)
    return {k: v.numpy() for k, v in out.items() if isinstance(v, torch.Tensor)}


@pytest.mark.parametrize(
    ("kind", "inputs", "outputs"),
    [
        (
            "bert",
            ["input_ids", "attention_mask", "token_type_ids"],
            ["last_hidden_state", "pooler_output"],
        ),
        ("gpt2", ["input_ids", "attention_mask"], ["last_hidden_state"]),
        ("distilbert", ["input_ids", "attention_mask"], ["last_hidden_state"]),
    ],
)
def test_stage_onnx_with_parity_and_dynamic_axes(
    kind: str, inputs: list[str], outputs: list[str], served_models: str, store_root: Path
) -> None:
    import numpy as np

    ref = f"hf:tiny/{kind}"
    model = modelhub.pull(ref, stage="onnx")
    [staged] = model.manifest.staged
    assert model.path == store_root / "huggingface" / "tiny" / f"{kind}.onnx"
    assert staged.path == f"huggingface/tiny/{kind}.onnx"
    assert staged.format == "onnx" and staged.sha256 == _sha(model.path.read_bytes())
    assert staged.inputs == inputs and staged.outputs == outputs
    assert staged.parity["max_abs_diff"] <= 1e-4 and staged.parity["checked_on"]
    assert staged.parity["inputs_checked"] == 1  # fresh values at other sizes
    assert staged.details["task"] == "feature-extraction"
    assert {"torch", "onnx", "onnxruntime", "transformers"} <= set(staged.versions)
    assert modelhub.path(ref) == model.path

    session = modelhub.load(ref)
    assert [i.name for i in session.get_inputs()] == inputs
    assert all(i.shape == ["batch", "sequence"] for i in session.get_inputs())
    # A third shape, never seen at export: the axes are dynamic and parity still holds.
    feeds = _feeds(4, 5, inputs)
    got = dict(zip(outputs, session.run(outputs, feeds), strict=True))
    expected = _transformers_outputs(model.original, "AutoModel", feeds)
    for name in outputs:
        assert got[name].shape == expected[name].shape
        np.testing.assert_allclose(got[name], expected[name], atol=1e-4, rtol=0)
    assert got[outputs[0]].shape[:2] == (4, 5)


def test_stage_onnx_task_head(served_models: str) -> None:
    import numpy as np

    ref = "hf:tiny/bert-classifier"
    model = modelhub.pull(ref, stage="onnx", options={"task": "text-classification"})
    [staged] = model.manifest.staged
    assert staged.outputs == ["logits"]
    assert staged.details["task"] == "sequence-classification"
    assert staged.details["architecture"] == "BertForSequenceClassification"
    assert staged.details["dynamic_axes"]["logits"] == ["batch"]
    assert staged.parity["max_abs_diff"] <= 1e-4
    session = modelhub.load(ref)
    feeds = _feeds(4, 6, staged.inputs)
    [logits] = session.run(["logits"], feeds)
    expected = _transformers_outputs(model.original, "AutoModelForSequenceClassification", feeds)
    assert logits.shape == (4, 3)
    np.testing.assert_allclose(logits, expected["logits"], atol=1e-4, rtol=0)


def test_another_task_restages(served_models: str) -> None:
    ref = "hf:tiny/bert-classifier"
    base = modelhub.pull(ref, stage="onnx")
    assert base.manifest.staged[0].details["task"] == "feature-extraction"
    head = modelhub.pull(ref, stage="onnx", options={"task": "sequence-classification"})
    [staged] = head.manifest.staged
    assert staged.details["task"] == "sequence-classification" and staged.outputs == ["logits"]


def test_quiet_calls_overlapping_in_threads_keep_the_bars_off_until_the_last(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`sync` runs several snapshot downloads at once; the SDK's progress-bar switch is global.
    The bars stay off until the last quiet call ends, then come back as they were."""
    import sys

    from huggingface_hub.utils.tqdm import are_progress_bars_disabled, enable_progress_bars

    from modelhub.hubs.hf import _progress_bars

    # As with HF_HUB_DISABLE_PROGRESS_BARS unset when the SDK was imported (another test of
    # this session may have set it first).
    sdk_tqdm = sys.modules["huggingface_hub.utils.tqdm"]  # the package exports a class as tqdm
    monkeypatch.setattr(sdk_tqdm, "HF_HUB_DISABLE_PROGRESS_BARS", None)
    enable_progress_bars()
    first, second = _progress_bars(False), _progress_bars(False)
    first.__enter__()
    second.__enter__()
    assert are_progress_bars_disabled()
    first.__exit__(None, None, None)
    assert are_progress_bars_disabled(), "the other call is still running"
    second.__exit__(None, None, None)
    assert not are_progress_bars_disabled()
    with _progress_bars(True):
        assert not are_progress_bars_disabled()

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
    server = BackgroundMirror(seed.root, record=True)
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

    from modelhub.hubs.hf_sdk import progress_bars as _progress_bars

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


# --------------------------------------------------------------------------- the floor


def test_pyproject_floor_is_the_first_version_with_what_modelhub_uses() -> None:
    """httpx2 (hf_stream) came with 2.0, trees/<commit>.json with 1.22, the tree-listing
    fallback and the same-origin redirect rule with 2.2: pyproject must not allow less, and
    `make test-hf-floor` installs exactly that floor (it reads this line)."""
    import tomllib

    import huggingface_hub
    from packaging.requirements import Requirement
    from packaging.version import Version

    doc = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    [line] = [d for d in doc["project"]["dependencies"] if d.startswith("huggingface_hub")]
    spec = Requirement(line).specifier
    floors = [Version(s.version) for s in spec if s.operator == ">="]
    assert floors == [Version("2.2")], line
    assert Version("3") not in spec and Version("2.2.0") in spec
    assert Version(huggingface_hub.__version__) in spec
    makefile = (REPO_ROOT / "Makefile").read_text()
    assert "test-hf-floor:" in makefile and "huggingface_hub==$(HF_FLOOR)" in makefile


# --------------------------------------------------------------------------- the HF cache


@pytest.mark.parametrize(
    "env",
    [
        {},
        {"HF_HOME": "{tmp}/home"},
        {"XDG_CACHE_HOME": "{tmp}/xdg"},
        {"HUGGINGFACE_HUB_CACHE": "{tmp}/legacy", "HF_HOME": "{tmp}/home"},
        {"HF_HUB_CACHE": "{tmp}/new", "HUGGINGFACE_HUB_CACHE": "{tmp}/legacy"},
        {"HUGGINGFACE_HUB_CACHE": "$MH_TEST_BASE/legacy", "MH_TEST_BASE": "{tmp}/var"},
        {"HF_HOME": "~/hfhome"},
    ],
    ids=["default", "hf-home", "xdg", "legacy-var", "new-over-legacy", "expandvars", "tilde"],
)
def test_hf_cache_dir_is_where_the_sdk_looks(
    env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Same precedence as huggingface_hub's constants (read in a fresh interpreter):
    HF_HUB_CACHE > HUGGINGFACE_HUB_CACHE > HF_HOME/hub > XDG_CACHE_HOME > ~/.cache."""
    from modelhub.hubs.hf_sdk import hf_cache_dir

    names = ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_HOME", "XDG_CACHE_HOME")
    for name in names:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    for name, value in env.items():
        monkeypatch.setenv(name, value.format(tmp=tmp_path))
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "from huggingface_hub import constants; print(constants.HF_HUB_CACHE)",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert hf_cache_dir() == Path(proc.stdout.strip())


def test_pull_downloads_into_huggingface_hub_cache(
    served: Served, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    legacy = tmp_path / "legacy-cache"
    monkeypatch.delenv("HF_HUB_CACHE")
    monkeypatch.setenv("HUGGINGFACE_HUB_CACHE", str(legacy))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "home"))
    model = modelhub.pull(REF)
    assert model.manifest.sdk_cache.startswith(str(legacy.resolve()))
    assert (legacy / "models--test-org--tiny-model" / "refs" / "main").is_file()
    assert not (tmp_path / "home").exists()


# --------------------------------------------------------------------------- references


@pytest.mark.parametrize("legacy", ["gpt2", "bert-base-uncased", "t5-small"])
def test_legacy_one_part_ids_parse_as_given(legacy: str) -> None:
    from modelhub.store import layout

    ref = modelhub.parse(f"hf:{legacy}")
    assert ref.name == legacy and ref.revision is None and ref.entry is None
    assert ref.canonical == f"hf:{legacy}"
    assert layout.model_dir(ref) == f"huggingface/{legacy}"
    assert modelhub.parse(f"https://huggingface.co/{legacy}") == ref
    assert modelhub.parse(f"hf:{legacy}@v2").revision == "v2"
    blob = modelhub.parse(f"https://huggingface.co/{legacy}/blob/main/config.json")
    assert blob == modelhub.parse(f"hf:{legacy}:config.json")


@pytest.mark.parametrize(
    ("url", "canonical"),
    [
        (f"https://huggingface.co/{REPO}/blob/main/config.json", f"{REF}:config.json"),
        (
            f"https://huggingface.co/{REPO}/resolve/v1/sub/dir/readme.txt",
            f"{REF}@v1:sub/dir/readme.txt",
        ),
        (
            f"https://hf.co/{REPO}/resolve/main/model.safetensors?download=true",
            f"{REF}:model.safetensors",
        ),
        (f"https://huggingface.co/{REPO}/tree/main/sub", f"{REF}:sub/"),
        (f"https://huggingface.co/{REPO}/tree/v1/sub/dir", f"{REF}@v1:sub/dir/"),
        (f"https://huggingface.co/{REPO}/tree/v1", f"{REF}@v1"),
        (f"https://huggingface.co/{REPO}/tree/refs%2Fpr%2F3/sub", f"{REF}@refs/pr/3:sub/"),
        (
            f"https://huggingface.co/{REPO}/blob/refs/pr/3/config.json",
            f"{REF}@refs/pr/3:config.json",
        ),
        (f"https://huggingface.co/{REPO}/tree/feature%2Fx/sub", f"{REF}@feature/x:sub/"),
    ],
)
def test_pasted_file_and_folder_urls(url: str, canonical: str) -> None:
    """/blob/, /resolve/ and /tree/ pages are that file or folder of the repo. The revision is
    the one segment after the view (the Hub's links encode a '/' in it as %2F)."""
    ref = modelhub.parse(url)
    assert ref.hub == "hf" and ref.canonical == canonical
    assert modelhub.parse(canonical) == ref
    if "%" not in url:
        assert modelhub.parse(f"hf:{url}") == ref


@pytest.mark.parametrize(
    "text",
    [
        f"https://huggingface.co/{REPO}/blob/main",
        f"https://huggingface.co/{REPO}/discussions/3",
        "https://huggingface.co/datasets/org/data",
        f"https://huggingface.co/{REPO}/blob/main/a%2F..%2Fb",
        f"{REF}:",
        f"{REF}:sub//x",
        f"{REF}:../x",
        f"{REF}:/etc/passwd",
        "hf:a/b/c",
    ],
)
def test_bad_file_references_are_refused(text: str) -> None:
    from modelhub.errors import InvalidReferenceError

    with pytest.raises(InvalidReferenceError):
        modelhub.parse(text)


def test_pasted_urls_pull_that_file_or_folder_with_the_token(
    served: Served, store_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = "hf_pastedUrlToken123"
    with GatedHub(served.endpoint, secret, "gated") as hub:
        monkeypatch.setenv("MODELHUB_HF_URL", hub.url)
        monkeypatch.setenv("HF_TOKEN", secret)
        blob = modelhub.pull(f"https://huggingface.co/{REPO}/blob/main/config.json")
        assert blob.manifest.ref == f"{REF}:config.json"
        assert blob.path == store_root / "huggingface" / REPO / "config.json"
        assert blob.path.read_bytes() == served.files["config.json"]
        assert [f.path for f in blob.manifest.files] == [f"huggingface/{REPO}/config.json"]
        assert blob.manifest.revision == served.main.revision
        head = ("HEAD", f"/{REPO}/resolve/main/config.json", f"Bearer {secret}")
        assert head in hub.requests

        v1 = modelhub.pull(f"https://huggingface.co/{REPO}/resolve/v1/config.json")
        assert json.loads(v1.path.read_bytes())["seed"] == 2
        assert v1.path == store_root / "huggingface" / f"{REPO}@v1" / "config.json"

        tree = modelhub.pull(f"https://huggingface.co/{REPO}/tree/main/sub")
        assert tree.manifest.ref == f"{REF}:sub/"
        assert tree.path == store_root / "huggingface" / REPO / "sub"
        assert tree_bytes(tree.path) == {"dir/readme.txt": served.files["sub/dir/readme.txt"]}
        assert all(a == f"Bearer {secret}" for m, p, a in hub.requests if "/resolve/" in p)
    monkeypatch.delenv("MODELHUB_HF_URL")

    # The whole repo beside it shares the files (same bytes, two owners).
    whole = modelhub.pull(REF)
    assert tree_bytes(whole.original) == served.files
    from modelhub.cli.main import main

    assert main(["rm", "--force", f"{REF}:config.json"]) == 0  # shared files stay
    assert (whole.original / "config.json").read_bytes() == served.files["config.json"]


def test_a_missing_file_or_folder_exits_3(served: Served) -> None:
    with pytest.raises(ModelNotFoundError, match="a folder is written sub/") as info:
        modelhub.pull(f"{REF}:sub")
    assert info.value.exit_code == 3
    with pytest.raises(ModelNotFoundError, match="no folder") as info:
        modelhub.pull(f"{REF}:nowhere/")
    assert info.value.exit_code == 3
    with pytest.raises(UsageError, match="one file"):
        modelhub.pull(f"{REF}:config.json", options={"include": ["*.json"]})


# --------------------------------------------------------------------------- file selection

MANY = "test-org/many-formats"
MANY_REF = f"hf:{MANY}"
# What from_pretrained does not read beside safetensors, folder by folder.
MANY_SKIPPED = [
    "flax_model.msgpack",
    "model.Q4_K_M.gguf",
    "onnx/model.onnx",
    "original/consolidated.00.pth",
    "original/params.json",
    "pytorch_model.bin",
    "tf_model.h5",
    "unet/diffusion_pytorch_model.bin",
]


def _many_formats(folder: Path) -> dict[str, bytes]:
    import random

    rng = random.Random(5)

    def blob(n: int) -> bytes:
        return bytes(rng.getrandbits(8) for _ in range(n))

    files = {
        "config.json": b'{"model_type": "tiny"}',
        "generation_config.json": b'{"g": 1}',
        "tokenizer.json": b'{"vocab": []}',
        "tokenizer_config.json": b'{"t": 1}',
        "README.md": b"# card\n",
        "LICENSE": b"licence\n",
        "training_args.bin": blob(500),
        "images/sample.png": blob(700),
        "model.safetensors": blob(40_000),
        "model.fp16.safetensors": blob(20_000),
        "unet/config.json": b'{"u": 1}',
        "unet/diffusion_pytorch_model.safetensors": blob(9_000),
        "text_encoder/config.json": b'{"e": 1}',
        "text_encoder/pytorch_model.bin": blob(6_000),  # no safetensors beside it: kept
        **{name: blob(10_000 + 100 * i) for i, name in enumerate(MANY_SKIPPED)},
    }
    for rel, data in files.items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_bytes(data)
    return files


@pytest.fixture
def many(served: Served, tmp_path: Path) -> dict[str, bytes]:
    """MANY served beside the `served` repo (the mirror re-reads its seed store)."""
    files = _many_formats(tmp_path / "src" / "many")
    import_path(
        modelhub.Store(tmp_path / "seed"), tmp_path / "src" / "many", modelhub.parse(MANY_REF)
    )
    return files


def _resolved(served: Served, since: int, method: str = "GET") -> set[str]:
    marker = f"/{MANY}/resolve/"
    return {
        p.split(marker, 1)[1].split("/", 1)[1]
        for m, p in served.server.requests[since:]
        if m == method and marker in p
    }


def test_default_pull_fetches_what_from_pretrained_reads(
    served: Served, many: dict[str, bytes], tmp_path: Path
) -> None:
    kept = {n: d for n, d in many.items() if n not in MANY_SKIPPED}
    model = modelhub.pull(MANY_REF)
    assert tree_bytes(model.original) == kept
    assert _resolved(served, 0) == set(kept)  # the skipped bytes never moved
    assert set(tree_bytes(Path(model.manifest.sdk_cache))) == set(kept)
    assert model.manifest.details["selection"] == {
        "rule": "from_pretrained",
        "kept": len(kept),
        "skipped": MANY_SKIPPED,
        "skipped_bytes": sum(len(many[n]) for n in MANY_SKIPPED),
    }

    # --all-files is another request: the rest comes, nothing else is asked again.
    before = served.count()
    full = modelhub.pull(MANY_REF, options={"all_files": True})
    assert tree_bytes(full.original) == many
    assert _resolved(served, before) == set(MANY_SKIPPED)
    assert full.manifest.details["selection"]["rule"] == "all-files"
    assert full.manifest.details["selection"]["skipped"] == []
    # ... and it is what a default pull asks for too (more than enough): no request.
    before = served.count()
    assert modelhub.pull(MANY_REF).manifest == full.manifest
    assert served.count() == before

    # A repo without safetensors keeps its .bin; --include is the caller's own choice.
    picked = modelhub.pull(
        MANY_REF, store=modelhub.Store(tmp_path / "picked"), options={"include": ["*.bin"]}
    )
    assert {f.path.rsplit(f"{MANY}/", 1)[1] for f in picked.manifest.files} == {
        "pytorch_model.bin",
        "training_args.bin",
        "text_encoder/pytorch_model.bin",
        "unet/diffusion_pytorch_model.bin",
    }
    assert picked.manifest.details["selection"]["rule"] == "include"


def test_cli_says_what_it_skipped_in_one_line(
    served: Served, many: dict[str, bytes], tmp_path: Path
) -> None:
    from modelhub.cli.output import human_size

    proc = _cli(["pull", MANY_REF, "--json"], {"MODELHUB_PATH": str(tmp_path / "cli")})
    assert proc.returncode == 0, proc.stderr
    saved = human_size(sum(len(many[n]) for n in MANY_SKIPPED))
    [line] = [ln for ln in proc.stderr.splitlines() if "skipped" in ln]
    assert line.startswith(f"modelhub: note: {MANY_REF}: skipped 8 file(s)")
    assert f"{saved} not downloaded" in line and "--all-files" in line
    [doc] = json.loads(proc.stdout)
    assert doc["details"]["selection"]["skipped"] == MANY_SKIPPED

    proc = _cli(["pull", MANY_REF, "--all-files"], {"MODELHUB_PATH": str(tmp_path / "cli")})
    assert proc.returncode == 0, proc.stderr
    assert "skipped" not in proc.stderr
    assert tree_bytes(Path(proc.stdout.strip())) == many


def test_model_set_all_files_and_the_lock_record_the_selection(
    served: Served, many: dict[str, bytes], tmp_path: Path
) -> None:
    from modelhub.lockfile import read_lock
    from modelhub.sync import sync

    sets = tmp_path / "sets"
    sets.mkdir()
    toml = sets / "modelhub.toml"
    toml.write_text(f'[[model]]\nref = "{MANY_REF}"\n')
    report = sync(toml, store=modelhub.Store(tmp_path / "default"))
    assert report.exit_code == 0
    [entry] = read_lock(report.lock_path).values()
    locked = {f["path"].rsplit(f"{MANY}/", 1)[1] for f in entry.files}
    assert locked == set(many) - set(MANY_SKIPPED)

    toml.write_text(f'[[model]]\nref = "{MANY_REF}"\nall_files = true\n')
    report = sync(toml, store=modelhub.Store(tmp_path / "everything"))
    assert report.exit_code == 0
    [entry] = read_lock(report.lock_path).values()
    assert {f["path"].rsplit(f"{MANY}/", 1)[1] for f in entry.files} == set(many)
    assert entry.request["all_files"] is True


@pytest.mark.parametrize(
    ("names", "base", "skipped"),
    [
        # safetensors at the root: every other format there goes, folders too.
        (
            ["model.safetensors", "pytorch_model.bin", "tf_model.h5", "original/x.pth", "a.gguf"],
            "",
            ["a.gguf", "original/x.pth", "pytorch_model.bin", "tf_model.h5"],
        ),
        # Sharded: the index and shards stay, the .bin shards and their index go.
        (
            [
                "model.safetensors.index.json",
                "model-00001-of-00002.safetensors",
                "pytorch_model.bin.index.json",
                "pytorch_model-00001-of-00002.bin",
            ],
            "",
            ["pytorch_model-00001-of-00002.bin", "pytorch_model.bin.index.json"],
        ),
        # No safetensors: a .bin-only, GGUF-only or ONNX-only repo is taken whole.
        (["pytorch_model.bin", "config.json"], "", []),
        (["model.Q4.gguf", "model.Q8.gguf", "README.md"], "", []),
        (["onnx/model.onnx", "config.json"], "", []),
        # Folder by folder: unet has safetensors, text_encoder has not.
        (
            [
                "unet/a.safetensors",
                "unet/diffusion_pytorch_model.bin",
                "text_encoder/pytorch_model.bin",
            ],
            "",
            ["unet/diffusion_pytorch_model.bin"],
        ),
        # A folder reference is judged inside the folder: original/ asked for is kept.
        (
            ["model.safetensors", "original/consolidated.00.pth", "original/params.json"],
            "original/",
            [],
        ),
        # Never skipped: configs, tokenizers, training args, code.
        (["model.safetensors", "training_args.bin", "tokenizer.model", "modeling_x.py"], "", []),
    ],
)
def test_selection_rule(names: list[str], base: str, skipped: list[str]) -> None:
    from modelhub.hubs.hf_select import escape, select

    kept, dropped = select(names, base=base)
    assert dropped == skipped
    assert sorted(kept) == sorted(set(names) - set(skipped))
    assert select(names, base=base, rule="all-files") == (sorted(names), [])
    assert escape("a[1]*?.bin") == "a[[]1][*][?].bin"


def test_a_blob_in_the_shared_xet_store_is_recorded_by_its_sha256(served: Served) -> None:
    """huggingface_hub 2.x with Xet links blobs/<etag> on to <cache>/blobs/<2 hex>/<xet hash>,
    a 64-hex name that is not the sha256: the name that counts is the ETag, the first hop."""
    from huggingface_hub import hf_hub_download

    hf_hub_download(REPO, "model.safetensors", endpoint=served.endpoint, cache_dir=served.cache)
    data = served.files["model.safetensors"]
    sha = _sha(data)
    blob = served.cache / f"models--{REPO.replace('/', '--')}" / "blobs" / sha
    xet = _sha(b"xet:" + data)
    shared = served.cache / "blobs" / xet[:2] / xet
    shared.parent.mkdir(parents=True)
    blob.rename(shared)
    blob.symlink_to(os.path.relpath(shared, blob.parent))

    before = served.count()
    model = modelhub.pull(f"{REF}:model.safetensors")
    assert served.count() == before  # from the cache
    [entry] = model.manifest.files
    assert (entry.sha256, entry.size) == (sha, len(data))
    assert model.path.read_bytes() == data

"""kaggle: against a Kaggle stand-in (tests/support/kaggle_upstream.py, the protocol kagglehub
1.0.3 is proven against in tests/protocol/test_kaggle_client.py): archives past 25 files (tar.gz,
zip), md5, gated models and credentials, signed storage on another origin, answers sent
directly."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

import modelhub
from modelhub.errors import AuthError, IntegrityError
from tests.support.kaggle_upstream import KaggleUpstream, write_version

TOKEN = "kaggle-test-token-5f3a9c"


def _files(count: int, size: int = 1000) -> dict[str, bytes]:
    rng = random.Random(count)
    return {f"shard-{i:02d}.dat": rng.randbytes(size) for i in range(count)}


def _kept(store_root: Path) -> list[Path]:
    return [p for p in store_root.rglob("*") if p.is_file() and ".modelhub" not in p.parts]


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    return tmp_path / "kaggle-tree"


def _point_at(up: KaggleUpstream, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELHUB_KAGGLE_URL", up.url)


@pytest.mark.parametrize("fmt", ["tar.gz", "zip"])
def test_more_than_25_files_come_as_one_archive(
    fmt: str, tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = _files(30)
    write_version(tree, "acme/big/other/default/3", files)
    with KaggleUpstream(tree, archive_format={"acme/big/other/default/3": fmt}) as up:
        _point_at(up, monkeypatch)
        model = modelhub.pull("kaggle:acme/big/other/default")
        storage = [s.target.split("?")[0] for s in up.storage_requests()]
    assert model.manifest.revision == "3" and model.manifest.details["transport"] == "archive"
    assert len(storage) == 1 and "/acme/big/other/default/3" in storage[0], storage
    got = {
        Path(f.path).name: (model.store.abspath(f.path)).read_bytes() for f in model.manifest.files
    }
    assert got == files
    cache = tmp_path / "kagglehub-cache/models/acme/big/other/default"
    assert (cache / "3.complete").is_file() and len(list((cache / "3").iterdir())) == 30
    assert not list(cache.glob("*.archive"))


def test_up_to_25_files_one_by_one_with_the_token_only_on_the_api(
    tree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A gated model: no credentials → exit 4 naming the licence page; with a token the RPCs
    carry it and the signed storage URLs on the other origin never do."""
    files = _files(25)
    write_version(tree, "acme/gated/pyTorch/default/1", files)
    with KaggleUpstream(tree, gated={"acme/gated/pyTorch/default"}, tokens={TOKEN}) as up:
        _point_at(up, monkeypatch)
        with pytest.raises(AuthError) as denied:
            modelhub.pull("kaggle:acme/gated/pyTorch/default/1")
        msg = str(denied.value)
        assert denied.value.exit_code == 4 and "\n" not in msg
        assert "licence" in msg and "kaggle.com/models/acme/gated/pyTorch/default" in msg
        monkeypatch.setenv("KAGGLE_API_TOKEN", TOKEN)
        model = modelhub.pull("kaggle:acme/gated/pyTorch/default/1")
        storage = up.storage_requests()
        api = [s for s in up.seen if s.target.startswith("/v1/")]
    assert model.manifest.details["transport"] == "files" and len(model.manifest.files) == 25
    assert len(storage) == 25 and not any(s.authorization for s in storage)
    assert all(s.authorization for s in api if s.status == 200)
    text = model.store.root.joinpath(".modelhub").rglob("*.json")
    assert not any(TOKEN in p.read_text(errors="replace") for p in text)


def test_username_and_key_from_kaggle_json(
    tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_version(
        tree, "acme/gated/keras/v/2", {"model.weights.h5": b"\x89HDF\r\n\x1a\n" + b"0" * 64}
    )
    config = tmp_path / "kaggle-config"
    config.mkdir()
    (config / "kaggle.json").write_text('{"username": "ada", "key": "k3y"}', encoding="utf-8")
    with KaggleUpstream(tree, gated={"acme/gated/keras/v"}, keys={"ada": "k3y"}) as up:
        _point_at(up, monkeypatch)
        model = modelhub.pull("kaggle:acme/gated/keras/v/2", stage="none")
        (config / "kaggle.json").write_text('{"username": "ada", "key": "nope"}', encoding="utf-8")
        with pytest.raises(AuthError, match=r"credentials from .*kaggle\.json were refused"):
            modelhub.pull("kaggle:acme/gated/keras/v/2", stage="none", force=True)
    assert model.manifest.framework == "keras"


def test_a_lying_md5_keeps_nothing(
    tree: Path, tmp_path: Path, store_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_version(tree, "acme/bad/other/default/1", {"a.bin": b"a" * 5000, "b.bin": b"b" * 5000})
    with KaggleUpstream(tree, lying_md5={"acme/bad/other/default/1/b.bin"}) as up:
        _point_at(up, monkeypatch)
        with pytest.raises(IntegrityError, match="md5") as bad:
            modelhub.pull("kaggle:acme/bad/other/default/1")
    assert bad.value.exit_code == 5
    assert _kept(store_root) == []
    assert not list((tmp_path / "kagglehub-cache").rglob("1.complete"))


def test_a_broken_archive_keeps_nothing(
    tree: Path, tmp_path: Path, store_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_version(tree, "acme/broken/other/default/1", _files(26))
    with KaggleUpstream(tree, broken_archives={"acme/broken/other/default/1"}) as up:
        _point_at(up, monkeypatch)
        with pytest.raises(modelhub.errors.ModelhubError) as bad:
            modelhub.pull("kaggle:acme/broken/other/default/1")
    assert bad.value.exit_code == 5
    assert _kept(store_root) == []
    assert not list((tmp_path / "kagglehub-cache").rglob("*.complete"))


def test_bytes_answered_directly_and_an_unknown_version(
    tree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_version(tree, "acme/direct/onnx/default/1", {"notes.txt": b"hello"})
    with KaggleUpstream(tree, direct=True) as up:
        _point_at(up, monkeypatch)
        model = modelhub.pull(
            "kaggle:acme/direct/other/default/1".replace("other", "onnx"), stage="none"
        )
        with pytest.raises(modelhub.errors.ModelNotFoundError) as missing:
            modelhub.pull("kaggle:acme/direct/onnx/default/9", stage="none")
    assert model.manifest.files[0].size == 5 and not up.storage_requests()
    assert missing.value.exit_code == 3

"""kaggle: against a Kaggle stand-in (tests/support/kaggle_upstream.py, the protocol kagglehub
1.0.3 is proven against in tests/protocol/test_kaggle_client.py): archives past 25 files (tar.gz,
zip), md5, gated models and credentials, signed storage on another origin, answers sent
directly."""

from __future__ import annotations

import base64
import json
import random
import re
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


def test_a_lying_md5_on_an_archive_keeps_nothing(
    tree: Path, tmp_path: Path, store_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """More than 25 files come as one archive; an archive whose x-goog-hash lies is exit 5 and
    nothing of it is extracted, published or cached."""
    write_version(tree, "acme/badarc/other/default/1", _files(26))
    with KaggleUpstream(tree, lying_md5={"acme/badarc/other/default/1"}) as up:
        _point_at(up, monkeypatch)
        with pytest.raises(IntegrityError, match="md5") as bad:
            modelhub.pull("kaggle:acme/badarc/other/default/1")
        assert len(up.storage_requests()) == 1  # the archive was fetched (and refused)
    assert bad.value.exit_code == 5 and "\n" not in str(bad.value)
    assert _kept(store_root) == []
    assert not [p for p in (tmp_path / "kagglehub-cache").rglob("*") if p.is_file()]


def test_a_failure_part_way_through_an_archive_leaves_no_orphans(
    tree: Path, tmp_path: Path, store_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Upstream rewrites version 1 (a new first member, a later member changed): publishing the
    changed member fails (the store's copy belongs to the pinned reference) after the new one
    was published. Nothing of that pull stays: not in the store, not in kagglehub's cache (no
    file, no marker), and the pinned reference's files are untouched."""
    files = _files(26)
    write_version(tree, "acme/mid/other/default/1", files)
    cache = tmp_path / "kagglehub-cache/models/acme/mid/other/default"
    with KaggleUpstream(tree) as up:
        _point_at(up, monkeypatch)
        pinned = modelhub.pull("kaggle:acme/mid/other/default/1")
        before = sorted(p.relative_to(cache) for p in cache.rglob("*") if p.is_file())
        write_version(
            tree,
            "acme/mid/other/default/1",
            {"a-new.dat": b"new member", "shard-25.dat": b"changed and longer" * 80},
        )
        with pytest.raises(modelhub.errors.StoreConflictError):
            modelhub.pull("kaggle:acme/mid/other/default", force=True)
    assert pinned.manifest.details["transport"] == "archive"
    assert not list(store_root.rglob("a-new.dat"))
    after = sorted(p.relative_to(cache) for p in cache.rglob("*") if p.is_file())
    assert after == [p for p in before if p.name != "1.complete"]  # --force dropped the marker
    assert not [p for p in after if "a-new" in p.name]
    for entry in pinned.manifest.files:
        data = pinned.store.abspath(entry.path).read_bytes()
        assert data == files[Path(entry.path).name]


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A home folder of the test's own (``~/.kaggle``)."""
    folder = tmp_path / "home"
    (folder / ".kaggle").mkdir(parents=True)
    monkeypatch.setenv("HOME", str(folder))
    return folder


def test_credentials_first_found_wins(
    tree: Path, tmp_path: Path, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """kagglehub's and kagglesdk's order: KAGGLE_API_TOKEN (a token, or the path of a file
    holding one), ~/.kaggle/access_token, KAGGLE_USERNAME + KAGGLE_KEY, then kaggle.json in
    KAGGLE_CONFIG_DIR. At each step every later source holds a wrong credential (the stand-in
    answers 401 to any wrong one), so a pull works only if the first source was used; a wrong
    first source fails naming it, though a later one is right."""
    write_version(tree, "acme/gated/other/default/1", {"w.bin": b"weights"})
    tokens = {"tok-env", "tok-file", "tok-home"}
    config = tmp_path / "kaggle-config"  # KAGGLE_CONFIG_DIR (conftest)
    config.mkdir()

    def source(name: str, good: bool) -> None:
        if name == "env":
            monkeypatch.setenv("KAGGLE_API_TOKEN", "tok-env" if good else "tok-wrong")
        elif name == "env-file":
            (tmp_path / "token.txt").write_text("tok-file\n" if good else "tok-wrong\n")
            monkeypatch.setenv("KAGGLE_API_TOKEN", str(tmp_path / "token.txt"))
        elif name == "home":
            (home / ".kaggle/access_token").write_text("tok-home" if good else "tok-wrong")
        elif name == "userkey":
            monkeypatch.setenv("KAGGLE_USERNAME", "ada")
            monkeypatch.setenv("KAGGLE_KEY", "k-env" if good else "k-wrong")
        else:
            key = "k-json" if good else "k-wrong"
            (config / "kaggle.json").write_text(f'{{"username": "bob", "key": "{key}"}}')

    def clear() -> None:
        for name in ("KAGGLE_API_TOKEN", "KAGGLE_USERNAME", "KAGGLE_KEY"):
            monkeypatch.delenv(name, raising=False)
        for path in (home / ".kaggle/access_token", config / "kaggle.json"):
            path.unlink(missing_ok=True)

    order = ["env", "home", "userkey", "json"]
    keys = {"ada": "k-env", "bob": "k-json"}
    with KaggleUpstream(tree, gated={"acme/gated/other/default"}, tokens=tokens, keys=keys) as up:
        _point_at(up, monkeypatch)
        for first, later in [("env", order[1:]), ("env-file", order[1:])] + [
            (order[i], order[i + 1 :]) for i in range(1, len(order))
        ]:
            clear()
            for name in later:
                source(name, good=False)
            source(first, good=True)
            model = modelhub.pull("kaggle:acme/gated/other/default/1", stage="none", force=True)
            assert model.manifest.details["access"] == "gated", first
            source(first, good=False)  # the first source found is used even when it is wrong
            if later:
                source(later[0], good=True)
            with pytest.raises(AuthError) as refused:
                modelhub.pull("kaggle:acme/gated/other/default/1", stage="none", force=True)
            assert refused.value.exit_code == 4
            named = {
                "env": "KAGGLE_API_TOKEN",
                "env-file": "KAGGLE_API_TOKEN (file)",
                "home": "access_token",
                "userkey": "KAGGLE_USERNAME",
                "json": "kaggle.json",
            }[first]
            assert named in str(refused.value), (first, str(refused.value))
            assert not any(t in str(refused.value) for t in (*tokens, "k-env", "k-json"))


def test_outdated_and_sync_check_report_a_newer_version(
    tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Through the CLI: an unversioned Kaggle reference locks version 1; when version 2 appears,
    ``modelhub outdated`` and ``modelhub sync --check --lock PATH`` exit 10 and name it; a
    pinned version stays current."""
    from modelhub.cli.main import main
    from modelhub.errors import EXIT_CHANGES

    write_version(tree, "acme/moving/pyTorch/default/1", {"notes.txt": b"one"})
    toml = tmp_path / "models.toml"
    toml.write_text('[[model]]\nref = "kaggle:acme/moving/PyTorch/default"\n', encoding="utf-8")
    lock = tmp_path / "elsewhere.lock"
    with KaggleUpstream(tree) as up:
        _point_at(up, monkeypatch)
        assert main(["sync", str(toml), "--lock", str(lock)]) == 0
        assert main(["outdated"]) == 0
        assert main(["sync", str(toml), "--check", "--lock", str(lock)]) == 0
        modelhub.pull("kaggle:acme/moving/pyTorch/default/1")
        capsys.readouterr()
        write_version(tree, "acme/moving/pyTorch/default/2", {"notes.txt": b"two"})
        assert main(["outdated"]) == EXIT_CHANGES
        out = capsys.readouterr().out
        assert re.search(r"kaggle:acme/moving/pyTorch/default +changed +1 +2 +version", out)
        assert main(["sync", str(toml), "--check", "--lock", str(lock)]) == EXIT_CHANGES
        out = capsys.readouterr().out
        assert "kaggle:acme/moving/pyTorch/default" in out
    entry = json.loads(lock.read_text(encoding="utf-8"))["models"][0]
    assert entry["revision"] == "1" and entry["ref"] == "kaggle:acme/moving/pyTorch/default"


@pytest.mark.parametrize(
    "setup",
    [
        "env home userkey json",
        "env-file home userkey json",
        "empty-env-file home userkey json",
        "home userkey json",
        "userkey json",
        "json",
        "",
    ],
)
def test_credentials_are_the_ones_kagglehub_picks(
    setup: str, tmp_path: Path, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """modelhub's pick is kagglehub's own (``config.get_kaggle_credentials``), the same secret,
    for each set of sources present (an empty token file named by KAGGLE_API_TOKEN, as in
    kagglesdk, skips the token files and goes on to the username and key)."""
    from kagglehub import config as kh_config

    from modelhub.hubs.kaggle_api import credentials

    config = tmp_path / "kaggle-config"
    config.mkdir()
    for name in setup.split():
        if name == "env":
            monkeypatch.setenv("KAGGLE_API_TOKEN", "tok-env")
        elif name in ("env-file", "empty-env-file"):
            text = "" if name.startswith("empty") else "tok-file\n"
            (tmp_path / "token.txt").write_text(text, encoding="utf-8")
            monkeypatch.setenv("KAGGLE_API_TOKEN", str(tmp_path / "token.txt"))
        elif name == "home":
            (home / ".kaggle/access_token").write_text("tok-home\n", encoding="utf-8")
        elif name == "userkey":
            monkeypatch.setenv("KAGGLE_USERNAME", "ada")
            monkeypatch.setenv("KAGGLE_KEY", "k-env")
        else:
            (config / "kaggle.json").write_text('{"username": "bob", "key": "k-json"}')
    kh_config.clear_kaggle_credentials()
    theirs = kh_config.get_kaggle_credentials()
    ours = credentials()
    if theirs is None:
        assert ours is None
        return
    assert ours is not None
    if theirs.api_key:
        assert (ours.token, ours.basic) == (theirs.api_key, None)
    else:
        basic = base64.b64encode(f"{theirs.username}:{theirs.key}".encode()).decode()
        assert (ours.token, ours.basic) == (None, basic)

"""Issue 19, "Integrity and data": every pin honoured, nothing the user has deleted or overwritten
by surprise, damaged files repaired, url: files filed by source, failures leave no debris.

Real HTTP servers on 127.0.0.1 (an ONNX zoo, ``modelhub serve`` for hf:, a plain file server
for url:) and the real huggingface_hub client.
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

import modelhub
from modelhub.cli.main import build_parser, main
from modelhub.errors import HashMismatchError, UsageError
from tests.support.httpserver import HTTPTestServer
from tests.support.onnx_models import make_mlp

REPO = "test-org/tiny-model"
REF = f"hf:{REPO}"
ZERO = "0" * 64


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _files_under(root: Path) -> list[str]:
    """Every file and link under ``root`` except the store's own metadata."""
    if not root.exists():
        return []
    return sorted(
        p.relative_to(root).as_posix()
        for p in root.rglob("*")
        if (p.is_file() or p.is_symlink()) and ".modelhub" not in p.relative_to(root).parts
    )


def _cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def served(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, bytes]]:
    """hf:test-org/tiny-model through ``modelhub serve``, a fresh HF cache."""
    pytest.importorskip("huggingface_hub")
    from modelhub.importer import import_path
    from modelhub.mirror.app import BackgroundMirror
    from tests.support.mirror_fixtures import make_hf_snapshot

    files = make_hf_snapshot(tmp_path / "src", seed=1, extra_files=2)
    seed = modelhub.Store(tmp_path / "seed")
    import_path(seed, tmp_path / "src", modelhub.parse(REF))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    with BackgroundMirror(seed.root) as url:
        monkeypatch.setenv("MODELHUB_MIRROR", url)
        yield files


# --- 1. --sha256 for every single-file model ------------------------------------------------------
def test_sha256_is_honoured_for_an_onnx_zoo_model(zoo, store_root: Path, capsys) -> None:
    # The dry run answers as the pull will: the zoo lists other bytes (exit 5).
    code, out, dry_err = _cli(capsys, "pull", "onnx:tiny-mlp", "--sha256", ZERO, "--dry-run")
    assert (code, out) == (5, ""), dry_err
    assert dry_err.count("\n") == 1 and "sha256" in dry_err
    code, out, err = _cli(capsys, "pull", "onnx:tiny-mlp", "--sha256", ZERO)
    assert code == 5, err
    assert err.count("\n") == 1 and "sha256" in err and out == ""
    assert _files_under(store_root) == []
    assert modelhub.Store().manifest(modelhub.parse("onnx:tiny-mlp")) is None
    good = zoo.sha("tiny-mlp-13.onnx")
    code, out, err = _cli(capsys, "pull", "onnx:tiny-mlp", "--sha256", good)
    assert code == 0, err
    # Once in the store, a pull pinned to other bytes is refused too (never a silent hit).
    code, out, err = _cli(capsys, "pull", "onnx:tiny-mlp", "--sha256", ZERO)
    assert code == 5, err
    assert (store_root / "onnx" / "tiny-mlp-13.onnx").read_bytes() == zoo.files["tiny-mlp-13.onnx"]


def test_sha256_is_honoured_for_one_file_of_a_hf_repo(served, store_root: Path) -> None:
    ref = f"{REF}:config.json"
    with pytest.raises(HashMismatchError) as caught:
        modelhub.pull(ref, sha256=ZERO)
    assert caught.value.exit_code == 5
    assert _files_under(store_root) == []
    model = modelhub.pull(ref, sha256=_sha(served["config.json"]))
    assert model.path.read_bytes() == served["config.json"]


def test_sha256_is_honoured_for_a_keras_application(
    tmp_path: Path, store_root: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    """keras: weights (a file Keras publishes no hash for) through ``modelhub serve``: the
    wrong --sha256 is exit 5 with nothing kept, in the store or in Keras' own cache."""
    pytest.importorskip("keras")
    h5py = pytest.importorskip("h5py")
    from modelhub.importer import import_path
    from modelhub.mirror.app import BackgroundMirror
    from tests.support.keras_models import MOBILENET_V2_035_96

    weights = tmp_path / "published" / MOBILENET_V2_035_96
    weights.parent.mkdir()
    with h5py.File(weights, "w") as h5:  # an HDF5 file: the hub checks the signature
        h5.create_dataset("w", data=[1.0, 2.0, 3.0])
    seed = modelhub.Store(tmp_path / "seed")
    import_path(seed, weights, modelhub.parse("keras:MobileNetV2"))
    keras_home = tmp_path / "keras-home"
    monkeypatch.setenv("KERAS_HOME", str(keras_home))
    args = ["pull", "keras:MobileNetV2", "--stage", "none", "--alpha", "0.35"]
    args += ["--input-shape", "96,96,3"]
    with BackgroundMirror(seed.root) as url:
        monkeypatch.setenv("MODELHUB_MIRROR", url)
        code, out, err = _cli(capsys, *args, "--sha256", ZERO)
        assert (code, out) == (5, ""), err
        assert err.count("\n") == 1 and "sha256" in err
        assert _files_under(store_root) == []
        assert not keras_home.exists() or [p for p in keras_home.rglob("*") if p.is_file()] == []
        code, out, err = _cli(capsys, *args, "--sha256", _sha(weights.read_bytes()))
        assert code == 0, err
    assert Path(out.strip()).read_bytes() == weights.read_bytes()


def test_sha256_of_a_folder_model_is_refused_pointing_at_the_lock(
    served, store_root: Path, capsys
) -> None:
    code, _out, err = _cli(capsys, "pull", REF, "--sha256", ZERO)
    assert code == 2, err
    assert err.count("\n") == 1 and "lock" in err
    assert _files_under(store_root) == []
    # --help says so: any single-file model, never a folder of files.
    pull_parser = build_parser()._modelhub_subparsers["pull"]  # type: ignore[attr-defined]
    pull_help = " ".join(pull_parser.format_help().split())
    assert "url: file" not in pull_help
    assert "--sha256 HEX expected sha256 of a single-file model" in pull_help
    assert "refused for a model that is a folder of files" in pull_help
    # A dry run refuses it the same way (never "would fetch" what the pull refuses).
    code, out, dry_err = _cli(capsys, "pull", REF, "--sha256", ZERO, "--dry-run")
    assert (code, out, dry_err) == (2, "", err), (out, dry_err)
    # Also when the model is already in the store: never a silent cache hit.
    modelhub.pull(REF)
    with pytest.raises(UsageError, match="lock"):
        modelhub.pull(REF, sha256=ZERO)


# --- 2. a narrower --include never deletes ------------------------------------------------------
def test_a_narrower_include_keeps_what_an_earlier_pull_fetched(served, store_root: Path) -> None:
    first = modelhub.pull(REF, options={"include": ["*.json", "sub/*"]})
    folder = first.original
    before = {p: (folder / p).read_bytes() for p in ("config.json", "tokenizer.json")}
    assert (folder / "sub" / "dir" / "readme.txt").is_file()
    second = modelhub.pull(REF, options={"include": ["config.json"]})
    for name, data in before.items():
        assert (folder / name).read_bytes() == data
    assert (folder / "sub" / "dir" / "readme.txt").is_file()
    recorded = {f.path.rsplit(f"{REPO}/", 1)[1] for f in second.manifest.files}
    assert {"config.json", "tokenizer.json", "sub/dir/readme.txt"} <= recorded
    assert main(["verify", REF]) == 0


# --- 3. verify's damage is repaired by the next pull, or by verify --repair ----------------------
def _damage(path: Path) -> bytes:
    good = path.read_bytes()
    path.unlink()  # a new inode: the bytes of any hard-linked copy (SDK cache) stay good
    path.write_bytes(b"\x00" * len(good))
    return good


def test_the_next_pull_refetches_what_verify_found_damaged(zoo, store_root: Path, capsys) -> None:
    assert main(["pull", "onnx:tiny-mlp"]) == 0
    target = store_root / "onnx" / "tiny-mlp-13.onnx"
    good = _damage(target)
    code, out, err = _cli(capsys, "verify", "onnx:tiny-mlp")
    assert code == 5
    assert "FAILED onnx:tiny-mlp" in out and "verify --repair" in err
    code, out, err = _cli(capsys, "pull", "onnx:tiny-mlp")
    assert code == 0, err
    assert "damaged" in err
    assert target.read_bytes() == good
    assert main(["verify", "onnx:tiny-mlp"]) == 0
    code, out, err = _cli(capsys, "pull", "onnx:tiny-mlp")  # repaired: a plain cache hit now
    assert code == 0 and "damaged" not in err


def test_verify_repair_refetches_at_once(served, store_root: Path, capsys) -> None:
    model = modelhub.pull(REF)
    target = model.original / "model.safetensors"
    good = served["model.safetensors"]
    target.unlink()
    target.write_bytes(b"\x00" * len(good))  # damaged in place, as a hard link would be too
    code, out, err = _cli(capsys, "verify", "--repair", REF)
    assert code == 0, err
    assert "repaired" in (out + err)
    assert target.read_bytes() == good
    assert main(["verify", REF]) == 0


def test_verify_repair_restages_a_damaged_staged_file(zoo, store_root: Path, capsys) -> None:
    model = modelhub.pull("onnx:tiny-mlp")
    [staged] = model.manifest.staged
    assert staged.fixture
    fixture = store_root / staged.fixture["path"]
    good = _damage(fixture)
    code, out, err = _cli(capsys, "verify", "--repair")
    assert code == 0, err
    assert out.strip() == "repaired onnx:tiny-mlp"
    assert fixture.read_bytes() == good
    assert modelhub.Store().manifest(model.ref).staged[0].format == "onnx"
    assert main(["verify"]) == 0


def test_verify_repair_of_a_damaged_blob_in_the_sdk_cache(served, store_root: Path, capsys) -> None:
    model = modelhub.pull(REF)
    target = model.original / "model.safetensors"
    good = served["model.safetensors"]
    with open(target, "r+b") as fh:  # through the link: the HF cache's blob is damaged too
        fh.write(b"\xff" * 16)
    assert main(["verify", REF]) == 5
    code, _out, err = _cli(capsys, "pull", REF)
    assert code == 0, err
    assert target.read_bytes() == good
    assert main(["verify", REF]) == 0


# --- 4. url: files filed by source ----------------------------------------------------------------
def test_url_files_of_one_name_from_two_sources_both_pull(
    zoo, tmp_path: Path, store_root: Path
) -> None:
    onnx_a = make_mlp(tmp_path / "a.onnx", seed=11).read_bytes()
    onnx_b = make_mlp(tmp_path / "b.onnx", seed=12).read_bytes()
    files = {
        "/a/config.json": b'{"a": 1}',
        "/b/config.json": b'{"b": 2}',
        "/a/model.onnx": onnx_a,
        "/b/model.onnx": onnx_b,
        "/c/tiny-mlp-13.onnx": onnx_a,  # the zoo model's file name, other bytes
    }
    with HTTPTestServer(files) as server:
        port = server.url.rsplit(":", 1)[1]
        paths = {}
        for name, data in files.items():
            model = modelhub.pull(f"url:{server.url}{name}")
            assert model.files[0].read_bytes() == data
            assert model.files[0].name == name.rsplit("/", 1)[1]  # the original name is kept
            paths[name] = model.files[0]
        assert len(set(paths.values())) == len(files)
        assert paths["/a/model.onnx"] == store_root / "onnx" / f"127.0.0.1_{port}" / "a/model.onnx"
        zoo_model = modelhub.pull("onnx:tiny-mlp")
        assert zoo_model.path == store_root / "onnx" / "tiny-mlp-13.onnx"
        for name, data in files.items():
            assert paths[name].read_bytes() == data
        assert main(["verify"]) == 0


def _torchscript_like() -> bytes:
    """A zip shaped like a TorchScript archive (``code/``), as torch.jit.save writes it."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("m/code/__torch__.py", "class M: pass\n")
        zf.writestr("m/data.pkl", b"\x80\x02}q\x00.")
    return buf.getvalue()


def test_bin_is_not_pytorch_and_the_torch_note_is_said_once_where_true(
    store_root: Path, capsys
) -> None:
    files = {"/x/vocab.bin": b"\x01" * 64, "/w/weights.pt": b"\x02" * 64, "/s/net.pt": b""}
    files["/s/net.pt"] = _torchscript_like()
    with HTTPTestServer(files) as server:
        code, out, err = _cli(capsys, "pull", f"url:{server.url}/x/vocab.bin")
        assert code == 0, err
        assert "pytorch" not in Path(out.strip()).relative_to(store_root).parts
        assert "TorchScript" not in err and "PyTorch" not in err

        code, out, err = _cli(capsys, "pull", f"url:{server.url}/w/weights.pt")
        assert code == 0, err
        assert "bare weights" in err and err.count("note:") == 1
        code, out, err = _cli(capsys, "pull", f"url:{server.url}/w/weights.pt")
        assert code == 0 and "note:" not in err  # said once, at the first pull

        code, out, err = _cli(capsys, "pull", f"url:{server.url}/s/net.pt")
        assert code == 0, err
        assert "TorchScript" in err and "bare weights" not in err


# --- 5. failures leave nothing but resumable partial downloads ----------------------------------
def test_a_404_leaves_no_folder_in_tmp(store_root: Path, capsys) -> None:
    with HTTPTestServer({}) as server:
        code, _out, err = _cli(capsys, "pull", f"url:{server.url}/gone/model.onnx")
    assert code == 3, err
    tmp = store_root / ".modelhub" / "tmp"
    assert not tmp.exists() or list(tmp.iterdir()) == []
    assert _files_under(store_root) == []


def test_a_failed_hf_stage_onnx_leaves_nothing_in_the_store(served, store_root: Path) -> None:
    pytest.importorskip("transformers")
    pytest.importorskip("torch")
    with pytest.raises(modelhub.ModelhubError):
        modelhub.pull(REF, stage="onnx")  # not a transformers model: staging fails
    assert _files_under(store_root) == []
    assert list(modelhub.Store().manifests()) == []
    tmp = store_root / ".modelhub" / "tmp"
    assert not tmp.exists() or [p for p in tmp.iterdir() if not p.name.endswith(".part")] == []
    # The files are still in the HF cache: pulling without the stage needs no download.
    assert modelhub.pull(REF).original.is_dir()


def test_a_staging_failure_after_publication_leaves_only_what_was_there(
    tmp_path: Path, store_root: Path, capsys
) -> None:
    pytest.importorskip("onnxruntime")
    data = make_mlp(tmp_path / "m.onnx", seed=5).read_bytes()
    with HTTPTestServer({"/m/model.onnx": data}) as server:
        ref = f"url:{server.url}/m/model.onnx"
        where = modelhub.pull(ref, stage="none").files[0].parent
        assert main(["rm", ref]) == 0
        # Something of the user's where the parity fixture goes: its publication fails after
        # the model file itself was published.
        blocker = where / "model.onnx.fixture.npz"
        blocker.mkdir(parents=True)
        (blocker / "mine.txt").write_text("the user's")
        code, out, err = _cli(capsys, "pull", ref, "--stage", "onnx")
        assert code != 0 and out == "" and err.count("\n") == 1
        assert _files_under(store_root) == [
            (blocker / "mine.txt").relative_to(store_root).as_posix()
        ]
        assert list(modelhub.Store().manifests()) == []


# --- 10. errors that carry the reference name it once (multi-ref pull, sync, outdated) ----------
#: REFs as a user may write them -> their canonical form, which the hub's errors name.
_BAD_REFS = {
    f"{REF}@no-such-rev": f"{REF}@no-such-rev",
    f"https://huggingface.co/{REPO}/tree/other-rev": f"{REF}@other-rev",
    f"{REF}@main:missing.json": f"{REF}:missing.json",
}


def _errors(err: str) -> list[str]:
    return [ln for ln in err.splitlines() if ln.startswith("modelhub: error: ")]


def _names_each_once(errors: list[str]) -> None:
    """One error line per bad REF, naming it once (as the hub's error does), never as given
    in another form besides."""
    assert len(errors) == len(_BAD_REFS), errors
    for canonical in _BAD_REFS.values():
        [line] = [ln for ln in errors if f"{canonical}:" in ln]
        assert line.count("hf:") == 1 and "huggingface.co" not in line, line


def test_hub_errors_carrying_the_reference_name_it_once(
    served, store_root: Path, tmp_path: Path, capsys, monkeypatch
) -> None:
    good = f"{REF}:config.json"
    code, out, err = _cli(capsys, "pull", good, *_BAD_REFS)
    assert code == 3, err
    _names_each_once(_errors(err))
    # --json: each failure's error is the line stderr shows, its REF first.
    code, out, err = _cli(capsys, "pull", "--json", good, *_BAD_REFS)
    assert code == 3, err
    docs = json.loads(out)
    shown = [ln.removeprefix("modelhub: error: ") for ln in _errors(err)]
    assert [d["error"] for d in docs] == [None, *shown]
    assert [d["ref"] for d in docs] == [good, *_BAD_REFS]
    # A sync prints each failure once, naming its model once.
    toml = tmp_path / "set.toml"
    toml.write_text("".join(f'[[model]]\nref = "{r}"\n\n' for r in [good, *_BAD_REFS]))
    code, out, err = _cli(capsys, "sync", str(toml))
    assert code == 3, err
    _names_each_once(_errors(err))
    # outdated: an upstream that cannot be reached is said once per model, named once.
    monkeypatch.setenv("MODELHUB_MIRROR", served_dead_url())
    monkeypatch.setenv("MODELHUB_RETRIES", "0")
    code, out, err = _cli(capsys, "outdated")
    assert code == 6, err
    [line] = [ln for ln in err.splitlines() if good in ln]
    assert line.count("hf:") == 1 and line.startswith("modelhub: unreachable: "), line


def served_dead_url() -> str:
    """A loopback URL nothing listens on."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


# --- 14. a dry run of an hf: model ----------------------------------------------------------------
def test_hf_dry_run_lists_the_snapshot_and_writes_nothing(
    served, store_root: Path, tmp_path: Path, capsys
) -> None:
    code, out, err = _cli(capsys, "pull", REF, "--dry-run", "--json")
    assert code == 0, err
    [plan] = json.loads(out)
    assert plan["status"] == "would fetch" and plan["exit_code"] == 0
    listed = {f["path"].rsplit(f"{REPO}/", 1)[1]: f for f in plan["files"]}
    assert set(listed) == set(served)
    for name, data in served.items():
        assert listed[name]["size"] == len(data) and listed[name]["present"] is False
        assert listed[name]["abspath"] == str(store_root / listed[name]["path"])
        assert f"/{REPO}/resolve/" in listed[name]["url"]
    assert plan["fetch_files"] == len(served)
    assert plan["fetch_bytes"] == sum(len(d) for d in served.values())
    assert _files_under(store_root) == []
    assert [p for p in (tmp_path / "hf-cache").rglob("*") if p.is_file()] == []  # nor the SDK cache
    code, out, err = _cli(capsys, "pull", REF, "--dry-run")
    assert code == 0, err
    assert out.startswith(f"{REF}: would fetch {len(served)} file(s), ")
    # Once pulled, the dry run answers from the store (no network).
    model = modelhub.pull(REF)
    code, out, err = _cli(capsys, "pull", REF, "--dry-run")
    assert (code, out) == (0, f"{REF}: in store ({model.path})\n"), err

"""Secrets stay secret: every command runs with HF_TOKEN, HUGGING_FACE_HUB_TOKEN,
AWS_SECRET_ACCESS_KEY and KAGGLE_KEY set to distinctive values, against a `modelhub serve`
process that has them too; then every stdout, stderr, the mirror's access log, and every file
of the store (manifests, locks, tmp, caches) and of the project folder (modelhub.lock) is
searched for them. Error paths are included: a gated repo refusing the token, a 404 under a URL
with credentials in it, and a failure with MODELHUB_DEBUG=1 (traceback on)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

pytest.importorskip("huggingface_hub")
pytest.importorskip("onnx")

from tests.support.httpserver import HTTPTestServer

REPO = Path(__file__).resolve().parents[1]
SECRETS = {
    "HF_TOKEN": "hf_SeCrEtHfTokenAlpha0123456789abcdef",
    "HUGGING_FACE_HUB_TOKEN": "hf_SeCrEtLegacyTokenBravo9876543210",
    "AWS_SECRET_ACCESS_KEY": "awsSeCrEtKeyCharlie/abcdEFGH+ijklMNOP",
    "KAGGLE_KEY": "kaggleSeCrEtKeyDelta00112233445566",
}
URL_PASSWORD = "urlSeCrEtPasswordEcho42"


@dataclass
class Ran:
    """One command and what it printed."""

    args: list[str]
    code: int
    out: str
    err: str


@pytest.fixture
def world(tmp_path: Path) -> dict[str, object]:
    """A seed store (an ONNX model, an HF snapshot) and the paths of a user's machine."""
    import modelhub
    from modelhub.importer import import_path
    from tests.support.mirror_fixtures import make_hf_snapshot
    from tests.support.onnx_models import make_mlp

    seed = modelhub.Store(tmp_path / "seed")
    import_path(seed, make_mlp(tmp_path / "in" / "secretnet-13.onnx"), modelhub.parse("onnx:sn"))
    make_hf_snapshot(tmp_path / "in" / "snap", seed=3)
    import_path(seed, tmp_path / "in" / "snap", modelhub.parse("hf:secret-org/model"))
    return {"seed": seed.root, "tmp": tmp_path}


def _env(tmp: Path, store: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MODELHUB_", "HF_"))}
    env.update(SECRETS)
    env.update(
        {
            "MODELHUB_PATH": str(store),
            "MODELHUB_QUIET": "1",
            "HF_HUB_CACHE": str(tmp / "hf-cache"),
            "TFHUB_CACHE_DIR": str(tmp / "tfhub-cache"),
            "HF_HUB_DISABLE_TELEMETRY": "1",
            "NO_PROXY": "127.0.0.1,localhost",
            **extra,
        }
    )
    return env


def _grep(text: str) -> list[str]:
    needles = [*SECRETS.values(), URL_PASSWORD]
    return [n for n in needles if n in text]


def _grep_tree(root: Path) -> dict[str, list[str]]:
    found = {}
    for path in sorted(root.rglob("*")):
        if path.is_file() and not path.is_symlink():
            hits = _grep(path.read_bytes().decode("utf-8", errors="replace"))
            if hits:
                found[str(path)] = hits
    return found


def test_no_command_leaks_a_token(world: dict[str, object], tmp_path: Path) -> None:
    from tests.support.hf_models import GatedHub

    seed, tmp = Path(str(world["seed"])), Path(str(world["tmp"]))
    store = tmp / "store"
    project = tmp / "project"
    project.mkdir()

    serve = subprocess.Popen(
        [sys.executable, "-m", "modelhub", "serve", "--root", str(seed), "--port", "0"],
        env=_env(tmp, tmp / "serve-store"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    ran: list[Ran] = []
    try:
        assert serve.stdout is not None
        mirror = serve.stdout.readline().strip()
        assert mirror.startswith("http://127.0.0.1:"), mirror
        env = _env(tmp, store, MODELHUB_MIRROR=mirror)

        def run(*args: str, cwd: Path = project, **extra: str) -> Ran:
            proc = subprocess.run(
                [sys.executable, "-m", "modelhub", *args],
                env={**env, **extra},
                cwd=cwd,
                capture_output=True,
                text=True,
                timeout=300,
            )
            result = Ran(list(args), proc.returncode, proc.stdout, proc.stderr)
            ran.append(result)
            return result

        (project / "modelhub.toml").write_text(
            '[[model]]\nref = "onnx:sn"\n\n[[model]]\nref = "hf:secret-org/model"\n'
        )
        local = tmp / "in" / "local.bin"
        local.write_bytes(os.urandom(1000))
        expected_ok = [
            run("pull", "onnx:sn"),
            run("pull", "hf:secret-org/model", "--json"),
            run("path", "onnx:sn"),
            run("info", "hf:secret-org/model"),
            run("info", "hf:secret-org/model", "--json"),
            run("list"),
            run("list", "--json"),
            run("verify"),
            run("du"),
            run("du", "--json"),
            run("import", str(local), "--as", "url:http://127.0.0.1:9/x/local.bin"),
            run("rm", "url:http://127.0.0.1:9/x/local.bin"),
            run("sync", "--json"),
            run("sync", "--locked"),
            run("outdated"),
            run("gc", "--dry-run"),
            run("gc"),
            run("pull", "onnx:sn", "--force", "--json"),
        ]
        for r in expected_ok:
            assert r.code == 0, (r.args, r.err)
        # Error paths: a gated repo that refuses the token; a 404 from a URL with credentials;
        # an error with tracebacks on.
        with GatedHub(f"{mirror}/hf", "hf_the_right_token_is_another", mode="gated") as gated:
            refused = run(
                "pull",
                "hf:secret-org/model",
                MODELHUB_HF_URL=gated.url,
                MODELHUB_PATH=str(tmp / "store-gated"),
                HF_HUB_CACHE=str(tmp / "hf-cache-gated"),
            )
        assert refused.code == 4, refused.err
        with HTTPTestServer() as files:
            host = files.url.removeprefix("http://")
            missing = run("pull", f"url:http://user:{URL_PASSWORD}@{host}/m/missing.onnx")
            assert missing.code == 3, missing.err
            assert files.requests, "the URL was fetched"
        debug = run("pull", "onnx:not-there", MODELHUB_DEBUG="1")
        assert debug.code == 3, debug.err
    finally:
        serve.send_signal(signal.SIGTERM)
        try:
            serve_out, serve_err = serve.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            serve.kill()
            serve_out, serve_err = serve.communicate()

    assert "GET /hf/api/models/secret-org/model" in serve_err, "the access log is on stderr"
    leaks = {}
    for r in ran:
        for stream, text in (("stdout", r.out), ("stderr", r.err)):
            if _grep(text):
                leaks[f"{' '.join(r.args)} ({stream})"] = _grep(text)
    for name, text in (("serve stdout", serve_out), ("serve stderr + access log", serve_err)):
        if _grep(text):
            leaks[name] = _grep(text)
    for root in (store, tmp / "store-gated", project, tmp / "serve-store", seed):
        leaks.update(_grep_tree(root))
    assert (project / "modelhub.lock").is_file()
    assert list((store / ".modelhub" / "locks").glob("*.lock")), "the locks were searched too"
    assert leaks == {}, json.dumps(leaks, indent=1)


def test_token_refused_under_force_is_an_auth_error(world: dict[str, object]) -> None:
    """``pull --force`` of a gated model whose token is refused: exit 4 and a line that says
    so (the SDK wraps the refusal in "Force download failed due to the above error"), without
    the token."""
    from tests.support.hf_models import GatedHub

    seed, tmp = Path(str(world["seed"])), Path(str(world["tmp"]))
    env = _env(tmp, tmp / "store")
    from modelhub.mirror.app import BackgroundMirror

    with BackgroundMirror(seed) as mirror:
        first = subprocess.run(
            [sys.executable, "-m", "modelhub", "pull", "hf:secret-org/model"],
            env={**env, "MODELHUB_MIRROR": mirror},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert first.returncode == 0, first.stderr
        with GatedHub(f"{mirror}/hf", "hf_the_right_token_is_another", mode="gated") as gated:
            proc = subprocess.run(
                [sys.executable, "-m", "modelhub", "pull", "hf:secret-org/model", "--force"],
                env={**env, "MODELHUB_HF_URL": gated.url},
                capture_output=True,
                text=True,
                timeout=120,
            )
    assert not _grep(proc.stdout + proc.stderr)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert proc.returncode == 4, lines[0]
    assert "gated" in lines[0] or "denied" in lines[0] or "token" in lines[0], lines[0]


KAGGLE_TOKEN = "kaggleSeCrEtApiTokenFoxtrot0a1b2c3d4e5f"


def test_kaggle_token_never_leaks(tmp_path: Path) -> None:
    """A gated Kaggle model pulled with KAGGLE_API_TOKEN (pull -v, sync to a lock, info,
    outdated, a refused token with MODELHUB_DEBUG=1): the token is in no stdout or stderr, no
    manifest, lock or other file of the store, the project or kagglehub's cache, and the stand-in
    saw it only on the API port, never on the signed storage URLs."""
    from tests.support.kaggle_upstream import KaggleUpstream, write_version

    tree = tmp_path / "tree"
    write_version(tree, "acme/gated/pyTorch/default/1", {"w.bin": os.urandom(2000)})
    write_version(tree, "acme/gated/pyTorch/default/2", {"w.bin": os.urandom(3000)})
    store, project, cache = tmp_path / "store", tmp_path / "project", tmp_path / "kh-cache"
    project.mkdir()
    (project / "modelhub.toml").write_text('[[model]]\nref = "kaggle:acme/gated/PyTorch/default"\n')
    ran: list[Ran] = []
    with KaggleUpstream(tree, gated={"acme/gated/pyTorch/default"}, tokens={KAGGLE_TOKEN}) as up:
        env = _env(
            tmp_path,
            store,
            MODELHUB_KAGGLE_URL=up.url,
            KAGGLE_API_TOKEN=KAGGLE_TOKEN,
            KAGGLEHUB_CACHE=str(cache),
            KAGGLE_CONFIG_DIR=str(tmp_path / "kaggle-config"),
            HOME=str(tmp_path / "home"),
            MODELHUB_QUIET="",
        )

        def run(*args: str, **extra: str) -> Ran:
            proc = subprocess.run(
                [sys.executable, "-m", "modelhub", *args],
                env={**env, **extra},
                cwd=project,
                capture_output=True,
                text=True,
                timeout=300,
            )
            ran.append(Ran(list(args), proc.returncode, proc.stdout, proc.stderr))
            return ran[-1]

        for r in (
            run("pull", "kaggle:acme/gated/pyTorch/default/1", "-v"),
            run("sync", "-v"),
            run("info", "kaggle:acme/gated/pyTorch/default"),
            run("info", "kaggle:acme/gated/pyTorch/default", "--json"),
            run("pull", "kaggle:acme/gated/pyTorch/default/2", "--json", "-v"),
        ):
            assert r.code == 0, (r.args, r.err)
        assert "pulling" in ran[0].err, "-v printed what it does"
        assert run("outdated").code == 0
        refused = run(
            "pull",
            "kaggle:acme/gated/pyTorch/default/2",
            "--force",
            KAGGLE_API_TOKEN=KAGGLE_TOKEN[::-1],
            MODELHUB_DEBUG="1",
        )
        assert refused.code == 4, refused.err
        storage = up.storage_requests()
        api = [s for s in up.seen if s.target.startswith("/v1/") and s.authorization]
    assert storage and not any(s.authorization for s in storage)
    assert api, "the token was sent to the API"
    needles = [KAGGLE_TOKEN, KAGGLE_TOKEN[::-1]]
    leaks = {}
    for r in ran:
        for stream, text in (("stdout", r.out), ("stderr", r.err)):
            if any(n in text for n in needles):
                leaks[f"{' '.join(r.args)} ({stream})"] = stream
    for root in (store, project, cache):
        for path in sorted(root.rglob("*")):
            if path.is_file() and any(n.encode() in path.read_bytes() for n in needles):
                leaks[str(path)] = "file"
    assert (project / "modelhub.lock").is_file()
    assert list(store.rglob("*.json")), "the manifests were searched"
    assert leaks == {}, json.dumps(leaks, indent=1)

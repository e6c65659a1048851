"""torch:OWNER/REPO[:REF]/ENTRY — torch.hub GitHub entrypoints, as torch 2.14.1 asks for them.

A fake GitHub (``FakeGitHub``: a real HTTP server on 127.0.0.1) answers what torch.hub asks
github.com and api.github.com: the default-branch probe ``/{o}/{r}/tree/main/``, the ref check
``/repos/{o}/{r}/branches|tags?per_page=100&page=N`` and the zipball ``/{o}/{r}/zipball/{ref}``.
The zipballs are built like ``git archive`` (what GitHub serves): the top folder's entry first,
the commit id as the archive comment.
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

import modelhub  # noqa: E402
from modelhub.cli.main import main  # noqa: E402
from modelhub.errors import (  # noqa: E402
    ArchiveError,
    ModelNotFoundError,
)
from tests.support.httpserver import Fault, HTTPTestServer  # noqa: E402

COMMIT = "0123456789abcdef0123456789abcdef01234567"
OTHER_COMMIT = "fedcba9876543210fedcba9876543210fedcba98"

HUBCONF = '''
import torch
from torch import nn

dependencies = ["torch"]

WEIGHTS_URL = {weights_url!r}


def _net(width):
    layers = [nn.Conv2d(3, width, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    return nn.Sequential(*layers, nn.Linear(width, 5))


def tiny(pretrained=False, width=4):
    """A small conv net; pretrained=True loads its weights the way torchvision's builders do."""
    net = _net(width)
    if pretrained:
        state = torch.hub.load_state_dict_from_url(WEIGHTS_URL, progress=False, check_hash=True)
        net.load_state_dict(state)
    return net


def full_checkpoint():
    """Loads a checkpoint shipped in the repo that needs full unpickling (it holds the
    training arguments as an argparse.Namespace, as many research checkpoints do)."""
    import os

    path = os.path.join(os.path.dirname(__file__), "ckpt.pt")
    ckpt = torch.load(path, weights_only=False)
    net = _net(ckpt["args"].width)
    net.load_state_dict(ckpt["state_dict"])
    return net
'''


def tiny_state(width: int = 4, seed: int = 11) -> dict[str, object]:
    """The state_dict the hubconf's ``_net(width)`` takes (seeded)."""
    from torch import nn

    torch.manual_seed(seed)
    net = nn.Sequential(
        nn.Conv2d(3, width, 3),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(width, 5),
    )
    return net.state_dict()


def make_zipball(
    owner: str, repo: str, files: dict[str, str | bytes], commit: str = COMMIT
) -> bytes:
    """A zipball shaped like GitHub's (``git archive``): ``{owner}-{repo}-{sha7}/`` first, the
    commit id as the archive comment."""
    top = f"{owner}-{repo}-{commit[:7]}/"
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(zipfile.ZipInfo(top), b"")
        for name, data in files.items():
            zf.writestr(top + name, data)
        zf.comment = commit.encode()
    return buf.getvalue()


@dataclass
class FakeGitHub:
    """github.com and api.github.com for one repository, on one test server."""

    server: HTTPTestServer
    owner: str
    repo: str
    branches: list[tuple[str, str]] = field(default_factory=list)
    tags: list[tuple[str, str]] = field(default_factory=list)
    weights_name: str = ""  # the weights file the hubconf downloads, at /models/ here

    @property
    def api(self) -> str:
        return f"{self.server.url}/api"

    def add_ref(self, name: str, data: bytes, kind: str = "branch", commit: str = COMMIT) -> None:
        """Serve ``data`` as the zipball of branch/tag ``name`` and list it in the API."""
        self.server.add(f"/{self.owner}/{self.repo}/zipball/{name}", data)
        (self.branches if kind == "branch" else self.tags).append((name, commit))
        if kind == "branch" and name == "main":
            self.server.add(f"/{self.owner}/{self.repo}/tree/main/", b"<html>main</html>")
        self.publish()

    def publish(self) -> None:
        """(Re)write the API's pages: 100 per page, then an empty page."""
        for what, items in (("branches", self.branches), ("tags", self.tags)):
            pages = [items[i : i + 100] for i in range(0, len(items), 100)] + [[]]
            for number, page in enumerate(pages, 1):
                body = [{"name": n, "commit": {"sha": sha, "url": "x"}} for n, sha in page]
                self.server.add(
                    f"/api/repos/{self.owner}/{self.repo}/{what}?per_page=100&page={number}",
                    json.dumps(body).encode(),
                    headers={"Content-Type": "application/json"},
                )

    def paths(self) -> list[str]:
        return [r.path for r in self.server.requests]


@pytest.fixture
def torch_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "torch-home"
    monkeypatch.setenv("TORCH_HOME", str(home))
    monkeypatch.delenv("GITHUB_TOKEN", raising=False)
    monkeypatch.delenv("TORCH_FORCE_WEIGHTS_ONLY_LOAD", raising=False)
    return home


@pytest.fixture
def github(torch_home: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeGitHub]:
    """someone/tinyrepo with the test hubconf on branch main, weights at /models/."""
    with HTTPTestServer() as server:
        weights = io.BytesIO()
        torch.save(tiny_state(), weights)
        data = weights.getvalue()
        import hashlib

        name = f"tinyhub-{hashlib.sha256(data).hexdigest()[:8]}.pth"
        server.add(f"/models/{name}", data)
        hub = FakeGitHub(server, "someone", "tinyrepo", weights_name=name)
        ckpt = io.BytesIO()
        import argparse

        torch.save({"args": argparse.Namespace(width=3), "state_dict": tiny_state(3)}, ckpt)
        files = {
            "hubconf.py": HUBCONF.format(weights_url=f"{server.url}/models/{name}"),
            "ckpt.pt": ckpt.getvalue(),
        }
        hub.add_ref("main", make_zipball("someone", "tinyrepo", files))
        monkeypatch.setenv("MODELHUB_GITHUB_URL", server.url)
        monkeypatch.setenv("MODELHUB_GITHUB_API_URL", hub.api)
        yield hub


def _cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(list(args))
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, out, err


SHAPE = {"input_shape": "1,3,16,16"}


# --- default branch: main, then master -----------------------------------------------------------
def test_no_ref_probes_main_then_takes_master(
    github: FakeGitHub, torch_home: Path, tmp_path: Path
) -> None:
    hub = FakeGitHub(github.server, "old", "repo")
    hub.add_ref(
        "master", make_zipball("old", "repo", {"hubconf.py": HUBCONF.format(weights_url="")})
    )
    model = modelhub.pull("torch:old/repo/tiny", stage="none", options={"trust": True})
    assert (torch_home / "hub" / "old_repo_master" / "hubconf.py").is_file()
    assert model.manifest.details["git_ref"] == "master"
    assert model.manifest.sdk_cache == str(torch_home / "hub" / "old_repo_master")
    assert hub.paths() == [
        "/old/repo/tree/main/",
        "/api/repos/old/repo/branches?per_page=100&page=1",
        "/old/repo/zipball/master",
    ]


def test_no_ref_takes_main_when_it_exists(github: FakeGitHub, torch_home: Path) -> None:
    model = modelhub.pull("torch:someone/tinyrepo/tiny", stage="none", options={"trust": True})
    assert model.manifest.details["git_ref"] == "main"
    assert model.manifest.details["commit"] == COMMIT
    assert github.paths()[0] == "/someone/tinyrepo/tree/main/"
    assert (torch_home / "hub" / "someone_tinyrepo_main" / "hubconf.py").is_file()


def test_offline_without_ref_takes_torchs_cached_folder(
    github: FakeGitHub, torch_home: Path
) -> None:
    """As torch.hub without network: ``OWNER_REPO_main``, else ``OWNER_REPO_master``."""
    folder = torch_home / "hub" / "someone_tinyrepo_master"
    folder.mkdir(parents=True)
    (folder / "hubconf.py").write_text(HUBCONF.format(weights_url=""))
    model = modelhub.pull(
        "torch:someone/tinyrepo/tiny", stage="none", offline=True, options={"trust": True}
    )
    assert model.manifest.details["git_ref"] == "master"
    assert github.server.requests == []


# --- hub args, untrained networks, full checkpoints ----------------------------------------------
def test_hub_args_reach_the_entrypoint_and_are_recorded(
    github: FakeGitHub, store_root: Path
) -> None:
    model = modelhub.pull(
        "torch:someone/tinyrepo:main/tiny",
        options={"trust": True, "hub_args": {"pretrained": True}, **SHAPE},
    )
    staged = model.manifest.staged[0]
    assert model.manifest.details["args"] == {"pretrained": True}
    assert staged.details["args"] == {"pretrained": True}
    assert staged.details["weights"] == "loaded"
    assert any(s.endswith(".pth") for s in staged.details["weight_sources"])
    assert "note" not in staged.details
    # The ONNX file holds the downloaded weights, not a random initialisation.
    import onnx
    from onnx import numpy_helper

    inits = [numpy_helper.to_array(t) for t in onnx.load(str(model.path)).graph.initializer]
    expected = tiny_state()["0.weight"].numpy()  # type: ignore[attr-defined]
    assert any(a.shape == expected.shape and (a == expected).all() for a in inits)
    assert any(r.path.startswith("/models/tinyhub-") for r in github.server.requests)


def test_other_hub_args_pull_again(github: FakeGitHub) -> None:
    first = modelhub.pull("torch:someone/tinyrepo:main/tiny", options={"trust": True, **SHAPE})
    assert first.manifest.staged[0].details["weights"] == "none"
    again = modelhub.pull(
        "torch:someone/tinyrepo:main/tiny",
        options={"trust": True, "hub_args": {"width": 6}, **SHAPE},
    )
    assert again.manifest.details["args"] == {"width": 6}
    assert again.manifest.staged[0].sha256 != first.manifest.staged[0].sha256
    # A pull that names no args takes what the store has (as modelhub.load does).
    same = modelhub.pull("torch:someone/tinyrepo:main/tiny", options=SHAPE)
    assert same.manifest.details["args"] == {"width": 6}


def test_model_set_args_reach_the_entrypoint_manifest_and_lock(
    github: FakeGitHub, tmp_path: Path
) -> None:
    """``args = {...}`` in modelhub.toml: the entrypoint's kwargs, in the manifest and (as part
    of the request) in modelhub.lock."""
    from modelhub.sync import sync

    toml = tmp_path / "modelhub.toml"
    toml.write_text(
        "[[model]]\n"
        'ref = "torch:someone/tinyrepo:main/tiny"\n'
        "trust = true\n"
        'input_shape = "1,3,16,16"\n'
        "args = { pretrained = true, width = 4 }\n"
    )
    report = sync(toml)
    assert report.exit_code == 0, report
    manifest = modelhub.Store().manifest(modelhub.parse("torch:someone/tinyrepo:main/tiny"))
    assert manifest is not None
    assert manifest.details["args"] == {"pretrained": True, "width": 4}
    assert manifest.staged[0].details["weights"] == "loaded"
    lock = json.loads((tmp_path / "modelhub.lock").read_text())
    (entry,) = [m for m in lock["models"] if m["ref"] == "torch:someone/tinyrepo:main/tiny"]
    assert entry["request"]["hub_args"] == {"pretrained": True, "width": 4}


def test_untrained_entrypoint_is_staged_and_flagged(
    github: FakeGitHub, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = _cli(
        capsys, "pull", "torch:someone/tinyrepo:main/tiny", "--trust", "--input-shape", "1,3,16,16"
    )
    assert code == 0, err
    assert out.strip().endswith("tiny.onnx")
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("modelhub: note: "), err
    assert "untrained" in lines[0] and "--hub-arg" in lines[0], err
    manifest = modelhub.Store().manifest(modelhub.parse("torch:someone/tinyrepo:main/tiny"))
    assert manifest is not None
    assert manifest.staged[0].details["weights"] == "none"
    assert not any(r.path.startswith("/models/") for r in github.server.requests)
    # Asked with pretrained=true, the same pull says nothing more.
    code, out, err = _cli(
        capsys,
        "pull",
        "torch:someone/tinyrepo:main/tiny",
        "--trust",
        "--input-shape",
        "1,3,16,16",
        "--hub-arg",
        "pretrained=true",
    )
    assert code == 0 and "modelhub: note:" not in err, err


def test_trusted_entrypoint_may_load_a_full_checkpoint(
    github: FakeGitHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The user chose to run this repository's code: its own full-pickle loads are not forced
    to weights_only (which refuses the argparse.Namespace in the checkpoint)."""
    model = modelhub.pull(
        "torch:someone/tinyrepo:main/full_checkpoint", options={"trust": True, **SHAPE}
    )
    staged = model.manifest.staged[0]
    assert staged.details["weights"] == "loaded"
    assert any(s.endswith("ckpt.pt") for s in staged.details["weight_sources"])
    assert staged.parity["max_abs_diff"] <= 1e-4


def test_entrypoint_downloads_follow_the_weights_endpoint(
    github: FakeGitHub, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """An entrypoint names download.pytorch.org in its code (torchvision's do): with
    MODELHUB_TORCH_URL (or the mirror) in force, its torch.hub downloads go there."""
    upstream = "https://download.pytorch.org/models"
    hubconf = HUBCONF.format(weights_url=f"{upstream}/{github.weights_name}")
    missing = HUBCONF.format(weights_url=f"{upstream}/tinyhub-00000000.pth")
    github.add_ref("upstream", make_zipball("someone", "tinyrepo", {"hubconf.py": hubconf}))
    github.add_ref("gone", make_zipball("someone", "tinyrepo", {"hubconf.py": missing}))
    monkeypatch.setenv("MODELHUB_TORCH_URL", github.server.url)
    model = modelhub.pull(
        "torch:someone/tinyrepo:upstream/tiny",
        options={"trust": True, "hub_args": {"pretrained": True}, **SHAPE},
    )
    sources = model.manifest.staged[0].details["weight_sources"]
    assert f"{github.server.url}/models/{github.weights_name}" in sources
    code, _, err = _cli(
        capsys,
        "pull",
        "torch:someone/tinyrepo:gone/tiny",
        "--trust",
        "--hub-arg",
        "pretrained=true",
    )
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 3 and len(lines) == 1, err  # torch.hub's own "Downloading: ..." kept back
    assert lines[0].startswith("modelhub: error: ")
    assert "tinyhub-00000000.pth was not found" in lines[0]


# --- the ref check: branches, tags, tip commits --------------------------------------------------
def test_ref_that_is_no_branch_tag_or_tip_is_refused(
    github: FakeGitHub, torch_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A commit that only a fork has is served by GitHub under the parent's URL too: torch
    refuses any ref that is not a branch, a tag or the prefix of one's tip commit."""
    forked = "badc0ffee0ddf00d"
    github.server.add(
        f"/someone/tinyrepo/zipball/{forked}",
        make_zipball("someone", "tinyrepo", {"hubconf.py": "import os\n"}),
    )
    code, _, err = _cli(capsys, "pull", f"torch:someone/tinyrepo:{forked}/tiny", "--trust")
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 3 and len(lines) == 1, err
    assert forked in lines[0] and "fork" in lines[0]
    assert not any("/zipball/" in p for p in github.paths())
    assert github.paths() == [
        "/api/repos/someone/tinyrepo/branches?per_page=100&page=1",
        "/api/repos/someone/tinyrepo/branches?per_page=100&page=2",
        "/api/repos/someone/tinyrepo/tags?per_page=100&page=1",
    ]
    assert not (torch_home / "hub" / f"someone_tinyrepo_{forked}").exists()


def test_ref_check_pages_through_branches_then_tags(github: FakeGitHub) -> None:
    github.branches += [(f"feature-{i:03d}", OTHER_COMMIT) for i in range(150)]
    data = make_zipball("someone", "tinyrepo", {"hubconf.py": HUBCONF.format(weights_url="")})
    github.add_ref("v1.0", data, kind="tag", commit=OTHER_COMMIT)
    model = modelhub.pull("torch:someone/tinyrepo:v1.0/tiny", stage="none", options={"trust": True})
    assert model.manifest.details["ref_kind"] == "tag"
    api = [p for p in github.paths() if p.startswith("/api/")]
    assert api == [
        "/api/repos/someone/tinyrepo/branches?per_page=100&page=1",
        "/api/repos/someone/tinyrepo/branches?per_page=100&page=2",
        "/api/repos/someone/tinyrepo/branches?per_page=100&page=3",
        "/api/repos/someone/tinyrepo/tags?per_page=100&page=1",
    ]


def test_prefix_of_a_tip_commit_is_accepted(github: FakeGitHub) -> None:
    github.server.add(
        f"/someone/tinyrepo/zipball/{COMMIT[:10]}",
        make_zipball("someone", "tinyrepo", {"hubconf.py": HUBCONF.format(weights_url="")}),
    )
    model = modelhub.pull(
        f"torch:someone/tinyrepo:{COMMIT[:10]}/tiny", stage="none", options={"trust": True}
    )
    assert model.manifest.details["ref_kind"] == "commit"
    assert model.manifest.details["commit"] == COMMIT


def test_github_token_goes_to_the_api_only(
    github: FakeGitHub, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    secret = "ghp_secret_value_0123456789"
    monkeypatch.setenv("GITHUB_TOKEN", secret)
    code, out, err = _cli(
        capsys, "pull", "torch:someone/tinyrepo/tiny", "--trust", "--stage", "none", "--json"
    )
    assert code == 0, err
    assert secret not in out + err
    seen = {r.path: r.headers.get("authorization") for r in github.server.requests}
    assert seen["/api/repos/someone/tinyrepo/branches?per_page=100&page=1"] == f"token {secret}"
    assert seen["/someone/tinyrepo/tree/main/"] is None
    assert seen["/someone/tinyrepo/zipball/main"] is None
    api = next(r for r in github.server.requests if r.path.startswith("/api/"))
    assert api.headers.get("accept") == "application/vnd.github.v3+json"
    manifests = list((modelhub.Store().root / ".modelhub").rglob("*.json"))
    assert manifests and all(secret not in p.read_text() for p in manifests)


@pytest.mark.parametrize(("status", "code"), [(403, 4), (429, 6)])
def test_rate_limited_api_is_one_clear_line(
    github: FakeGitHub,
    status: int,
    code: int,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MODELHUB_RETRIES", "0")
    github.server.faults.append(
        Fault("status", status=status, times=-1, path="/api/repos/someone/tinyrepo/branches")
    )
    got, _, err = _cli(capsys, "pull", "torch:someone/tinyrepo:main/tiny", "--trust")
    lines = [line for line in err.splitlines() if line.strip()]
    assert got == code and len(lines) == 1, err
    assert "rate limit" in lines[0] and "GITHUB_TOKEN" in lines[0], lines[0]


def test_refused_token_is_retried_without_it(
    github: FakeGitHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    """torch drops a token the API refuses and asks again anonymously (then for every page)."""
    monkeypatch.setenv("GITHUB_TOKEN", "expired")
    github.server.faults.append(
        Fault("status", status=401, times=1, path="/api/repos/someone/tinyrepo/branches")
    )
    modelhub.pull("torch:someone/tinyrepo:main/tiny", stage="none", options={"trust": True})
    api = [r for r in github.server.requests if r.path.startswith("/api/")]
    assert [r.headers.get("authorization") for r in api] == ["token expired", None]


def test_http_300_is_retried_as_the_branch(github: FakeGitHub, torch_home: Path) -> None:
    """A ref that is both a tag and a branch: GitHub answers 300, torch takes the branch."""
    github.server.faults.append(
        Fault("status", status=300, times=1, path="/someone/tinyrepo/zipball/main")
    )
    data = make_zipball("someone", "tinyrepo", {"hubconf.py": HUBCONF.format(weights_url="")})
    github.server.add("/someone/tinyrepo/zipball/refs/heads/main", data)
    model = modelhub.pull("torch:someone/tinyrepo:main/tiny", stage="none", options={"trust": True})
    zips = [p for p in github.paths() if "/zipball/" in p]
    assert zips == ["/someone/tinyrepo/zipball/main", "/someone/tinyrepo/zipball/refs/heads/main"]
    assert model.manifest.source == [
        f"{github.server.url}/someone/tinyrepo/zipball/refs/heads/main"
    ]
    assert (torch_home / "hub" / "someone_tinyrepo_main" / "hubconf.py").is_file()


def test_a_moved_github_without_its_api_skips_the_check(
    github: FakeGitHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    """MODELHUB_GITHUB_URL alone (a GitHub stand-in): api.github.com knows nothing of it, so
    no ref check is made there (no request leaves for the real API)."""
    monkeypatch.delenv("MODELHUB_GITHUB_API_URL")
    model = modelhub.pull("torch:someone/tinyrepo:main/tiny", stage="none", options={"trust": True})
    assert model.manifest.details["ref_check"] == "skipped"
    assert not any(p.startswith("/api/") for p in github.paths())


# --- trust ---------------------------------------------------------------------------------------
def test_torchs_trusted_list_counts_and_trust_is_recorded_there(
    github: FakeGitHub, torch_home: Path
) -> None:
    listed = torch_home / "hub" / "trusted_list"
    listed.parent.mkdir(parents=True)
    listed.write_text("other_repo\nsomeone_tinyrepo\n")
    model = modelhub.pull("torch:someone/tinyrepo:main/tiny", stage="none")
    assert model.manifest.details["trusted_by"] == "trusted_list"
    assert listed.read_text() == "other_repo\nsomeone_tinyrepo\n"  # not appended twice


def test_trust_flag_appends_to_torchs_trusted_list(github: FakeGitHub, torch_home: Path) -> None:
    """As torch.hub.load(trust_repo=True): the repo joins $TORCH_HOME/hub/trusted_list."""
    listed = torch_home / "hub" / "trusted_list"
    listed.parent.mkdir(parents=True)
    listed.write_text("other_repo")  # no final newline
    model = modelhub.pull("torch:someone/tinyrepo:main/tiny", stage="none", options={"trust": True})
    assert model.manifest.details["trusted_by"] == "--trust"
    assert listed.read_text().splitlines() == ["other_repo", "someone_tinyrepo"]
    modelhub.pull(
        "torch:someone/tinyrepo:main/tiny", stage="none", options={"trust": True}, force=True
    )
    assert listed.read_text().splitlines() == ["other_repo", "someone_tinyrepo"]


def test_torchs_default_trusted_owners(github: FakeGitHub, torch_home: Path) -> None:
    hub = FakeGitHub(github.server, "pytorch", "tinyvision")
    hub.add_ref(
        "main",
        make_zipball("pytorch", "tinyvision", {"hubconf.py": HUBCONF.format(weights_url="")}),
    )
    model = modelhub.pull("torch:pytorch/tinyvision/tiny", stage="none")
    assert model.manifest.details["trusted_by"] == "owner"
    # --trust on a repository torch trusts anyway adds nothing to its list (as torch).
    again = modelhub.pull(
        "torch:pytorch/tinyvision/tiny", stage="none", options={"trust": True}, force=True
    )
    assert again.manifest.details["trusted_by"] == "owner"
    assert not (torch_home / "hub" / "trusted_list").exists()


def test_hostile_zipball_is_refused(github: FakeGitHub, tmp_path: Path, torch_home: Path) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("top/hubconf.py", "x = 1")
        zf.writestr("top/../../escaped.py", "x = 1")
    github.add_ref("evil", buf.getvalue())
    with pytest.raises(ArchiveError, match="outside"):
        modelhub.pull("torch:someone/tinyrepo:evil/tiny", options={"trust": True})
    assert not list(tmp_path.rglob("escaped.py"))
    assert not (torch_home / "hub" / "someone_tinyrepo_evil").exists()


# --- torch's cache, both ways --------------------------------------------------------------------
def test_torchs_repo_folder_is_used_with_no_request(
    github: FakeGitHub, torch_home: Path, store_root: Path
) -> None:
    folder = torch_home / "hub" / "someone_tinyrepo_main"
    folder.mkdir(parents=True)
    (folder / "hubconf.py").write_text(HUBCONF.format(weights_url=""))
    (folder / "__pycache__").mkdir()
    (folder / "__pycache__" / "hubconf.cpython-311.pyc").write_bytes(b"\0")
    model = modelhub.pull("torch:someone/tinyrepo:main/tiny", options={"trust": True, **SHAPE})
    assert github.server.requests == []
    assert model.manifest.details["zipball_from"] == "torch.hub cache"
    with zipfile.ZipFile(store_root / model.manifest.files[0].path) as zf:
        assert zf.namelist() == ["someone-tinyrepo-main/", "someone-tinyrepo-main/hubconf.py"]
    assert model.manifest.staged[0].parity["max_abs_diff"] <= 1e-4


def test_pulled_repo_is_torchs_cache(github: FakeGitHub, torch_home: Path) -> None:
    modelhub.pull("torch:someone/tinyrepo:main/tiny", stage="none", options={"trust": True})
    github.server.stop()
    net = torch.hub.load(
        "someone/tinyrepo:main", "tiny", source="github", trust_repo="check", width=2
    )
    assert net(torch.zeros(1, 3, 8, 8)).shape == (1, 5)


def test_errors_from_the_api(github: FakeGitHub) -> None:
    with pytest.raises(ModelNotFoundError, match="nobody/nothing") as info:
        modelhub.pull("torch:nobody/nothing:main/tiny", options={"trust": True})
    assert info.value.exit_code == 3
    assert github.paths() == ["/api/repos/nobody/nothing/branches?per_page=100&page=1"]


def test_watch_weights_sees_the_routes_weights_take(tmp_path: Path) -> None:
    from torch import nn

    from modelhub.staging.torchvision_onnx import watch_weights

    originals = (torch.load, torch.jit.load, torch.nn.Module.load_state_dict)
    net = nn.Linear(2, 2)
    path = tmp_path / "w.pt"
    torch.save(net.state_dict(), path)
    scripted = tmp_path / "s.pt"
    torch.jit.script(net).save(str(scripted))
    with watch_weights() as seen:
        nn.Linear(2, 2).load_state_dict(torch.load(f=path, weights_only=True))
    assert seen.loaded and seen.matched_keys == 2 and seen.sources == [str(path)]
    with watch_weights() as seen:
        torch.jit.load(str(scripted))
    assert seen.loaded and seen.scripted == 1
    with watch_weights() as seen:
        nn.Linear(2, 2).load_state_dict({"other": torch.zeros(1)}, strict=False)
        torch.load(path, weights_only=True)  # read, never given to a module
    assert not seen.loaded and seen.sources == [str(path)]
    assert (torch.load, torch.jit.load, torch.nn.Module.load_state_dict) == originals

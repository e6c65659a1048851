"""``modelhub outdated``: metadata-only questions to each hub about every pulled model."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

import pytest

from modelhub.cli.main import main
from modelhub.errors import EXIT_CHANGES
from modelhub.outdated import Recorded, check, check_store, exit_code
from modelhub.refs import parse
from modelhub.store import Store
from tests.support.httpserver import HTTPTestServer
from tests.test_sync import HF, ONNX, TFHUB, Upstream
from tests.test_sync import upstream as upstream  # the fixture

MODEL_GET = ("/onnx/mlp-", "/resolve/", "tf-hub-format", "/models/")


def _outdated(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict]:
    capsys.readouterr()
    code = main(["outdated", *args, "--json"])
    return code, json.loads(capsys.readouterr().out)


def _pull_all(upstream: Upstream, tmp_path: Path) -> None:
    assert main(["sync", str(upstream.toml(tmp_path / "project"))]) == 0


def test_nothing_changed_is_zero_with_metadata_requests_only(
    upstream: Upstream, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _pull_all(upstream, tmp_path)
    before_mirror, before_files = len(upstream.mirror.requests), len(upstream.files.requests)
    code, doc = _outdated(capsys)
    assert code == 0, doc
    states = {m["ref"]: m["state"] for m in doc["models"]}
    assert set(states.values()) == {"current"}, states
    assert len(states) == 12
    new = upstream.mirror.requests[before_mirror:]
    # One zoo manifest for all onnx: models, one model_info per hf: repo, one HEAD per handle.
    assert sum(p.endswith("ONNX_HUB_MANIFEST.json") for _, p in new) == 1
    assert sorted(p for _, p in new if p.startswith("/hf/")) == sorted(
        f"/hf/api/models/{parse(r).name}/revision/main" for r in HF
    )
    assert all(m == "HEAD" for m, p in new if "tf-hub-format" in p)
    assert not [p for m, p in new if m == "GET" and any(s in p for s in MODEL_GET[1:3])]
    file_requests = upstream.files.requests[before_files:]
    assert {r.method for r in file_requests} == {"HEAD"} and len(file_requests) == 3
    assert main(["outdated"]) == 0
    assert "0 of 12 model(s) changed upstream" in capsys.readouterr().err


def test_changed_models_are_listed_and_exit_one(
    upstream: Upstream, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _pull_all(upstream, tmp_path)
    upstream.reimport(ONNX[3], seed=31)
    upstream.reimport(HF[0], seed=32)
    upstream.reimport(TFHUB[1], seed=33)
    upstream.files.add("/models/u0.onnx", b"another model entirely")
    url_ref = parse(upstream.url_ref("/models/u0.onnx")).canonical
    changed = {ONNX[3], HF[0], TFHUB[1], url_ref}
    code, doc = _outdated(capsys)
    assert code == EXIT_CHANGES
    by_ref = {m["ref"]: m for m in doc["models"]}
    assert {r for r, m in by_ref.items() if m["state"] == "changed"} == changed
    assert by_ref[HF[0]]["current"] == upstream.seed.require(parse(HF[0])).revision
    assert by_ref[ONNX[3]]["how"] == "zoo manifest model_sha"
    assert by_ref[url_ref]["current"] == hashlib.sha256(b"another model entirely").hexdigest()
    # The table lists only what is not current.
    assert main(["outdated"]) == EXIT_CHANGES
    out = capsys.readouterr().out
    assert sorted(line.split()[0] for line in out.splitlines()[1:]) == sorted(changed)
    # Named models only.
    code, doc = _outdated(capsys, ONNX[0], HF[0])
    assert code == EXIT_CHANGES and [m["ref"] for m in doc["models"]] == [ONNX[0], HF[0]]
    code, doc = _outdated(capsys, ONNX[0])
    assert code == 0


def test_gone_upstream_is_missing(
    upstream: Upstream, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _pull_all(upstream, tmp_path)
    with upstream.seed.lock(parse(HF[1])):
        upstream.seed.remove(parse(HF[1]))
    code, doc = _outdated(capsys, HF[1], ONNX[0])
    assert code == EXIT_CHANGES
    assert [m["state"] for m in doc["models"]] == ["missing", "current"]


def test_unreachable_hub_is_six(
    upstream: Upstream,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _pull_all(upstream, tmp_path)
    upstream.mirror.stop()
    code, doc = _outdated(capsys, ONNX[0], HF[0], TFHUB[0])
    assert code == 6
    assert {m["state"] for m in doc["models"]} == {"unreachable"}
    # A change seen on a reachable hub still answers the question: EXIT_CHANGES.
    upstream.files.add("/models/u1.tflite", b"new bytes")
    code, _ = _outdated(capsys, ONNX[0], upstream.url_ref("/models/u1.tflite"))
    assert code == EXIT_CHANGES
    monkeypatch.setenv("MODELHUB_OFFLINE", "1")
    code, doc = _outdated(capsys, upstream.url_ref("/models/u1.tflite"))
    assert code == 6 and doc["models"][0]["state"] == "unreachable"


def test_not_pulled_is_not_found(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["outdated", "onnx:never-pulled"]) == 3
    assert main(["outdated"]) == 0  # an empty store: nothing changed


def test_url_validators_recorded_at_pull(
    upstream: Upstream, tmp_path: Path, store_root: Path
) -> None:
    ref = upstream.url_ref("/models/u2.bin")
    assert main(["pull", ref]) == 0
    manifest = Store(store_root).require(parse(ref))
    [(rel, vals)] = manifest.details["validators"].items()
    assert rel == manifest.files[0].path
    assert vals["etag"] == f'"{manifest.files[0].sha256}"' and vals["last_modified"]


@pytest.mark.parametrize(
    ("headers", "change", "how", "state"),
    [
        ({"ETag": '"v1-opaque"'}, {"ETag": '"v2-opaque"'}, "ETag", "changed"),
        ({"ETag": '"v1-opaque"'}, {"ETag": '"v1-opaque"'}, "ETag", "current"),
        (
            {"ETag": "", "Last-Modified": "Mon, 01 Jan 2024 00:00:00 GMT"},
            {"ETag": "", "Last-Modified": "Tue, 02 Jan 2024 00:00:00 GMT"},
            "Last-Modified",
            "changed",
        ),
        ({"ETag": "", "Last-Modified": ""}, {"ETag": "", "Last-Modified": ""}, "HEAD", "unknown"),
    ],
)
def test_url_http_validators(
    store_root: Path,
    capsys: pytest.CaptureFixture[str],
    headers: dict[str, str],
    change: dict[str, str],
    how: str,
    state: str,
) -> None:
    with HTTPTestServer() as server:
        server.add("/w/model.tflite", b"weights v1", headers)
        ref = f"url:{server.url}/w/model.tflite"
        assert main(["pull", ref]) == 0
        server.add("/w/model.tflite", b"weights v2", change)
        code, doc = _outdated(capsys)
        [status] = doc["models"]
        assert (status["state"], status["how"]) == (state, how)
        assert code == (EXIT_CHANGES if state == "changed" else 0)


def test_digest_header_and_no_head(store_root: Path) -> None:
    """A server without HEAD (405): one byte of a GET; a sha-256 Digest is compared."""
    body = b"served with a digest"
    digest = base64.b64encode(hashlib.sha256(body).digest()).decode()
    with HTTPTestServer() as server:
        server.add("/m.tflite", body, {"ETag": "", "Repr-Digest": f"sha-256=:{digest}:"})
        ref = f"url:{server.url}/m.tflite"
        assert main(["pull", ref]) == 0
        rec = Recorded.from_manifest(Store(store_root).require(parse(ref)))
        status = check(rec, Store(store_root))
        assert (status.state, status.how) == ("current", "Digest sha-256")
        server.faults.append(_status_fault(405))
        assert check(rec, Store(store_root)).state == "current"
        assert [r.method for r in server.requests[-2:]] == ["HEAD", "GET"]
        assert server.requests[-1].headers["range"] == "bytes=0-0"


def _status_fault(status: int) -> object:
    from tests.support.httpserver import Fault

    return Fault("status", status=status)


def test_torchvision_weights_name(store_root: Path) -> None:
    """torch: the file name of the weights enum member now vs the one pulled (no request)."""
    tvm = pytest.importorskip("torchvision.models")
    weights = tvm.get_model_weights("resnet18")["DEFAULT"]
    name = weights.url.rsplit("/", 1)[1]
    ref = parse("torch:resnet18")
    same = Recorded(ref, "x", ((f"pytorch/{name}", "0" * 64),))
    other = Recorded(ref, "x", (("pytorch/resnet18-00000000.pth", "0" * 64),))
    store = Store(store_root)
    assert check(same, store).state == "current"
    assert check(other, store).state == "changed"


def test_exit_code_rules(upstream: Upstream, tmp_path: Path) -> None:
    _pull_all(upstream, tmp_path)
    statuses = check_store([ONNX[0], HF[0]])
    assert exit_code(statuses) == 0 and all(s.state == "current" for s in statuses)
    assert exit_code([]) == 0

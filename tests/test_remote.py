"""The remote tier against a real S3 API on 127.0.0.1 (moto's server mode, tests/support/s3.py).

"Nodes" are separate local stores; where the guarantee is about processes (two nodes, concurrent
publication, kill -9, exit codes), each node is a ``python -m modelhub`` process. The hub is a
modelhub mirror (``BackgroundMirror``) serving an ONNX zoo, stopped to prove that a node got a
model from S3 and not from the hub.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from modelhub.errors import (
    AuthError,
    HashMismatchError,
    NotFoundError,
    OfflineError,
    StoreConflictError,
    UsageError,
)
from modelhub.importer import import_path
from modelhub.mirror.app import BackgroundMirror
from modelhub.pipeline import pull
from modelhub.refs import ModelRef, parse
from modelhub.remote import RemoteStore, parse_url
from modelhub.remote.lease import Lease
from modelhub.store import Store
from modelhub.store.layout import lock_path, manifest_path
from tests.support.onnx_models import make_mlp
from tests.support.s3 import DUMMY_KEY, DUMMY_SECRET, MotoS3, running_moto, use_new_bucket

pytest.importorskip("s3fs")

MODEL = "onnx:tiny-mlp"


# --- fixtures and helpers -----------------------------------------------------------------------
@pytest.fixture(scope="session")
def moto_s3() -> Iterator[MotoS3]:
    """One moto S3 server on 127.0.0.1 for the session (each test has its own bucket)."""
    with running_moto() as server:
        yield server


@pytest.fixture
def remote_url(moto_s3: MotoS3, monkeypatch: pytest.MonkeyPatch) -> str:
    """``s3://<fresh bucket>/shared``, with the standard AWS variables pointing at moto."""
    return use_new_bucket(moto_s3, monkeypatch)


def seed(store: Store, ref: str, src: Path) -> None:
    """Import ``src`` as ``ref`` (under its lock, as the CLI does)."""
    mref = parse(ref)
    with store.lock(mref):
        import_path(store, src, mref)


def random_file(path: Path, size: int, seed_: int) -> Path:
    import random

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(random.Random(seed_).randbytes(size))
    return path


def node(root: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """Start ``python -m modelhub ARGS`` as a node whose local store is ``root``."""
    full = dict(os.environ)
    full["MODELHUB_PATH"] = str(root)
    full.update(env or {})
    return subprocess.Popen(
        [sys.executable, "-m", "modelhub", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=full,
    )


def run(root: Path, *args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    proc = node(root, *args, env=env)
    out, err = proc.communicate(timeout=240)
    return proc.returncode, out, err


def keys(moto: MotoS3, url: str) -> list[str]:
    bucket, _, prefix = url[len("s3://") :].partition("/")
    resp = moto.client().list_objects_v2(Bucket=bucket, Prefix=prefix)
    return sorted(o["Key"][len(prefix) + 1 :] for o in resp.get("Contents", []))


def manifest_keys(moto: MotoS3, url: str) -> list[str]:
    return [k for k in keys(moto, url) if k.startswith(".modelhub/manifests/")]


def local_manifest(root: Path, ref: str) -> bytes:
    return (root / manifest_path(parse(ref))).read_bytes()


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[BackgroundMirror]:
    """The upstream stand-in: a mirror serving an ONNX zoo with ``onnx:tiny-mlp``."""
    upstream = Store(tmp_path / "upstream")
    seed(upstream, MODEL, make_mlp(tmp_path / "src" / "tiny-mlp-13.onnx", seed=7, opset=13))
    mirror = BackgroundMirror(upstream.root, record=True)
    mirror.start()
    try:
        yield mirror
    finally:
        mirror.stop()


def model_gets(mirror: BackgroundMirror) -> list[str]:
    return [p for m, p in mirror.requests if m == "GET" and p.endswith(".onnx")]


# --- URL, probe ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("url", "bucket", "prefix"),
    [("s3://models", "models", ""), ("s3://my.bucket-1/team/zoo/", "my.bucket-1", "team/zoo")],
)
def test_parse_url(url: str, bucket: str, prefix: str) -> None:
    assert parse_url(url) == (bucket, prefix)


@pytest.mark.parametrize(
    "url",
    ["models", "gs://models", "s3://", "s3://ab", "s3://Upper", "s3://b-1/../x", "s3://b-1/a//b"],
)
def test_parse_url_rejects(url: str) -> None:
    with pytest.raises(UsageError):
        RemoteStore(url)


def test_moto_honours_conditional_writes(remote_url: str) -> None:
    assert RemoteStore(remote_url).conditional_writes() is True


# --- publish / fetch in one process -------------------------------------------------------------
def test_publish_then_fetch_identical(remote_url: str, moto_s3: MotoS3, tmp_path: Path) -> None:
    a, b = Store(tmp_path / "a"), Store(tmp_path / "b")
    seed(a, MODEL, make_mlp(tmp_path / "src" / "tiny-mlp-13.onnx", seed=1))
    shared = RemoteStore(remote_url)
    ref = parse(MODEL)

    done = shared.publish_model(ref, a)
    assert done.created and done.uploaded == ["onnx/tiny-mlp-13.onnx"]
    # Same layout as the local store; no lease left behind.
    assert keys(moto_s3, remote_url) == [manifest_path(ref), "onnx/tiny-mlp-13.onnx"]
    bucket, prefix = parse_url(remote_url)
    head = moto_s3.client().head_object(Bucket=bucket, Key=f"{prefix}/onnx/tiny-mlp-13.onnx")
    assert head["Metadata"]["sha256"] == done.manifest.files[0].sha256

    again = shared.publish_model(ref, a)
    assert not again.created and again.uploaded == [] and again.manifest == done.manifest
    assert [m.ref for m in shared.list_models()] == [MODEL]

    fetched = shared.fetch_model(ref, b)
    assert fetched == done.manifest
    assert local_manifest(b.root, MODEL) == local_manifest(a.root, MODEL)
    assert (b.root / "onnx/tiny-mlp-13.onnx").read_bytes() == (
        a.root / "onnx/tiny-mlp-13.onnx"
    ).read_bytes()
    assert b.verify(fetched) == []
    assert list((b.root / ".modelhub" / "tmp").rglob("*.part")) == []
    assert shared.fetch_model(parse("onnx:absent"), b) is None


def test_fetch_rejects_tampered_object(remote_url: str, moto_s3: MotoS3, tmp_path: Path) -> None:
    a, b = Store(tmp_path / "a"), Store(tmp_path / "b")
    seed(a, MODEL, make_mlp(tmp_path / "src" / "tiny-mlp-13.onnx", seed=1))
    shared = RemoteStore(remote_url)
    shared.publish_model(parse(MODEL), a)
    bucket, prefix = parse_url(remote_url)
    size = (a.root / "onnx/tiny-mlp-13.onnx").stat().st_size
    moto_s3.client().put_object(
        Bucket=bucket, Key=f"{prefix}/onnx/tiny-mlp-13.onnx", Body=b"x" * size
    )
    with pytest.raises(HashMismatchError):
        shared.fetch_model(parse(MODEL), b)
    assert b.manifest(parse(MODEL)) is None
    assert not (b.root / "onnx/tiny-mlp-13.onnx").exists()
    assert list((b.root / ".modelhub" / "tmp").rglob("*.part")) == []


def test_publish_refuses_damaged_local_copy(
    remote_url: str, moto_s3: MotoS3, tmp_path: Path
) -> None:
    a = Store(tmp_path / "a")
    seed(a, MODEL, make_mlp(tmp_path / "src" / "tiny-mlp-13.onnx", seed=1))
    target = a.root / "onnx/tiny-mlp-13.onnx"
    target.write_bytes(target.read_bytes()[:-1] + b"\x00")
    from modelhub.errors import IntegrityError

    with pytest.raises(IntegrityError, match="damaged"):
        RemoteStore(remote_url).publish_model(parse(MODEL), a)
    assert keys(moto_s3, remote_url) == []


# --- the pipeline: local -> remote -> hub -------------------------------------------------------
def test_pull_publishes_and_next_node_skips_the_hub(
    remote_url: str, hub: BackgroundMirror, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MODELHUB_MIRROR", hub.url)
    monkeypatch.setenv("MODELHUB_REMOTE", remote_url)
    first = pull(MODEL, store=Store(tmp_path / "a"))
    assert len(model_gets(hub)) == 1
    assert [m.ref for m in RemoteStore(remote_url).list_models()] == [MODEL]

    second = pull(MODEL, store=Store(tmp_path / "b"))
    assert len(model_gets(hub)) == 1  # from the remote, not the hub
    assert second.manifest == first.manifest
    assert second.path.read_bytes() == first.path.read_bytes()

    # An explicit empty remote turns the tier off even with MODELHUB_REMOTE set.
    pull(MODEL, store=Store(tmp_path / "c"), remote="")
    assert len(model_gets(hub)) == 2


def test_offline_pull_never_touches_the_remote(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An unreachable remote: any attempt would fail with NetworkError, not OfflineError.
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    with pytest.raises(OfflineError):
        pull(MODEL, store=Store(tmp_path / "a"), remote="s3://nowhere-bucket", offline=True)


def test_mirror_into_copies_every_model(remote_url: str, tmp_path: Path) -> None:
    a, c = Store(tmp_path / "a"), Store(tmp_path / "c")
    seed(a, MODEL, make_mlp(tmp_path / "src" / "tiny-mlp-13.onnx", seed=1))
    seed(a, "onnx:other-mlp", make_mlp(tmp_path / "src" / "other-mlp-13.onnx", seed=2))
    shared = RemoteStore(remote_url)
    for ref in (MODEL, "onnx:other-mlp"):
        shared.publish_model(parse(ref), a)
    assert [m.ref for m in shared.mirror_into(c)] == ["onnx:other-mlp", MODEL]
    assert sorted(m.ref for _, m in c.manifests()) == ["onnx:other-mlp", MODEL]
    assert all(c.verify(m) == [] for _, m in c.manifests())


# --- two nodes, two processes -------------------------------------------------------------------
def test_two_nodes_share_one_remote(
    remote_url: str, hub: BackgroundMirror, tmp_path: Path, moto_s3: MotoS3
) -> None:
    env = {"MODELHUB_MIRROR": hub.url, "MODELHUB_REMOTE": remote_url}
    code, out_a, err = run(tmp_path / "node-a", "pull", MODEL, env=env)
    assert code == 0, err
    assert len(model_gets(hub)) == 1
    assert manifest_keys(moto_s3, remote_url) == [manifest_path(parse(MODEL))]

    hub.stop()  # the hub is gone
    code, _, err = run(tmp_path / "node-c", "pull", MODEL, env={"MODELHUB_MIRROR": hub.url})
    assert code == 6, err  # without the remote, nothing to pull from

    code, out_b, err = run(
        tmp_path / "node-b", "pull", MODEL, "--remote", remote_url, env={"MODELHUB_MIRROR": hub.url}
    )
    assert code == 0, err
    path_a, path_b = Path(out_a.strip()), Path(out_b.strip())
    assert path_b.is_relative_to(tmp_path / "node-b")
    assert path_b.read_bytes() == path_a.read_bytes()
    assert local_manifest(tmp_path / "node-b", MODEL) == local_manifest(tmp_path / "node-a", MODEL)
    code, out, err = run(tmp_path / "node-b", "verify", MODEL)
    assert code == 0 and out.startswith("ok"), err


def test_two_nodes_pull_at_once_one_manifest(
    remote_url: str, hub: BackgroundMirror, tmp_path: Path, moto_s3: MotoS3
) -> None:
    env = {"MODELHUB_MIRROR": hub.url, "MODELHUB_REMOTE": remote_url}
    procs = [node(tmp_path / f"node-{i}", "pull", MODEL, env=env) for i in range(2)]
    results = [(*p.communicate(timeout=240), p.returncode) for p in procs]
    assert [code for _, _, code in results] == [0, 0], [err for _, err, _ in results]
    assert manifest_keys(moto_s3, remote_url) == [manifest_path(parse(MODEL))]
    assert not any(k.startswith(".modelhub/locks/") for k in keys(moto_s3, remote_url))
    check = Store(tmp_path / "reader")
    fetched = RemoteStore(remote_url).fetch_model(parse(MODEL), check)
    assert fetched is not None and check.verify(fetched) == []


def test_concurrent_push_of_different_bytes_ends_with_one_consistent_model(
    remote_url: str, tmp_path: Path, moto_s3: MotoS3
) -> None:
    """Two nodes hold different bytes for the same references and push them at the same time:
    per reference one manifest, and its objects are exactly one node's bytes."""
    refs = [f"url:https://models.example/set/blob{i}.bin" for i in range(3)]
    for n in (0, 1):
        store = Store(tmp_path / f"node-{n}")
        for i, ref in enumerate(refs):
            seed(
                store, ref, random_file(tmp_path / f"src{n}" / f"blob{i}.bin", 6 << 20, 10 * n + i)
            )
    procs = [
        node(tmp_path / f"node-{n}", "push", *refs, env={"MODELHUB_REMOTE": remote_url})
        for n in (0, 1)
    ]
    results = [(*p.communicate(timeout=240), p.returncode) for p in procs]
    assert [code for _, _, code in results] == [0, 0], [err for _, err, _ in results]
    created = sum(err.count(": published (") for _, err, _ in results)
    present = sum(err.count(": present on ") for _, err, _ in results)
    assert (created, present) == (3, 3)

    shared = RemoteStore(remote_url)
    assert len(manifest_keys(moto_s3, remote_url)) == 3
    assert not any(k.startswith(".modelhub/locks/") for k in keys(moto_s3, remote_url))
    reader = Store(tmp_path / "reader")
    for i, ref in enumerate(refs):
        fetched = shared.fetch_model(parse(ref), reader)
        assert fetched is not None and reader.verify(fetched) == []
        data = reader.abspath(fetched.files[0].path).read_bytes()
        assert data in {(tmp_path / f"src{n}" / f"blob{i}.bin").read_bytes() for n in (0, 1)}


def test_killed_publisher_leaves_nothing_visible(
    remote_url: str, tmp_path: Path, moto_s3: MotoS3
) -> None:
    ref = "url:https://models.example/big/weights.bin"
    a = Store(tmp_path / "node-a")
    seed(a, ref, random_file(tmp_path / "src" / "weights.bin", 96 << 20, 3))
    bucket, prefix = parse_url(remote_url)
    lock_key = f"{prefix}/{lock_path(parse(ref))}"
    proc = node(a.root, "push", ref, env={"MODELHUB_REMOTE": remote_url})
    client = moto_s3.client()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if "Contents" in client.list_objects_v2(Bucket=bucket, Prefix=lock_key):
            break
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.02)
    time.sleep(0.1)  # the lease is taken: the 96 MiB upload is starting
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL

    # The lease is still there (the publication was cut short) and no reader sees anything.
    assert lock_key[len(prefix) + 1 :] in keys(moto_s3, remote_url)
    assert manifest_keys(moto_s3, remote_url) == []
    shared = RemoteStore(remote_url, lease_seconds=1)
    assert shared.list_models() == []
    assert shared.fetch_model(parse(ref), Store(tmp_path / "reader")) is None
    code, out, err = run(tmp_path / "reader", "list", "--remote", remote_url)
    assert (code, out) == (0, ""), err

    # The next publisher takes the dead publisher's lease over and completes the model.
    started = time.monotonic()
    done = shared.publish_model(parse(ref), a)
    assert done.created and time.monotonic() - started >= 1
    reader = Store(tmp_path / "reader")
    fetched = shared.fetch_model(parse(ref), reader)
    assert fetched is not None and reader.verify(fetched) == []
    assert manifest_keys(moto_s3, remote_url) == [manifest_path(parse(ref))]
    assert lock_key[len(prefix) + 1 :] not in keys(moto_s3, remote_url)


# --- leases ---------------------------------------------------------------------------------
def _lease(url: str, ref: ModelRef, seconds: float) -> Lease:
    shared = RemoteStore(url)
    return Lease(shared.objects, lock_path(ref), ref, seconds=seconds, conditional=True, settle=0)


def test_live_lease_makes_others_wait(remote_url: str, tmp_path: Path) -> None:
    ref = parse(MODEL)
    a = Store(tmp_path / "a")
    seed(a, MODEL, make_mlp(tmp_path / "src" / "tiny-mlp-13.onnx", seed=1))
    holder = _lease(remote_url, ref, seconds=1.0)
    assert holder.acquire()
    results: list[object] = []

    def publish() -> None:
        try:
            results.append(RemoteStore(remote_url, lease_seconds=1.0).publish_model(ref, a))
        except BaseException as exc:
            results.append(exc)

    waiter = threading.Thread(target=publish)
    waiter.start()
    time.sleep(5)  # five lease periods: the heartbeat keeps the lease alive
    assert waiter.is_alive(), results
    assert RemoteStore(remote_url).manifest(ref) is None
    holder.release()
    waiter.join(30)
    assert not waiter.is_alive() and results[0].created


def test_lost_lease_is_detected(remote_url: str, moto_s3: MotoS3) -> None:
    ref = parse(MODEL)
    lease = _lease(remote_url, ref, seconds=0.4)
    assert lease.acquire()
    bucket, prefix = parse_url(remote_url)
    # Another node takes the lease over (as after a long stall of this one).
    moto_s3.client().put_object(Bucket=bucket, Key=f"{prefix}/{lock_path(ref)}", Body=b"theirs")
    assert lease.lost.wait(10)  # the next heartbeat finds the ETag changed
    with pytest.raises(StoreConflictError, match="took over"):
        lease.check()
    lease.release()
    # Not ours any more: left in place for its new owner.
    assert lock_path(ref) in keys(moto_s3, remote_url)


# --- services without conditional writes ------------------------------------------------------
def test_fallback_protocol_concurrent_publishers(
    remote_url: str, tmp_path: Path, moto_s3: MotoS3
) -> None:
    ref = parse("url:https://models.example/x/blob.bin")
    stores = [Store(tmp_path / f"n{i}") for i in range(3)]
    for i, store in enumerate(stores):
        seed(store, ref.canonical, random_file(tmp_path / f"src{i}" / "blob.bin", 2 << 20, i))
    results: list[object] = []
    errors: list[BaseException] = []

    def publish(store: Store) -> None:
        try:
            shared = RemoteStore(remote_url, conditional=False, settle=0.2, lease_seconds=2)
            results.append(shared.publish_model(ref, store))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=publish, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert sorted(r.created for r in results) == [False, False, True]
    assert len(manifest_keys(moto_s3, remote_url)) == 1
    reader = Store(tmp_path / "reader")
    fetched = RemoteStore(remote_url).fetch_model(ref, reader)
    assert fetched is not None and reader.verify(fetched) == []


# --- errors and credentials -------------------------------------------------------------------
def test_missing_bucket_is_not_found(remote_url: str, tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match="no such bucket"):
        RemoteStore("s3://modelhub-no-such-bucket").list_models()


def test_no_credentials_is_auth_error(
    remote_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    with pytest.raises(AuthError, match="no usable AWS credentials"):
        RemoteStore(remote_url).manifest(parse(MODEL))


def test_wrong_credentials_exit_4_one_line(
    remote_url: str, hub: BackgroundMirror, tmp_path: Path, moto_s3: MotoS3
) -> None:
    key, secret = moto_s3.iam_user()
    env = {"MODELHUB_MIRROR": hub.url, "MODELHUB_REMOTE": remote_url}
    with moto_s3.require_auth():
        cases = {
            "wrong secret": moto_s3.env(key, "wrong-" + secret[6:]),
            "unknown key": moto_s3.env("AKIAUNKNOWNKEY000000", secret),
        }
        for what, creds in cases.items():
            code, out, err = run(tmp_path / "node-x", "pull", MODEL, env={**env, **creds})
            assert code == 4, (what, err)
            assert out == "" and len(err.strip().splitlines()) == 1, err
            assert "credentials" in err and secret not in err and key not in err
            code, _, err = run(tmp_path / "node-x", "list", "--remote", env={**env, **creds})
            assert code == 4 and len(err.strip().splitlines()) == 1, err
        assert model_gets(hub) == []  # refused before the hub was asked

        good = moto_s3.env(key, secret)
        code, out, err = run(tmp_path / "node-a", "pull", MODEL, env={**env, **good})
        assert code == 0, err
        code, out, err = run(tmp_path / "node-a", "list", "--remote", env={**env, **good})
        assert code == 0 and out.startswith(MODEL), err
    # Credentials are never written: not in the local store, not on the remote.
    written = [p.read_bytes() for p in (tmp_path / "node-a").rglob("*") if p.is_file()]
    bucket, _ = parse_url(remote_url)
    client = moto_s3.client()
    for k in client.list_objects_v2(Bucket=bucket).get("Contents", []):
        written.append(client.get_object(Bucket=bucket, Key=k["Key"])["Body"].read())
    for blob in written:
        for value in (key, secret, DUMMY_KEY, DUMMY_SECRET):
            assert value.encode() not in blob


# --- the command line ---------------------------------------------------------------------------
def test_cli_push_and_list(
    remote_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], store_root: Path
) -> None:
    from modelhub.cli.main import main

    seed(Store(store_root), MODEL, make_mlp(tmp_path / "src" / "tiny-mlp-13.onnx", seed=1))
    assert main(["push", MODEL, "--remote", remote_url]) == 0
    out, err = capsys.readouterr()
    assert out.strip() == RemoteStore(remote_url).manifest_url(parse(MODEL))
    assert "published (1 object(s) uploaded)" in err
    assert main(["push", MODEL, "--remote", remote_url]) == 0
    assert "present" in capsys.readouterr().err

    assert main(["list", "--remote", remote_url, "--json"]) == 0
    import json

    [doc] = json.loads(capsys.readouterr().out)
    assert doc["ref"] == MODEL and doc["url"] == f"{remote_url}/onnx/tiny-mlp-13.onnx"
    assert main(["push", MODEL]) == 2  # no --remote, no MODELHUB_REMOTE
    assert "MODELHUB_REMOTE" in capsys.readouterr().err


def test_sync_remote_seeds_the_remote_from_a_workstation(
    remote_url: str, hub: BackgroundMirror, tmp_path: Path, moto_s3: MotoS3
) -> None:
    toml = tmp_path / "modelhub.toml"
    toml.write_text(f'[[model]]\nref = "{MODEL}"\n')
    workstation = tmp_path / "workstation"
    code, _, err = run(workstation, "pull", MODEL, env={"MODELHUB_MIRROR": hub.url})
    assert code == 0, err  # already in the local store: sync itself pulls nothing
    code, _, err = run(
        workstation, "sync", str(toml), "--remote", remote_url, env={"MODELHUB_MIRROR": hub.url}
    )
    assert code == 0, err
    assert f"{MODEL}: published on {remote_url}" in err
    assert manifest_keys(moto_s3, remote_url) == [manifest_path(parse(MODEL))]

    hub.stop()
    # A node syncing the same set (its own copy, no lock yet) gets it from the remote.
    (tmp_path / "node-set").mkdir()
    fresh = tmp_path / "node-set" / "modelhub.toml"
    fresh.write_text(toml.read_text())
    env = {"MODELHUB_MIRROR": hub.url, "MODELHUB_REMOTE": remote_url}
    code, _, err = run(tmp_path / "node", "sync", str(fresh), env=env)
    assert code == 0, err
    assert local_manifest(tmp_path / "node", MODEL) == local_manifest(workstation, MODEL)


def test_serve_a_remote_store(remote_url: str, tmp_path: Path) -> None:
    """``modelhub serve --root s3://...``: the remote's models, served by a node as the mirror."""
    a = Store(tmp_path / "a")
    seed(a, MODEL, make_mlp(tmp_path / "src" / "tiny-mlp-13.onnx", seed=4))
    RemoteStore(remote_url).publish_model(parse(MODEL), a)
    server = node(tmp_path / "edge", "serve", "--root", remote_url, "--port", "0")
    try:
        assert server.stdout is not None
        url = server.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:"), server.communicate(timeout=30)
        code, out, err = run(tmp_path / "client", "pull", MODEL, env={"MODELHUB_MIRROR": url})
        assert code == 0, err
        assert Path(out.strip()).read_bytes() == (a.root / "onnx/tiny-mlp-13.onnx").read_bytes()
    finally:
        server.send_signal(signal.SIGTERM)
        server.communicate(timeout=30)

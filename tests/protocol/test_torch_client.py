"""Protocol proof for torch.hub and torchvision: torch's own client and modelhub, against the
same recording server, ask for the same resources, and each finds the other's cache with no
request at all.

How torch's client reaches the recorder, patching nothing in torch: torch.hub names its hosts
in code (``https://github.com``, ``https://api.github.com``; torchvision's weights are
``https://download.pytorch.org/models/...``) and talks through ``urllib.request.urlopen``,
which honours ``https_proxy`` and verifies TLS with OpenSSL's default CA file, which
``SSL_CERT_FILE`` names. So the test sets those two environment variables: ``https_proxy``
points at :class:`TlsFront`, a CONNECT proxy on 127.0.0.1 that terminates TLS with a
certificate for those hosts signed by a throw-away CA (the one ``SSL_CERT_FILE`` names) and
passes each request on, in plain HTTP, to a :class:`~tests.support.recorder.Recorder` in front
of the mirror (``modelhub serve``), its path moved under the mirror's path for that host
(``github.com/X`` → ``/torch/github/X``, ``api.github.com/X`` → ``/torch/github-api/X``,
``download.pytorch.org/X`` → ``/torch/X``) exactly as ``MODELHUB_MIRROR`` moves modelhub's
endpoints. modelhub reaches the same recorder through ``MODELHUB_MIRROR``. The only other call
is ``urllib.request.install_opener(None)`` (public API) so that urllib builds its opener again
from the environment, as in a fresh process.

The entrypoint's own weights download (``torch.hub.load_state_dict_from_url`` of a
download.pytorch.org URL in hubconf.py, as torchvision's builders do) is torch's client in both
runs: modelhub runs the entrypoint when it stages the model, and sends torch.hub's downloads of
download.pytorch.org to the weights endpoint in force (here the mirror), so both ask the
recorder for the same ``/torch/models/<file>``.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import io
import os
import socket
import socketserver
import ssl
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
tvm = pytest.importorskip("torchvision.models")
pytest.importorskip("cryptography")

import modelhub  # noqa: E402
from modelhub.importer import import_path  # noqa: E402
from modelhub.mirror.app import BackgroundMirror  # noqa: E402
from tests.hubs.test_torch_hub import (  # noqa: E402
    HUBCONF,
    FakeGitHub,
    make_zipball,
    tiny_state,
)
from tests.support.httpserver import HTTPTestServer  # noqa: E402
from tests.support.recorder import Recorder  # noqa: E402
from tests.support.torchvision_models import NAME as TINYNET  # noqa: E402
from tests.support.torchvision_models import register  # noqa: E402

HOSTS = {
    "github.com": "/torch/github",
    "api.github.com": "/torch/github-api",
    "download.pytorch.org": "/torch",
}
REPO = "someone/tinyrepo"
SHAPE = {"input_shape": "1,3,16,16"}


# --- a TLS-terminating CONNECT proxy in front of the recorder -----------------------------------
def make_certs(folder: Path) -> tuple[Path, Path, Path]:
    """A throw-away CA (``ca.pem``) and a certificate for :data:`HOSTS` signed by it."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "modelhub test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "github.com")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName(h) for h in HOSTS]), critical=False
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    folder.mkdir(parents=True, exist_ok=True)
    ca_pem, cert_pem, key_pem = folder / "ca.pem", folder / "cert.pem", folder / "key.pem"
    ca_pem.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_pem.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    key_pem.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return ca_pem, cert_pem, key_pem


def _read_head(sock: socket.socket) -> bytes:
    """Bytes up to and including the blank line ending an HTTP head (GET/CONNECT: no body)."""
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(1)
        if not chunk:
            break
        head += chunk
    return head


class _Tunnel(socketserver.BaseRequestHandler):
    server: _FrontServer

    def handle(self) -> None:
        front = self.server.front
        line = _read_head(self.request).split(b"\r\n", 1)[0].decode("latin-1")
        method, _, target = line.partition(" ")
        host = target.split(" ", 1)[0].rsplit(":", 1)[0]
        if method != "CONNECT" or host not in HOSTS:
            front.refused.append(line)
            self.request.sendall(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
            return
        self.request.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
        with front.context.wrap_socket(self.request, server_side=True) as tls:
            head = _read_head(tls)
            if not head:
                return
            first, _, rest = head.partition(b"\r\n")
            verb, path, version = first.decode("latin-1").split(" ")
            moved = f"{verb} {HOSTS[host]}{path} {version}\r\n".encode("latin-1")
            with socket.create_connection(front.upstream) as up:
                up.sendall(moved + rest)
                while data := up.recv(1 << 16):
                    tls.sendall(data)


class _FrontServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    front: TlsFront


class TlsFront:
    """``https_proxy`` for torch's client: CONNECT to :data:`HOSTS` only, TLS ended here with
    the test CA's certificate, each request passed to ``upstream`` (host, port) in plain HTTP
    with its path moved under the mirror's path for its host."""

    def __init__(self, upstream: tuple[str, int], cert: Path, key: Path) -> None:
        self.upstream = upstream
        self.refused: list[str] = []
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(cert, key)
        self._server = _FrontServer(("127.0.0.1", 0), _Tunnel)
        self._server.front = self
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> TlsFront:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


# --- the world: a mirror with the repository and the weights, a recorder, the front ----------
class World:
    """Everything a run needs, and how to switch between torch's and modelhub's side."""

    def __init__(self, tmp: Path, monkeypatch: pytest.MonkeyPatch, rec: Recorder) -> None:
        self.tmp, self.monkeypatch, self.rec = tmp, monkeypatch, rec

    def torch_home(self, name: str) -> Path:
        home = self.tmp / name
        self.monkeypatch.setenv("TORCH_HOME", str(home))
        urllib.request.install_opener(None)  # urllib reads the proxy variables again
        return home

    def store(self, name: str) -> Path:
        root = self.tmp / name
        self.monkeypatch.setenv("MODELHUB_PATH", str(root))
        return root

    def log(self) -> list[tuple[str, str, bool]]:
        self.rec.wait_idle()
        return [(r.method, r.target, r.authorization) for r in self.rec.log]


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    """A seed store holding someone/tinyrepo at branch main and tag v1.0 (pulled from a fake
    GitHub) and the weights its hubconf downloads, served by the mirror behind a recorder;
    torch's client sent there through :class:`TlsFront`, modelhub through MODELHUB_MIRROR."""
    for name in ("GITHUB_TOKEN", "TORCH_FORCE_WEIGHTS_ONLY_LOAD", "http_proxy", "HTTP_PROXY"):
        monkeypatch.delenv(name, raising=False)
    weights = io.BytesIO()
    torch.save(tiny_state(), weights)
    data = weights.getvalue()
    weights_name = f"tinyhub-{hashlib.sha256(data).hexdigest()[:8]}.pth"
    weights_file = tmp_path / weights_name
    weights_file.write_bytes(data)
    hubconf = HUBCONF.format(weights_url=f"https://download.pytorch.org/models/{weights_name}")
    seed = modelhub.Store(tmp_path / "seed")
    import_path(seed, weights_file, modelhub.parse("torch:tinyhub"))
    tiny = register()
    tinynet_file = tmp_path / tiny.filename
    tinynet_file.write_bytes(tiny.data)
    import_path(seed, tinynet_file, modelhub.parse(f"torch:{TINYNET}"))
    with HTTPTestServer() as server, monkeypatch.context() as scoped:
        hub = FakeGitHub(server, *REPO.split("/"))
        zipball = make_zipball(*REPO.split("/"), {"hubconf.py": hubconf})
        hub.add_ref("main", zipball)
        hub.add_ref("v1.0", zipball, kind="tag")
        scoped.setenv("MODELHUB_GITHUB_URL", server.url)
        scoped.setenv("MODELHUB_GITHUB_API_URL", hub.api)
        scoped.setenv("TORCH_HOME", str(tmp_path / "seed-torch"))
        for ref in (f"torch:{REPO}/tiny", f"torch:{REPO}:v1.0/tiny"):
            modelhub.pull(ref, stage="none", store=seed, options={"trust": True})
    ca, cert, key = make_certs(tmp_path / "tls")
    with BackgroundMirror(seed.root) as url, Recorder(url) as rec:
        origin = rec.origin.removeprefix("http://")
        host, port = origin.rsplit(":", 1)
        with TlsFront((host, int(port)), cert, key) as front:
            for name in ("https_proxy", "HTTPS_PROXY"):
                monkeypatch.setenv(name, front.url)
            monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
            monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
            monkeypatch.setenv("SSL_CERT_FILE", str(ca))
            monkeypatch.setenv("MODELHUB_MIRROR", rec.origin)
            try:
                yield World(tmp_path, monkeypatch, rec)
            finally:
                urllib.request.install_opener(None)
            # Other libraries may use the proxy too (onnxruntime's telemetry does); torch's
            # hosts must all have been routed.
            lost = [line for line in front.refused if "github" in line or "pytorch" in line]
            assert lost == [], "torch's client asked a host the test does not route"


def _weights_equal(net: object) -> None:
    expected = tiny_state()
    state = net.state_dict()  # type: ignore[attr-defined]
    assert all(torch.equal(state[k], v) for k, v in expected.items())


def _torch_hub_load(github: str, trust: object = True) -> object:
    with contextlib.redirect_stdout(io.StringIO()):
        return torch.hub.load(github, "tiny", source="github", trust_repo=trust, pretrained=True)


# --- the proofs ---------------------------------------------------------------------------------
@pytest.mark.parametrize("token", [None, "ghp_test_token"])
def test_torch_hub_and_modelhub_ask_the_same_and_share_caches(
    world: World, token: str | None
) -> None:
    if token:
        world.monkeypatch.setenv("GITHUB_TOKEN", token)
    # 1. torch.hub.load, no ref (probe main), trusted as torch.hub.load(trust_repo=True) does.
    torch_home = world.torch_home("torch-side")
    net = _torch_hub_load(REPO)
    _weights_equal(net)
    by_torch = world.log()
    paths = [target for _, target, _ in by_torch]
    assert paths[:3] == [
        "/torch/github/someone/tinyrepo/tree/main/",
        "/torch/github-api/repos/someone/tinyrepo/branches?per_page=100&page=1",
        "/torch/github/someone/tinyrepo/zipball/main",
    ]
    assert paths[3].startswith("/torch/models/tinyhub-")
    assert [auth for _, _, auth in by_torch] == [False, bool(token), False, False]
    # 2. modelhub, same reference and arguments, its own TORCH_HOME and store.
    world.rec.clear()
    modelhub_home = world.torch_home("modelhub-side")
    world.store("modelhub-store")
    model = modelhub.pull(
        f"torch:{REPO}/tiny", options={"trust": True, "hub_args": {"pretrained": True}, **SHAPE}
    )
    assert model.manifest.staged[0].details["weights"] == "loaded"
    assert world.log() == by_torch
    # 3. torch's cache → modelhub: torch's folder and checkpoint, torch's trusted_list; no request.
    world.rec.clear()
    world.torch_home("torch-side")
    world.store("second-store")
    again = modelhub.pull(f"torch:{REPO}:main/tiny", options={"hub_args": {"pretrained": True}})
    assert world.log() == []
    assert again.manifest.details["zipball_from"] == "torch.hub cache"
    assert again.manifest.details["trusted_by"] == "trusted_list"
    assert again.manifest.staged[0].details["weights"] == "loaded"
    # 4. modelhub's cache → torch.hub.load: trusted (modelhub wrote trusted_list), no request.
    world.torch_home("modelhub-side")
    assert (modelhub_home / "hub" / "trusted_list").read_text().splitlines() == ["someone_tinyrepo"]
    _weights_equal(_torch_hub_load(f"{REPO}:main", trust="check"))
    assert world.log() == []
    assert sorted(p.name for p in (torch_home / "hub").iterdir()) == sorted(
        p.name for p in (modelhub_home / "hub").iterdir()
    )


def test_a_tag_is_checked_through_the_same_api_pages(world: World) -> None:
    world.torch_home("torch-side")
    _weights_equal(_torch_hub_load(f"{REPO}:v1.0"))
    by_torch = world.log()
    assert [t for _, t, _ in by_torch][:4] == [
        "/torch/github-api/repos/someone/tinyrepo/branches?per_page=100&page=1",
        "/torch/github-api/repos/someone/tinyrepo/branches?per_page=100&page=2",
        "/torch/github-api/repos/someone/tinyrepo/tags?per_page=100&page=1",
        "/torch/github/someone/tinyrepo/zipball/v1.0",
    ]
    world.rec.clear()
    world.torch_home("modelhub-side")
    world.store("modelhub-store")
    model = modelhub.pull(
        f"torch:{REPO}:v1.0/tiny", options={"trust": True, "hub_args": {"pretrained": True}}
    )
    assert model.manifest.details["ref_kind"] == "tag"
    assert world.log() == by_torch


def test_torchvision_weights_the_same_requests_and_caches(world: World) -> None:
    """torchvision's builder (``Weights.get_state_dict`` → ``load_state_dict_from_url(url,
    check_hash=True)`` on download.pytorch.org) and ``modelhub pull torch:NAME``."""
    tiny = register()
    torch_home = world.torch_home("torch-side")
    with contextlib.redirect_stderr(io.StringIO()):
        tvm.get_model(TINYNET, weights="DEFAULT")
    by_torch = world.log()
    assert by_torch == [("GET", f"/torch/models/{tiny.filename}", False)]
    world.rec.clear()
    modelhub_home = world.torch_home("modelhub-side")
    world.store("modelhub-store")
    modelhub.pull(f"torch:{TINYNET}", stage="none")
    assert world.log() == by_torch
    # Each side's checkpoints serve the other, with no request.
    world.rec.clear()
    world.torch_home("torch-side")
    world.store("second-store")
    again = modelhub.pull(f"torch:{TINYNET}", stage="none")
    assert again.manifest.details["cache_hit"] is True
    world.torch_home("modelhub-side")
    tvm.get_model(TINYNET, weights="DEFAULT")
    assert world.log() == []
    for home in (torch_home, modelhub_home):
        assert (home / "hub" / "checkpoints" / tiny.filename).read_bytes() == tiny.data
    assert os.environ["TORCH_HOME"] == str(modelhub_home)

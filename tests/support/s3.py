"""A real S3 API on 127.0.0.1 for the remote-store tests: moto's server mode, random port.

``moto.server.ThreadedMotoServer`` is moto's own HTTP server (werkzeug) in a daemon thread: every
request goes over a loopback socket, signed by botocore, exactly as it would to AWS. Nothing is
patched in the client. moto keeps its state per process, so each test gets its own bucket.

Credentials: with authentication off (the default) moto accepts any signed request, so the
fixtures set dummy AWS keys. :meth:`MotoS3.require_auth` switches moto's IAM authentication on
(``POST /moto-api/reset-auth``, what ``set_initial_no_auth_action_count(0)`` does in server
mode): from then on only access keys created in moto's IAM, with a policy allowing S3, pass.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

REGION = "us-east-1"
DUMMY_KEY = "AKIAMODELHUBTESTKEY0"
DUMMY_SECRET = "modelhub-test-secret-not-a-real-one-000"
# Everything of the AWS environment that could leak in from the developer's machine.
_AWS_ENV = (
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_ROLE_ARN",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_ENDPOINT_URL_S3",
    "AWS_REGION",
)


@dataclass
class MotoS3:
    """A running moto server: its endpoint URL and helpers to drive it."""

    server: Any
    endpoint: str

    def client(self, key: str = DUMMY_KEY, secret: str = DUMMY_SECRET) -> Any:
        """A boto3 S3 client for the server (test set-up and inspection only)."""
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name=REGION,
            aws_access_key_id=key,
            aws_secret_access_key=secret,
        )

    def env(self, key: str = DUMMY_KEY, secret: str = DUMMY_SECRET) -> dict[str, str]:
        """The standard AWS variables that point botocore (in any process) at the server."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": key,
            "AWS_SECRET_ACCESS_KEY": secret,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        }

    def new_bucket(self) -> str:
        """Create a bucket with a unique name; return it."""
        name = f"modelhub-{uuid.uuid4().hex[:16]}"
        self.client().create_bucket(Bucket=name)
        return name

    def _reset_auth(self, count: str) -> None:
        # Not form-encoded: moto reads the raw body as the number.
        request = urllib.request.Request(
            f"{self.endpoint}/moto-api/reset-auth",
            data=count.encode(),
            method="POST",
            headers={"Content-Type": "application/octet-stream"},
        )
        with urllib.request.urlopen(request, timeout=10) as resp:
            resp.read()

    def iam_user(self) -> tuple[str, str]:
        """Create an IAM user allowed s3:* (while auth is still off); return (key, secret)."""
        import boto3

        iam = boto3.client(
            "iam",
            endpoint_url=self.endpoint,
            region_name=REGION,
            aws_access_key_id=DUMMY_KEY,
            aws_secret_access_key=DUMMY_SECRET,
        )
        name = f"node-{uuid.uuid4().hex[:8]}"
        iam.create_user(UserName=name)
        policy = {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}],
        }
        iam.put_user_policy(UserName=name, PolicyName="s3", PolicyDocument=json.dumps(policy))
        made = iam.create_access_key(UserName=name)["AccessKey"]
        return made["AccessKeyId"], made["SecretAccessKey"]

    @contextlib.contextmanager
    def require_auth(self) -> Iterator[None]:
        """Within the block, moto checks every signature against its IAM users."""
        self._reset_auth("0")
        try:
            yield
        finally:
            self._reset_auth("inf")


@contextlib.contextmanager
def running_moto() -> Iterator[MotoS3]:
    """moto's S3 server on 127.0.0.1, a random port, for the duration of the block."""
    pytest.importorskip("s3fs")
    server_mod = pytest.importorskip("moto.server")
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one access-log line per request
    server = server_mod.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield MotoS3(server, f"http://{host}:{port}")
    finally:
        server.stop()


def use_new_bucket(moto: MotoS3, monkeypatch: pytest.MonkeyPatch) -> str:
    """Point the AWS environment at ``moto`` with a fresh bucket; return ``s3://BUCKET/shared``."""
    for name in _AWS_ENV:
        monkeypatch.delenv(name, raising=False)
    for name, value in moto.env().items():
        monkeypatch.setenv(name, value)
    return f"s3://{moto.new_bucket()}/shared"

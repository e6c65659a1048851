"""HTTP semantics of file responses, and the guard: only manifest-listed files, ever."""

from __future__ import annotations

import email.utils
import time
from pathlib import Path

import pytest

from modelhub.mirror.http_files import parse_range
from modelhub.store import Manifest
from tests.support.mirror_fixtures import raw_request

WEIGHTS = "/torch/models/tiny-weights.pth"


@pytest.fixture
def weights(store_root: Path) -> bytes:
    return (store_root / "pytorch" / "tiny-weights.pth").read_bytes()


def test_get_and_head(mirror: str, weights: bytes, populated: dict[str, Manifest]) -> None:
    status, headers, body = raw_request(mirror, WEIGHTS)
    assert status == 200 and body == weights
    assert headers["content-length"] == str(len(weights))
    assert headers["etag"] == f'"{populated["torch"].files[0].sha256}"'
    assert headers["accept-ranges"] == "bytes"
    assert "last-modified" in headers
    status, head_headers, body = raw_request(mirror, WEIGHTS, "HEAD")
    assert status == 200 and body == b""
    assert head_headers["content-length"] == str(len(weights))
    assert head_headers["etag"] == headers["etag"]


def test_etag_is_stable_and_content_based(mirror: str, populated: dict[str, Manifest]) -> None:
    first = raw_request(mirror, WEIGHTS, "HEAD")[1]["etag"]
    time.sleep(0.01)
    assert raw_request(mirror, WEIGHTS, "HEAD")[1]["etag"] == first
    assert first == f'"{populated["torch"].files[0].sha256}"'


def test_range_requests(mirror: str, weights: bytes) -> None:
    size = len(weights)
    status, headers, body = raw_request(mirror, WEIGHTS, headers={"Range": "bytes=10-19"})
    assert status == 206 and body == weights[10:20]
    assert headers["content-range"] == f"bytes 10-19/{size}"
    assert headers["content-length"] == "10"
    status, headers, body = raw_request(mirror, WEIGHTS, headers={"Range": "bytes=100-"})
    assert status == 206 and body == weights[100:]
    status, headers, body = raw_request(mirror, WEIGHTS, headers={"Range": "bytes=-7"})
    assert status == 206 and body == weights[-7:]
    status, headers, body = raw_request(mirror, WEIGHTS, headers={"Range": f"bytes=0-{size * 2}"})
    assert status == 206 and body == weights
    # Unsatisfiable: 416 with the complete length, and no file content.
    status, headers, body = raw_request(mirror, WEIGHTS, headers={"Range": f"bytes={size}-"})
    assert status == 416 and headers["content-range"] == f"bytes */{size}"
    assert weights[:16] not in body
    # Several ranges or other units: ignored, full body.
    status, _, body = raw_request(mirror, WEIGHTS, headers={"Range": "bytes=0-1,5-6"})
    assert status == 200 and body == weights
    status, _, body = raw_request(mirror, WEIGHTS, headers={"Range": "items=0-1"})
    assert status == 200 and body == weights


def test_conditional_requests(mirror: str, weights: bytes) -> None:
    etag = raw_request(mirror, WEIGHTS, "HEAD")[1]["etag"]
    status, headers, body = raw_request(mirror, WEIGHTS, headers={"If-None-Match": etag})
    assert status == 304 and body == b"" and headers["etag"] == etag
    status, _, body = raw_request(mirror, WEIGHTS, headers={"If-None-Match": f"W/{etag}"})
    assert status == 304
    status, _, body = raw_request(mirror, WEIGHTS, headers={"If-None-Match": '"other"'})
    assert status == 200 and body == weights
    future = email.utils.formatdate(time.time() + 3600, usegmt=True)
    status, _, body = raw_request(mirror, WEIGHTS, headers={"If-Modified-Since": future})
    assert status == 304 and body == b""
    status, _, _ = raw_request(mirror, WEIGHTS, headers={"If-Match": '"other"'})
    assert status == 412
    status, _, body = raw_request(mirror, WEIGHTS, headers={"If-Match": etag})
    assert status == 200 and body == weights


def test_if_range(mirror: str, weights: bytes) -> None:
    etag = raw_request(mirror, WEIGHTS, "HEAD")[1]["etag"]
    ranged = {"Range": "bytes=0-3"}
    status, _, body = raw_request(mirror, WEIGHTS, headers={**ranged, "If-Range": etag})
    assert status == 206 and body == weights[:4]
    # A validator that no longer matches: the whole (new) representation, not a splice.
    status, _, body = raw_request(mirror, WEIGHTS, headers={**ranged, "If-Range": '"stale"'})
    assert status == 200 and body == weights
    old = email.utils.formatdate(0, usegmt=True)
    status, _, body = raw_request(mirror, WEIGHTS, headers={**ranged, "If-Range": old})
    assert status == 200 and body == weights


def test_no_gzip_even_when_accepted(mirror: str, store_root: Path) -> None:
    status, headers, body = raw_request(
        mirror,
        "/hf/test-org/tiny-model/resolve/main/config.json",
        headers={"Accept-Encoding": "gzip, br"},
    )
    assert status == 200 and "content-encoding" not in headers
    assert body == (store_root / "huggingface/test-org/tiny-model/config.json").read_bytes()


HOSTILE = [
    "/torch/models/not-listed.pth",
    "/torch/models/../../.modelhub/manifests/torch",
    "/torch/models/..%2F..%2Fpytorch%2Ftiny-weights.pth",
    "/torch/models/%2e%2e/%2e%2e/pytorch/tiny-weights.pth",
    "/torch/models/%2E%2E%2f%2E%2E%2fetc%2fpasswd",
    "/omnihub/pytorch/../pytorch/tiny-weights.pth",
    "/omnihub/pytorch%2Ftiny-weights.pth",
    "/omnihub/pytorch/./tiny-weights.pth",
    "/omnihub/pytorch//tiny-weights.pth",
    "/omnihub/.modelhub/manifests",
    "/omnihub//etc/passwd",
    "/omnihub/%2Fetc%2Fpasswd",
    "/omnihub/pytorch/tiny-weights.pth%00",
    "/omnihub/pytorch%5c..%5ctiny-weights.pth",
    "/onnx/../pytorch/tiny-weights.pth",
    "/onnx/%2e%2e%2fpytorch%2ftiny-weights.pth",
    "/keras/tensorflow/keras-applications/x/..%2F..%2Fpytorch%2Ftiny-weights.pth",
    "/hf/test-org/tiny-model/resolve/main/../../../pytorch/tiny-weights.pth",
    "/hf/test-org/tiny-model/resolve/main/%2e%2e%2f%2e%2e%2fconfig.json",
    "/tfhub/test/tiny-sm/1/../../../pytorch/tiny-weights.pth",
    "/pytorch/tiny-weights.pth",
    "/etc/passwd",
    "//etc/passwd",
]


def test_paths_outside_manifests_are_404_without_content(mirror: str, weights: bytes) -> None:
    for target in HOSTILE:
        status, _, body = raw_request(mirror, target)
        assert status == 404, target
        assert weights[:64] not in body and b"root:" not in body, target
        assert len(body) < 200, target


def test_unlisted_file_in_store_is_not_served(mirror: str, store_root: Path) -> None:
    (store_root / "pytorch" / "planted.pth").write_bytes(b"secret")
    status, _, body = raw_request(mirror, "/torch/models/planted.pth")
    assert status == 404 and b"secret" not in body
    status, _, body = raw_request(mirror, "/omnihub/pytorch/planted.pth")
    assert status == 404 and b"secret" not in body


def test_file_changed_on_disk_is_not_served(mirror: str, store_root: Path) -> None:
    (store_root / "keras" / "tiny_weights_tf_dim_ordering.h5").write_bytes(b"truncated")
    status, _, body = raw_request(
        mirror, "/keras/tensorflow/keras-applications/tiny/tiny_weights_tf_dim_ordering.h5"
    )
    assert status == 404 and b"truncated" not in body


def test_read_only(mirror: str) -> None:
    for method in ("POST", "PUT", "DELETE"):
        status, _, body = raw_request(mirror, WEIGHTS, method)
        assert status == 405 and len(body) < 200


def test_plain_layouts(mirror: str, store_root: Path, weights: bytes) -> None:
    h5 = (store_root / "keras" / "tiny_weights_tf_dim_ordering.h5").read_bytes()
    status, _, body = raw_request(
        mirror, "/keras/tensorflow/keras-applications/tiny/tiny_weights_tf_dim_ordering.h5"
    )
    assert status == 200 and body == h5
    status, _, body = raw_request(mirror, "/omnihub/pytorch/tiny-weights.pth")
    assert status == 200 and body == weights
    status, _, body = raw_request(mirror, "/omnihub/huggingface/test-org/tiny-model/config.json")
    assert status == 200 and body.startswith(b"{")
    status, _, _ = raw_request(mirror, "/torch/github/owner/repo/zipball/main")
    assert status == 404


def test_parse_range_unit() -> None:
    assert parse_range("bytes=0-0", 10).count == 1  # type: ignore[union-attr]
    assert parse_range("bytes=9-", 10).start == 9  # type: ignore[union-attr]
    assert parse_range("bytes=10-", 10) is False
    assert parse_range("bytes=-0", 10) is False
    assert parse_range("bytes=-5", 0) is False
    assert parse_range("bytes=5-2", 10) is None
    assert parse_range("bytes=a-b", 10) is None
    assert parse_range("bytes=-", 10) is None

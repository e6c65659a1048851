"""sha256 of what huggingface_hub downloads, computed while the bytes stream through its client.

The SDK checks a downloaded file's size, not its content; modelhub checks the content against
the LFS sha256 the Hub lists. Reading every blob again once the SDK has written it costs
~0.3 s per GiB after the download. Instead, while a pull runs (:class:`Watch`), a response hook
on the SDK's shared httpx client (``huggingface_hub.get_session()``; ``event_hooks`` is httpx's
public extension point) wraps the body of every large ``GET`` answered ``200`` so that each
chunk the SDK reads is hashed as it passes, in the SDK's own download thread, while the next
chunk is on its way. The bytes pass through unchanged.

A body read to its end, of exactly its announced length, is *evidence*: "this process received
N bytes hashing to S while the watch was open". A pull accepts a blob named by the listed
sha256 S, of the listed size N, when its watch holds the evidence (S, N): the SDK names LFS
blobs by that sha256 and writes what it received into them, so no other bytes can be there
unless something changed the file since (which a re-read right after would not guard against
either). Everything else is hashed from disk as before: a resumed download (a ``Range``
request, a ``206``), a body cut short, a response with a content encoding, one through a
transport the hook does not see, a blob the SDK found in its cache instead of downloading.
"""

from __future__ import annotations

import functools
import hashlib
import threading
import time
from collections.abc import Iterator
from typing import Any

# Smaller bodies (configs, tokenizers, the Hub's JSON) are cheaper to hash from disk later
# than to wrap.
MIN_BYTES = 1 << 20
# Chunks arrive 64 KiB at a time; they are hashed 8 MiB at once (one copy, one ~4 ms release
# of the GIL). Hashing every chunk as it comes made a 1 GiB pull slower than hashing the blobs
# afterwards (1.22x snapshot_download instead of 1.11x): the SDK's download threads are
# GIL-bound, and 16k more hand-overs of the GIL cost more than the hashing saved.
BATCH = 8 << 20
# File times come from the kernel's coarse clock, a tick behind time.time_ns().
_CLOCK_SLACK_NS = 20_000_000

_LOCK = threading.Lock()
_watches: set[Watch] = set()


def _record(sha256: str, size: int) -> None:
    with _LOCK:
        for watch in _watches:
            watch.seen.add((sha256, size))


@functools.cache
def _stream_class() -> type:
    """The wrapping stream class, built on first use (httpx2 imported only then)."""
    import httpx2

    class HashingStream(httpx2.SyncByteStream):
        """A response body that hashes what is read through it; evidence at a complete end."""

        def __init__(self, inner: Any, length: int) -> None:
            self._inner, self._length = inner, length

        def __iter__(self) -> Iterator[bytes]:
            digest, seen, held = hashlib.sha256(), 0, 0
            batch: list[bytes] = []
            for chunk in self._inner:
                batch.append(chunk)
                held += len(chunk)
                seen += len(chunk)
                if held >= BATCH:
                    digest.update(b"".join(batch))
                    batch.clear()
                    held = 0
                yield chunk
            digest.update(b"".join(batch))
            if seen == self._length:
                _record(digest.hexdigest(), seen)

        def close(self) -> None:
            self._inner.close()

    return HashingStream


def _on_response(response: Any) -> None:
    """httpx response hook: wrap a large, whole, unencoded ``200`` body while a watch is open."""
    if not _watches or response.status_code != 200:
        return
    request = response.request
    if request.method != "GET" or "range" in request.headers:
        return
    if response.headers.get("content-encoding", "identity").lower() != "identity":
        return
    try:
        length = int(response.headers.get("content-length", ""))
    except ValueError:
        return
    if length < MIN_BYTES:
        return
    response.stream = _stream_class()(response.stream, length)


def hook_session() -> None:
    """Add the hook to the SDK's current shared client, unless it is there already.

    The SDK recreates its client after a fork or ``set_client_factory``; a client without the
    hook only means that its downloads are hashed from disk.
    """
    from huggingface_hub import get_session

    session = get_session()
    hooks = session.event_hooks
    if _on_response not in hooks["response"]:
        session.event_hooks = {**hooks, "response": [*hooks["response"], _on_response]}


class Watch:
    """Collects the evidence of downloads streamed while it is open (a context manager)."""

    def __init__(self) -> None:
        self.seen: set[tuple[str, int]] = set()
        self.opened_ns = 0

    def __enter__(self) -> Watch:
        hook_session()
        self.opened_ns = time.time_ns() - _CLOCK_SLACK_NS
        with _LOCK:
            _watches.add(self)
        return self

    def __exit__(self, *exc: object) -> None:
        with _LOCK:
            _watches.discard(self)

    def vouch(self, sha256: str, size: int) -> None:
        """Evidence from modelhub's own engine, which hashed the whole body as it arrived
        (:mod:`.hf_engine`)."""
        with _LOCK:
            self.seen.add((sha256, size))

    def received(self, sha256: str, size: int, mtime_ns: int) -> bool:
        """Whether ``size`` bytes hashing to ``sha256`` were received whole while open, for
        a file last written (``mtime_ns``) since it opened: not a blob that was already in
        the cache, which another repository's download of the same bytes would vouch for."""
        if mtime_ns < self.opened_ns:
            return False
        with _LOCK:
            return (sha256, size) in self.seen

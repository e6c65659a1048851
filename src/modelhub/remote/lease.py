"""The publication lease: at most one node uploads a given model to the remote at a time.

The lease is the model's lock object (``.modelhub/locks/<hub>-<key>.lock``, the local store's lock
path). With conditional writes it is created only if absent (``If-None-Match: *``) and rewritten
by a heartbeat thread only while it is still the one this node wrote (``If-Match: <ETag>``); a
lease whose ``Last-Modified`` is older than ``seconds`` (+1 s: HTTP dates have one-second
resolution) by the server's own clock belongs to a dead publisher and is taken over with
``If-Match`` on the ETag seen, so that two waiters cannot both take it. Without conditional
writes each step is write-then-verify: PUT a unique nonce, wait ``settle`` seconds, read it back.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid

from ..errors import ModelhubError, PreconditionFailed, StoreConflictError
from ..refs import ModelRef
from .objects import Head, S3Objects


class Lease:
    """One model's publication lease on ``objects`` (see the module docstring)."""

    def __init__(
        self,
        objects: S3Objects,
        rel: str,
        ref: ModelRef,
        *,
        seconds: float,
        conditional: bool,
        settle: float,
    ) -> None:
        self.objects, self.rel, self.ref = objects, rel, ref
        self.seconds, self.conditional, self.settle = seconds, conditional, settle
        self.owner = f"{socket.gethostname()}:{os.getpid()}"
        self.etag = ""
        self.body = b""
        self.held = False
        self.lost = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _new_body(self) -> bytes:
        # A fresh nonce each time: the ETag (an MD5 of the body) must change on every rewrite.
        doc = {"ref": self.ref.canonical, "owner": self.owner, "nonce": uuid.uuid4().hex}
        return json.dumps(doc, sort_keys=True).encode()

    def _stale(self, head: Head) -> bool:
        return head.age > self.seconds + 1.0

    def acquire(self) -> bool:
        """Try once to take the lease (free, or stale and taken over); True when held.

        When held, a daemon thread refreshes it every ``seconds / 4`` until :meth:`release`.
        """
        objects = self.objects
        body = self._new_body()
        if self.conditional:
            try:
                self.etag = objects.put_bytes(self.rel, body, if_none_match=True)
            except PreconditionFailed:
                head = objects.head(self.rel)
                if head is None or not self._stale(head):
                    return False
                try:  # take over a dead publisher's lease, unless someone else just did
                    self.etag = objects.put_bytes(self.rel, body, if_match=head.etag)
                except PreconditionFailed:
                    return False
        else:
            head = objects.head(self.rel)
            if head is not None and not self._stale(head):
                return False
            objects.put_bytes(self.rel, body)
            time.sleep(self.settle)
            if objects.get_bytes(self.rel) != body:
                return False
        self.body, self.held = body, True
        self._thread = threading.Thread(target=self._beat, name="modelhub-lease", daemon=True)
        self._thread.start()
        return True

    def _refresh(self) -> None:
        body = self._new_body()
        if self.conditional:
            self.etag = self.objects.put_bytes(self.rel, body, if_match=self.etag)
        else:
            if self.objects.get_bytes(self.rel) != self.body:
                raise PreconditionFailed(f"{self.objects.where(self.rel)} was rewritten")
            self.objects.put_bytes(self.rel, body)
        self.body = body

    def _beat(self) -> None:
        interval = max(0.05, self.seconds / 4)
        while not self._stop.wait(interval):
            try:
                self._refresh()
            except PreconditionFailed:
                self.lost.set()
                return
            except Exception:  # a transient failure: the next beat tries again
                continue

    def check(self) -> None:
        """Raise StoreConflictError if another node took the lease over."""
        if self.lost.is_set():
            raise StoreConflictError(
                f"{self.ref}: another node took over the publication on {self.objects.url} "
                f"(no heartbeat for {self.seconds:g} s); nothing was committed"
            )

    def release(self) -> None:
        """Stop the heartbeat and delete the lock object if it is still ours."""
        if not self.held:
            return
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.held = False
        if self.lost.is_set():
            return
        try:
            head = self.objects.head(self.rel)
            ours = head is not None and (
                head.etag == self.etag
                if self.conditional
                else self.objects.get_bytes(self.rel) == self.body
            )
            if ours:
                self.objects.delete(self.rel)
        except ModelhubError:
            pass  # a lease left behind goes stale; the next publisher takes it over

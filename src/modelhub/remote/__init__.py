"""The remote tier: a store on S3-compatible object storage, shared by a fleet of nodes.

``MODELHUB_REMOTE=s3://BUCKET[/PREFIX]`` puts a shared store behind every node's local one.
It has the local store's layout and manifests, under the prefix::

    s3://BUCKET/PREFIX/onnx/tiny-mlp-13.onnx                 objects: store-relative paths
    s3://BUCKET/PREFIX/.modelhub/manifests/onnx/<key>.json   the manifest, byte for byte
    s3://BUCKET/PREFIX/.modelhub/locks/onnx-<key>.lock       a publication in progress

Every object carries its sha256 as user metadata (``x-amz-meta-sha256``) so that a publisher
can tell, with one HEAD, whether an object already holds the bytes it would upload.

Modules: :mod:`~modelhub.remote.objects` (the only one that speaks S3, through s3fs),
:mod:`~modelhub.remote.lease` (who may publish a model now), :mod:`~modelhub.remote.store`
(:class:`RemoteStore`: fetch and publish).

**Reading** (:meth:`RemoteStore.fetch_model`): the manifest first (absent = not published);
then each object is streamed into the local store's ``.modelhub/tmp/``, hashed inline, checked
against the manifest's sha256 and size, and published with :meth:`Store.publish` (atomic
rename); the manifest is written last with :meth:`Store.write_manifest`. No link, no partial
file ever has a final name.

**Publication** (:meth:`RemoteStore.publish_model`), safe with many writers:

1. the local files are re-hashed against the local manifest (bad bytes are never shared);
2. a remote manifest that already exists ends the publication ("present");
3. the publisher takes the model's *lease*: the lock object, created only if absent
   (``If-None-Match: *``) and kept alive by a heartbeat that rewrites it only if it is still
   the one this publisher wrote (``If-Match: <its ETag>``). A lease not rewritten for
   ``lease_seconds`` (+1 s) by the server's clock (``Date`` − ``Last-Modified``) belongs to a dead
   publisher (kill -9, power loss) and is taken over with ``If-Match`` on the ETag seen, so two
   waiters cannot both take it. Others wait, polling, for the manifest or a free lease;
4. the holder uploads the objects (one HEAD skips those already there: a taken-over
   publication resumes), then creates the manifest only if absent (``If-None-Match: *``);
5. after the commit it re-checks every object's recorded sha256 and re-uploads any that a
   stale publisher overwrote meanwhile, then deletes the lease.

Readers only ever start from a manifest, and the manifest is the last object written, so a
half-published model (interrupted upload, killed publisher) is never visible; the orphan
objects it leaves are overwritten by the next publisher. Readers verify every byte anyway.

**Services without conditional writes.** AWS S3 supports ``If-None-Match: *`` and ``If-Match``
on PutObject (and moto's server implements both); some S3-compatible services ignore them or
answer 501. The first publication of a :class:`RemoteStore` *probes* the service (create twice,
then match a wrong and a right ETag, on a scratch object) and, if any answer is wrong, falls
back to *write-then-verify*: the lease is taken by HEAD (absent or stale) → PUT a unique nonce
→ wait ``settle`` seconds → GET, and is held only if the nonce read back is ours; the heartbeat
re-reads before rewriting; the manifest is created the same way. This is safe as long as a
competing publisher's HEAD→PUT gap stays below ``settle`` (no compare-and-swap exists without
conditional writes); should that fail, the last manifest wins and step 5 repairs the objects,
and readers' sha256 checks turn any mismatch into an IntegrityError (exit 5), never a silently
wrong model. Pass ``conditional=False`` to force the fallback, ``True`` to skip the probe.

**Credentials** come only from the standard AWS chain, resolved by botocore: ``AWS_ACCESS_KEY_ID``
/ ``AWS_SECRET_ACCESS_KEY`` (/ ``AWS_SESSION_TOKEN``), ``AWS_PROFILE``, instance roles;
``AWS_ENDPOINT_URL`` (or ``AWS_ENDPOINT_URL_S3``) for non-AWS services. modelhub never reads,
prints, logs or stores them; a rejected or missing credential is an AuthError (exit 4).
"""

from __future__ import annotations

from .objects import parse_url
from .store import LEASE_SECONDS, Published, RemoteStore, remote_store

__all__ = ["LEASE_SECONDS", "Published", "RemoteStore", "parse_url", "remote_store"]

"""Typed errors: one root, one type per failure a user can meet.

Each error carries the process exit code of the contract (``exit_code``) and, where natural,
also derives from the stdlib family a Python caller would catch (``FileNotFoundError``,
``PermissionError``, ``ConnectionError``, ``ValueError``). Only ``modelhub.cli`` turns them into
prose on stderr; library code raises them with a one-line message.

Exit codes: 0 ok, 1 other error, 2 bad usage or reference, 3 not found,
4 authentication/gated/untrusted, 5 integrity failure, 6 network unreachable or offline.
``outdated`` and ``sync --check`` exit 10 (``EXIT_CHANGES``) when they found changes: an
answer, not a failure (as ``diff``'s 1), kept apart from every error code.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_NOT_FOUND = 3
EXIT_AUTH = 4
EXIT_INTEGRITY = 5
EXIT_NETWORK = 6
#: ``outdated`` / ``sync --check``: the run worked and found models that changed upstream.
EXIT_CHANGES = 10


class ModelhubError(Exception):
    """Root of every error modelhub raises on purpose."""

    exit_code: int = EXIT_ERROR


# --- 2: usage and references -------------------------------------------------------------------
class UsageError(ModelhubError, ValueError):
    """The command or API was called with arguments that cannot work."""

    exit_code = EXIT_USAGE


class InvalidReferenceError(UsageError):
    """A model reference does not follow the grammar, or could escape the store."""


class UnsupportedError(UsageError):
    """The reference is valid but this hub or operation is not supported (yet)."""


# --- 3: not found ------------------------------------------------------------------------------
class NotFoundError(ModelhubError, FileNotFoundError):
    """Something asked for does not exist (upstream or in the store)."""

    exit_code = EXIT_NOT_FOUND


class ObjectMissing(NotFoundError):
    """An object of the shared S3 store does not exist (404)."""


class ModelNotFoundError(NotFoundError):
    """The hub has no model by that name (or no such revision / opset)."""


class NotInStoreError(NotFoundError):
    """The model is not in the local store (and the operation may not download it)."""


# --- 4: authentication, gated repositories, trust ---------------------------------------------
class AuthError(ModelhubError, PermissionError):
    """Credentials are missing or rejected, or the model is gated."""

    exit_code = EXIT_AUTH


class UntrustedCodeError(AuthError):
    """Running the model would run code from a source not trusted explicitly."""


# --- 5: integrity ------------------------------------------------------------------------------
class IntegrityError(ModelhubError):
    """Bytes are not what they must be: hash, size, format or parity."""

    exit_code = EXIT_INTEGRITY


class HashMismatchError(IntegrityError):
    """A file's sha256 differs from the expected one."""


class SizeMismatchError(IntegrityError):
    """A file's size differs from the announced one (truncated or padded)."""


class LFSPointerError(IntegrityError):
    """A Git LFS pointer file was served instead of the model it points to."""


class ParityError(IntegrityError):
    """A staged model's outputs differ from its source beyond the tolerance."""


class ArchiveError(IntegrityError):
    """An archive is malformed or hostile (traversal, links out, devices, bombs)."""


class LockMismatchError(IntegrityError):
    """The lock does not match the model set, the store or what upstream serves now."""


# --- 6: network --------------------------------------------------------------------------------
class NetworkError(ModelhubError, ConnectionError):
    """The hub could not be reached, or the transfer failed after all retries."""

    exit_code = EXIT_NETWORK


class OfflineError(NetworkError):
    """Offline mode is on and the operation needs the network."""


class TransferTimeoutError(NetworkError):
    """The server stopped sending within the timeout."""


class InsecureRedirectError(NetworkError):
    """A redirect would downgrade https to http (refused)."""


# --- 1: other ----------------------------------------------------------------------------------
class StoreConflictError(ModelhubError, FileExistsError):
    """A store path already belongs to another reference with different content."""


class PreconditionFailed(StoreConflictError):
    """A conditional write to the shared S3 store was refused (412, 409
    ConditionalRequestConflict, If-Match on nothing): another writer got there first (the
    publication protocol catches it)."""


class StagingError(ModelhubError):
    """A conversion failed for a reason other than parity."""


class StagingCrashedError(ModelhubError):
    """A staging worker process died (a crash in a framework's native code, or killed)."""


class OffloadCrashedError(ModelhubError):
    """The helper process died (a crash in native code, or killed) before the call returned."""


class MissingToolError(ModelhubError):
    """A program modelhub drives is not installed (e.g. Java and Maven for the DL4J check)."""


class HTTPStatusError(ModelhubError):
    """An HTTP status the caller has no specific meaning for."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status

    def __reduce__(self) -> tuple[type, tuple[str, int]]:
        # Pickled with its status (a sync's helper process sends its errors back).
        return type(self), (str(self), self.status)


def exit_code_for(exc: BaseException) -> int:
    """Return the contract's exit code for ``exc`` (1 for anything not a ModelhubError)."""
    if isinstance(exc, ModelhubError):
        return exc.exit_code
    return EXIT_ERROR

"""One exception root; transient vs permanent where the retry decision depends on it."""

from __future__ import annotations


class VenuecamError(Exception):
    """Root of every error this package raises on purpose."""


class ConfigError(VenuecamError, ValueError):
    """The config file is missing, malformed or invalid. The message names file and key."""


class BadInputError(VenuecamError, ValueError):
    """Data from outside (platform, socket, file) is not what the contract says."""


class TransientError(VenuecamError):
    """Worth retrying: network trouble, 5xx, a busy resource."""


class OfflineError(TransientError):
    """Failed because the device is offline: does not count against the attempt limit."""


class RetryLater(TransientError):
    """Nothing is wrong with the task; it must wait `retry_after` seconds (a server said so,
    or a resource it needs is busy). The attempt does not count against the limit."""

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class RateLimitedError(RetryLater):
    """HTTP 429: the server asks us to wait `retry_after` seconds (its `Retry-After`)."""


class PermanentError(VenuecamError):
    """Retrying will not help (e.g. the platform rejects our token)."""


class AuthError(PermanentError):
    """The platform or the store rejected our credentials (401/403)."""


class CaptureError(VenuecamError):
    """A camera source is missing, stalled or dead."""


class ClipError(VenuecamError):
    """A clip could not be assembled from the segments at hand."""


class DiskFullError(VenuecamError):
    """The disk ran out of space (ENOSPC) while writing: nothing is wrong with the task itself,
    so it must wait for space (retention, a human) and never be dead-lettered for it."""


NO_SPACE_TEXT = "No space left on device"  # strerror(ENOSPC), as tools print it


SQLITE_FULL = 13  # SQLite's primary result code for "database or disk is full"


def is_disk_full(error: BaseException | None) -> bool:
    """ENOSPC, raised by us (DiskFullError), straight from the OS, or SQLite's SQLITE_FULL
    (a database write on a full disk), also as the cause of the error raised."""
    import errno

    for _ in range(3):  # the error, what it was raised from, and that one's cause
        if error is None:
            return False
        if isinstance(error, DiskFullError) or (isinstance(error, OSError) and error.errno == errno.ENOSPC):
            return True
        # sqlite3's errors carry the code (extended codes keep it in the low byte); peewee's
        # wrapper holds the sqlite3 error as its first argument and as its context.
        code = getattr(error, "sqlite_errorcode", None)
        if isinstance(code, int) and code & 0xFF == SQLITE_FULL:
            return True
        inner = error.args[0] if error.args and isinstance(error.args[0], BaseException) else None
        error = inner or error.__cause__ or error.__context__
    return False

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


class PermanentError(VenuecamError):
    """Retrying will not help (e.g. the platform rejects our token)."""


class AuthError(PermanentError):
    """The platform or the store rejected our credentials (401/403)."""


class CaptureError(VenuecamError):
    """A camera source is missing, stalled or dead."""


class ClipError(VenuecamError):
    """A clip could not be assembled from the segments at hand."""

"""The boto3 S3 client for R2, tuned for a flaky uplink, and the mapping of its errors.

- Checksums only when required: boto3 >= 1.36 otherwise sends `aws-chunked` bodies with a
  CRC32 trailer, which R2 has rejected. Callers send `ContentMD5` instead.
- One retry at most: the task queue owns the waiting (and does not count offline attempts).
- Per-socket TCP settings: BBR where the kernel allows it (at 1% loss a cubic stream reached
  0.16 of the link, BBR 0.905), keepalive and TCP_USER_TIMEOUT so a dead link is noticed
  instead of hanging on a half-open connection, and a cap on unsent bytes in the kernel
  (TCP_NOTSENT_LOWAT) that times when the next part starts.
- The box's upload cap (`ratecap`) on every PutObject and UploadPart.

boto3 is imported inside functions only: it costs 40-50 MB RSS and most processes never upload.
"""

from __future__ import annotations

import logging
import socket
import threading
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from venuecam.errors import AuthError, OfflineError, PermanentError, TransientError, VenuecamError
from venuecam.logs import redact
from venuecam.storage import botocore_patch, ratecap

if TYPE_CHECKING:
    from venuecam.config import StorageConfig

log = logging.getLogger(__name__)

PREFERRED_CONGESTION = "bbr"
CONNECT_TIMEOUT_S = 10.0
READ_TIMEOUT_S = 60.0
# Unacknowledged data older than this kills the connection (a dead link, not a slow one).
USER_TIMEOUT_S = 60.0
KEEPALIVE_IDLE_S = 30
KEEPALIVE_INTERVAL_S = 10
KEEPALIVE_COUNT = 3
# At most this much of a request body waits unsent in the kernel (TCP_NOTSENT_LOWAT). A part
# counts as handed over (part_sender.PartSender) once its last byte is in the socket, and the
# next part starts then, on a connection that has to ramp up (a new one: BBR startup; a reused
# idle one: slow start after idle). The previous part's remaining bytes are what hides that
# ramp. With the kernel's own buffer (up to 4 MB, 1.3 s at 20 Mbit/s) the two share the link so
# long that the new one's BBR settles on half of it and climbs back slowly (2.4 s of link lost
# over 15 part changes); with 128 KiB the new one starts too late (5.1 s lost); 768 KiB: 1.2 s;
# 1.25 MiB (about 0.6 s of overlap): 0.1 s (256 MiB, 16 MiB parts, 20 Mbit/s, 80 ms RTT).
NOTSENT_LOWAT_BYTES = 1280 * 1024

_AUTH_CODES = {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "Unauthorized", "InvalidToken"}
_PERMANENT_CODES = {"NoSuchBucket", "InvalidBucketName"}


@dataclass(frozen=True)
class TcpSettings:
    """What the upload sockets get. `congestion` is the algorithm in use; `forced` says
    whether we set it per socket (False: the kernel refused it, the system default applies)."""

    congestion: str
    forced: bool
    keepalive: bool
    user_timeout_ms: int | None


_settings: weakref.WeakKeyDictionary[Any, TcpSettings] = weakref.WeakKeyDictionary()


def system_congestion() -> str:
    """The kernel's default congestion control for a new TCP socket ("" where unknown)."""
    if not hasattr(socket, "TCP_CONGESTION"):
        return ""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        return s.getsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, 16).split(b"\0")[0].decode()


def congestion_allowed(name: str) -> bool:
    """True when this process may set `name` on a socket (module loaded and permitted)."""
    if not name or not hasattr(socket, "TCP_CONGESTION"):
        return False
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, name.encode())
            got = s.getsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, 16).split(b"\0")[0].decode()
    except OSError:
        return False
    return got == name


def socket_options(
    congestion: str = PREFERRED_CONGESTION,
    user_timeout_s: float = USER_TIMEOUT_S,
    notsent_lowat: int = NOTSENT_LOWAT_BYTES,
) -> tuple[list[tuple[int, int, int | bytes]], TcpSettings]:
    """The socket options for upload connections and a description of them."""
    opts: list[tuple[int, int, int | bytes]] = [
        (socket.IPPROTO_TCP, socket.TCP_NODELAY, 1),
        (socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1),
    ]
    for name, value in (
        ("TCP_KEEPIDLE", KEEPALIVE_IDLE_S),
        ("TCP_KEEPINTVL", KEEPALIVE_INTERVAL_S),
        ("TCP_KEEPCNT", KEEPALIVE_COUNT),
    ):
        if hasattr(socket, name):
            opts.append((socket.IPPROTO_TCP, getattr(socket, name), value))
    if hasattr(socket, "TCP_NOTSENT_LOWAT") and notsent_lowat > 0:
        opts.append((socket.IPPROTO_TCP, socket.TCP_NOTSENT_LOWAT, notsent_lowat))
    user_timeout_ms: int | None = None
    if hasattr(socket, "TCP_USER_TIMEOUT") and user_timeout_s > 0:
        user_timeout_ms = int(user_timeout_s * 1000)
        opts.append((socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, user_timeout_ms))
    forced = congestion_allowed(congestion)
    if forced:
        opts.append((socket.IPPROTO_TCP, socket.TCP_CONGESTION, congestion.encode()))
    in_use = congestion if forced else system_congestion()
    return opts, TcpSettings(
        congestion=in_use, forced=forced, keepalive=True, user_timeout_ms=user_timeout_ms
    )


def make_client(
    storage: StorageConfig,
    *,
    connect_timeout_s: float = CONNECT_TIMEOUT_S,
    read_timeout_s: float = READ_TIMEOUT_S,
    max_attempts: int = 2,
    congestion: str = PREFERRED_CONGESTION,
    user_timeout_s: float = USER_TIMEOUT_S,
    cap: ratecap.UploadCap | None = None,
    uploads: int = 1,
    connections: int | None = None,
) -> Any:
    """A boto3 S3 client for the configured store (R2, or any S3 endpoint such as moto).

    Every object it puts and every part it sends is held to the box's upload cap
    (`storage.max_upload_mbit`; `cap`: another one, for tests). `uploads`: how many uploads
    share it at once, each with up to `storage.parallel_parts` connections; `connections`: the
    pool's size when its users count otherwise (the live path's)."""
    import boto3
    from botocore.config import Config as BotoConfig

    boto_cfg = BotoConfig(
        region_name=storage.region or "auto",
        signature_version="s3v4",
        connect_timeout=connect_timeout_s,
        read_timeout=read_timeout_s,
        retries={"max_attempts": max_attempts, "mode": "standard"},
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
        tcp_keepalive=True,
        # The body is covered by the Content-MD5 we send (signed, checked by the store), so
        # botocore need not SHA-256 every part for the signature. Over https it skips that
        # already; over plain http (tests, a LAN endpoint) it would hash each part on the way
        # to the wire, in the gap between one part and the next.
        s3={"addressing_style": "path", "payload_signing_enabled": False},
        # One connection per part in flight (multipart.upload_file's parallel_parts).
        # A request beyond the pool opens a connection of its own and closes it after: a TCP
        # handshake and a slow start for each part.
        max_pool_connections=connections or max(4, storage.parallel_parts * max(1, uploads)),
    )
    client = boto3.session.Session().client(
        "s3",
        endpoint_url=storage.effective_endpoint,
        aws_access_key_id=storage.access_key_id or None,
        aws_secret_access_key=storage.secret_access_key or None,
        config=boto_cfg,
    )
    opts, settings = socket_options(congestion, user_timeout_s)
    if not botocore_patch.install_socket_options(client, opts):
        settings = TcpSettings(
            congestion=system_congestion(), forced=False, keepalive=True, user_timeout_ms=None
        )
        log.warning("storage: could not set TCP socket options on the S3 client; using system defaults")
    _settings[client] = settings
    ratecap.install(client, cap or ratecap.shared(storage))
    return client


_signers: dict[tuple[str, str, str, str], Any] = {}
_signers_lock = threading.Lock()


def store_identity(storage: StorageConfig) -> tuple[str, str, str, str]:
    """What makes two configs the same store for a kept client (endpoint, credentials, region)."""
    return (storage.effective_endpoint, storage.access_key_id, storage.secret_access_key, storage.region)


def signer(storage: StorageConfig) -> Any:
    """A client for presigning URLs (no request goes through it), made once per store and
    kept: making a boto3 client costs ~0.1 s of CPU here and seconds on a Pi 3, and the soak
    found the worker spending a third of its time making them, one per notification."""
    key = store_identity(storage)
    with _signers_lock:
        client = _signers.get(key)
        if client is None:
            client = _signers[key] = make_client(storage)
        return client


def tcp_settings(client: Any) -> TcpSettings | None:
    """The TCP settings `make_client` gave this client (None for a client made elsewhere)."""
    return _settings.get(client)


def map_error(exc: BaseException, what: str) -> VenuecamError:
    """Translate a boto3/botocore exception into our error tree. `what` names the operation
    and object (e.g. "upload_part 3 of 42/1/.../x.mp4"). Server messages are not copied:
    SignatureDoesNotMatch bodies echo the string to sign, which names the access key id."""
    from botocore.exceptions import (
        BotoCoreError,
        ClientError,
        ConnectionError,
        HTTPClientError,
        NoCredentialsError,
        PartialCredentialsError,
    )

    if isinstance(exc, VenuecamError):
        return exc
    if isinstance(exc, ClientError):
        err = exc.response.get("Error", {})
        code = str(err.get("Code", "")) or "Unknown"
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
        msg = f"storage {what}: {code} (HTTP {status})"
        if code in _AUTH_CODES or status in (401, 403):
            return AuthError(f"{msg}: the store rejected our credentials")
        if code in _PERMANENT_CODES:
            return PermanentError(msg)
        return TransientError(msg)
    if isinstance(exc, NoCredentialsError | PartialCredentialsError):
        return AuthError(f"storage {what}: no credentials configured")
    if isinstance(exc, ConnectionError | HTTPClientError):
        # Connect refused/timeout, DNS failure, read timeout, connection reset: the link.
        return OfflineError(f"storage {what}: {type(exc).__name__}: {redact(str(exc))}")
    if isinstance(exc, BotoCoreError):
        return TransientError(f"storage {what}: {type(exc).__name__}: {redact(str(exc))}")
    if isinstance(exc, OSError):  # socket errors that escaped botocore's wrapping
        return OfflineError(f"storage {what}: {type(exc).__name__}: {redact(str(exc))}")
    return TransientError(f"storage {what}: {type(exc).__name__}: {redact(str(exc))}")


def error_code(exc: BaseException) -> str:
    """The S3 error code of a ClientError ("" for anything else)."""
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Code", ""))
    return ""

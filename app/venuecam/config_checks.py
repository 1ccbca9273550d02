"""The rules of every config section that its types alone cannot say (`config.loads` runs
them once the file has been mapped onto its dataclasses), and the parsers they share with
the programs those sections configure: `is_hostname` (first boot) and `parse_window` (the
updater's maintenance window).
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from venuecam.errors import ConfigError
from venuecam.logs import mask_url

if TYPE_CHECKING:
    from venuecam.config import Config, ProvisionConfig, StatusConfig, UpdateConfig

LAN_TOKEN_MIN = 16
# Segments are cut at the multiples of segment_seconds of the clock: it must divide this.
SEGMENT_CLOCK_S = 3600


def check_core(cfg: Config, source: str) -> None:
    """The rules of [device], [[cameras]], [queue], [clips], [retention], [connectivity],
    [storage] and [booking_api] that their types alone cannot say."""
    for name, why in (("device_id", "it names the box"), ("venue_id", "it starts every object key")):
        value = getattr(cfg.device, name)
        if not value.strip() or "/" in value:
            raise ConfigError(
                f"{source}: device.{name}: expected a non-empty id without '/' ({why}), got {value!r}"
            )
    try:
        ZoneInfo(cfg.device.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"{source}: device.timezone: unknown time zone {cfg.device.timezone!r}") from None
    seen: set[str] = set()
    for i, cam in enumerate(cfg.cameras):
        key = f"cameras[{i}]"
        if not cam.name or not all(c.isalnum() or c in "_-" for c in cam.name):
            raise ConfigError(f"{source}: {key}.name: expected letters, digits, '_' or '-', got {cam.name!r}")
        if cam.name in seen:
            raise ConfigError(f"{source}: {key}.name: duplicate camera name {cam.name!r}")
        seen.add(cam.name)
        src = cam.source
        known = src.startswith(("rtsp://", "rtsps://", "/dev/video")) or src in ("picamera2", "testsrc")
        if not known and not (src.startswith("testsrc:") and is_test_colour(src.removeprefix("testsrc:"))):
            raise ConfigError(
                f"{source}: {key}.source: expected rtsp://..., /dev/videoN, picamera2, testsrc or "
                f"testsrc:COLOUR (a colour name or 0xRRGGBB), got {mask_url(src)!r}"
            )
        for attr in ("segment_seconds", "width", "height", "fps", "bitrate_kbps", "stall_timeout_s"):
            if getattr(cam, attr) <= 0:
                raise ConfigError(f"{source}: {key}.{attr}: expected a positive integer")
        if SEGMENT_CLOCK_S % cam.segment_seconds:
            # Capture cuts segments on the clock (capture/command.py): only a divisor of an
            # hour puts a boundary on every whole hour and keeps the pattern from slipping.
            raise ConfigError(
                f"{source}: {key}.segment_seconds: camera {cam.name}: expected a divisor of "
                f"{SEGMENT_CLOCK_S} (1, 2, 5, 10, 15, 20, 30, 60, ...; segments are cut on the clock), "
                f"got {cam.segment_seconds}"
            )
    for name in ("upload_schedule_s", "notify_schedule_s", "clip_schedule_s", "sync_schedule_s"):
        sched = getattr(cfg.queue, name)
        if not sched or any(s < 0 for s in sched):
            raise ConfigError(f"{source}: queue.{name}: expected a non-empty list of seconds >= 0")
    if cfg.queue.max_concurrent_uploads < 1:
        raise ConfigError(f"{source}: queue.max_concurrent_uploads: expected at least 1")
    if cfg.clips.live_max_videos < 0:
        raise ConfigError(f"{source}: clips.live_max_videos: expected 0 (twice the cameras) or more")
    if cfg.queue.expiration_hours < 1:
        raise ConfigError(f"{source}: queue.expiration_hours: expected at least 1")
    if cfg.retention.booking_days < 1:
        raise ConfigError(f"{source}: retention.booking_days: expected at least 1")
    if cfg.connectivity.log_retention_days < 1:
        raise ConfigError(f"{source}: connectivity.log_retention_days: expected at least 1")
    if not cfg.storage.endpoint_url and not cfg.storage.account_id:
        raise ConfigError(f"{source}: storage: expected endpoint_url or account_id")
    if cfg.storage.part_size_mb < 5:
        raise ConfigError(f"{source}: storage.part_size_mb: expected at least 5 (the S3 minimum part)")
    if cfg.storage.parallel_parts < 1:
        raise ConfigError(f"{source}: storage.parallel_parts: expected at least 1")
    if not cfg.booking_api.base_url.startswith(("http://", "https://")):
        raise ConfigError(f"{source}: booking_api.base_url: expected an http(s):// URL")


def is_test_colour(text: str) -> bool:
    """A colour for `testsrc:COLOUR`: a name ("red") or 0xRRGGBB, nothing ffmpeg's filter
    syntax would read as more than a colour."""
    if text.startswith("0x"):
        return len(text) == 8 and all(c in "0123456789abcdefABCDEF" for c in text[2:])
    return 0 < len(text) <= 32 and text.isascii() and text.isalpha()


def check_status(s: StatusConfig, source: str) -> None:
    import ipaddress

    for name in ("tcp_port", "lan_port"):
        if not 1 <= getattr(s, name) <= 65535:
            raise ConfigError(f"{source}: status.{name}: expected a port number 1..65535")
    try:
        ipaddress.ip_address(s.lan_address)
    except ValueError:
        raise ConfigError(
            f'{source}: status.lan_address: expected an IP address of this box (or "0.0.0.0"), '
            f"got {s.lan_address[:60]!r}"
        ) from None
    if s.lan_token and not (
        len(s.lan_token) >= LAN_TOKEN_MIN
        and s.lan_token.isascii()
        and s.lan_token.isprintable()
        and " " not in s.lan_token
        and all(c not in s.lan_token for c in ';,"\\')
    ):
        # The token travels in a cookie and a header: no spaces, separators or quotes.
        raise ConfigError(
            f"{source}: status.lan_token: expected at least {LAN_TOKEN_MIN} printable ASCII characters "
            "without spaces, quotes, ';', ',' or backslashes"
        )
    if s.lan_enabled and not s.lan_token:
        raise ConfigError(
            f"{source}: status.lan_token: required when status.lan_enabled is true (the LAN page is token-protected)"
        )
    if s.lan_enabled and s.tcp_enabled and s.lan_port == s.tcp_port:
        raise ConfigError(f"{source}: status.lan_port: must differ from status.tcp_port ({s.tcp_port})")


def is_hostname(name: str) -> bool:
    """One DNS label: letters, digits and '-', not at either end, at most 63 characters."""
    return (
        0 < len(name) <= 63
        and name[0] != "-"
        and name[-1] != "-"
        and all(c.isascii() and (c.isalnum() or c == "-") for c in name)
    )


def check_provision(p: ProvisionConfig, source: str) -> None:
    if p.hostname and not is_hostname(p.hostname):
        raise ConfigError(
            f"{source}: provision.hostname: expected letters, digits and '-', got {p.hostname!r}"
        )
    for i, key in enumerate(p.ssh_authorized_keys):
        if not key.startswith(("ssh-", "ecdsa-", "sk-")) or len(key.split()) < 2 or "\n" in key:
            raise ConfigError(f"{source}: provision.ssh_authorized_keys[{i}]: expected one public key line")
    if p.wifi_ssid and not p.wifi_country:
        # Without a regulatory domain the Pi's radio stays blocked (or uses the world domain's
        # channels only): a box that never joins the venue's Wi-Fi, with no error to see.
        raise ConfigError(
            f'{source}: provision.wifi_country: required when provision.wifi_ssid is set (a code like "ID")'
        )
    if p.wifi_psk and not p.wifi_ssid:
        raise ConfigError(f"{source}: provision.wifi_psk: set without provision.wifi_ssid")
    if p.wifi_psk and not 8 <= len(p.wifi_psk) <= 63:
        raise ConfigError(f"{source}: provision.wifi_psk: expected 8 to 63 characters")
    if p.wifi_country and not (
        len(p.wifi_country) == 2 and p.wifi_country.isascii() and p.wifi_country.isupper()
    ):
        raise ConfigError(f'{source}: provision.wifi_country: expected a two-letter code like "ID"')


def check_update(u: UpdateConfig, source: str) -> None:
    if u.service not in ("systemd", "direct"):
        raise ConfigError(f'{source}: update.service: expected "systemd" or "direct", got {u.service!r}')
    for name in ("health_timeout_s", "poll_interval_s", "max_wait_hours"):
        if getattr(u, name) <= 0:
            raise ConfigError(f"{source}: update.{name}: expected a positive integer")
    if u.health_stable_s < 0 or u.booking_margin_s < 0:
        raise ConfigError(f"{source}: update: health_stable_s and booking_margin_s must be >= 0")
    if u.health_stable_s >= u.health_timeout_s:
        raise ConfigError(f"{source}: update.health_stable_s: expected less than health_timeout_s")
    if u.maintenance_window and parse_window(u.maintenance_window) is None:
        raise ConfigError(
            f'{source}: update.maintenance_window: expected "HH:MM-HH:MM", got {u.maintenance_window!r}'
        )
    if u.channel_url and not u.channel_url.startswith(("https://", "http://", "s3://")):
        raise ConfigError(
            f"{source}: update.channel_url: expected https://..., http://... or s3://bucket/key"
        )


def parse_window(text: str) -> tuple[int, int] | None:
    """ "02:00-05:30" -> (120, 330) minutes after midnight; None when malformed or empty."""
    try:
        a, b = text.split("-")
        mins = []
        for part in (a, b):
            h, m = part.strip().split(":")
            if not (h.isdigit() and m.isdigit() and 0 <= int(h) < 24 and 0 <= int(m) < 60):
                return None
            mins.append(int(h) * 60 + int(m))
    except ValueError:
        return None
    return (mins[0], mins[1]) if mins[0] != mins[1] else None

"""The device configuration: one TOML file, declared once here, validated at start.

Every section is a dataclass. `load()` rejects unknown keys, wrong types and missing
required values with one `ConfigError` naming the file, the key and what was expected.
Fields marked `secret()` are masked by `dump()` and registered with the log redactor.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from venuecam import config_checks, config_toml
from venuecam.cap_schedule import CapWindow
from venuecam.errors import ConfigError

DEFAULT_PATH = Path("/etc/venuecam/venuecam.toml")
ENV_PATH = "VENUECAM_CONFIG"
# The config format this release reads (a bundle says the lowest it accepts: see venuecam.update).
CONFIG_VERSION = 1


def secret(default: Any = dataclasses.MISSING) -> Any:
    """A field whose value never reaches a log, a dump or an error message."""
    return field(default=default, metadata={"secret": True})


@dataclass(frozen=True)
class DeviceConfig:
    device_id: str
    venue_id: str
    timezone: str = "UTC"
    data_dir: str = "/var/lib/venuecam"
    run_dir: str = "/run/venuecam"
    log_dir: str = "/var/log/venuecam"
    # Demo mode: mock GPIO pins, local endpoints; never set on a real box.
    demo: bool = False


@dataclass(frozen=True)
class CameraConfig:
    name: str
    field_id: int
    # rtsp://..., /dev/videoN, "picamera2", "testsrc" (a moving pattern) or "testsrc:COLOUR"
    # (a plain frame of that colour, to tell test cameras apart)
    source: str
    segment_seconds: int = 10
    width: int = 1280
    height: int = 720
    fps: int = 30
    bitrate_kbps: int = 4000
    # A source that produces no new segment for this long is considered stalled.
    stall_timeout_s: int = 30


@dataclass(frozen=True)
class BookingApiConfig:
    base_url: str
    api_token: str = secret()
    sync_interval_s: int = 300
    timeout_s: float = 15.0
    page_size: int = 100
    # How many days around today each sync asks for (today and the days before).
    days_back: int = 1


@dataclass(frozen=True)
class StorageConfig:
    bucket: str
    access_key_id: str = secret()
    secret_access_key: str = secret()
    # Either an explicit S3 endpoint, or the R2 account id it is derived from.
    endpoint_url: str = ""
    account_id: str = ""
    region: str = "auto"
    public_base_url: str = ""
    part_size_mb: int = 16
    multipart_threshold_mb: int = 16
    # Parts in flight at once; the next starts as the previous one's bytes are nearly all sent.
    parallel_parts: int = 4
    # Upload bandwidth cap for the whole box (storage/ratecap.py), for venues whose line is
    # shared with their guests' Wi-Fi: `8` (Mbit/s all day; 0: none) or venue-local windows
    # `[{ mbit = 8, from = "17:00", to = "23:00" }, ...]`, outside which nothing is capped.
    max_upload_mbit: tuple[CapWindow, ...] = field(
        default=(), metadata={"parse": "upload_cap", "unparse": "upload_cap"}
    )
    # The venue's time zone (device.timezone) the windows are read in; set by `loads`.
    venue_timezone: str = field(default="UTC", metadata={"internal": True})

    @property
    def effective_endpoint(self) -> str:
        if self.endpoint_url:
            return self.endpoint_url
        return f"https://{self.account_id}.r2.cloudflarestorage.com"


@dataclass(frozen=True)
class ClipsConfig:
    scan_interval_s: int = 120
    # A booking's clip is cut this long after it ends, so its last segment is closed.
    grace_s: int = 30
    preview_seconds: int = 30
    preview_height: int = 360
    # Build and upload each booking's video while it is played (venuecam.live); false: only
    # after the booking, as before.
    live: bool = True
    # At most this many videos are built live at once (each is a thread and a store client in
    # the worker); the others are cut after their booking. 0: twice the cameras, for each
    # court's booking ending while the next one starts.
    live_max_videos: int = 0


@dataclass(frozen=True)
class QueueConfig:
    upload_schedule_s: list[int] = field(default_factory=lambda: [300, 1200, 2700, 7200, 18000])
    notify_schedule_s: list[int] = field(default_factory=lambda: [300, 1200, 2700])
    clip_schedule_s: list[int] = field(default_factory=lambda: [60, 300, 900])
    # Seed 002: a sync job is tried 3 times with exponential backoff.
    sync_schedule_s: list[int] = field(default_factory=lambda: [5, 10])
    max_concurrent_uploads: int = 3
    # Above this many waiting tasks the box reports a warning; nothing is ever dropped.
    max_queue_size: int = 1000
    # Work waiting longer than this is expired: shown in status, on the LEDs and in the log,
    # and still delivered when it can be, unless the operator gives it up (`queue cancel`).
    expiration_hours: int = 168
    delete_after_upload: bool = False
    completed_retention_days: int = 7
    # A running task whose heartbeat is older than this is taken as dead and re-driven.
    stale_after_s: int = 120


@dataclass(frozen=True)
class RetentionConfig:
    # Oldest segments and uploaded clips are removed when free space falls below this.
    min_free_percent: float = 15.0
    segment_days: int = 7
    # Below this much free space retention is not keeping up: the fault LED asks for a human.
    disk_warn_percent: float = 10.0
    # Seed 001's DeleteOldBookings: bookings (players' names and phone numbers) kept this long.
    booking_days: int = 90


@dataclass(frozen=True)
class ConnectivityConfig:
    tcp_targets: list[str] = field(default_factory=lambda: ["1.1.1.1:53", "8.8.8.8:53"])
    dns_names: list[str] = field(default_factory=lambda: ["cloudflare.com"])
    # Also probe the storage endpoint and booking API hosts themselves.
    probe_service_hosts: bool = True
    interval_s: float = 2.0
    timeout_s: float = 2.0
    # Consecutive failed (successful) rounds before going OFFLINE (ONLINE).
    fail_threshold: int = 2
    ok_threshold: int = 1
    # While OFFLINE, probe this often: a returning route is cheap to see, and waiting work
    # (and a stalled upload) should resume within a second of the link coming back.
    offline_interval_s: float = 0.25
    # A connectivity_log sample (with latency) this often besides one row per change.
    sample_interval_s: float = 60.0
    # connectivity_log rows older than this are pruned by the watchdog.
    log_retention_days: int = 7


@dataclass(frozen=True)
class StatusConfig:
    socket_path: str = ""  # default: <run_dir>/status.sock
    socket_group: str = "venuecam"
    tcp_enabled: bool = False
    tcp_port: int = 8080
    token: str = secret("")
    # The installer's page (and only it) on the venue's LAN, read-only, behind lan_token.
    lan_enabled: bool = False
    lan_address: str = "0.0.0.0"
    lan_port: int = 8081
    lan_token: str = secret("")


@dataclass(frozen=True)
class LedsConfig:
    enabled: bool = True
    online_pin: int = 17
    backlog_pin: int = 27
    fault_pin: int = 22
    # gpiozero pin factory: "" = "gpiod" (libgpiod on /dev/gpiochip*, any kernel); "mock" in
    # demo mode and tests; or one gpiozero knows ("lgpio", ...).
    pin_factory: str = ""


@dataclass(frozen=True)
class ProvisionConfig:
    """What first boot applies to the box itself (image/provisioning); all optional."""

    hostname: str = ""  # empty: the device_id when it is a valid host name
    ssh_authorized_keys: list[str] = field(default_factory=list)  # keys for root, keys-only ssh
    wifi_ssid: str = ""
    wifi_psk: str = secret("")
    wifi_country: str = ""  # ISO 3166 code, e.g. "ID"; required with wifi_ssid


@dataclass(frozen=True)
class UpdateConfig:
    """Over-the-air updates (venuecam.update): where releases live, the health gate, when."""

    install_dir: str = "/opt/venuecam"  # releases/<version>/, current, committed
    state_dir: str = "/var/lib/venuecam-update"  # the update journal, downloads, backups (root's)
    signers_file: str = "/etc/venuecam/release-signers"  # ssh allowed_signers: who may sign
    python: str = "/usr/bin/python3"  # the interpreter release virtualenvs are made with
    service: str = "systemd"  # how the stack is stopped and started: "systemd" or "direct"
    health_timeout_s: int = 300
    # Every program must have run this long without a restart before the gate passes.
    health_stable_s: int = 20
    # Venue-local "HH:MM-HH:MM" in which updates may run (may cross midnight); "" = any time.
    maintenance_window: str = ""
    # No update starts this long before a booking on one of our courts (nor during one).
    booking_margin_s: int = 900
    # A deferred update waiting longer than this asks for a human (status, fault LED).
    max_wait_hours: int = 24
    # Pull mode: a signed channel file (https://... or s3://bucket/key); "" = push only.
    channel_url: str = ""
    poll_interval_s: int = 3600


@dataclass(frozen=True)
class Config:
    device: DeviceConfig
    booking_api: BookingApiConfig
    storage: StorageConfig
    cameras: list[CameraConfig] = field(default_factory=list)
    clips: ClipsConfig = field(default_factory=ClipsConfig)
    queue: QueueConfig = field(default_factory=QueueConfig)
    retention: RetentionConfig = field(default_factory=RetentionConfig)
    connectivity: ConnectivityConfig = field(default_factory=ConnectivityConfig)
    status: StatusConfig = field(default_factory=StatusConfig)
    leds: LedsConfig = field(default_factory=LedsConfig)
    provision: ProvisionConfig = field(default_factory=ProvisionConfig)
    update: UpdateConfig = field(default_factory=UpdateConfig)
    source_path: str = field(default="", metadata={"internal": True})

    # Derived locations, one place for all of them.
    @property
    def data_dir(self) -> Path:
        return Path(self.device.data_dir)

    @property
    def db_path(self) -> Path:
        return self.data_dir / "venuecam.db"

    @property
    def huey_path(self) -> Path:
        return self.data_dir / "huey.db"

    @property
    def segments_dir(self) -> Path:
        return self.data_dir / "segments"

    @property
    def clips_dir(self) -> Path:
        return self.data_dir / "clips"

    @property
    def log_dir(self) -> Path:
        return Path(self.device.log_dir)

    @property
    def run_dir(self) -> Path:
        return Path(self.device.run_dir)

    @property
    def status_socket(self) -> Path:
        return Path(self.status.socket_path or self.run_dir / "status.sock")

    @property
    def supervisor_socket(self) -> Path:
        return self.run_dir / "supervisor.sock"

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.device.timezone)

    def camera(self, name: str) -> CameraConfig:
        for cam in self.cameras:
            if cam.name == name:
                return cam
        raise ConfigError(f"{self.source_path}: no camera named {name!r} in [[cameras]]")

    def live_video_cap(self) -> int:
        return self.clips.live_max_videos or max(2, 2 * len(self.cameras))

    def cameras_for_field(self, field_id: int) -> list[CameraConfig]:
        return [c for c in self.cameras if c.field_id == field_id]

    def secrets(self) -> list[str]:
        out = [v for v in _secret_values(self) if v]
        # A camera URL may carry credentials (rtsp://user:pass@host): the password is a secret.
        out += [p for c in self.cameras if (p := urlsplit(c.source).password)]
        return out


# ---------------------------------------------------------------- loading


def resolve_path(explicit: str | os.PathLike[str] | None = None) -> Path:
    if explicit:
        return Path(explicit)
    if os.environ.get(ENV_PATH):
        return Path(os.environ[ENV_PATH])
    return DEFAULT_PATH


def load(path: str | os.PathLike[str] | None = None) -> Config:
    """Read, parse and validate the config file; raise ConfigError naming what is wrong."""
    p = resolve_path(path)
    try:
        raw = p.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{p}: config file not found (set --config or {ENV_PATH})") from None
    except OSError as e:
        raise ConfigError(f"{p}: cannot read config file: {e.strerror}") from None
    # A file saved by Windows Notepad starts with a UTF-8 byte order mark: not part of the TOML.
    return loads(raw.decode("utf-8", errors="replace").removeprefix("\ufeff"), source=str(p))


def loads(text: str, source: str = "<config>") -> Config:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{source}: not valid TOML: {e}") from None
    cfg = config_toml.build(Config, data, source, "")
    storage = dataclasses.replace(cfg.storage, venue_timezone=cfg.device.timezone)
    cfg = dataclasses.replace(cfg, source_path=source, storage=storage)
    config_checks.check_core(cfg, source)
    config_checks.check_provision(cfg.provision, source)
    config_checks.check_update(cfg.update, source)
    config_checks.check_status(cfg.status, source)
    return cfg


# ---------------------------------------------------------------- secrets


def _secret_values(obj: Any) -> list[str]:
    out: list[str] = []
    if isinstance(obj, list):
        for item in obj:
            out.extend(_secret_values(item))
    elif dataclasses.is_dataclass(obj):
        for f in dataclasses.fields(obj):
            v = getattr(obj, f.name)
            if f.metadata.get("secret") and isinstance(v, str):
                out.append(v)
            else:
                out.extend(_secret_values(v))
    return out

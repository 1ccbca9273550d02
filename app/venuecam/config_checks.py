"""Checks of the [status], [provision] and [update] sections that their types alone cannot
say (`config.loads` runs them after the rest of its checks), and the parsers they share with
the programs those sections configure: `is_hostname` (first boot) and `parse_window` (the
updater's maintenance window).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from venuecam.errors import ConfigError

if TYPE_CHECKING:
    from venuecam.config import ProvisionConfig, StatusConfig, UpdateConfig

LAN_TOKEN_MIN = 16


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

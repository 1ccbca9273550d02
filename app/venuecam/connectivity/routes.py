"""The kernel's routing table, read with the stdlib: no route means offline at once.

Waiting for probe timeouts to learn that the cable is out costs seconds; the routing table
knows immediately (a link that goes down takes its routes with it).
"""

from __future__ import annotations

import ipaddress
import socket
import struct
from pathlib import Path

ROUTE_V4 = Path("/proc/net/route")
ROUTE_V6 = Path("/proc/net/ipv6_route")
RTF_UP = 0x0001
RTF_REJECT = 0x0200


def _v4_routes(path: Path) -> list[ipaddress.IPv4Network]:
    try:
        lines = path.read_text().splitlines()[1:]
    except OSError:
        return []
    nets: list[ipaddress.IPv4Network] = []
    for line in lines:
        cols = line.split()
        if len(cols) < 8:
            continue
        dest, flags, mask = cols[1], int(cols[3], 16), cols[7]
        if not flags & RTF_UP or flags & RTF_REJECT:
            continue
        # The file holds addresses as little-endian hex words.
        addr = socket.inet_ntoa(struct.pack("<I", int(dest, 16)))
        netmask = socket.inet_ntoa(struct.pack("<I", int(mask, 16)))
        nets.append(ipaddress.IPv4Network(f"{addr}/{netmask}", strict=False))
    return nets


def _v6_routes(path: Path) -> list[ipaddress.IPv6Network]:
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return []
    nets: list[ipaddress.IPv6Network] = []
    for line in lines:
        cols = line.split()
        if len(cols) < 10:
            continue
        dest, plen, flags, dev = cols[0], int(cols[1], 16), int(cols[8], 16), cols[9]
        # The kernel lists unreachable ::/0 entries on "lo"; they are not routes out.
        if dev == "lo" or not flags & RTF_UP or flags & RTF_REJECT:
            continue
        addr = ipaddress.IPv6Address(bytes.fromhex(dest))
        nets.append(ipaddress.IPv6Network(f"{addr}/{plen}", strict=False))
    return nets


def has_default_route(v4: Path = ROUTE_V4, v6: Path = ROUTE_V6) -> bool:
    return any(n.prefixlen == 0 for n in _v4_routes(v4)) or any(n.prefixlen == 0 for n in _v6_routes(v6))


def has_route_to(host: str, v4: Path = ROUTE_V4, v6: Path = ROUTE_V6) -> bool:
    """True if the kernel could send to `host` (an IP literal) now; a name needs a default route."""
    try:
        ip = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return has_default_route(v4, v6)
    if ip.is_loopback:
        return True
    nets = _v4_routes(v4) if ip.version == 4 else _v6_routes(v6)
    return any(ip in n for n in nets)

"""One round of connectivity probes, run concurrently, each bounded by a timeout.

Probes are layered (PITFALLS §Connectivity): a TCP connect to a public resolver or a DNS
answer can succeed behind a captive portal or a dead upstream, so they only *support* the
verdict. The hosts we actually need (the storage endpoint and the booking API) *decide* it:
any HTTP response from one of them proves the path. With no deciding probe configured, the
supporting ones decide.
"""

from __future__ import annotations

import http.client
import queue
import socket
import ssl
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from venuecam.connectivity import routes
from venuecam.errors import ConfigError

if TYPE_CHECKING:
    from venuecam.config import Config

TCP, DNS, HTTP = "tcp", "dns", "http"


@dataclass(frozen=True)
class Probe:
    kind: str  # tcp | dns | http
    target: str  # "host:port", a DNS name, or a URL
    deciding: bool = False  # reaching it proves we can work

    @property
    def host(self) -> str:
        if self.kind == TCP:
            return split_host_port(self.target)[0]
        if self.kind == HTTP:
            return urlsplit(self.target).hostname or ""
        return self.target

    def __str__(self) -> str:
        return f"{self.kind} {self.target}"


@dataclass(frozen=True)
class ProbeResult:
    probe: Probe
    ok: bool
    latency_s: float | None = None
    error: str = ""


@dataclass(frozen=True)
class RoundResult:
    ok: bool
    # True when the verdict needs no confirmation: there is no route at all.
    decisive: bool
    latency_s: float | None
    detail: str
    results: list[ProbeResult] = field(default_factory=list)


def split_host_port(target: str) -> tuple[str, int]:
    """'1.1.1.1:53' or '[2606:4700::1111]:53' -> (host, port); ValueError names what is wrong."""
    host, sep, port = target.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"expected host:port, got {target!r}")
    return host.strip("[]"), int(port)


def probes_from_config(cfg: Config) -> list[Probe]:
    """The probe list the config asks for; a malformed entry is a ConfigError naming it."""
    c = cfg.connectivity
    out: list[Probe] = []
    for i, target in enumerate(c.tcp_targets):
        try:
            split_host_port(target)
        except ValueError as e:
            raise ConfigError(f"{cfg.source_path}: connectivity.tcp_targets[{i}]: {e}") from None
        out.append(Probe(TCP, target))
    for i, name in enumerate(c.dns_names):
        if not name or any(ch.isspace() for ch in name) or "/" in name:
            raise ConfigError(
                f"{cfg.source_path}: connectivity.dns_names[{i}]: expected a host name, got {name!r}"
            )
        out.append(Probe(DNS, name))
    if c.probe_service_hosts:
        for url in dict.fromkeys([cfg.storage.effective_endpoint, cfg.booking_api.base_url]):
            out.append(Probe(HTTP, url, deciding=True))
    if c.timeout_s <= 0 or c.interval_s <= 0 or c.offline_interval_s <= 0:
        raise ConfigError(
            f"{cfg.source_path}: connectivity: interval_s, offline_interval_s and timeout_s must be positive"
        )
    if c.fail_threshold < 1 or c.ok_threshold < 1:
        raise ConfigError(
            f"{cfg.source_path}: connectivity: fail_threshold and ok_threshold must be at least 1"
        )
    return out


# ---------------------------------------------------------------- single probes


def _tcp(target: str, timeout: float) -> None:
    host, port = split_host_port(target)
    with socket.create_connection((host, port), timeout=timeout):
        pass


def _dns(name: str, timeout: float) -> None:
    # getaddrinfo has no timeout of its own; the round stops waiting for it at `timeout`.
    if not socket.getaddrinfo(name, None, type=socket.SOCK_STREAM):
        raise OSError("no address")


def _http(url: str, timeout: float) -> None:
    """Any HTTP status proves the path; a TLS failure (captive portal) does not."""
    parts = urlsplit(url)
    conn_cls = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    kwargs = {"context": ssl.create_default_context()} if parts.scheme == "https" else {}
    conn = conn_cls(parts.hostname or "", parts.port, timeout=timeout, **kwargs)  # type: ignore[arg-type]
    try:
        conn.request("HEAD", parts.path or "/", headers={"User-Agent": "venuecam-watchdog"})
        conn.getresponse().read()
    finally:
        conn.close()


RUNNERS: dict[str, Callable[[str, float], None]] = {TCP: _tcp, DNS: _dns, HTTP: _http}


def _describe(exc: BaseException) -> str:
    if isinstance(exc, socket.timeout | TimeoutError):
        return "timed out"
    if isinstance(exc, socket.gaierror):
        return f"DNS: {exc.strerror or exc}"
    if isinstance(exc, ssl.SSLError):
        return f"TLS: {exc.reason or exc}"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return f"{type(exc).__name__}: {exc}"[:200]


def run_probe(probe: Probe, timeout: float) -> ProbeResult:
    started = time.monotonic()
    try:
        RUNNERS[probe.kind](probe.target, timeout)
    except Exception as e:  # every failure of a probe is an answer, not a crash
        return ProbeResult(probe, False, None, _describe(e))
    return ProbeResult(probe, True, time.monotonic() - started)


# ---------------------------------------------------------------- a round


def judge(results: Sequence[ProbeResult], no_route: bool) -> RoundResult:
    """The verdict of one round (pure): deciding probes decide, supporting ones explain."""
    if no_route:
        return RoundResult(False, True, None, "no route to any probe target (link down?)", list(results))
    deciding = [r for r in results if r.probe.deciding]
    supporting = [r for r in results if not r.probe.deciding]
    voters = deciding or supporting
    ok = any(r.ok for r in voters)
    latencies = [r.latency_s for r in voters if r.ok and r.latency_s is not None]
    failed = [r for r in results if not r.ok]
    detail = "; ".join(f"{r.probe}: {r.error}" for r in failed)
    if not voters:
        detail = "no probes configured"
    elif ok and failed:
        detail = "reachable; failing: " + detail
    elif ok:
        detail = "all probes answered"
    elif deciding and any(r.ok for r in supporting):
        detail = "internet answers but the storage/platform hosts do not: " + detail
    return RoundResult(ok, False, min(latencies) if latencies else None, detail[:1000], list(results))


def run_round(
    probes: Sequence[Probe],
    timeout: float,
    has_route: Callable[[str], bool] = routes.has_route_to,
    on_wait: Callable[[], None] | None = None,
    stop_on_first_ok: bool = False,
) -> RoundResult:
    """Run every probe at once, wait at most `timeout` (+ a little), judge.

    `on_wait` is called about once a second while waiting (the watchdog ticks its LEDs).
    `stop_on_first_ok`: return as soon as one probe that votes has answered (while offline,
    one answer is all the news we need; the rest are reported as not yet answered).
    """
    if probes and not any(has_route(p.host) for p in probes):
        return judge([], no_route=True)
    answers: queue.Queue[tuple[int, ProbeResult]] = queue.Queue()
    for i, p in enumerate(probes):
        # Daemon threads: a probe stuck in getaddrinfo must not keep the process alive.
        threading.Thread(target=lambda i=i, p=p: answers.put((i, run_probe(p, timeout))), daemon=True).start()
    results: dict[int, ProbeResult] = {}
    deadline = time.monotonic() + timeout + 0.2
    while len(results) < len(probes):
        left = deadline - time.monotonic()
        if left <= 0:
            break
        try:
            i, r = answers.get(timeout=min(left, 1.0))
            results[i] = r
            if stop_on_first_ok and r.ok and (r.probe.deciding or not any(p.deciding for p in probes)):
                break
        except queue.Empty:
            pass
        if on_wait:
            on_wait()
    pending = "not answered yet" if stop_on_first_ok else "timed out"
    ordered = [results.get(i) or ProbeResult(p, False, None, pending) for i, p in enumerate(probes)]
    return judge(ordered, no_route=False)

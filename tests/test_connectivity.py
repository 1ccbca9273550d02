"""Connectivity: the hysteresis machine (pure), the verdict rules, routes, probes on loopback,
and the published state other processes read."""

from __future__ import annotations

import datetime as dt
import socket
import threading
from pathlib import Path

import pytest

from conftest import free_port
from venuecam.connectivity import probes, routes, state
from venuecam.connectivity.machine import Machine, Status
from venuecam.connectivity.probes import Probe, ProbeResult
from venuecam.errors import ConfigError

# ---------------------------------------------------------------- the machine


def feed(m: Machine, verdicts: str, t0: float = 0.0) -> list[str]:
    """'ok..' -> list of statuses after each round ('o' good, 'x' failed, '!' no route)."""
    out = []
    for i, v in enumerate(verdicts):
        m.transition(v == "o", now=t0 + i, decisive=v == "!")
        out.append(m.status.value[:3])
    return out


def test_first_good_round_goes_online_and_counts_a_generation() -> None:
    m = Machine(fail_threshold=2, ok_threshold=1)
    change = m.transition(True, now=5.0)
    assert change is not None and (change.old, change.new, change.generation) == (
        Status.UNKNOWN,
        Status.ONLINE,
        1,
    )
    assert m.changed_at == 5.0


def test_one_failed_round_does_not_flap_but_two_do() -> None:
    m = Machine(fail_threshold=2, ok_threshold=1)
    assert feed(m, "oxoxo") == ["ONL"] * 5
    assert m.generation == 1
    assert feed(m, "xx") == ["ONL", "OFF"]
    assert m.generation == 2


def test_no_route_is_offline_at_once() -> None:
    m = Machine(fail_threshold=3, ok_threshold=1)
    assert feed(m, "o!") == ["ONL", "OFF"]


def test_back_online_needs_ok_threshold_good_rounds_in_a_row() -> None:
    m = Machine(fail_threshold=1, ok_threshold=2)
    assert feed(m, "oox") == ["UNK", "ONL", "OFF"]
    assert feed(m, "oxoo") == ["OFF", "OFF", "OFF", "ONL"]


def test_suspect_asks_for_a_quick_recheck_only_while_a_change_is_pending() -> None:
    m = Machine(fail_threshold=2, ok_threshold=1)
    m.transition(True, 0)
    assert not m.suspect
    m.transition(False, 1)
    assert m.suspect and m.status is Status.ONLINE
    m.transition(False, 2)
    assert not m.suspect and m.status is Status.OFFLINE


def test_reset_goes_unknown_once() -> None:
    m = Machine()
    m.transition(True, 0)
    assert m.reset(1) is not None and m.status is Status.UNKNOWN
    assert m.reset(2) is None


def test_thresholds_below_one_are_rejected() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        Machine(fail_threshold=0)


# ---------------------------------------------------------------- the verdict of a round


def r(
    kind: str, ok: bool, deciding: bool = False, latency: float | None = 0.01, error: str = ""
) -> ProbeResult:
    return ProbeResult(
        Probe(kind, "t:1" if kind == "tcp" else "x", deciding), ok, latency if ok else None, error
    )


def test_service_hosts_decide_even_when_public_resolvers_answer() -> None:
    """Captive portal / dead upstream: DNS and TCP to 1.1.1.1 work, our hosts do not."""
    rnd = probes.judge(
        [r("tcp", True), r("dns", True), r("http", False, True, error="timed out")], no_route=False
    )
    assert not rnd.ok and "storage/platform hosts do not" in rnd.detail


def test_one_service_host_answering_is_enough() -> None:
    rnd = probes.judge(
        [r("tcp", False, error="timed out"), r("http", True, True, 0.02), r("http", False, True)], False
    )
    assert rnd.ok and rnd.latency_s == 0.02 and rnd.detail.startswith("reachable; failing:")


def test_without_service_probes_the_public_ones_decide() -> None:
    assert probes.judge([r("tcp", False), r("dns", True)], False).ok
    assert not probes.judge([r("tcp", False), r("dns", False)], False).ok


def test_no_route_is_a_decisive_failure() -> None:
    rnd = probes.judge([], no_route=True)
    assert not rnd.ok and rnd.decisive and "no route" in rnd.detail


# ---------------------------------------------------------------- routes


def write_routes(tmp_path: Path, *lines: str) -> Path:
    p = tmp_path / "route"
    header = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT"
    p.write_text("\n".join([header, *lines]) + "\n")
    return p


def test_default_route_and_route_lookup_from_proc_format(tmp_path: Path) -> None:
    none6 = tmp_path / "nov6"
    with_default = write_routes(
        tmp_path,
        "eth0\t00000000\t0101A8C0\t0003\t0\t0\t0\t00000000\t0\t0\t0",
        "eth0\t0001A8C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0",
    )
    assert routes.has_default_route(with_default, none6)
    assert routes.has_route_to("192.168.1.50", with_default, none6)
    assert routes.has_route_to("8.8.8.8", with_default, none6)
    only_lan = write_routes(tmp_path, "eth0\t0001A8C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0")
    assert not routes.has_default_route(only_lan, none6)
    assert routes.has_route_to("192.168.1.50", only_lan, none6)
    assert not routes.has_route_to("8.8.8.8", only_lan, none6)
    assert not routes.has_route_to("storage.example.com", only_lan, none6)  # a name needs a default
    assert routes.has_route_to("127.0.0.1", only_lan, none6)  # loopback needs no route


# ---------------------------------------------------------------- probes on loopback


@pytest.fixture
def listener() -> tuple[socket.socket, int]:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(16)
    yield s, s.getsockname()[1]
    s.close()


def test_tcp_probe_open_port_answers_closed_port_refuses(listener: tuple[socket.socket, int]) -> None:
    _, port = listener
    assert probes.run_probe(Probe("tcp", f"127.0.0.1:{port}"), 1.0).ok
    closed = probes.run_probe(Probe("tcp", f"127.0.0.1:{free_port()}"), 1.0)
    assert not closed.ok and "refused" in closed.error.lower()


def test_http_probe_any_status_proves_the_path(tmp_path: Path) -> None:
    """A 404 (or 500) is still an answer from the host: the path works."""
    import http.server

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_HEAD(self) -> None:
            self.send_response(404)
            self.end_headers()

        def log_message(self, *a: object) -> None:
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        res = probes.run_probe(Probe("http", f"http://127.0.0.1:{srv.server_port}/api", True), 2.0)
        assert res.ok and res.latency_s is not None
    finally:
        srv.shutdown()
        srv.server_close()


def test_http_probe_to_something_that_is_not_http_fails(listener: tuple[socket.socket, int]) -> None:
    """A TCP port that accepts but never answers HTTP does not prove the path."""
    _, port = listener
    res = probes.run_probe(Probe("http", f"http://127.0.0.1:{port}/", True), 0.5)
    assert not res.ok and res.error == "timed out"


def test_dns_probe_fails_for_a_name_that_cannot_resolve_while_tcp_works(
    listener: tuple[socket.socket, int],
) -> None:
    _, port = listener
    rnd = probes.run_round(
        [Probe("tcp", f"127.0.0.1:{port}"), Probe("dns", "no-such-host.invalid")], timeout=3.0
    )
    by_kind = {x.probe.kind: x for x in rnd.results}
    assert by_kind["tcp"].ok and not by_kind["dns"].ok
    assert rnd.ok and "dns no-such-host.invalid" in rnd.detail


def test_round_stops_waiting_at_the_timeout_for_a_probe_that_hangs(
    listener: tuple[socket.socket, int],
) -> None:
    """A blackholed target: the round still ends, and reports it timed out."""
    _, port = listener
    hanging = Probe("http", f"http://127.0.0.1:{port}/", True)  # accepts, never answers
    rnd = probes.run_round([hanging], timeout=0.3)
    assert not rnd.ok and rnd.results[0].error == "timed out"


def test_round_with_no_route_to_any_target_does_not_probe() -> None:
    rnd = probes.run_round([Probe("tcp", "10.255.255.1:53")], 5.0, has_route=lambda host: False)
    assert rnd.decisive and rnd.results == []


def test_probe_list_follows_the_config(make_config) -> None:  # type: ignore[no-untyped-def]
    cfg = make_config(connectivity={"tcp_targets": ["127.0.0.1:53"], "dns_names": ["example.org"]})
    got = [(p.kind, p.target, p.deciding) for p in probes.probes_from_config(cfg)]
    assert got == [
        ("tcp", "127.0.0.1:53", False),
        ("dns", "example.org", False),
        ("http", "http://127.0.0.1:9", True),
    ]  # storage and booking API share the test address, probed once
    cfg = make_config(connectivity={"probe_service_hosts": False, "tcp_targets": [], "dns_names": []})
    assert probes.probes_from_config(cfg) == []


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"tcp_targets": ["1.1.1.1"]}, r"connectivity.tcp_targets\[0\]: expected host:port, got '1.1.1.1'"),
        ({"tcp_targets": ["1.1.1.1:99999"]}, r"tcp_targets\[0\]"),
        ({"dns_names": ["bad name"]}, r"connectivity.dns_names\[0\]: expected a host name"),
        ({"fail_threshold": 0}, "fail_threshold and ok_threshold must be at least 1"),
        ({"timeout_s": 0}, "must be positive"),
    ],
)
def test_bad_probe_config_is_named(make_config, section, message) -> None:  # type: ignore[no-untyped-def]
    cfg = make_config(connectivity=section)
    with pytest.raises(ConfigError, match=message):
        probes.probes_from_config(cfg)


# ---------------------------------------------------------------- the published state


def test_read_state_without_a_row_is_unknown_and_counts_as_online(database) -> None:  # type: ignore[no-untyped-def]
    s = state.read_state()
    assert s.status == "UNKNOWN" and s.generation == 0
    assert state.is_online()


def test_publish_then_read_back_and_is_online(database, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    now = dt.datetime(2026, 1, 2, 3, 4, 5)
    s = state.make_state("OFFLINE", now, now, None, "no route", 7)
    state.publish(s, tmp_path / "run")
    got = state.read_state()
    assert got == s and got.since == "2026-01-02T03:04:05Z"
    assert not state.is_online(now=now + dt.timedelta(seconds=10))
    # A watchdog that stopped refreshing is not trusted: try the network.
    assert state.is_online(now=now + dt.timedelta(seconds=state.STALE_AFTER_S + 1))
    assert state.peek(tmp_path / "run") == ("OFFLINE", 7)


def test_marker_file_follows_the_status(tmp_path: Path) -> None:
    run = tmp_path / "run"
    assert state.peek(run) == ("UNKNOWN", 0)
    state.write_marker(run, "OFFLINE", 3)
    assert (run / "offline").exists() and not (run / "online").exists()
    state.write_marker(run, "ONLINE", 4)
    assert state.peek(run) == ("ONLINE", 4) and not (run / "offline").exists()
    state.write_marker(run, "UNKNOWN", 5)
    assert state.peek(run) == ("UNKNOWN", 0) and list(run.iterdir()) == []


def test_garbage_in_the_state_row_reads_as_unknown(database) -> None:  # type: ignore[no-untyped-def]
    from venuecam.models import State

    State.insert(key="connectivity", value="{not json").on_conflict_replace().execute()
    s = state.read_state()
    assert s.status == "UNKNOWN" and "unreadable" in s.detail
    assert state.is_online()

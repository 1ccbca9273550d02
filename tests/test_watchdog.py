"""The watchdog on loopback: real probes against a listener the test opens and closes, the
published state, connectivity_log rows, one log line per change, and the queue woken on
reconnect (the real WorkerClient and huey file)."""

from __future__ import annotations

import datetime as dt
import json
import logging
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import free_port
from venuecam import ledger
from venuecam.connectivity import state
from venuecam.connectivity.probes import RoundResult
from venuecam.models import ConnectivityLog, PendingTask, TaskType
from venuecam.timeutil import utcnow
from venuecam.watchdog.service import Watchdog

SEED_UP = "🌐 CONNECTIVITY: Status changed: OFFLINE ❌ -> ONLINE ✅"
SEED_DOWN = "🌐 CONNECTIVITY: Status changed: ONLINE ✅ -> OFFLINE ❌"


class Service:
    """A TCP service on loopback the test can take away and bring back on the same port."""

    def __init__(self) -> None:
        self.port = free_port()
        self.sock: socket.socket | None = None
        self.up()

    def up(self) -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", self.port))
        self.sock.listen(16)

    def down(self) -> None:
        if self.sock:
            self.sock.close()
            self.sock = None


@pytest.fixture
def service() -> Iterator[Service]:
    s = Service()
    yield s
    s.down()


@pytest.fixture
def watchdog(make_config, database, service: Service) -> Watchdog:  # type: ignore[no-untyped-def]
    cfg = make_config(
        connectivity={"tcp_targets": [f"127.0.0.1:{service.port}"], "dns_names": [], "probe_service_hosts": False,
                      "timeout_s": 1.0, "fail_threshold": 2, "ok_threshold": 1},
        leds={"enabled": False},
    )  # fmt: skip
    return Watchdog(cfg)


def changes(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "Status changed" in r.getMessage()]


def test_outage_and_recovery_are_logged_once_each_and_published(
    watchdog: Watchdog, service: Service, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    t = 100.0
    assert watchdog.step(now=t) is not None
    assert state.read_state().status == "ONLINE"
    service.down()
    for i in range(1, 5):  # four failed rounds: one change
        watchdog.step(now=t + i)
    s = state.read_state()
    assert s.status == "OFFLINE" and "refused" in s.detail.lower() and s.generation == 2
    assert state.peek(watchdog.cfg.run_dir) == ("OFFLINE", 2)
    service.up()
    watchdog.step(now=t + 10)
    assert state.read_state().status == "ONLINE"
    assert changes(caplog) == [
        "🌐 CONNECTIVITY: Status changed: UNKNOWN ❔ -> ONLINE ✅",
        f"{SEED_DOWN} (tcp 127.0.0.1:{service.port}: Connection refused)",
        SEED_UP,
    ]
    rows = list(ConnectivityLog.select().order_by(ConnectivityLog.id))
    # One row per change (plus the first minute's sample), each with its status.
    statuses = [r.status for r in rows]
    assert statuses[0] == "ONLINE" and "OFFLINE" in statuses and statuses[-1] == "ONLINE"
    offline = next(r for r in rows if r.status == "OFFLINE")
    assert offline.latency is None and "refused" in offline.error_details.lower()
    assert rows[-1].latency is not None and rows[-1].error_details is None


def test_a_single_lost_round_does_not_flap(watchdog: Watchdog, service: Service) -> None:
    watchdog.step(now=0)
    service.down()
    watchdog.step(now=1)  # one failed round
    assert watchdog.machine.suspect  # the loop re-probes at once
    service.up()
    watchdog.step(now=2)
    s = state.read_state()
    assert s.status == "ONLINE" and s.generation == 1
    assert ConnectivityLog.select().where(ConnectivityLog.status == "OFFLINE").count() == 0


def test_reconnect_wakes_the_waiting_queue(watchdog: Watchdog, service: Service) -> None:
    """OFFLINE -> ONLINE: an upload waiting out its backoff becomes due now and is dispatched."""
    later = utcnow() + dt.timedelta(hours=2)
    row, _ = ledger.enqueue(TaskType.UPLOAD, "upload_r2:BK-1-CAMERA_A-full", {}, max_attempts=5, delay_s=7200)
    watchdog.step(now=0)
    service.down()
    watchdog.step(now=1)
    watchdog.step(now=2)
    assert PendingTask.get_by_id(row.id).next_retry_at >= later - dt.timedelta(
        minutes=1
    )  # offline: untouched
    service.up()
    watchdog.step(now=3)
    woken = PendingTask.get_by_id(row.id)
    assert woken.next_retry_at <= utcnow() and woken.dispatched_at is not None


def test_a_failing_reaction_does_not_stop_the_others(watchdog: Watchdog, service: Service) -> None:
    def broken(change: object, rnd: object) -> None:
        raise RuntimeError("boom")

    watchdog.on_change.insert(0, broken)
    watchdog.step(now=0)
    assert state.read_state().status == "ONLINE"
    assert ConnectivityLog.select().count() == 1


def test_samples_are_periodic_and_old_rows_pruned(watchdog: Watchdog) -> None:
    wall = dt.datetime(2026, 3, 1, 12, 0, 0)
    ConnectivityLog.create(timestamp=wall - dt.timedelta(days=8), status="ONLINE")
    ok = RoundResult(True, False, 0.005, "all probes answered")
    watchdog.feed(ok, now=0, wall=wall)  # the change row; the 8-day-old row pruned
    for i in range(1, 30):
        watchdog.feed(ok, now=float(i), wall=wall + dt.timedelta(seconds=i))
    assert ConnectivityLog.select().count() == 1
    watchdog.feed(ok, now=61, wall=wall + dt.timedelta(seconds=61))  # a minute later: a sample
    rows = list(ConnectivityLog.select().order_by(ConnectivityLog.id))
    assert len(rows) == 2 and rows[1].latency == pytest.approx(0.005)
    assert all(r.timestamp >= wall for r in rows)


def test_no_route_goes_offline_on_the_first_round(make_config, database) -> None:  # type: ignore[no-untyped-def]
    cfg = make_config(connectivity={"tcp_targets": ["10.213.250.2:53"], "dns_names": [], "probe_service_hosts": False, "fail_threshold": 3}, leds={"enabled": False})  # fmt: skip
    wd = Watchdog(cfg, has_route=lambda host: False)
    wd.feed(RoundResult(True, False, 0.01, "ok"), now=0, wall=utcnow())
    change = wd.step(now=1)
    assert change is not None and change.new == "OFFLINE"
    assert "no route" in state.read_state().detail


def test_stop_publishes_unknown_and_keeps_the_generation(watchdog: Watchdog) -> None:
    watchdog.step(now=0)
    watchdog.close()
    s = state.read_state()
    assert s.status == "UNKNOWN" and s.generation == 2
    assert state.peek(watchdog.cfg.run_dir) == ("UNKNOWN", 0)
    again = Watchdog(watchdog.cfg)
    again.step(now=5)
    assert state.read_state().generation == 3


def test_led_failure_is_logged_and_never_stops_the_watchdog(
    make_config, database, service: Service, caplog: pytest.LogCaptureFixture
) -> None:  # type: ignore[no-untyped-def]
    cfg = make_config(
        connectivity={
            "tcp_targets": [f"127.0.0.1:{service.port}"],
            "dns_names": [],
            "probe_service_hosts": False,
        },
        leds={"enabled": True, "pin_factory": "no-such-pin-factory"},
    )
    wd = Watchdog(cfg)
    wd.tick_leds()
    wd.tick_leds()
    assert wd.step(now=0) is not None
    warnings = [r for r in caplog.records if "LED" in r.getMessage()]
    assert len(warnings) == 1 and wd._leds_broken


def test_once_prints_the_verdict(make_config, service: Service) -> None:  # type: ignore[no-untyped-def]
    cfg = make_config(connectivity={"tcp_targets": [f"127.0.0.1:{service.port}"], "dns_names": [], "probe_service_hosts": False})  # fmt: skip
    r = subprocess.run([sys.executable, "-m", "venuecam", "--config", cfg.source_path, "watchdog", "--once"],
                       capture_output=True, text=True, timeout=60)  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["ok"] is True
    service.down()
    r = subprocess.run([sys.executable, "-m", "venuecam", "--config", cfg.source_path, "watchdog", "--once"],
                       capture_output=True, text=True, timeout=60)  # fmt: skip
    assert r.returncode == 1 and json.loads(r.stdout)["ok"] is False


def test_bad_probe_config_stops_the_program_with_a_clear_error(make_config) -> None:  # type: ignore[no-untyped-def]
    cfg = make_config(connectivity={"tcp_targets": ["not-a-target"]})
    r = subprocess.run([sys.executable, "-m", "venuecam", "--config", cfg.source_path, "watchdog"],
                       capture_output=True, text=True, timeout=60)  # fmt: skip
    assert r.returncode == 1
    assert "connectivity.tcp_targets[0]: expected host:port, got 'not-a-target'" in r.stderr
    assert not Path(cfg.db_path).exists()  # rejected before anything was opened or written

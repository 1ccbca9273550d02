"""LEDs: the pattern table (pure), and the LED service driving gpiozero's mock pins from the
database's facts, one situation at a time; what they show appears in `venuecam status`."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from gpiozero.pins.mock import MockFactory, MockPWMPin

from venuecam import config as config_mod
from venuecam import db as db_mod
from venuecam import ledger, shared_state
from venuecam.leds.patterns import LedFacts, LedState, choose
from venuecam.leds.service import LedService
from venuecam.models import PendingTask, Segment, TaskStatus, TaskType
from venuecam.status import facts, render, shapes
from venuecam.timeutil import iso, naive_utc_to_ts

NOW = dt.datetime(2026, 3, 1, 12, 0, 0)
ONLINE_PIN, BACKLOG_PIN, FAULT_PIN = 17, 27, 22


# ---------------------------------------------------------------- the table (pure)


@pytest.mark.parametrize(
    ("facts_", "online", "backlog", "fault"),
    [
        (LedFacts("ONLINE"), "on", "off", "off"),
        (LedFacts("OFFLINE"), "off", "off", "off"),
        (LedFacts("UNKNOWN"), ("blink", 0.1, 1.9), "off", "off"),
        (LedFacts("ONLINE", waiting=3), "on", ("blink", 1.0, 1.0), "off"),
        (LedFacts("ONLINE", waiting=42), "on", ("blink", 0.4, 0.4), "off"),
        (LedFacts("OFFLINE", waiting=400), "off", ("blink", 0.15, 0.15), "off"),
        (LedFacts("OFFLINE", waiting=1001, max_queue_size=1000), "off", "on", "off"),
        (LedFacts("ONLINE", auth_rejected=True, failed=3), "on", "off", "on"),
        (
            LedFacts("ONLINE", cameras_down=("CAMERA_A",), disk_nearly_full=True),
            "on",
            "off",
            ("blink", 0.2, 0.2),
        ),
        (LedFacts("ONLINE", disk_nearly_full=True), "on", "off", ("blink", 0.6, 0.6)),
        (LedFacts("ONLINE", clock_set=False), "on", "off", ("blink", 1.5, 0.5)),
        (LedFacts("ONLINE", failed=2), "on", "off", ("blink", 0.1, 1.9)),
    ],
)
def test_pattern_table(facts_: LedFacts, online: Any, backlog: Any, fault: Any) -> None:
    def shape(s: LedState) -> Any:
        return (s.mode, s.on_time, s.off_time) if s.mode == "blink" else s.mode

    plan = choose(facts_)
    assert (shape(plan.online), shape(plan.backlog), shape(plan.fault)) == (online, backlog, fault)


def test_every_fault_cause_is_listed_most_urgent_first() -> None:
    plan = choose(LedFacts("ONLINE", auth_rejected=True, cameras_down=("A", "B"), disk_nearly_full=True,
                           clock_set=False, failed=1))  # fmt: skip
    assert plan.causes == (
        "platform rejects the token",
        "camera down: A, B",
        "disk nearly full",
        "clock not set",
        "1 task(s) failed",
    )


# ---------------------------------------------------------------- the service on mock pins


@pytest.fixture
def led_cfg(make_config: Callable[..., config_mod.Config]) -> config_mod.Config:
    return make_config(retention={"disk_warn_percent": 0.0})


@pytest.fixture
def healthy(led_cfg: config_mod.Config) -> Iterator[config_mod.Config]:
    """Online, camera recording, nothing waiting: the LEDs' quiet state."""
    database = db_mod.open_db(led_cfg.db_path)
    set_state(
        "connectivity", {"status": "ONLINE", "since": iso(NOW), "last_check": iso(NOW), "latency_ms": 9.0}
    )
    add_segment(NOW - dt.timedelta(seconds=2))
    yield led_cfg
    database.close()


@pytest.fixture
def service(healthy: config_mod.Config) -> Iterator[tuple[LedService, MockFactory]]:
    factory = MockFactory(pin_class=MockPWMPin)
    svc = LedService(healthy, pin_factory=factory)
    yield svc, factory
    svc.close()
    factory.reset()


def set_state(key: str, value: dict[str, Any]) -> None:
    shared_state.put_json(key, value, NOW)


def add_segment(end: dt.datetime) -> None:
    end_ts = naive_utc_to_ts(end)
    Segment.create(
        camera="CAMERA_A", start_ts=end_ts - 2, end_ts=end_ts, duration=2, path=f"/s/{end_ts}.ts", bytes=1
    )


def add_tasks(n: int, status: str = TaskStatus.PENDING) -> None:
    for i in range(n):
        row, _ = ledger.enqueue(TaskType.UPLOAD, f"u:{status}:{i}", {}, max_attempts=5, now=NOW)
        if status != TaskStatus.PENDING:
            PendingTask.update(status=status).where(PendingTask.id == row.id).execute()


def pin_values(factory: MockFactory, pin: int) -> list[float]:
    return [float(s.state) for s in factory.pin(pin).states]


def wait_for_blinking(factory: MockFactory, pin: int, changes: int = 4, timeout: float = 15.0) -> list[float]:
    """Waits until the pin has toggled `changes` times after its current pattern began."""
    start = len(factory.pin(pin).states)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        values = pin_values(factory, pin)[start - 1 :]
        if len(values) > changes:
            return values
        time.sleep(0.05)
    raise AssertionError(f"pin {pin} did not blink: {pin_values(factory, pin)}")


def assert_alternates(values: list[float]) -> None:
    assert all(a != b for a, b in zip(values, values[1:], strict=False)), values
    assert set(values) == {0.0, 1.0}, values


def test_healthy_box_online_on_backlog_and_fault_off(service: tuple[LedService, MockFactory]) -> None:
    svc, factory = service
    plan = svc.tick(NOW)
    assert plan.causes == ()
    assert factory.pin(ONLINE_PIN).state == 1
    assert factory.pin(BACKLOG_PIN).state == 0 and factory.pin(FAULT_PIN).state == 0


def test_offline_turns_the_online_led_off_and_back_on_when_online(
    service: tuple[LedService, MockFactory],
) -> None:
    svc, factory = service
    svc.tick(NOW)
    set_state("connectivity", {"status": "OFFLINE", "since": iso(NOW), "last_check": iso(NOW)})
    svc.tick(NOW + dt.timedelta(seconds=1))
    assert factory.pin(ONLINE_PIN).state == 0
    set_state("connectivity", {"status": "ONLINE", "since": iso(NOW), "last_check": iso(NOW)})
    svc.tick(NOW + dt.timedelta(seconds=2))
    assert pin_values(factory, ONLINE_PIN)[-3:] == [1.0, 0.0, 1.0]


def test_backlog_led_blinks_faster_with_more_work_waiting(service: tuple[LedService, MockFactory]) -> None:
    svc, factory = service
    add_tasks(3)
    plan = svc.tick(NOW)
    assert (plan.backlog.on_time, plan.backlog.off_time) == (1.0, 1.0)
    add_tasks(200, TaskStatus.PROCESSING)
    plan = svc.tick(NOW)
    assert (plan.backlog.on_time, plan.backlog.off_time) == (0.15, 0.15)
    assert_alternates(wait_for_blinking(factory, BACKLOG_PIN))
    assert factory.pin(FAULT_PIN).state == 0  # waiting work is not a fault


@pytest.mark.parametrize(
    ("situation", "expected_fault", "cause"),
    [
        ("camera down", ("blink", 0.2, 0.2), "camera down: CAMERA_A"),
        ("disk nearly full", ("blink", 0.6, 0.6), "disk nearly full"),
        ("platform rejects the token", ("on", None, None), "platform rejects the token"),
        ("clock not set", ("blink", 1.5, 0.5), "clock not set"),
        ("tasks failed", ("blink", 0.1, 1.9), "2 task(s) failed"),
    ],
)
def test_fault_led_asks_for_a_human(
    healthy: config_mod.Config, make_config: Callable[..., config_mod.Config], situation: str,
    expected_fault: tuple[Any, ...], cause: str,
) -> None:  # fmt: skip
    cfg, now = healthy, NOW
    if situation == "camera down":
        now = NOW + dt.timedelta(minutes=5)  # the last segment is now five minutes old
        set_state("connectivity", {"status": "ONLINE", "since": iso(NOW), "last_check": iso(now)})
    elif situation == "disk nearly full":
        cfg = make_config(retention={"disk_warn_percent": 100.0})  # any real disk is below 100 % free
    elif situation == "platform rejects the token":
        set_state("platform_auth", {"ok": False, "since": iso(NOW), "message": "401 from platform"})
    elif situation == "clock not set":
        now = dt.datetime(1970, 1, 1, 0, 5)  # a Pi without RTC before NTP
    else:
        add_tasks(2, TaskStatus.FAILED)
    factory = MockFactory(pin_class=MockPWMPin)
    svc = LedService(cfg, pin_factory=factory)
    try:
        plan = svc.tick(now)
        assert (plan.fault.mode, plan.fault.on_time, plan.fault.off_time) == expected_fault
        assert plan.causes == (cause,)
        if plan.fault.mode == "on":
            assert factory.pin(FAULT_PIN).state == 1
        else:
            assert_alternates(wait_for_blinking(factory, FAULT_PIN, changes=2))
        assert factory.pin(ONLINE_PIN).state == 1  # still online: the LEDs say independent things
        # what the LEDs show is recorded for `venuecam status`
        shown = shared_state.get_json(shared_state.LEDS)
        assert shown is not None and shown["leds"]["fault"]["mode"] == plan.fault.mode
        assert shown["leds"]["fault"]["pin"] == FAULT_PIN and shown["causes"] == [cause]
    finally:
        svc.close()


def test_led_state_is_visible_in_venuecam_status_text(service: tuple[LedService, MockFactory]) -> None:
    svc, _ = service
    add_tasks(3)
    svc.tick(NOW)
    snapshot = facts.collect(svc.cfg, NOW, with_programs=False, with_clock=False)
    text = render.render(shapes.queue_status(snapshot)["data"])
    assert "leds:      online on, backlog blink 1/1s (3 waiting), fault off" in text


def test_pattern_is_applied_only_when_it_changes(service: tuple[LedService, MockFactory]) -> None:
    svc, factory = service
    svc.tick(NOW)
    before = len(factory.pin(ONLINE_PIN).states)
    for i in range(5):
        svc.tick(NOW + dt.timedelta(seconds=i))
    assert len(factory.pin(ONLINE_PIN).states) == before

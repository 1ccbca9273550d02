"""Drive the LEDs with gpiozero from the database's facts; record what they show.

One process owns the GPIO (the watchdog calls `tick()` about once a second). A pattern is
re-applied only when it changes, so a blink keeps its rhythm between ticks. What the LEDs
show is written to the `State` row "leds" (on change, and every minute as a sign of life),
which `venuecam status` displays: in demo mode and tests the pins are gpiozero's mock pins.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import time
from typing import Any

from venuecam import logs, shared_state
from venuecam.config import Config
from venuecam.leds.patterns import LedPlan, LedState, choose, facts_from_snapshot
from venuecam.status import clock, facts
from venuecam.timeutil import iso, utcnow

log = logging.getLogger("venuecam.leds")

STATE_KEY = shared_state.LEDS
REFRESH_STATE_S = 60.0


# The box's pin factory when none is configured: libgpiod on /dev/gpiochip*, which works under
# any kernel (see gpiod_factory). gpiozero's own default needs lgpio, RPi.GPIO or /dev/gpiomem.
DEFAULT_FACTORY = "gpiod"


def make_pin_factory(name: str) -> Any:
    """A gpiozero pin factory by name: "gpiod" (the default), "mock" (PWM-capable mock pins),
    or any factory gpiozero knows ("lgpio", "rpigpio", "pigpio", "native")."""
    name = name or DEFAULT_FACTORY
    if name == "gpiod":
        from venuecam.leds.gpiod_factory import GpiodFactory

        return GpiodFactory()
    if name == "mock":
        from gpiozero.pins.mock import MockFactory, MockPWMPin

        return MockFactory(pin_class=MockPWMPin)
    from importlib.metadata import entry_points

    for ep in entry_points(group="gpiozero_pin_factories"):
        if ep.name == name:
            return ep.load()()
    raise ValueError(f"leds.pin_factory: unknown gpiozero pin factory {name!r}")


class LedService:
    def __init__(self, cfg: Config, pin_factory: Any = None) -> None:
        self.cfg = cfg
        self.factory_name = "given" if pin_factory is not None else (
            cfg.leds.pin_factory or os.environ.get("GPIOZERO_PIN_FACTORY", "")
        )  # fmt: skip
        self.pins = {
            "online": cfg.leds.online_pin,
            "backlog": cfg.leds.backlog_pin,
            "fault": cfg.leds.fault_pin,
        }
        self.leds: dict[str, Any] = {}
        if cfg.leds.enabled:
            from gpiozero import LED

            factory = pin_factory if pin_factory is not None else make_pin_factory(self.factory_name)
            self.leds = {name: LED(pin, pin_factory=factory) for name, pin in self.pins.items()}
        self._shown: dict[str, LedState] = {}
        self._written: tuple[float, str] | None = None

    def _apply(self, name: str, state: LedState) -> None:
        led = self.leds.get(name)
        if led is None:
            return
        if state.mode == "on":
            led.on()
        elif state.mode == "blink":
            led.blink(on_time=state.on_time, off_time=state.off_time, background=True)
        else:
            led.off()

    def tick(self, now: dt.datetime | None = None) -> LedPlan:
        now = now or utcnow()
        snapshot = facts.collect(self.cfg, now, with_programs=False, with_clock=False)
        snapshot["clock"] = {"clock_set": clock.clock_is_set(now)}
        plan = choose(facts_from_snapshot(snapshot))
        changed = False
        for name, state in plan.leds().items():
            if self._shown.get(name) != state:
                self._apply(name, state)
                if name in self._shown:
                    log.info("%s %s LED: %s (%s)", logs.LED, name, _describe(state), state.reason or "-")
                self._shown[name] = state
                changed = True
        self._record(plan, now, changed)
        return plan

    def _record(self, plan: LedPlan, now: dt.datetime, changed: bool) -> None:
        body = {
            "enabled": self.cfg.leds.enabled,
            "pin_factory": self.factory_name or DEFAULT_FACTORY,
            "leds": {name: {"pin": self.pins[name], **s.as_dict()} for name, s in plan.leds().items()},
            "causes": list(plan.causes),
        }
        text = json.dumps(body, sort_keys=True)
        last = self._written
        if not changed and last and last[1] == text and time.monotonic() - last[0] < REFRESH_STATE_S:
            return
        shared_state.put_json(STATE_KEY, {**body, "updated_at": iso(now)}, now)
        self._written = (time.monotonic(), text)

    def close(self) -> None:
        for led in self.leds.values():
            led.close()
        self.leds = {}


def record_unavailable(cfg: Config, reason: str, now: dt.datetime | None = None) -> None:
    """What `venuecam status` shows when the LEDs cannot be driven at all: a fault, not silence."""
    now = now or utcnow()
    name = cfg.leds.pin_factory or os.environ.get("GPIOZERO_PIN_FACTORY", "") or DEFAULT_FACTORY
    body = {
        "enabled": cfg.leds.enabled,
        "pin_factory": name,
        "error": f"GPIO cannot be opened: {reason}",
        "leds": {},
        "causes": [],
        "updated_at": iso(now),
    }
    shared_state.put_json(STATE_KEY, body, now)


def _describe(state: LedState) -> str:
    if state.mode == "blink":
        return f"blink {state.on_time:g}/{state.off_time:g}s"
    return state.mode

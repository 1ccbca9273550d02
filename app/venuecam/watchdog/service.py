"""The watchdog loop: probe, decide with hysteresis, publish, log changes once, react.

Status-change callbacks (seed 000's sense) run in this process: logging, the published
state, a `connectivity_log` row, and on OFFLINE -> ONLINE waking the queue so waiting work
starts at once instead of when its backoff expires. This process also owns the GPIO: it
ticks the LEDs about once a second.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from venuecam import logs
from venuecam.connectivity import probes as probes_mod
from venuecam.connectivity import routes
from venuecam.connectivity import state as state_mod
from venuecam.connectivity.machine import Change, Machine, Status
from venuecam.connectivity.probes import Probe, RoundResult
from venuecam.models import ConnectivityLog
from venuecam.timeutil import utcnow

if TYPE_CHECKING:
    from venuecam.config import Config

log = logging.getLogger("watchdog")

LABEL = {Status.ONLINE: "ONLINE ✅", Status.OFFLINE: "OFFLINE ❌", Status.UNKNOWN: "UNKNOWN ❔"}
# The state row's last_check is refreshed at least this often without a change (an SD card
# should not take a synchronous write every probe round).
REFRESH_S = 15.0
PRUNE_EVERY_S = 3600.0
LED_TICK_S = 1.0
# GPIO that could not be opened is tried again this often.
LED_RETRY_S = 60.0

OnChange = Callable[[Change, RoundResult], None]


def change_line(change: Change) -> str:
    """The seed's log line: `🌐 CONNECTIVITY: Status changed: OFFLINE ❌ -> ONLINE ✅`."""
    return f"{logs.CONNECTIVITY} Status changed: {LABEL[change.old]} -> {LABEL[change.new]}"


class Watchdog:
    def __init__(
        self,
        cfg: Config,
        probes: Sequence[Probe] | None = None,
        wake: Callable[[], Any] | None = None,
        has_route: Callable[[str], bool] = routes.has_route_to,
        leds_enabled: bool | None = None,
    ) -> None:
        self.cfg = cfg
        c = cfg.connectivity
        self.probes = list(probes_from_config(cfg) if probes is None else probes)
        self.machine = Machine(c.fail_threshold, c.ok_threshold)
        self.has_route = has_route
        self._wake = wake
        self.on_change: list[OnChange] = [self._log_change, self._record_change, self._wake_on_reconnect]
        self.leds_enabled = cfg.leds.enabled if leds_enabled is None else leds_enabled
        self._leds: Any = None
        self._leds_broken = False
        self._led_failing = False
        self._last_led = float("-inf")
        self._last_publish = float("-inf")
        self._last_sample = float("-inf")
        self._last_prune = float("-inf")
        self._since = self._wall = utcnow()
        self.last_round: RoundResult | None = None
        # Continue the published generation so readers never see it go backwards.
        self.machine.generation = state_mod.read_state().generation

    # ------------------------------------------------------------ one round

    def step(self, now: float | None = None, wall: dt.datetime | None = None) -> Change | None:
        """Run one probe round and act on its verdict. Returns the change, if any."""
        rnd = probes_mod.run_round(
            self.probes,
            self.cfg.connectivity.timeout_s,
            self.has_route,
            on_wait=self.tick_leds,
            stop_on_first_ok=self.machine.status is not Status.ONLINE,
        )
        return self.feed(rnd, time.monotonic() if now is None else now, wall or utcnow())

    def feed(self, rnd: RoundResult, now: float, wall: dt.datetime) -> Change | None:
        """Act on one round's verdict (split from `step` so tests can feed rounds)."""
        self.last_round = rnd
        change = self.machine.transition(rnd.ok, now, decisive=rnd.decisive)
        if change:
            self._since = self._wall = wall
            # Publish first: a worker woken below must already read ONLINE.
            self._publish(rnd, wall)
            self._last_publish = now
            for callback in self.on_change:
                try:
                    callback(change, rnd)
                except Exception:  # one failing reaction must not stop the others
                    log.exception("%s status-change reaction %s failed", logs.CONNECTIVITY, callback.__name__)
        elif now - self._last_publish >= REFRESH_S:
            self._publish(rnd, wall)
            self._last_publish = now
        if not change and now - self._last_sample >= self.cfg.connectivity.sample_interval_s:
            self._log_row(rnd, wall)
            self._last_sample = now
        if now - self._last_prune >= PRUNE_EVERY_S:
            self._prune(wall)
            self._last_prune = now
        return change

    # ------------------------------------------------------------ reactions

    def _log_change(self, change: Change, rnd: RoundResult) -> None:
        if change.new is Status.OFFLINE:
            log.warning("%s (%s)", change_line(change), rnd.detail)
        else:
            log.info("%s", change_line(change))

    def _record_change(self, change: Change, rnd: RoundResult) -> None:
        self._log_row(rnd, self._wall)
        self._last_sample = change.at

    def _wake_on_reconnect(self, change: Change, rnd: RoundResult) -> None:
        if change.old is Status.OFFLINE and change.new is Status.ONLINE:
            if self._wake is None:
                # Memory, not a circle: huey and the job code only once the link first comes back.
                from venuecam.worker.client import WorkerClient

                client = WorkerClient(self.cfg)
                self._wake = client.wake
            self._wake()

    def _publish(self, rnd: RoundResult | None, wall: dt.datetime, note: str = "") -> None:
        latency = None if rnd is None or rnd.latency_s is None else rnd.latency_s * 1000
        detail = rnd.detail if rnd is not None else note
        s = state_mod.make_state(
            self.machine.status.value, self._since, wall, latency, detail, self.machine.generation
        )
        state_mod.publish(s, self.cfg.run_dir)

    def _log_row(self, rnd: RoundResult, wall: dt.datetime) -> None:
        failed = [r for r in rnd.results if not r.ok]
        details = rnd.detail if (failed or not rnd.ok) else None
        with ConnectivityLog._meta.database.atomic():
            ConnectivityLog.create(
                timestamp=wall,
                status=self.machine.status.value,
                latency=rnd.latency_s,
                error_details=details,
            )

    def _prune(self, wall: dt.datetime) -> None:
        cutoff = wall - dt.timedelta(days=self.cfg.connectivity.log_retention_days)
        with ConnectivityLog._meta.database.atomic():
            ConnectivityLog.delete().where(ConnectivityLog.timestamp < cutoff).execute()

    # ------------------------------------------------------------ LEDs

    def tick_leds(self) -> None:
        """About once a second; an LED problem is logged once and never stops the watchdog.

        GPIO that cannot be opened (no chip, no permission, no pin library) is a fault a
        person must see: it is logged at ERROR (the journal gets it), recorded for `venuecam
        status`, and retried every LED_RETRY_S (udev may set the device's group late)."""
        if not self.leds_enabled:
            return
        now = time.monotonic()
        if now - self._last_led < (LED_RETRY_S if self._leds_broken else LED_TICK_S):
            return
        self._last_led = now
        try:
            if self._leds is None:
                from venuecam.leds.service import LedService

                self._leds = LedService(self.cfg)
                if self._leds_broken:
                    log.info("%s GPIO opened: LEDs driven again", logs.LED)
                self._leds_broken = False
            self._leds.tick()
            self._led_failing = False
        except Exception as e:
            if self._leds is None:
                self._gpio_unavailable(e)
            elif not self._led_failing:
                # Log once per streak of failures, not once a second.
                self._led_failing = True
                log.warning("%s LED update failed: %s", logs.LED, e)

    def _gpio_unavailable(self, e: Exception) -> None:
        reason = f"{type(e).__name__}: {e}"
        if not self._leds_broken:
            log.error("%s GPIO cannot be opened, the LEDs are dark: %s", logs.LED, reason)
        self._leds_broken = True
        try:
            from venuecam.leds.service import record_unavailable

            record_unavailable(self.cfg, reason)
        except Exception as db_error:  # the database has its own faults; keep watching
            log.warning("%s cannot record the GPIO fault: %s", logs.LED, db_error)

    # ------------------------------------------------------------ the loop

    def run(self, stop: threading.Event) -> None:
        c = self.cfg.connectivity
        log.info(
            "%s watchdog started: %d probe(s), every %.1f s, timeout %.1f s",
            logs.CONNECTIVITY,
            len(self.probes),
            c.interval_s,
            c.timeout_s,
        )
        self._publish(None, utcnow(), "watchdog starting: first probe round under way")
        try:
            while not stop.is_set():
                self.step()
                # A suspected change is confirmed (or dismissed) by probing again at once.
                if self.machine.suspect:
                    wait = 0.0
                elif self.machine.status is Status.OFFLINE:
                    wait = min(c.offline_interval_s, c.interval_s)
                else:
                    wait = c.interval_s
                deadline = time.monotonic() + wait
                while not stop.is_set() and (left := deadline - time.monotonic()) > 0:
                    stop.wait(min(left, LED_TICK_S))
                    self.tick_leds()
        finally:
            self.close()

    def close(self) -> None:
        change = self.machine.reset(time.monotonic())
        if change:
            self._since = utcnow()
            log.info("%s", change_line(change))
        try:
            self._publish(None, utcnow(), "watchdog stopped")
        except Exception:
            log.exception("%s could not publish UNKNOWN at stop", logs.CONNECTIVITY)
        if self._leds is not None:
            try:
                self._leds.close()
            except Exception:
                log.exception("%s closing LEDs failed", logs.LED)
            self._leds = None


def probes_from_config(cfg: Config) -> list[Probe]:
    return probes_mod.probes_from_config(cfg)

"""Fixtures for the booking platform simulator: a real `venuecam simulator` process.

`platform` (per test) is a session-wide simulator reset before each test. `start_simulator()`
starts one with given arguments, e.g. inside a network namespace:
`start_simulator(host="10.9.0.2", prefix=["ip", "netns", "exec", "cloud"])`.
"""

from __future__ import annotations

import json
import os
import selectors
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import requests

from conftest import API_TOKEN, free_port

SIM_VENUE_ID = "42"
SIM_TIMEZONE = "Asia/Jakarta"


class PlatformSim:
    """A running simulator process and the helpers tests use to drive it."""

    def __init__(self, proc: subprocess.Popen[str], url: str, token: str, log_path: Path) -> None:
        self.proc = proc
        self.url = url
        self.token = token
        self.log_path = log_path  # the simulator's stderr (its log)
        self.venue_id = SIM_VENUE_ID

    def _post(self, path: str, body: Any) -> Any:
        r = requests.post(self.url + path, json=body, timeout=10)
        r.raise_for_status()
        return r.json()

    def add_bookings(self, bookings: list[Any], date: str | None = None, append: bool = False) -> Any:
        """Serve these raw objects verbatim (dirty ones too); `append` keeps duplicate ids."""
        body: dict[str, Any] = {"bookings": bookings, "append": append}
        if date is not None:
            body["date"] = date
        return self._post("/_sim/bookings", body)

    def remove_bookings(self, ids: list[Any]) -> Any:
        return self._post("/_sim/bookings", {"remove": ids})

    def set_fault(self, endpoint: str = "bookings", mode: str = "500", count: int = 1, **extra: Any) -> Any:
        """The next `count` requests to `endpoint` (after `after=K` good ones) get the fault."""
        return self._post("/_sim/faults", {endpoint: {"mode": mode, "count": count, **extra}})

    def clear_faults(self) -> Any:
        return self._post("/_sim/faults", {"bookings": None, "videos": None})

    def notifications(self) -> list[dict[str, Any]]:
        """Every notification received (retries too), oldest first: the payload's fields
        plus `http_status` (201 or 409) and `received_at` (epoch seconds)."""
        return [
            {**n["payload"], "http_status": n["status"], "received_at": n["received_at"]}
            for n in self.summary()["notifications"]
        ]

    def summary(self) -> dict[str, Any]:
        """{"notifications": [...], "counts": {uid: n}, "delivered": {uid: payload},
        "violations": {"booking|camera|type": [uids]}, "requests": {"bookings": n, "videos": n}}"""
        r = requests.get(self.url + "/_sim/notifications", timeout=10)
        r.raise_for_status()
        return r.json()

    def reset(self) -> None:
        self._post("/_sim/reset", {})

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        if self.proc.stdout:
            self.proc.stdout.close()


def start_simulator(
    *,
    host: str = "127.0.0.1",
    port: int | None = None,
    token: str = API_TOKEN,
    venue_id: str = SIM_VENUE_ID,
    timezone: str = SIM_TIMEZONE,
    schedule: str | None = None,
    state_file: str | os.PathLike[str] | None = None,
    prefix: Sequence[str] = (),
    log_path: str | os.PathLike[str] | None = None,
    timeout: float = 20.0,
) -> PlatformSim:
    """Start `venuecam simulator` and wait for its "listening on" line (works inside a netns too)."""
    port = free_port() if port is None else port
    argv = [*prefix, sys.executable, "-m", "venuecam", "simulator", "--host", host, "--port", str(port),
            "--token", token, "--venue-id", venue_id, "--timezone", timezone]  # fmt: skip
    if schedule:
        argv += ["--schedule", schedule]
    if state_file:
        argv += ["--state-file", str(state_file)]
    if log_path is None:
        fd, log_path = tempfile.mkstemp(prefix="simulator-", suffix=".log")
        os.close(fd)
    log = Path(log_path)
    with open(log, "ab") as err:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=err, text=True)
    line = _read_line(proc, timeout)
    if not line.startswith("listening on "):
        proc.kill()
        proc.wait(10)
        raise RuntimeError(f"simulator did not start ({argv[:6]}...): {line!r}\n{log.read_text()[-2000:]}")
    return PlatformSim(proc, line.removeprefix("listening on ").strip(), token, log)


def _read_line(proc: subprocess.Popen[str], timeout: float) -> str:
    assert proc.stdout is not None
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if sel.select(timeout=0.2):
                return proc.stdout.readline()
            if proc.poll() is not None:
                return proc.stdout.readline()
    finally:
        sel.close()
    return ""


@pytest.fixture(scope="session")
def platform_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PlatformSim]:
    sim = start_simulator(log_path=tmp_path_factory.mktemp("simulator") / "simulator.log")
    yield sim
    sim.stop()


@pytest.fixture
def platform(platform_server: PlatformSim) -> PlatformSim:
    """The simulator with no bookings, faults or notifications (no schedule: tests add bookings)."""
    if platform_server.proc.poll() is not None:
        raise RuntimeError(f"simulator died:\n{platform_server.log_text()[-2000:]}")
    platform_server.reset()
    return platform_server


def booking(booking_id: Any = "BK-1", **over: Any) -> dict[str, Any]:
    """A clean platform record; `over` replaces fields (use None-valued keys to test absence)."""
    rec: dict[str, Any] = {
        "booking_id": booking_id,
        "order_detail_id": 789,
        "field_id": 1,
        "field_name": "Lapangan A",
        "date": "2025-01-23",
        "start_time": "10:00:00",
        "end_time": "12:00:00",
        "status": "success",
        "user_name": "John Doe",
        "user_phone": "081234567890",
    }
    rec.update(over)
    return rec


def as_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True)

"""The `state` table: small facts shared between processes (never through memory).

This module owns the table: its keys are declared here with their writer, and every read
and write goes through `get_json`/`put_json` (or `read_value`, the plain-SQL read statusd
uses on every status call). A key not declared here is refused, so two modules cannot
quietly share or clash on a name.

| key              | written by            | holds                                              |
|------------------|-----------------------|----------------------------------------------------|
| `connectivity`   | watchdog              | connectivity.state.ConnState as JSON               |
| `leds`           | watchdog (LedService) | what each LED shows and why                        |
| `platform_auth`  | worker                | whether the platform accepts our token (401/403)   |
| `queue_warning`  | worker (reconciler)   | waiting work over queue.max_queue_size             |
| `queue_expired`  | worker (reconciler)   | how much waiting work passed queue.expiration_hours|
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from venuecam.models import State
from venuecam.timeutil import iso, utcnow

CONNECTIVITY = "connectivity"
LEDS = "leds"
PLATFORM_AUTH = "platform_auth"
QUEUE_WARNING = "queue_warning"
QUEUE_EXPIRED = "queue_expired"
KEYS = frozenset({CONNECTIVITY, LEDS, PLATFORM_AUTH, QUEUE_WARNING, QUEUE_EXPIRED})

_SQL_READ = f"SELECT value FROM {State._meta.table_name} WHERE key = ?"


def _check(key: str) -> str:
    if key not in KEYS:
        raise ValueError(f"state key {key!r} is not declared in venuecam.shared_state")
    return key


def read_value(key: str) -> str | None:
    """The stored text of `key` (None if absent), by plain SQL: no model object is built."""
    rows = State._meta.database.execute_sql(_SQL_READ, (_check(key),)).fetchall()
    return None if not rows else str(rows[0][0])


def get_json(key: str) -> dict[str, Any] | None:
    """The JSON object stored under `key`; None if absent or not a JSON object."""
    raw = read_value(key)
    if raw is None:
        return None
    try:
        value = json.loads(raw)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def put_json(key: str, value: dict[str, Any], now: dt.datetime | None = None) -> None:
    with State._meta.database.atomic():
        State.insert(
            key=_check(key), value=json.dumps(value, sort_keys=True), updated_at=now or utcnow()
        ).on_conflict_replace().execute()


def set_auth_problem(message: str) -> None:
    """The platform rejected our token (401/403): shown in status and on the LEDs."""
    current = get_json(PLATFORM_AUTH)
    since = current["since"] if current and not current.get("ok", True) else iso(utcnow())
    put_json(PLATFORM_AUTH, {"ok": False, "since": since, "message": message[:300]})


def clear_auth_problem() -> None:
    current = get_json(PLATFORM_AUTH)
    if current is None or not current.get("ok", True):
        put_json(PLATFORM_AUTH, {"ok": True, "since": iso(utcnow()), "message": ""})

"""The `state` table: small facts shared between processes (never through memory).

This module owns the table: its keys are declared here with their writer, and every read
and write goes through it: `get_json`/`put_json` (peewee's connection), or, for the capture
programs, which keep peewee out of their memory (capture/segment_index.py), `check`,
`SQL_UPSERT` and `SQL_READ` on their own stdlib connection. A key not declared here is
refused, so two modules cannot quietly share or clash on a name.

| key                | written by            | holds                                            |
|--------------------|-----------------------|--------------------------------------------------|
| `connectivity`     | watchdog              | connectivity.state.ConnState as JSON             |
| `leds`             | watchdog (LedService) | what each LED shows and why, or why GPIO failed  |
| `platform_auth`    | worker                | whether the platform accepts our token (401/403) |
| `queue_warning`    | worker (reconciler)   | waiting work over queue.max_queue_size           |
| `queue_expired`    | worker (reconciler)   | how much waiting work passed the expiration      |
| `clock`            | worker (clockwatch)   | wall - monotonic of this boot, and trust, as last seen |
| `live_uploads`     | worker (live manager) | each live video's progress (`venuecam.live`)     |
| `capture:<camera>` | that camera's capture | the encoder recording it (`capture_key`)         |

No peewee at import time: the capture programs import this module too. The peewee side
reaches the model when first used.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from venuecam.timeutil import iso, utcnow

TABLE = "state"  # models.State's table (asserted by tests/test_structure.py)
CONNECTIVITY = "connectivity"
LEDS = "leds"
PLATFORM_AUTH = "platform_auth"
QUEUE_WARNING = "queue_warning"
QUEUE_EXPIRED = "queue_expired"
CLOCK = "clock"
LIVE_UPLOADS = "live_uploads"
KEYS = frozenset({CONNECTIVITY, LEDS, PLATFORM_AUTH, QUEUE_WARNING, QUEUE_EXPIRED, CLOCK, LIVE_UPLOADS})
CAPTURE_PREFIX = "capture:"

SQL_READ = f"SELECT value FROM {TABLE} WHERE key = ?"
SQL_UPSERT = f"INSERT OR REPLACE INTO {TABLE} (key, value, updated_at) VALUES (?, ?, ?)"


def capture_key(camera: str) -> str:
    return f"{CAPTURE_PREFIX}{camera}"


def check(key: str) -> str:
    """`key` if this module declares it; ValueError naming it otherwise."""
    if key in KEYS or (key.startswith(CAPTURE_PREFIX) and len(key) > len(CAPTURE_PREFIX)):
        return key
    raise ValueError(f"state key {key!r} is not declared in venuecam.shared_state")


def _database() -> Any:
    # Here, not at the top: the capture programs use only the SQL above (memory; see the docstring).
    from venuecam.models import State

    return State._meta.database


def read_value(key: str) -> str | None:
    """The stored text of `key` (None if absent), by plain SQL: no model object is built."""
    rows = _database().execute_sql(SQL_READ, (check(key),)).fetchall()
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
    database = _database()
    with database.atomic():
        database.execute_sql(
            SQL_UPSERT, (check(key), json.dumps(value, sort_keys=True), str(now or utcnow()))
        )


def set_auth_problem(message: str) -> None:
    """The platform rejected our token (401/403): shown in status and on the LEDs."""
    current = get_json(PLATFORM_AUTH)
    since = current["since"] if current and not current.get("ok", True) else iso(utcnow())
    put_json(PLATFORM_AUTH, {"ok": False, "since": since, "message": message[:300]})


def clear_auth_problem() -> None:
    current = get_json(PLATFORM_AUTH)
    if current is None or not current.get("ok", True):
        put_json(PLATFORM_AUTH, {"ok": True, "since": iso(utcnow()), "message": ""})

"""Small facts shared between processes through the `state` table (never through memory)."""

from __future__ import annotations

import json
from typing import Any

from venuecam.models import State
from venuecam.timeutil import iso, utcnow

PLATFORM_AUTH = "platform_auth"


def get_json(key: str) -> dict[str, Any] | None:
    row = State.get_or_none(State.key == key)
    if row is None:
        return None
    try:
        value = json.loads(row.value)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def put_json(key: str, value: dict[str, Any]) -> None:
    with State._meta.database.atomic():
        State.insert(
            key=key, value=json.dumps(value, sort_keys=True), updated_at=utcnow()
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

"""Query and path parameters, checked: a bad value is a 400 naming the parameter."""

from __future__ import annotations

import datetime as dt

from venuecam.statusd.messages import HttpError

TRUE = ("true", "1", "yes")
FALSE = ("false", "0", "no", "")


def flag(query: dict[str, str], name: str) -> bool:
    value = query.get(name, "").strip().lower()
    if value in TRUE:
        return True
    if value in FALSE:
        return False
    raise HttpError(400, f"{name}: expected true or false, got {query[name]!r}")


def integer(query: dict[str, str], name: str, default: int, lo: int, hi: int) -> int:
    raw = query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise HttpError(400, f"{name}: expected an integer, got {raw!r}") from None
    if not lo <= value <= hi:
        raise HttpError(400, f"{name}: expected {lo}..{hi}, got {value}")
    return value


def date(value: str, name: str = "date") -> str:
    try:
        return dt.date.fromisoformat(value).isoformat() if len(value) == 10 else _bad(value, name)
    except ValueError:
        return _bad(value, name)


def _bad(value: str, name: str) -> str:
    raise HttpError(400, f"{name}: expected YYYY-MM-DD, got {value[:40]!r}")


def word(value: str, name: str, max_len: int = 64) -> str:
    if not value or len(value) > max_len or not all(c.isalnum() or c in "-_.:" for c in value):
        raise HttpError(
            400, f"{name}: expected letters, digits, '-', '_', '.' or ':' (max {max_len}), got {value[:40]!r}"
        )
    return value

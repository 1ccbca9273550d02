"""A TOML table mapped onto the config's dataclasses, by their type hints.

Unknown keys, wrong types and missing required values each raise one ConfigError naming
the file, the key (`cameras[1].fps`) and what was expected. A field whose TOML form is not
its type's names its parser in its metadata (`parse`), and config_dump its unparser.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any

from venuecam.cap_schedule import parse_upload_cap, unparse_upload_cap
from venuecam.errors import ConfigError


def type_name(tp: Any) -> str:
    names = {str: "a string", int: "an integer", float: "a number", bool: "true or false"}
    if tp in names:
        return names[tp]
    origin = typing.get_origin(tp)
    if origin is list:
        (inner,) = typing.get_args(tp)
        return f"a list of {type_name(inner).removeprefix('a ').removeprefix('an ')}s"
    if dataclasses.is_dataclass(tp):
        return "a table"
    return str(tp)


def _convert(tp: Any, value: Any, source: str, key: str) -> Any:
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{source}: {key}: expected a table, got {type(value).__name__}")
        return build(tp, value, source, key)
    if origin is list:
        (inner,) = typing.get_args(tp)
        if not isinstance(value, list):
            raise ConfigError(f"{source}: {key}: expected {type_name(tp)}, got {type(value).__name__}")
        return [_convert(inner, v, source, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin in (types.UnionType, typing.Union):
        raise ConfigError(f"{source}: {key}: unsupported type")  # pragma: no cover - not declared
    ok = (
        (tp is bool and isinstance(value, bool))
        or (tp is int and isinstance(value, int) and not isinstance(value, bool))
        or (tp is float and isinstance(value, int | float) and not isinstance(value, bool))
        or (tp is str and isinstance(value, str))
    )
    if not ok:
        got = type(value).__name__
        raise ConfigError(f"{source}: {key}: expected {type_name(tp)}, got {got}")
    return float(value) if tp is float else value


def build(cls: Any, data: dict[str, Any], source: str, prefix: str) -> Any:
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if not f.metadata.get("internal")}
    where = prefix or "top level"
    for k in data:
        if k not in fields:
            allowed = ", ".join(sorted(fields))
            raise ConfigError(f"{source}: {_join(prefix, k)}: unknown key in {where} (allowed: {allowed})")
    kwargs: dict[str, Any] = {}
    for name, f in fields.items():
        key = _join(prefix, name)
        if name in data and "parse" in f.metadata:
            kwargs[name] = PARSERS[f.metadata["parse"]](data[name], source, key)
        elif name in data:
            kwargs[name] = _convert(hints[name], data[name], source, key)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(f"{source}: {key}: required, expected {type_name(hints[name])}")
    return cls(**kwargs)


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


# Fields whose TOML form is not their type's (see the `parse`/`unparse` field metadata).
PARSERS = {"upload_cap": parse_upload_cap}
UNPARSERS = {"upload_cap": unparse_upload_cap}

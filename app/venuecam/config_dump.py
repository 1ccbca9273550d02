"""The effective config as TOML (`venuecam config show`), secrets and camera passwords
masked; what `venuecam.config` loads, written back."""

from __future__ import annotations

import dataclasses
from typing import Any

from venuecam.config import Config
from venuecam.config_toml import UNPARSERS
from venuecam.logs import MASK, mask_url


def to_dict(obj: Any, mask: bool = True) -> Any:
    if isinstance(obj, list):
        return [to_dict(v, mask) for v in obj]
    if dataclasses.is_dataclass(obj):
        out: dict[str, Any] = {}
        for f in dataclasses.fields(obj):
            if f.metadata.get("internal"):
                continue
            v = getattr(obj, f.name)
            if "unparse" in f.metadata:
                out[f.name] = UNPARSERS[f.metadata["unparse"]](v)
            elif mask and f.metadata.get("secret"):
                out[f.name] = MASK if v else ""
            elif mask and f.name == "source" and isinstance(v, str):
                out[f.name] = mask_url(v)
            else:
                out[f.name] = to_dict(v, mask)
        return out
    return obj


def dump(cfg: Config) -> str:
    """The effective config as TOML, secrets masked."""
    d = to_dict(cfg)
    lines: list[str] = []
    for section, body in d.items():
        if isinstance(body, list):
            for item in body:
                lines.append(f"[[{section}]]")
                lines.extend(f"{k} = {toml_value(v)}" for k, v in item.items())
                lines.append("")
        else:
            lines.append(f"[{section}]")
            lines.extend(f"{k} = {toml_value(v)}" for k, v in body.items())
            lines.append("")
    return "\n".join(lines)


def toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    if isinstance(v, dict):  # an inline table (keys are plain names here)
        return "{ " + ", ".join(f"{k} = {toml_value(x)}" for k, x in v.items()) + " }"
    s = str(v).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{s}"'

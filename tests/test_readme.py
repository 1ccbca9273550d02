"""The README stays true: every config key and every command is documented."""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path

from venuecam import config
from venuecam.cli.main import COMMANDS

README = (Path(__file__).parent.parent / "README.md").read_text()


def config_keys(cls: type, prefix: str) -> list[str]:
    out: list[str] = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.metadata.get("internal"):
            continue
        t = hints[f.name]
        if dataclasses.is_dataclass(t):
            out += config_keys(t, f.name)  # type: ignore[arg-type]
        elif typing.get_origin(t) is list and dataclasses.is_dataclass(typing.get_args(t)[0]):
            out += config_keys(typing.get_args(t)[0], f"[[{f.name}]]")
        else:
            out.append(f"{prefix}.{f.name}")
    return out


def documented(key: str) -> bool:
    """`section.name` in the reference table, alone or in a row grouping a section's keys."""
    section, name = key.rsplit(".", 1)
    rows = [line.split("|")[1] for line in README.splitlines() if line.startswith(f"| `{section}.")]
    return any(f"`{key}`" in row or f"`{name}`" in row or f"{section}.{name}`" in row for row in rows)


def test_readme_documents_every_config_key() -> None:
    assert [k for k in config_keys(config.Config, "") if not documented(k)] == []


def test_readme_names_every_command_and_starts_with_the_two_commands() -> None:
    head = "\n".join(README.splitlines()[:5])
    assert "make run" in head and "make test" in head
    assert [c for c in COMMANDS if f"venuecam {c}" not in README and f"`{c}`" not in README] == []

"""Read a few plain string settings out of venuecam.toml without `tomllib`.

`venuecam status` needs two settings (where the status socket is). `tomllib` and the
`typing` it imports cost that fresh process about a tenth of its start-up on a Pi, for a
file whose lines we write ourselves: `[table]` headers and `key = "value"`. So this reads
exactly that shape and nothing more; whenever the file says anything about a wanted key in
another shape (a dotted key, an inline table, an escape, a multi-line string, a repeat),
`peek` answers None and the caller parses the file with `tomllib` as before. It never
validates the rest of the file: statusd does, at start.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing itself is what this module avoids importing
if TYPE_CHECKING:
    from collections.abc import Collection

_BARE_KEY_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")


def peek(text: str, wanted: Collection[tuple[str, str]]) -> dict[tuple[str, str], str] | None:
    """{(table, key): value} for the wanted keys that are set, or None if unsure."""
    if '"""' in text or "'''" in text:
        return None  # a multi-line string can hold lines that look like headers or keys
    names = {key for _, key in wanted}
    found: dict[tuple[str, str], str] = {}
    table = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            header = _header(line)
            if header is None:
                return None
            table = header
            continue
        if not any(name in line for name in names):
            continue  # the rest of the file is statusd's to check
        key, eq, value = line.partition("=")
        where = (table, key.strip())
        if not eq or where not in wanted or where in found:
            return None  # a wanted name in some other shape (or twice): let tomllib decide
        text_value = _string(value.strip())
        if text_value is None:
            return None
        found[where] = text_value
    return found


def _header(line: str) -> str | None:
    """`[name]` or `[[name]]` with a bare name (and maybe a comment) -> name; else None."""
    array = line.startswith("[[")
    name, close, rest = line[2 if array else 1 :].partition("]]" if array else "]")
    name = name.strip()
    rest = rest.strip()
    if not close or not name or not set(name) <= _BARE_KEY_CHARS or (rest and not rest.startswith("#")):
        return None
    return name


def _string(value: str) -> str | None:
    """A one-line `"basic"` (no escapes) or `'literal'` string, maybe with a comment after."""
    if len(value) < 2 or value[0] not in "\"'":
        return None
    end = value.find(value[0], 1)
    if end < 0:
        return None
    inner, rest = value[1:end], value[end + 1 :].strip()
    if (value[0] == '"' and "\\" in inner) or (rest and not rest.startswith("#")):
        return None
    return inner

"""Reading and writing ISO base media (MP4) boxes: only what the live path needs.

A box is a 32-bit big-endian size (1: a 64-bit size follows the type), a four-character
type, then its body. A "full box" starts its body with a version byte and 24 bits of flags.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass

from venuecam.errors import BadInputError

CONTAINERS = frozenset(
    {b"moov", b"trak", b"mdia", b"minf", b"stbl", b"moof", b"traf", b"mvex", b"edts", b"dinf"}
)


@dataclass(frozen=True)
class Box:
    kind: bytes
    start: int  # offset of the box header in the buffer
    body: int  # offset of the body
    end: int  # offset just past the box

    def payload(self, data: bytes | memoryview) -> bytes:
        return bytes(data[self.body : self.end])

    def raw(self, data: bytes | memoryview) -> bytes:
        return bytes(data[self.start : self.end])


def iter_boxes(data: bytes | memoryview, start: int = 0, end: int | None = None) -> Iterator[Box]:
    """The boxes between `start` and `end`; BadInputError for a size that does not fit."""
    end = len(data) if end is None else end
    pos = start
    while pos < end:
        if pos + 8 > end:
            raise BadInputError(f"MP4: a truncated box header at offset {pos}")
        size, kind = struct.unpack_from(">I4s", data, pos)
        body = pos + 8
        if size == 1:
            if pos + 16 > end:
                raise BadInputError(f"MP4: a truncated 64-bit box size at offset {pos}")
            (size,) = struct.unpack_from(">Q", data, pos + 8)
            body = pos + 16
        elif size == 0:
            size = end - pos
        if size < body - pos or pos + size > end:
            raise BadInputError(
                f"MP4: box {kind!r} at offset {pos} claims {size} bytes, {end - pos} are left"
            )
        yield Box(kind, pos, body, pos + size)
        pos += size


def find(data: bytes | memoryview, path: str, start: int = 0, end: int | None = None) -> Box | None:
    """The first box along `path` ("moov/trak/mdia"), or None."""
    first, _, rest = path.partition("/")
    for box in iter_boxes(data, start, end):
        if box.kind == first.encode():
            return box if not rest else find(data, rest, box.body, box.end)
    return None


def children(data: bytes | memoryview, box: Box, kind: bytes) -> list[Box]:
    return [b for b in iter_boxes(data, box.body, box.end) if b.kind == kind]


def full_header(data: bytes | memoryview, box: Box) -> tuple[int, int]:
    """(version, flags) of a full box."""
    if box.body + 4 > box.end:
        raise BadInputError(f"MP4: full box {box.kind!r} has no version/flags")
    v = int.from_bytes(bytes(data[box.body : box.body + 4]), "big")
    return v >> 24, v & 0xFFFFFF


def make(kind: bytes, *parts: bytes) -> bytes:
    body = b"".join(parts)
    if len(body) + 8 > 0xFFFFFFFF:
        return struct.pack(">I4sQ", 1, kind, len(body) + 16) + body
    return struct.pack(">I4s", len(body) + 8, kind) + body


def make_full(kind: bytes, version: int, flags: int, *parts: bytes) -> bytes:
    return make(kind, struct.pack(">I", (version << 24) | flags), *parts)

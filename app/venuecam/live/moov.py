"""The `moov` of a progressive MP4 built from a track's sample table.

The live file puts it at the end (see `mp4file.py` for why): a browser reads `ftyp`, skips
the few `mdat` boxes and reads the whole index, so it seeks anywhere at once.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass

from venuecam.live import boxes
from venuecam.live.fragments import Track

MOVIE_TIMESCALE = 1000
_MATRIX = struct.pack(">9I", 0x10000, 0, 0, 0, 0x10000, 0, 0, 0, 0x40000000)


@dataclass(frozen=True)
class Entry:
    """One sample as filed: where its bytes are in the file and how it plays."""

    offset: int
    size: int
    duration: int
    cto: int
    sync: bool


def build(track: Track, samples: Sequence[Entry]) -> bytes:
    if not samples:
        raise ValueError("a moov needs at least one sample")
    media_duration = sum(s.duration for s in samples)
    # Presentation starts at the first frame: B-frames give it a composition offset.
    shift = samples[0].cto
    movie_duration = (media_duration * MOVIE_TIMESCALE) // track.timescale
    mvhd = boxes.make_full(
        b"mvhd", 1, 0,
        struct.pack(">QQIQ", 0, 0, MOVIE_TIMESCALE, movie_duration),
        struct.pack(">IH10x", 0x10000, 0x100), _MATRIX, bytes(24), struct.pack(">I", 2),
    )  # fmt: skip
    tkhd = boxes.make_full(
        b"tkhd", 1, 0x3,
        struct.pack(">QQI4xQ8xhhh2x", 0, 0, 1, movie_duration, 0, 0, 0), _MATRIX,
        struct.pack(">II", track.width, track.height),
    )  # fmt: skip
    elst = boxes.make_full(b"elst", 1, 0, struct.pack(">IQqhh", 1, movie_duration, shift, 1, 0))
    mdhd = boxes.make_full(
        b"mdhd", 1, 0, struct.pack(">QQIQHH", 0, 0, track.timescale, media_duration, 0x55C4, 0)
    )
    stbl = boxes.make(b"stbl", track.stsd, *_tables(samples))
    minf = boxes.make(b"minf", track.media_header, track.dinf, stbl)
    mdia = boxes.make(b"mdia", mdhd, track.handler, minf)
    trak = boxes.make(b"trak", tkhd, boxes.make(b"edts", elst), mdia)
    return boxes.make(b"moov", mvhd, trak)


def _runs(values: Sequence[int]) -> list[tuple[int, int]]:
    """(count, value) runs."""
    out: list[tuple[int, int]] = []
    for v in values:
        if out and out[-1][1] == v:
            out[-1] = (out[-1][0] + 1, v)
        else:
            out.append((1, v))
    return out


def _tables(samples: Sequence[Entry]) -> list[bytes]:
    stts_runs = _runs([s.duration for s in samples])
    tables = [boxes.make_full(b"stts", 0, 0, struct.pack(">I", len(stts_runs)),
                              b"".join(struct.pack(">II", c, v) for c, v in stts_runs))]  # fmt: skip
    ctos = [s.cto for s in samples]
    if any(ctos):
        runs = _runs(ctos)
        version = 1 if min(ctos) < 0 else 0
        fmt = ">Ii" if version else ">II"
        tables.append(boxes.make_full(b"ctts", version, 0, struct.pack(">I", len(runs)),
                                      b"".join(struct.pack(fmt, c, v) for c, v in runs)))  # fmt: skip
    syncs = [i + 1 for i, s in enumerate(samples) if s.sync]
    if len(syncs) != len(samples):
        tables.append(boxes.make_full(b"stss", 0, 0, struct.pack(f">I{len(syncs)}I", len(syncs), *syncs)))
    # Chunks: runs of samples whose bytes follow one another in the file.
    chunk_offsets: list[int] = []
    chunk_sizes: list[int] = []
    end = -1
    for s in samples:
        if s.offset == end:
            chunk_sizes[-1] += 1
        else:
            chunk_offsets.append(s.offset)
            chunk_sizes.append(1)
        end = s.offset + s.size
    stsc: list[tuple[int, int]] = []
    for i, n in enumerate(chunk_sizes):
        if not stsc or stsc[-1][1] != n:
            stsc.append((i + 1, n))
    tables.append(boxes.make_full(b"stsc", 0, 0, struct.pack(">I", len(stsc)),
                                  b"".join(struct.pack(">III", first, n, 1) for first, n in stsc)))  # fmt: skip
    tables.append(boxes.make_full(b"stsz", 0, 0, struct.pack(f">II{len(samples)}I", 0, len(samples),
                                                             *(s.size for s in samples))))  # fmt: skip
    tables.append(boxes.make_full(b"co64", 0, 0, struct.pack(f">I{len(chunk_offsets)}Q", len(chunk_offsets),
                                                             *chunk_offsets)))  # fmt: skip
    return tables

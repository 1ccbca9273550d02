"""Which pieces of which segments make up a booking's clip. Pure: plain values in, plain values out.

Times are UTC epoch seconds. A segment covers [start_ts, end_ts); a clip item says which part of
one segment file to keep, as seconds from that file's own start (inpoint/outpoint).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

# Two segments closer than this count as touching: capture's bounds carry a little jitter.
DEFAULT_TOLERANCE_S = 0.5


class SegmentLike(Protocol):
    @property
    def path(self) -> str: ...
    @property
    def start_ts(self) -> float: ...
    @property
    def end_ts(self) -> float: ...


class SegmentWithParams(SegmentLike, Protocol):
    @property
    def codec(self) -> str: ...
    @property
    def width(self) -> int: ...
    @property
    def height(self) -> int: ...


@dataclass(frozen=True)
class ClipItem:
    path: str
    inpoint_s: float  # seconds into the file where the clip's part begins
    outpoint_s: float  # seconds into the file where it ends
    segment_start_ts: float  # wall-clock start of the file (UTC epoch)
    segment_duration_s: float
    contiguous: bool  # starts where the previous item ended (no gap between them)

    @property
    def start_ts(self) -> float:
        return self.segment_start_ts + self.inpoint_s

    @property
    def end_ts(self) -> float:
        return self.segment_start_ts + self.outpoint_s

    @property
    def trimmed_start(self) -> bool:
        return self.inpoint_s > 1e-6

    @property
    def trimmed_end(self) -> bool:
        return self.outpoint_s < self.segment_duration_s - 1e-6


@dataclass(frozen=True)
class ClipPlan:
    start_ts: float
    end_ts: float
    items: list[ClipItem] = field(default_factory=list)
    gaps: list[tuple[float, float]] = field(default_factory=list)  # uncovered spans, UTC epoch
    covered_s: float = 0.0

    @property
    def empty(self) -> bool:
        return not self.items


def plan_clip(
    segments: Sequence[SegmentLike],
    start_ts: float,
    end_ts: float,
    tolerance_s: float = DEFAULT_TOLERANCE_S,
) -> ClipPlan:
    """Order the segments overlapping [start_ts, end_ts] into clip items and list the gaps.

    Overlapping segments (a capture restart writes a second file for the same seconds) are
    used once: a segment entirely inside what is already covered is dropped, one that
    extends past it contributes only the new part. Spans of more than `tolerance_s` without
    a segment are gaps; shorter ones are jitter and ignored.
    """
    if end_ts <= start_ts:
        raise ValueError(f"clip end {end_ts} is not after its start {start_ts}")
    overlapping = sorted(
        (s for s in segments if s.end_ts > start_ts and s.start_ts < end_ts and s.end_ts > s.start_ts),
        key=lambda s: (s.start_ts, -s.end_ts),
    )
    items: list[ClipItem] = []
    gaps: list[tuple[float, float]] = []
    cursor = start_ts  # everything before this is covered or recorded as a gap
    for seg in overlapping:
        piece_start = max(seg.start_ts, start_ts)
        piece_end = min(seg.end_ts, end_ts)
        if piece_end <= cursor + tolerance_s:
            continue  # nothing new beyond what earlier segments cover
        if piece_start > cursor + tolerance_s:
            gaps.append((cursor, piece_start))
            contiguous = False
        else:
            # Touching (within jitter) or overlapping: go on where coverage ends.
            contiguous = bool(items)
            if items:
                piece_start = max(piece_start, cursor)
        duration = seg.end_ts - seg.start_ts
        inpoint = max(0.0, piece_start - seg.start_ts)
        if items and inpoint <= tolerance_s:
            inpoint = 0.0  # a jitter-sized overlap: use the file whole, no seek needed
        items.append(
            ClipItem(
                path=seg.path,
                inpoint_s=inpoint,
                outpoint_s=piece_end - seg.start_ts,
                segment_start_ts=seg.start_ts,
                segment_duration_s=duration,
                contiguous=contiguous,
            )
        )
        cursor = piece_end
    if end_ts - cursor > tolerance_s:
        gaps.append((cursor, end_ts))
    covered = sum(item.outpoint_s - item.inpoint_s for item in items)
    return ClipPlan(start_ts=start_ts, end_ts=end_ts, items=items, gaps=gaps, covered_s=covered)


S = TypeVar("S", bound=SegmentWithParams)


def params_key(seg: SegmentWithParams) -> tuple[str, int, int]:
    return (seg.codec, seg.width, seg.height)


def select_consistent(segments: Sequence[S], start_ts: float, end_ts: float) -> tuple[list[S], list[S]]:
    """Keep the segments whose codec/size covers most of the booking; return (kept, dropped).

    `-c copy` concat of inputs whose parameters differ exits 0 and writes a broken file, so one
    clip holds one set of parameters; the seconds of the others become gaps.
    """
    coverage: dict[tuple[str, int, int], float] = {}
    for seg in segments:
        seconds = max(0.0, min(seg.end_ts, end_ts) - max(seg.start_ts, start_ts))
        coverage[params_key(seg)] = coverage.get(params_key(seg), 0.0) + seconds
    if not coverage:
        return [], []
    best = max(coverage, key=lambda k: coverage[k])
    kept = [s for s in segments if params_key(s) == best]
    dropped = [s for s in segments if params_key(s) != best]
    return kept, dropped

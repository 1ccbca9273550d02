"""Booking-to-segment matching, with plain values (no files, no ffmpeg)."""

from __future__ import annotations

from dataclasses import dataclass
from zoneinfo import ZoneInfo

import pytest

from venuecam.clips.plan import plan_clip, select_consistent
from venuecam.timeutil import booking_bounds


@dataclass(frozen=True)
class Seg:
    path: str
    start_ts: float
    end_ts: float
    codec: str = "h264"
    width: int = 1920
    height: int = 1080


def every(start: float, end: float, step: float = 10.0, **params: object) -> list[Seg]:
    """Back-to-back segments from start to end, named by start."""
    out = []
    t = start
    while t < end:
        out.append(Seg(f"/seg/{t:.0f}.ts", t, t + step, **params))  # type: ignore[arg-type]
        t += step
    return out


def test_exact_cover_uses_each_segment_whole_with_no_gaps() -> None:
    plan = plan_clip(every(1000, 1030), 1000, 1030)
    assert [(i.path, i.inpoint_s, i.outpoint_s) for i in plan.items] == [
        ("/seg/1000.ts", 0.0, 10.0),
        ("/seg/1010.ts", 0.0, 10.0),
        ("/seg/1020.ts", 0.0, 10.0),
    ]
    assert plan.gaps == []
    assert plan.covered_s == 30.0
    assert [i.contiguous for i in plan.items] == [False, True, True]


def test_segments_are_ordered_whatever_order_they_arrive_in() -> None:
    segs = every(1000, 1030)
    plan = plan_clip(list(reversed(segs)), 1000, 1030)
    assert [i.path for i in plan.items] == [s.path for s in segs]


def test_missing_middle_is_a_gap_and_the_rest_is_kept() -> None:
    segs = every(1000, 1010) + every(1020, 1030)
    plan = plan_clip(segs, 1000, 1030)
    assert [i.path for i in plan.items] == ["/seg/1000.ts", "/seg/1020.ts"]
    assert plan.gaps == [(1010, 1020)]
    assert plan.covered_s == 20.0
    assert plan.items[1].contiguous is False


def test_missing_head_and_tail_are_gaps() -> None:
    plan = plan_clip(every(1010, 1020), 1000, 1030)
    assert plan.gaps == [(1000, 1010), (1020, 1030)]
    assert plan.covered_s == 10.0


def test_no_segments_gives_an_empty_plan_with_one_gap() -> None:
    plan = plan_clip([], 1000, 1030)
    assert plan.empty
    assert plan.gaps == [(1000, 1030)]
    assert plan.covered_s == 0.0


def test_segments_outside_the_booking_are_ignored() -> None:
    plan = plan_clip(every(900, 1000) + every(1030, 1100), 1000, 1030)
    assert plan.empty
    assert plan.gaps == [(1000, 1030)]


def test_segments_straddling_the_bounds_are_trimmed_to_the_booking() -> None:
    plan = plan_clip(every(990, 1040), 1004, 1023)
    first, *_, last = plan.items
    assert (first.path, first.inpoint_s, first.outpoint_s) == ("/seg/1000.ts", 4.0, 10.0)
    assert (last.path, last.inpoint_s, last.outpoint_s) == ("/seg/1020.ts", 0.0, 3.0)
    assert first.trimmed_start and not first.trimmed_end
    assert last.trimmed_end and not last.trimmed_start
    assert plan.covered_s == pytest.approx(19.0)
    assert plan.gaps == []


def test_overlapping_segments_are_used_once() -> None:
    # A capture restart wrote [1005, 1015) over the seconds [1000, 1010) already had.
    segs = [
        Seg("/a.ts", 1000, 1010),
        Seg("/b.ts", 1005, 1015),
        Seg("/inside.ts", 1002, 1008),
        Seg("/c.ts", 1010, 1020),
    ]
    plan = plan_clip(segs, 1000, 1020)
    assert [(i.path, i.inpoint_s, i.outpoint_s) for i in plan.items] == [
        ("/a.ts", 0.0, 10.0),
        ("/b.ts", 5.0, 10.0),
        ("/c.ts", 5.0, 10.0),
    ]
    assert plan.gaps == []
    assert plan.covered_s == 20.0


def test_jitter_between_segments_is_not_a_gap() -> None:
    segs = [Seg("/a.ts", 1000, 1010.0), Seg("/b.ts", 1010.3, 1020), Seg("/c.ts", 1019.8, 1030)]
    plan = plan_clip(segs, 1000, 1030)
    assert plan.gaps == []
    assert [i.inpoint_s for i in plan.items] == [0.0, 0.0, 0.0]  # used whole: no seek needed
    assert all(i.contiguous for i in plan.items[1:])


def test_a_gap_just_over_the_tolerance_is_recorded() -> None:
    plan = plan_clip([Seg("/a.ts", 1000, 1010), Seg("/b.ts", 1010.6, 1020)], 1000, 1020)
    assert plan.gaps == [(1010, 1010.6)]


def test_end_before_start_is_refused() -> None:
    with pytest.raises(ValueError, match="not after its start"):
        plan_clip(every(1000, 1030), 1030, 1000)


def test_booking_across_midnight_in_jakarta_matches_utc_segments() -> None:
    # 23:00-01:00 WIB (UTC+7, no DST) is 16:00-18:00 UTC on the 23rd.
    start, end = booking_bounds("2025-01-23", "23:00:00", "01:00:00", ZoneInfo("Asia/Jakarta"))
    assert end - start == 7200
    utc_16h = 1737648000.0  # 2025-01-23T16:00:00Z
    assert start == utc_16h
    segs = every(utc_16h - 3600, utc_16h + 3 * 3600)
    plan = plan_clip(segs, start, end)
    assert plan.covered_s == 7200
    assert plan.gaps == []
    assert plan.items[0].segment_start_ts == utc_16h
    assert plan.items[-1].end_ts == utc_16h + 7200


def test_booking_across_midnight_and_spring_forward_in_lisbon() -> None:
    # 2025-03-30 01:00 UTC Lisbon jumps from WET (UTC+0) to WEST (UTC+1):
    # 23:30-02:30 on the wall is two hours, 23:30Z to 01:30Z.
    start, end = booking_bounds("2025-03-29", "23:30:00", "02:30:00", ZoneInfo("Europe/Lisbon"))
    assert end - start == 2 * 3600
    segs = every(start - 600, end + 600)
    plan = plan_clip(segs, start, end)
    assert plan.covered_s == 2 * 3600
    assert plan.gaps == []


def test_booking_across_midnight_and_fall_back_in_lisbon() -> None:
    # 2025-10-26 01:00 UTC Lisbon goes back from WEST to WET: 23:30-02:30 is four hours.
    start, end = booking_bounds("2025-10-25", "23:30:00", "02:30:00", ZoneInfo("Europe/Lisbon"))
    assert end - start == 4 * 3600
    segs = every(start, end)
    segs_missing_last_hour = [s for s in segs if s.start_ts < end - 3600]
    plan = plan_clip(segs_missing_last_hour, start, end)
    assert plan.covered_s == 3 * 3600
    assert plan.gaps == [(end - 3600, end)]


def test_select_consistent_keeps_the_parameters_covering_most_of_the_booking() -> None:
    big = every(1000, 1040, width=1920, height=1080)
    small = every(1040, 1060, width=640, height=360)
    kept, dropped = select_consistent(small + big, 1000, 1060)
    assert {(s.width, s.height) for s in kept} == {(1920, 1080)}
    assert dropped == small
    plan = plan_clip(kept, 1000, 1060)
    assert plan.gaps == [(1040, 1060)]


def test_select_consistent_counts_only_seconds_inside_the_booking() -> None:
    # Many 640x360 seconds, but mostly before the booking: 1080p covers more of it.
    small = every(0, 1010, step=10, width=640, height=360)
    big = every(1010, 1030, width=1920, height=1080)
    kept, _ = select_consistent(small + big, 1000, 1030)
    assert {(s.width, s.height) for s in kept} == {(1920, 1080)}


def test_select_consistent_of_nothing_is_nothing() -> None:
    assert select_consistent([], 0, 10) == ([], [])

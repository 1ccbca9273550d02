"""Wall-clock trust (a Pi has no RTC), through the clock seam the tests control: the sync flag
(`VENUECAM_CLOCK_SYNC_FLAG`) and the stamps handed to the worker's clock watch. This
machine's clock is never changed."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from venuecam import ledger, retention, shared_state, wallclock
from venuecam.capture.segment_index import SegmentIndex, Timing
from venuecam.errors import RetryLater
from venuecam.media.probe import Probe
from venuecam.models import PendingTask, Segment, TaskType, Video
from venuecam.status import facts, shapes
from venuecam.timeutil import to_naive_utc
from venuecam.worker import clockwatch, handlers

BOOT = "boot-under-test"
W0 = 1_780_000_000.0  # 2026-05-28
M0 = 5_000.0
WEEK = 7 * 86400.0
INFO = Probe(duration=10.0, codec="h264", width=640, height=360, fps=25.0, start_time=1.4, bytes=1000)


@pytest.fixture
def flag(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The seam's sync flag: absent = time not synchronised yet."""
    path = tmp_path / "synchronized"
    monkeypatch.setenv(wallclock.ENV_SYNC_FLAG, str(path))
    return path


@pytest.fixture
def watch(database: Any) -> Iterator[None]:
    clockwatch.forget()
    yield
    clockwatch.forget()


def look(wall: float, mono: float, trusted: bool = True, boot: str = BOOT) -> clockwatch.Look:
    verdict = wallclock.Trust(trusted, trusted, "test", "" if trusted else "clock not set: test")
    return clockwatch.look(None, stamp=lambda: wallclock.Stamp(wall, mono, boot), trust=lambda _w: verdict)


def waiting_row(key: str, at: float, retry_in_s: float) -> PendingTask:
    row, _ = ledger.enqueue(
        TaskType.UPLOAD, key, {}, max_attempts=3, now=to_naive_utc(at), delay_s=retry_in_s
    )
    return row


def test_trust_follows_the_sync_flag_and_the_year(flag: Path) -> None:
    untrusted = wallclock.trust(W0)
    assert not untrusted.trusted and untrusted.synchronized is False
    assert untrusted.reason.startswith("clock not set") and str(flag) in untrusted.source
    flag.touch()
    assert wallclock.trust(W0).trusted
    year_1970 = wallclock.trust(300.0)  # a Pi before NTP, flag or not
    assert not year_1970.trusted and "year" in year_1970.reason


def test_a_forward_jump_of_a_week_expires_nothing_and_keeps_each_retry_wait(watch: None) -> None:
    assert look(W0, M0).jump_s == 0.0
    row = waiting_row("upload:a", W0, 300)
    # 10 s later by the monotonic clock, NTP steps the wall clock a week ahead.
    out = look(W0 + 10 + WEEK, M0 + 10)
    assert out.jump_s == pytest.approx(WEEK) and out.rebased == 1
    moved = ledger.get(row.id)
    assert moved is not None
    assert moved.next_retry_at == to_naive_utc(W0 + 300 + WEEK)  # still 290 s to wait
    assert moved.created_at == to_naive_utc(W0 + WEEK)
    now = to_naive_utc(W0 + 10 + WEEK)
    assert ledger.overdue(168, now) == []  # a week of clock is not a week of waiting
    assert ledger.due(now) == []
    assert look(W0 + 20 + WEEK, M0 + 20).jump_s == 0.0  # seen once, re-based once


def test_a_backward_jump_does_not_stall_retries(watch: None) -> None:
    look(W0, M0)
    row = waiting_row("upload:b", W0, 60)
    out = look(W0 + 5 - 86400, M0 + 5)  # someone sets the clock a day back
    assert out.rebased == 1 and out.jump_s == pytest.approx(-86400)
    moved = ledger.get(row.id)
    assert moved is not None and moved.next_retry_at == to_naive_utc(W0 + 60 - 86400)
    assert [r.id for r in ledger.due(to_naive_utc(W0 + 61 - 86400))] == [row.id]


def test_rows_written_after_the_jump_keep_their_times(watch: None) -> None:
    look(W0, M0)
    old = waiting_row("upload:old", W0, 600)
    # The jump happens; before the watch looks (2 s later), another process writes a row.
    new = waiting_row("upload:new", W0 + 1 + WEEK, 600)
    assert look(W0 + 2 + WEEK, M0 + 2).rebased == 1
    got_old, got_new = ledger.get(old.id), ledger.get(new.id)
    assert got_old is not None and got_old.next_retry_at == to_naive_utc(W0 + 600 + WEEK)
    assert got_new is not None and got_new.next_retry_at == to_naive_utc(W0 + 601 + WEEK)


def test_a_jump_while_the_worker_was_down_is_seen_from_the_state_row(watch: None) -> None:
    look(W0, M0)
    row = waiting_row("upload:c", W0, 300)
    clockwatch.forget()  # the worker restarts; same boot
    saved = shared_state.get_json(shared_state.CLOCK)
    assert saved is not None and saved["boot_id"] == BOOT
    assert look(W0 + 30 + WEEK, M0 + 30).rebased == 1
    moved = ledger.get(row.id)
    assert moved is not None and moved.next_retry_at == to_naive_utc(W0 + 300 + WEEK)
    clockwatch.forget()  # a new boot: its monotonic clock starts again; nothing to compare
    assert look(W0 + 100 + WEEK, 3.0, boot="next-boot").jump_s == 0.0


def test_segments_filed_before_the_sync_are_retimed_when_it_comes(watch: None, cfg: Any) -> None:
    index = SegmentIndex(cfg.db_path)
    try:
        # Filed while the clock said 1970 (fake times), with their monotonic starts.
        index.insert("CAMERA_A", Path("/x/a.ts"), 100.0, 110.0, INFO, Timing(M0 + 100, BOOT, False))
        index.insert("CAMERA_A", Path("/x/b.ts"), 110.0, 120.0, INFO, Timing(M0 + 110, BOOT, False))
        index.insert("CAMERA_A", Path("/x/old.ts"), 50.0, 60.0, INFO, Timing(40.0, "earlier-boot", False))
    finally:
        index.close()
    assert look(300.0, M0 + 200, trusted=False).retimed == 0
    # Time syncs: the wall clock is W0 at monotonic M0 + 300.
    assert look(W0, M0 + 300).retimed == 2
    got = {Path(s.path).name: (s.start_ts, s.end_ts, s.clock_ok) for s in Segment.select()}
    assert got["a.ts"] == (pytest.approx(W0 - 200), pytest.approx(W0 - 190), 1)
    assert got["b.ts"] == (pytest.approx(W0 - 190), pytest.approx(W0 - 180), 1)
    assert got["old.ts"] == (50.0, 60.0, 0)  # another boot's monotonic clock: cannot be re-timed


def test_a_flag_written_after_the_clock_was_read_does_not_vouch_for_that_reading(
    watch: None, cfg: Any
) -> None:
    """timesyncd sets the clock, then writes the flag. A look that read the clock (2 h ahead)
    just before the flag appeared must not trust that reading, nor re-time segments by it
    (seen in the soak: segments 2 h ahead, clips queued for bookings not played yet)."""
    index = SegmentIndex(cfg.db_path)
    try:
        index.insert("CAMERA_A", Path("/x/a.ts"), 100.0, 110.0, INFO, Timing(M0 + 100, BOOT, False))
    finally:
        index.close()
    answers = iter([False, True])  # before the reading: not yet; after it: synchronised
    untrusted = wallclock.Trust(False, False, "test", "clock not set: test")
    trusted = wallclock.Trust(True, True, "test", "")

    def trust(_wall: float) -> wallclock.Trust:
        return trusted if next(answers, True) else untrusted

    out = clockwatch.look(None, stamp=lambda: wallclock.Stamp(W0 + 7200, M0 + 200, BOOT), trust=trust)
    assert not out.trusted and out.retimed == 0
    assert look(W0, M0 + 300).retimed == 1  # the next look: the flag was there before the reading
    assert Segment.get().start_ts == pytest.approx(W0 - 200)


def test_retention_judges_no_age_by_an_untrusted_clock(cfg: Any, database: Any, tmp_path: Path) -> None:
    index = SegmentIndex(cfg.db_path)
    try:
        index.insert("CAMERA_A", tmp_path / "unset.ts", 100.0, 110.0, INFO, Timing(1.0, BOOT, False))
        index.insert("CAMERA_A", tmp_path / "set.ts", W0 - 30 * 86400, W0 - 30 * 86400 + 10, INFO)
    finally:
        index.close()
    retention.enforce(cfg, W0, free_pct=lambda _p: 100.0, clock_trusted=False)
    assert Segment.select().count() == 2
    retention.enforce(cfg, W0, free_pct=lambda _p: 100.0)
    # Aged out by a trusted clock: the segment timed by one; the one of unknown time stays.
    assert [Path(s.path).name for s in Segment.select()] == ["unset.ts"]


def test_a_clip_waits_for_a_trusted_clock(cfg: Any, database: Any, flag: Path) -> None:
    Video.create(unique_id="BK-1-CAMERA_A-full", booking_id="BK-1", camera="CAMERA_A", field_id=1,
                 start_ts=W0, end_ts=W0 + 60)  # fmt: skip
    row, _ = ledger.enqueue(TaskType.CLIP, "clip:BK-1", {"unique_id": "BK-1-CAMERA_A-full"}, max_attempts=3)
    with pytest.raises(RetryLater, match="clock not set") as caught:
        handlers.handle_clip(cfg, row)
    assert caught.value.retry_after == handlers.CLOCK_RETRY_S  # not counted: it only waits


def test_a_clip_waits_while_this_boots_early_segments_are_not_retimed_yet(
    cfg: Any, database: Any, flag: Path, tmp_path: Path
) -> None:
    """The flag appears; until the clock watch re-times the segments filed before it (within
    seconds), a clip would find none for those minutes and fail: it waits instead."""
    flag.touch()
    Video.create(unique_id="BK-2-CAMERA_A-full", booking_id="BK-2", camera="CAMERA_A", field_id=1,
                 start_ts=W0, end_ts=W0 + 60)  # fmt: skip
    row, _ = ledger.enqueue(TaskType.CLIP, "clip:BK-2", {"unique_id": "BK-2-CAMERA_A-full"}, max_attempts=3)
    index = SegmentIndex(cfg.db_path)
    try:
        index.insert(
            "CAMERA_A", tmp_path / "early.ts", 100.0, 110.0, INFO, Timing(1.0, wallclock.boot_id(), False)
        )
    finally:
        index.close()
    with pytest.raises(RetryLater, match="re-timed") as caught:
        handlers.handle_clip(cfg, row)
    assert caught.value.retry_after == handlers.RETIME_RETRY_S
    Segment.update(clock_ok=1).execute()  # what the clock watch does
    with pytest.raises(Exception, match="no segments|not pending|ClipError|segment"):  # noqa: PT011
        handlers.handle_clip(cfg, row)  # it cuts now (and finds no footage of BK-2: its own error)


def test_status_and_the_fault_led_say_clock_not_set_until_it_syncs(
    cfg: Any, database: Any, flag: Path
) -> None:
    from gpiozero.pins.mock import MockFactory, MockPWMPin

    from venuecam.leds.service import LedService

    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    faults = shapes.needs_attention(facts.collect(cfg, now, with_programs=False))
    assert any(f.startswith("clock not set: time has not synchronised yet") for f in faults), faults
    svc = LedService(cfg, pin_factory=MockFactory(pin_class=MockPWMPin))
    try:
        assert "clock not set" in svc.tick(now).causes  # the fault LED's 1.5 s / 0.5 s (test_leds)
        flag.touch()
        assert "clock not set" not in svc.tick(now).causes
    finally:
        svc.close()
    faults = shapes.needs_attention(facts.collect(cfg, now, with_programs=False))
    assert not any("clock not set" in f for f in faults), faults

"""The worker's watch on the wall clock: jumps re-base the ledger; a sync re-times segments.

A Pi has no RTC: NTP may step its clock by minutes (fake-hwclock's last saved time) or
decades (1970) after boot, and a human may set it either way. The ledger keeps wall-clock
times, so without help a forward jump of a week would expire every waiting upload and a
backward one would stall every retry. The monotonic clock does not jump, so `wall -
monotonic` (a `wallclock.Stamp`'s offset) is constant while nobody steps the wall clock;
when it moves by `JUMP_S` or more:

- every ledger row not completed and last written before the jump moves by the same
  amount (`ledger.rebase`): retries wait what they had left, expiry counts real waiting.
  Rows written after the jump already carry the new clock: those last written within
  `elapsed` (the monotonic time since the last look) before now are left alone. That is
  exact for a forward jump larger than the interval between looks (`TICK_S`); after a
  backward jump, a row last written |jump| before now (within `elapsed`) cannot be told
  from a new one and is left alone too;
- the moved rows waiting for a retry are sent to huey again at their new times (huey's
  schedule holds wall-clock etas).

Once the clock is trusted (`wallclock.trust`), segments this boot filed before it was
(clock_ok 0) are re-timed from their monotonic start, and become usable for clips.

Looked at every `TICK_S` by a thread of the worker, and at the start of each reconcile
(before it judges heartbeats by the clock). The last look is kept in the `state` table
(`clock`), so a jump while the worker was down, in the same boot, is seen too.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from venuecam import ledger, logs, shared_state, wallclock
from venuecam.models import PendingTask, Segment, TaskStatus
from venuecam.timeutil import to_naive_utc

if TYPE_CHECKING:
    from venuecam.worker.tasks import Tasks

log = logging.getLogger("worker")

JUMP_S = 5.0  # NTP slews by at most 0.5 ms/s: a step of this size is a jump, not drift
TICK_S = 2.0
MARGIN_S = 1.0  # rows written this close to the look's own window count as written after the jump
PERSIST_EVERY_S = 600.0  # the state row is rewritten this often at most, unless something changed


@dataclass(frozen=True)
class Look:
    jump_s: float  # 0.0 when none was seen
    rebased: int
    retimed: int
    trusted: bool


_lock = threading.Lock()
_last: dict[str, object] = {}  # the previous look of this process: {"stamp": Stamp, "trusted": bool}


def _saved() -> tuple[wallclock.Stamp | None, bool | None, float]:
    """The last look persisted: (its stamp, trusted then, mono when persisted)."""
    saved = shared_state.get_json(shared_state.CLOCK) or {}
    try:
        st = wallclock.Stamp(float(saved["wall"]), float(saved["mono"]), str(saved["boot_id"]))
    except (KeyError, TypeError, ValueError):
        return None, None, 0.0
    return st, bool(saved.get("trusted")), st.mono


def _persist(st: wallclock.Stamp, trusted: bool, jump_s: float) -> None:
    shared_state.put_json(
        shared_state.CLOCK,
        {"wall": st.wall, "mono": st.mono, "boot_id": st.boot_id, "trusted": trusted,
         "last_jump_s": round(jump_s, 3)},
        to_naive_utc(st.wall),
    )  # fmt: skip


def retime_segments(now: wallclock.Stamp) -> int:
    """Segments of this boot filed with an untrusted clock get wall times from their
    monotonic start, by the (now trusted) clock. Returns how many."""
    rows = list(
        Segment.select().where(
            (Segment.clock_ok == 0) & (Segment.boot_id == now.boot_id) & Segment.mono_start.is_null(False)
        )
    )
    with Segment._meta.database.atomic():
        for seg in rows:
            start = wallclock.mono_to_wall(float(seg.mono_start), now)
            end = start + (float(seg.end_ts) - float(seg.start_ts))
            Segment.update(start_ts=start, end_ts=end, clock_ok=1).where(Segment.id == seg.id).execute()
    return len(rows)


def look(
    tasks: Tasks | None = None,
    stamp: Callable[[], wallclock.Stamp] = wallclock.stamp,
    trust: Callable[[float], wallclock.Trust] = wallclock.trust,
    on_jump: Callable[[], None] | None = None,
) -> Look:
    """One look at the clocks (the seams `stamp` and `trust` are what tests drive).
    `on_jump` runs after a jump was handled (the worker syncs bookings: "today" moved)."""
    out = _look(tasks, stamp, trust)
    if out.jump_s and on_jump is not None:
        on_jump()
    return out


def _look(
    tasks: Tasks | None,
    stamp: Callable[[], wallclock.Stamp],
    trust: Callable[[float], wallclock.Trust],
) -> Look:
    with _lock:
        # The sync flag is asked before the clock is read, and again after: timesyncd sets
        # the clock, then writes the flag, so a flag seen before the reading vouches for it.
        # Asked only after, a flag written between the two would vouch for the old, wrong
        # time (seen in the soak: segments re-timed 2 h ahead, clips queued for bookings
        # not played yet).
        synced_before = trust(time.time()).trusted
        now = stamp()
        trusted = synced_before and trust(now.wall).trusted
        prev = _last.get("stamp")
        prev_trusted = _last.get("trusted")
        persisted_at = float(_last.get("persisted_mono", 0.0))  # type: ignore[arg-type]
        if not isinstance(prev, wallclock.Stamp):
            prev, prev_trusted, persisted_at = _saved()
        jump = rebased = retimed = 0
        changed = False
        if prev is not None and prev.boot_id == now.boot_id:
            delta = now.offset - prev.offset
            if abs(delta) >= JUMP_S:
                jump, changed = delta, True
                elapsed = max(now.mono - prev.mono, 0.0)
                written_since = (
                    to_naive_utc(now.wall - elapsed - MARGIN_S),
                    to_naive_utc(now.wall + MARGIN_S),
                )
                # The re-base and the new baseline in one commit: a crash between the two
                # would see the same jump again at restart and move every row twice.
                with PendingTask._meta.database.atomic():
                    rebased = ledger.rebase(delta, written_since)
                    _persist(now, trusted, delta)
                log.warning(
                    "%s The wall clock jumped by %+.1f s (now %s UTC); %d task(s) keep their waits "
                    "and their age", logs.QUEUE, delta, to_naive_utc(now.wall).replace(microsecond=0), rebased,
                )  # fmt: skip
                if tasks is not None and rebased:
                    _resend(tasks, now)
        if trusted:
            retimed = retime_segments(now)
            if retimed:
                log.info("%s Clock trusted: %d segment(s) recorded before time synced re-timed",
                         logs.CAPTURE, retimed)  # fmt: skip
        if trusted != prev_trusted:
            changed = True
            if trusted:
                log.info(
                    "%s Wall clock trusted (%s UTC)",
                    logs.QUEUE,
                    to_naive_utc(now.wall).replace(microsecond=0),
                )
            else:
                log.warning("%s %s: clips wait until it is", logs.QUEUE, trust(now.wall).reason)
        if (
            changed
            or prev is None
            or now.mono - persisted_at >= PERSIST_EVERY_S
            or prev.boot_id != now.boot_id
        ):
            _persist(now, trusted, jump)
            persisted_at = now.mono
        _last.update(stamp=now, trusted=trusted, persisted_mono=persisted_at)
        return Look(jump, rebased, retimed, trusted)


def _resend(tasks: Tasks, now: wallclock.Stamp) -> None:
    """huey's schedule holds wall-clock etas: give it the moved ones again (a duplicate
    message is harmless: a row not due is put back, one already claimed is skipped)."""
    wall = to_naive_utc(now.wall)
    rows = list(
        PendingTask.select().where(
            (PendingTask.status == TaskStatus.PENDING) & (PendingTask.next_retry_at > wall)
        )
    )
    for row in rows:
        tasks.execute.schedule(args=(row.id,), eta=row.next_retry_at)


def forget() -> None:
    """Drop this process's last look (tests: a fresh worker)."""
    with _lock:
        _last.clear()


def run_forever(tasks: Tasks, stop: threading.Event, on_jump: Callable[[], None] | None) -> None:
    while not stop.wait(TICK_S):
        try:
            look(tasks, on_jump=on_jump)
        except Exception as e:  # a locked database must not end the watch
            log.warning("%s clock watch: %s", logs.QUEUE, e)


def start(tasks: Tasks, on_jump: Callable[[], None] | None = None) -> threading.Event:
    stop = threading.Event()
    look(tasks)
    threading.Thread(target=run_forever, args=(tasks, stop, on_jump), name="clockwatch", daemon=True).start()
    return stop

"""The task ledger's transitions, driven with an explicit clock."""

from __future__ import annotations

import datetime as dt
from typing import Any

from venuecam import ledger
from venuecam.models import PendingTask, TaskStatus, TaskType

T0 = dt.datetime(2025, 1, 23, 10, 0, 0)
SCHEDULE = [300, 1200, 2700, 7200, 18000]


def at(seconds: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


def new(key: str = "upload_r2:BK-1-CAMERA_A-full", attempts: int = 6, **kw: Any):  # type: ignore[no-untyped-def]
    row, created = ledger.enqueue(
        TaskType.UPLOAD, key, {"unique_id": key}, max_attempts=attempts, now=T0, **kw
    )
    return row, created


def test_enqueue_is_idempotent_by_unique_key(database: Any) -> None:
    a, created_a = new()
    b, created_b = new()
    assert created_a and not created_b and a.id == b.id


def test_retry_schedule_then_dead_letter_then_redrive(database: Any) -> None:
    row, _ = new(attempts=len(SCHEDULE) + 1)
    now = T0
    for i, delay in enumerate(SCHEDULE):
        claimed = ledger.claim(row.id, now)
        assert claimed is not None and claimed.attempts == i + 1
        after = ledger.fail(row.id, f"boom {i}", SCHEDULE, now)
        assert after.status == TaskStatus.PENDING
        assert after.next_retry_at == now + dt.timedelta(seconds=delay)
        assert ledger.claim(row.id, now + dt.timedelta(seconds=delay - 1)) is None  # not due yet
        now = now + dt.timedelta(seconds=delay)
    assert ledger.claim(row.id, now) is not None
    final = ledger.fail(row.id, "last", SCHEDULE, now)
    assert final.status == TaskStatus.FAILED and final.error_msg == "last" and final.attempts == 6
    assert ledger.retry_failed(now=now) == 1
    again = ledger.claim(row.id, now)
    assert again is not None and again.attempts == 1


def test_offline_failure_does_not_count(database: Any) -> None:
    row, _ = new(attempts=2)
    for _ in range(5):
        assert ledger.claim(row.id, at(10_000)) is not None
        ledger.release_offline(row.id, "offline", retry_in_s=0, now=at(10_000))
    got = ledger.get(row.id)
    assert got.attempts == 0 and got.offline_failures == 5 and got.status == TaskStatus.PENDING


def test_claim_is_exclusive(database: Any) -> None:
    row, _ = new()
    assert ledger.claim(row.id, T0) is not None
    assert ledger.claim(row.id, T0) is None


def test_stale_running_row_is_reaped_and_wake_makes_due(database: Any) -> None:
    row, _ = new()
    ledger.claim(row.id, T0)
    assert ledger.reap_stale(120, at(60)) == []
    assert ledger.reap_stale(120, at(121)) == [row.id]
    assert ledger.get(row.id).status == TaskStatus.PENDING
    ledger.claim(row.id, at(121))
    ledger.fail(row.id, "x", SCHEDULE, at(122))
    assert ledger.due(at(123)) == []
    assert ledger.wake_all(at(123)) == 1
    assert [r.id for r in ledger.due(at(123))] == [row.id]


def test_a_restarted_worker_re_drives_rows_whose_heartbeat_is_in_its_future(database: Any) -> None:
    """Found by the soak: power cut mid-task, the box boots with its clock behind (no RTC).
    By age the row was not stale, so it sat `processing` until the clock caught up."""
    row, _ = new()
    ledger.claim(row.id, at(3600))
    assert ledger.reap_stale(0, at(0)) == []  # judged by age: the heartbeat is an hour ahead
    assert ledger.reap_interrupted(at(0)) == [row.id]
    got = ledger.get(row.id)
    assert got.status == TaskStatus.PENDING and [r.id for r in ledger.due(at(0))] == [row.id]


def test_due_orders_oldest_booking_first(database: Any) -> None:
    late, _ = new("upload_r2:late", priority_ts=2000.0)
    early, _ = new("upload_r2:early", priority_ts=1000.0)
    assert [r.id for r in ledger.due(T0)] == [early.id, late.id]


def test_cancel_expire_and_purge(database: Any) -> None:
    """Expired work (older than the expiration) is shown, never stopped: it is still due, claimed
    and completed; only a person cancels it."""
    a, _ = new("upload_r2:a", booking_id="BK-1")
    b, _ = new("upload_r2:b", booking_id="BK-2")
    c, _ = new("upload_r2:c", booking_id="BK-3")
    assert ledger.cancel_for_booking("BK-1", "cancelled", T0) == 1
    assert ledger.overdue(1, at(3599)) == []
    assert [r.id for r in ledger.overdue(1, at(7200))] == [b.id, c.id]
    assert ledger.get(b.id).status == TaskStatus.PENDING  # expired, still waiting
    assert [r.id for r in ledger.due(at(7200))] == [b.id, c.id]
    ledger.claim(c.id, at(7200))
    ledger.complete(c.id, at(7200))
    assert ledger.cancel([b.id, c.id], "given up by the operator", at(7200)) == [b.id]  # c ran already
    assert ledger.overdue(1, at(7200)) == []
    assert ledger.purge_completed(7, at(7200 + 6 * 86400)) == 0
    assert ledger.purge_completed(7, at(7200 + 8 * 86400)) == 1
    assert ledger.get(a.id).status == TaskStatus.CANCELLED
    assert ledger.counts() == {(TaskType.UPLOAD, TaskStatus.CANCELLED): 2}


def test_rows_an_earlier_release_stopped_as_expired_wait_again(database: Any) -> None:
    row, _ = new()
    PendingTask.update(status=TaskStatus.EXPIRED).where(PendingTask.id == row.id).execute()
    assert ledger.due(at(10)) == []
    assert ledger.revive_legacy_expired(at(10)) == [row.id]
    assert [r.id for r in ledger.due(at(10))] == [row.id] and ledger.get(row.id).attempts == 0


def test_completing_a_step_creates_the_next_in_the_same_commit(database: Any) -> None:
    row, _ = new()
    ledger.claim(row.id, T0)
    nxt = ledger.NewRow(TaskType.NOTIFY, "notify_ayo_api:x", {"unique_id": "x"}, max_attempts=4)
    made = ledger.complete(row.id, at(1), then=nxt)
    assert made is not None and made.unique_key == "notify_ayo_api:x" and made.status == TaskStatus.PENDING
    assert ledger.get(row.id).status == TaskStatus.COMPLETED
    # A row cancelled while it ran gets no successor.
    other, _ = new("upload_r2:other", booking_id="BK-9")
    ledger.claim(other.id, T0)
    ledger.cancel_for_booking("BK-9", "cancelled", T0)
    gone = ledger.NewRow(TaskType.NOTIFY, "notify_ayo_api:other", {}, max_attempts=4)
    assert ledger.complete(other.id, at(1), then=gone) is None
    assert PendingTask.get_or_none(PendingTask.unique_key == "notify_ayo_api:other") is None


def test_due_pages_through_every_waiting_row(database: Any) -> None:
    ids = [new(f"upload_r2:{i}", priority_ts=float(i % 3))[0].id for i in range(7)]
    seen: list[int] = []
    after = None
    while page := ledger.due(T0, limit=3, after=after):
        seen += [r.id for r in page]
        after = (page[-1].priority_ts, page[-1].id)
    assert sorted(seen) == sorted(ids) and len(seen) == len(set(seen))

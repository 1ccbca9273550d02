"""The database on a full disk (a small tmpfs the test mounts): a write that does not fit
raises an error the worker reads as "the disk is full" (the task waits for space, not
counted), not SQLite's own rollback hiding it; nothing of the transaction is kept, and once
space is back the database is whole and takes writes again.

Seen in the soak: "cannot rollback - no transaction is active" 259 times while the disk was
full, the tasks it hit failed as if for a fault of their own.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import needs_root
from venuecam import db as db_mod
from venuecam.errors import is_disk_full
from venuecam.models import Booking
from venuecam.worker import policy

MIB = 1024 * 1024


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    needs_root()
    d = tmp_path / "data"
    d.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(d)], check=True, timeout=30)
    try:
        yield d
    finally:
        subprocess.run(["umount", "-l", str(d)], timeout=30, check=False)


def add(n: int, size: int) -> None:
    Booking.create(booking_id=f"BK-{n}", status="success", raw_json="x" * size)


def test_a_transaction_that_does_not_fit_says_the_disk_is_full_and_keeps_nothing(small_disk: Path) -> None:
    database = db_mod.open_db(small_disk / "venuecam.db")
    try:
        add(0, 100)
        ballast = small_disk / "ballast"
        with open(ballast, "wb") as f:  # all but ~300 KB
            free = int(subprocess.run(["df", "--output=avail", "-B1", str(small_disk)], capture_output=True,
                                      text=True, check=True).stdout.split()[-1])  # fmt: skip
            f.write(b"\0" * max(0, free - 300 * 1024))
        # Which class is raised is what is under test (PT011).
        with pytest.raises(Exception) as raised, database.atomic():  # noqa: PT011
            for n in range(1, 200):
                add(n, 64 * 1024)
        error = raised.value
        assert "cannot rollback" not in str(error), repr(error)
        assert is_disk_full(error), repr(error)
        assert policy.judge(error, online=True, schedule=[1, 5, 60]).kind == policy.DISK_FULL
        assert database.connection().in_transaction is False
        ballast.unlink()
        assert [b.booking_id for b in Booking.select()] == ["BK-0"]  # nothing of the transaction
        assert db_mod.integrity_ok(database)
        add(1, 100)
        assert Booking.select().count() == 2
    finally:
        database.close()


def test_other_database_errors_are_not_taken_for_a_full_disk(tmp_path: Path) -> None:
    database = db_mod.open_db(tmp_path / "venuecam.db")
    try:
        with pytest.raises(Exception) as raised:  # noqa: PT011
            database.execute_sql("INSERT INTO no_such_table VALUES (1)")
        assert "no such table" in str(raised.value)
        assert not is_disk_full(raised.value)
        assert policy.judge(raised.value, online=True, schedule=[1]).kind == policy.COUNTED
    finally:
        database.close()

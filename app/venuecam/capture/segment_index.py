"""The capture side of the `segments` table, over the standard library's `sqlite3`.

A capture program runs per camera for the box's whole life and needs two statements of the
database: peewee and the models would add ~6 MB of resident memory to each for them. The
connection is set up as `db.open_db` sets up peewee's (WAL, synchronous FULL, IMMEDIATE
transactions, the same busy timeout), and the statements are checked against the peewee
model by tests/test_segment_index.py, so the two cannot drift apart.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from venuecam import shared_state
from venuecam.errors import BadInputError
from venuecam.timeutil import utcnow

TABLE = "segments"
# Kept in step with db.PRAGMAS (asserted by the tests).
PRAGMAS = (("journal_mode", "wal"), ("synchronous", 2), ("foreign_keys", 1), ("busy_timeout", 15000))
BUSY_TIMEOUT_S = 15.0

INSERT_SQL = (
    f"INSERT OR IGNORE INTO {TABLE} "
    "(camera, start_ts, end_ts, duration, path, bytes, codec, width, height, created_at, "
    "mono_start, boot_id, clock_ok) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


class SegmentInfo(Protocol):
    """What ffprobe tells about a segment (`media.probe.Probe` fits)."""

    duration: float
    bytes: int
    codec: str
    width: int
    height: int


@dataclass(frozen=True)
class Timing:
    """A segment's start on the monotonic clock of boot `boot_id`, and whether the wall clock
    was trusted when it was filed (venuecam.wallclock)."""

    mono_start: float | None
    boot_id: str | None
    clock_ok: bool


class SegmentIndex:
    """Rows of one database's `segments` table: insert a filed segment, list indexed paths."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            self._open()
        except sqlite3.DatabaseError as e:  # a damaged or foreign file: name it, touch nothing
            raise BadInputError(f"database {self.path}: {e}") from None

    def _open(self) -> None:
        if not self._has_table():
            # A capture started by hand before anything created the database: create the
            # schema the one way it is defined (peewee; the memory is only spent this once).
            from venuecam.db import open_db

            open_db(self.path).close()
        # isolation_level=None: transactions are begun explicitly, IMMEDIATE, as open_db's are.
        self.conn = sqlite3.connect(
            self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
        )
        for name, value in PRAGMAS:
            self.conn.execute(f"PRAGMA {name} = {value}")

    def _has_table(self) -> bool:
        if not self.path.exists():
            return False
        conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S)
        try:
            row = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (TABLE,))
            return row.fetchone() is not None
        finally:
            conn.close()

    def insert(
        self, camera: str, path: Path, start_ts: float, end_ts: float, info: SegmentInfo,
        timing: Timing | None = None,
    ) -> None:  # fmt: skip
        """Index one segment; a path already indexed is left as it is. `timing`: how far its
        wall-clock times can be trusted (None: they can, and there is no monotonic start)."""
        t = timing or Timing(None, None, True)
        values = (
            camera, start_ts, end_ts, info.duration, str(path), info.bytes,
            info.codec, info.width, info.height, str(utcnow()), t.mono_start, t.boot_id, int(t.clock_ok),
        )  # fmt: skip
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            self.conn.execute(INSERT_SQL, values)
            self.conn.execute("COMMIT")
        except BaseException:
            if self.conn.in_transaction:  # a failed COMMIT (disk full) may leave it open
                self.conn.execute("ROLLBACK")
            raise

    def set_state(self, key: str, value: str) -> None:
        """One row of the shared `state` table (what `venuecam status` reads by key), by the
        statement and key rules of `shared_state`, which owns the table."""
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            self.conn.execute(shared_state.SQL_UPSERT, (shared_state.check(key), value, str(utcnow())))
            self.conn.execute("COMMIT")
        except BaseException:
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK")
            raise

    def indexed_paths(self, camera: str) -> set[str]:
        rows = self.conn.execute(f"SELECT path FROM {TABLE} WHERE camera = ?", (camera,))
        return {p for (p,) in rows}

    def close(self) -> None:
        self.conn.close()

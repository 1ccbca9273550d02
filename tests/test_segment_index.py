"""Capture's sqlite3 `SegmentIndex` against the peewee schema every other program reads."""

from __future__ import annotations

import datetime as dt
import sqlite3
from pathlib import Path

import pytest

from venuecam import db
from venuecam.capture import segment_index
from venuecam.capture.segment_index import SegmentIndex
from venuecam.errors import BadInputError
from venuecam.media.probe import Probe
from venuecam.models import Segment

INFO = Probe(duration=10.02, codec="h264", width=1920, height=1080, fps=30.0, start_time=1.4, bytes=5_012_345)


def test_a_row_written_by_capture_reads_back_through_the_model(tmp_path: Path) -> None:
    path = tmp_path / "venuecam.db"
    database = db.open_db(path)
    index = SegmentIndex(path)
    try:
        before = dt.datetime.now(dt.UTC).replace(tzinfo=None)
        index.insert("court1", tmp_path / "a.ts", 1_700_000_000.25, 1_700_000_010.27, INFO)
        row = Segment.get()
        assert (row.camera, row.path, row.start_ts, row.end_ts) == (
            "court1", str(tmp_path / "a.ts"), 1_700_000_000.25, 1_700_000_010.27,
        )  # fmt: skip
        assert (row.duration, row.bytes, row.codec, row.width, row.height) == (
            10.02,
            5_012_345,
            "h264",
            1920,
            1080,
        )
        # Stored as peewee stores a DateTimeField, so the model reads a datetime back.
        assert isinstance(row.created_at, dt.datetime)
        assert before <= row.created_at <= dt.datetime.now(dt.UTC).replace(tzinfo=None)
        assert index.indexed_paths("court1") == {str(tmp_path / "a.ts")}
        assert index.indexed_paths("court2") == set()
    finally:
        index.close()
        database.close()


def test_the_same_path_twice_keeps_the_first_row(tmp_path: Path) -> None:
    path = tmp_path / "venuecam.db"
    database = db.open_db(path)
    index = SegmentIndex(path)
    try:
        index.insert("court1", tmp_path / "a.ts", 100.0, 110.0, INFO)
        index.insert("court1", tmp_path / "a.ts", 200.0, 210.0, INFO)
        assert [(s.start_ts, s.end_ts) for s in Segment.select()] == [(100.0, 110.0)]
        assert not index.conn.in_transaction
    finally:
        index.close()
        database.close()


def test_statement_columns_are_the_models_columns() -> None:
    model_columns = {f.column_name for f in Segment._meta.sorted_fields} - {"id"}
    insert_columns = segment_index.INSERT_SQL.split("(", 1)[1].split(")", 1)[0]
    assert {c.strip() for c in insert_columns.split(",")} == model_columns
    assert Segment._meta.table_name == segment_index.TABLE
    assert dict(segment_index.PRAGMAS) == db.PRAGMAS
    assert db.PRAGMAS["busy_timeout"] == segment_index.BUSY_TIMEOUT_S * 1000


def test_connection_is_set_up_as_the_other_programs_are(tmp_path: Path) -> None:
    path = tmp_path / "venuecam.db"
    db.open_db(path).close()
    index = SegmentIndex(path)
    try:
        pragma = {
            name: index.conn.execute(f"PRAGMA {name}").fetchone()[0] for name, _ in segment_index.PRAGMAS
        }
        assert pragma == {"journal_mode": "wal", "synchronous": 2, "foreign_keys": 1, "busy_timeout": 15000}
    finally:
        index.close()


def test_a_database_nobody_created_yet_gets_the_whole_schema(tmp_path: Path) -> None:
    path = tmp_path / "fresh" / "venuecam.db"
    index = SegmentIndex(path)
    index.insert("court1", tmp_path / "a.ts", 100.0, 110.0, INFO)
    index.close()
    conn = sqlite3.connect(path)
    tables = {name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    conn.close()
    assert {"segments", "bookings", "videos"} <= tables


def test_a_file_that_is_not_a_database_is_named_and_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "venuecam.db"
    path.write_bytes(b"not a database, just some bytes " * 64)
    with pytest.raises(BadInputError, match=f"database {path}: file is not a database"):
        SegmentIndex(path)
    assert path.read_bytes() == b"not a database, just some bytes " * 64

"""Opening the application database. Each process opens its own connection (never across fork).

WAL lets the capture, worker, watchdog and status processes read while one writes.
synchronous=FULL because the ledger lives on an SD card that loses power; every
transaction is IMMEDIATE so a read-modify-write never fails with "database is locked"
while another process writes (a DEFERRED one would, ignoring the busy timeout).
"""

from __future__ import annotations

from pathlib import Path

from peewee import SqliteDatabase

from venuecam import models

PRAGMAS = {
    "journal_mode": "wal",
    "synchronous": 2,  # FULL
    "foreign_keys": 1,
    "busy_timeout": 15000,
}


def open_db(path: str | Path, create: bool = True) -> SqliteDatabase:
    """Open (and, first time, create) the database; bind every model to it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    db = SqliteDatabase(str(path), pragmas=PRAGMAS, lock_type="IMMEDIATE", check_same_thread=False)
    db.bind(models.ALL_MODELS, bind_refs=False, bind_backrefs=False)
    db.connect(reuse_if_open=True)
    if create:
        with db.atomic():
            db.create_tables(models.ALL_MODELS, safe=True)
            add_missing_columns(db)
    return db


# Columns added to existing tables after their first release: (table, column, SQL definition).
# `create_tables(safe=True)` makes a new database whole but never alters an existing table, so
# a database made by an earlier release gets them here. Only nullable or defaulted columns.
ADDED_COLUMNS: list[tuple[str, str, str]] = [
    ("videos", "revision", "INTEGER NOT NULL DEFAULT 1"),  # booking-api.md 2b
    ("videos", "replaces_sha256", "VARCHAR(255)"),
]


def add_missing_columns(db: SqliteDatabase) -> list[str]:
    """ALTER TABLE ... ADD COLUMN for each `ADDED_COLUMNS` entry the database lacks."""
    added = []
    for table, column, definition in ADDED_COLUMNS:
        have = {row[1] for row in db.execute_sql(f'PRAGMA table_info("{table}")').fetchall()}
        if column not in have:
            db.execute_sql(f'ALTER TABLE "{table}" ADD COLUMN "{column}" {definition}')
            added.append(f"{table}.{column}")
    return added


def integrity_ok(db: SqliteDatabase) -> bool:
    rows = db.execute_sql("PRAGMA integrity_check").fetchall()
    return rows == [("ok",)]

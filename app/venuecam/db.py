"""Opening the application database. Each process opens its own connection (never across fork).

WAL lets the capture, worker, watchdog and status processes read while one writes.
synchronous=FULL because the ledger lives on an SD card that loses power; every
transaction is IMMEDIATE so a read-modify-write never fails with "database is locked"
while another process writes (a DEFERRED one would, ignoring the busy timeout).

Schema versions: the database's `PRAGMA user_version` is the schema it holds. `open_db`
brings it forward to `SCHEMA_VERSION` by running each step of `MIGRATIONS` in its own
IMMEDIATE transaction (the version bump inside it, so a step is all or nothing and two
processes opening at once run it once). New *tables* need no step: `create_tables(safe=True)`
adds them. Anything else (a new column, an index on a big table, a data fix) is a step:

    def _m2_bookings_court_name(db: SqliteDatabase) -> None:
        from playhouse.migrate import SqliteMigrator, migrate
        m = SqliteMigrator(db)
        migrate(m.add_column("bookings", "court_name", CharField(null=True)))

    MIGRATIONS = {2: _m2_bookings_court_name}
    SCHEMA_VERSION = 2

A release never opens a database newer than it knows (`SchemaError`): the updater keeps a
backup taken before the new release first opened it, and restores it when it rolls back.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from peewee import SqliteDatabase

from venuecam import models
from venuecam.errors import VenuecamError

PRAGMAS = {
    "journal_mode": "wal",
    "synchronous": 2,  # FULL
    "foreign_keys": 1,
    "busy_timeout": 15000,
}


def _add_columns(db: SqliteDatabase, table: str, columns: list[tuple[str, str]]) -> None:
    """ALTER TABLE ... ADD COLUMN for each (name, SQL definition) the table lacks (a column
    already there is left alone, so the step is safe on any layout that reached it)."""
    have = {row[1] for row in db.execute_sql(f'PRAGMA table_info("{table}")').fetchall()}
    for column, definition in columns:
        if column not in have:
            db.execute_sql(f'ALTER TABLE "{table}" ADD COLUMN "{column}" {definition}')


def _m2_videos_revision(db: SqliteDatabase) -> None:
    """booking-api.md 2b: a video cut again after its booking changed is a new revision."""
    _add_columns(
        db, "videos", [("revision", "INTEGER NOT NULL DEFAULT 1"), ("replaces_sha256", "VARCHAR(255)")]
    )


def _m3_segments_clock(db: SqliteDatabase) -> None:
    """Wall-clock trust: a segment filed before time synced is re-timed once it does."""
    _add_columns(
        db, "segments",
        [("mono_start", "REAL"), ("boot_id", "VARCHAR(255)"), ("clock_ok", "INTEGER NOT NULL DEFAULT 1")],
    )  # fmt: skip


SCHEMA_VERSION = 3
# version -> the step that brings version - 1 to it. Steps are never edited once released.
MIGRATIONS: dict[int, Callable[[SqliteDatabase], None]] = {2: _m2_videos_revision, 3: _m3_segments_clock}


class SchemaError(VenuecamError):
    """The database's schema is one this release cannot use (newer, or a step is missing)."""


class Database(SqliteDatabase):
    """SQLite, with a rollback that is a no-op once SQLite itself has rolled back.

    On some errors (SQLITE_FULL, SQLITE_IOERR, SQLITE_NOMEM) SQLite ends the transaction by
    itself; peewee's atomic() then asks for a ROLLBACK anyway and raises "cannot rollback -
    no transaction is active", which hides the error that matters (seen in the soak: the
    disk was full, and the task was failed as if for a database fault instead of waiting
    for space).
    """

    def rollback(self) -> None:
        if not self.is_closed() and not self.connection().in_transaction:
            return
        super().rollback()


def open_db(path: str | Path, create: bool = True) -> SqliteDatabase:
    """Open (and, first time, create or migrate) the database; bind every model to it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    db = Database(str(path), pragmas=PRAGMAS, lock_type="IMMEDIATE", check_same_thread=False)
    db.bind(models.ALL_MODELS, bind_refs=False, bind_backrefs=False)
    db.connect(reuse_if_open=True)
    if create:
        migrate(db, str(path))
    return db


def schema_version(db: SqliteDatabase) -> int:
    return int(db.execute_sql("PRAGMA user_version").fetchone()[0])


def migrate(db: SqliteDatabase, where: str = "database") -> tuple[int, int]:
    """Create a fresh database at SCHEMA_VERSION, or run the missing steps; (before, after)."""
    before = schema_version(db)
    if before == SCHEMA_VERSION:
        with db.atomic():
            db.create_tables(models.ALL_MODELS, safe=True)
        return before, before
    if before > SCHEMA_VERSION:
        raise SchemaError(
            f"{where}: schema {before} is newer than this release knows ({SCHEMA_VERSION}); "
            "restore the backup the update kept, or install the newer release"
        )
    with db.atomic():
        now = schema_version(db)  # another process may have migrated while we waited
        if now == 0:
            # Fresh, or made before schema versions existed (that layout is version 1).
            legacy = bool(db.get_tables())
            db.create_tables(models.ALL_MODELS, safe=True)
            _set_version(db, 1 if legacy else SCHEMA_VERSION)
    for version in range(schema_version(db) + 1, SCHEMA_VERSION + 1):
        step = MIGRATIONS.get(version)
        if step is None:
            raise SchemaError(f"{where}: no migration to schema {version} in this release")
        with db.atomic():
            if schema_version(db) >= version:
                continue
            step(db)
            _set_version(db, version)
    with db.atomic():
        db.create_tables(models.ALL_MODELS, safe=True)
    return before, schema_version(db)


def _set_version(db: SqliteDatabase, version: int) -> None:
    db.execute_sql(f"PRAGMA user_version = {int(version)}")


def integrity_ok(db: SqliteDatabase) -> bool:
    rows = db.execute_sql("PRAGMA integrity_check").fetchall()
    return rows == [("ok",)]

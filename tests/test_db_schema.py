"""Schema versions and forward migrations (db.py)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from peewee import CharField

from venuecam import db as db_mod


def version_of(path: Path) -> int:
    with sqlite3.connect(path) as conn:
        return conn.execute("PRAGMA user_version").fetchone()[0]


def test_fresh_database_starts_at_the_current_schema(tmp_path: Path) -> None:
    d = db_mod.open_db(tmp_path / "v.db")
    d.close()
    assert version_of(tmp_path / "v.db") == db_mod.SCHEMA_VERSION


def test_a_database_from_before_versions_counts_as_schema_1_and_is_migrated(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "old.db"
    d = db_mod.open_db(path)
    d.execute_sql("PRAGMA user_version = 0")  # as every database made before this change
    d.close()
    ran: list[int] = []

    def step2(database: object) -> None:
        from playhouse.migrate import SqliteMigrator, migrate

        ran.append(2)
        migrate(SqliteMigrator(database).add_column("bookings", "court_note", CharField(null=True)))

    monkeypatch.setattr(db_mod, "MIGRATIONS", {2: step2})
    monkeypatch.setattr(db_mod, "SCHEMA_VERSION", 2)
    d = db_mod.open_db(path)
    assert ran == [2] and db_mod.schema_version(d) == 2
    cols = [r[1] for r in d.execute_sql("PRAGMA table_info(bookings)").fetchall()]
    assert "court_note" in cols
    d.close()
    d = db_mod.open_db(path)  # a second open runs nothing
    assert ran == [2]
    d.close()


def test_a_failed_step_changes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "v.db"
    db_mod.open_db(path).close()
    current = db_mod.SCHEMA_VERSION

    def broken(database: object) -> None:
        database.execute_sql("CREATE TABLE half_done (x INTEGER)")  # type: ignore[attr-defined]
        raise RuntimeError(f"step {current + 1} broke")

    monkeypatch.setattr(db_mod, "MIGRATIONS", {**db_mod.MIGRATIONS, current + 1: broken})
    monkeypatch.setattr(db_mod, "SCHEMA_VERSION", current + 1)
    with pytest.raises(RuntimeError, match=f"step {current + 1} broke"):
        db_mod.open_db(path)
    assert version_of(path) == current
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT name FROM sqlite_master WHERE name = 'half_done'").fetchall() == []


def test_a_newer_schema_is_refused_with_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "v.db"
    d = db_mod.open_db(path)
    d.execute_sql(f"PRAGMA user_version = {db_mod.SCHEMA_VERSION + 1}")
    d.close()
    with pytest.raises(db_mod.SchemaError, match="newer than this release knows"):
        db_mod.open_db(path)


def test_a_missing_step_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "v.db"
    db_mod.open_db(path).close()
    current = db_mod.SCHEMA_VERSION
    monkeypatch.setattr(db_mod, "SCHEMA_VERSION", current + 2)
    monkeypatch.setattr(db_mod, "MIGRATIONS", {**db_mod.MIGRATIONS, current + 1: lambda database: None})
    with pytest.raises(db_mod.SchemaError, match=f"no migration to schema {current + 2}"):
        db_mod.open_db(path)
    assert version_of(path) == current + 1

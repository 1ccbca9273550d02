"""The updater's database backup, written as the database's owner into the updater's own
directory (root's, mode 0700): the emulated Pi's update found it refused with "Permission
denied" (every test rig ran the app as root, so none had seen it). Needs root."""

from __future__ import annotations

import os
import pwd
import sqlite3
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from venuecam.update.journal import Journal
from venuecam.update.stack import hand_to_owner, run_as_owner

pytestmark = pytest.mark.root


@pytest.fixture
def app_owned_db() -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.skip("needs root (the updater runs as root, the app as its own user)")
    if not os.access(SYSTEM_PYTHON, os.X_OK):
        pytest.skip(f"no {SYSTEM_PYTHON}")
    nobody = pwd.getpwnam("nobody")
    top = Path(tempfile.mkdtemp(prefix="venuecam-dbops-"))  # not under root's 0700 pytest dir
    top.chmod(0o755)
    data = top / "data"
    data.mkdir()
    db = data / "venuecam.db"
    with sqlite3.connect(db) as con:
        con.execute("create table t (x)")
        con.execute("insert into t values (42)")
    for p in (data, db):
        os.chown(p, nobody.pw_uid, nobody.pw_gid)
    yield db
    import shutil

    shutil.rmtree(top)


APP = Path(__file__).resolve().parents[1] / "app"
# dbops is stdlib only: the system's Python runs it (the test's own may sit where `nobody`
# cannot reach, e.g. under /root).
SYSTEM_PYTHON = "/usr/bin/python3"


def backup(db: Path, dst: Path) -> int:
    argv = [SYSTEM_PYTHON, "-m", "venuecam.update.dbops", "backup", str(db), str(dst)]
    return run_as_owner(argv, db, env={"PYTHONPATH": str(APP)}).returncode


def test_the_backup_goes_into_the_updaters_directory_as_the_databases_owner(app_owned_db: Path) -> None:
    journal = Journal(app_owned_db.parent.parent / "venuecam-update")
    journal.ensure()
    backups = journal.dir / "backups"
    assert backups.stat().st_uid == 0 and backups.stat().st_mode & 0o777 == 0o700
    dst = backups / "venuecam-0.1.0-before-0.1.1.db"
    assert backup(app_owned_db, dst) != 0  # root's directory: what the box did
    hand_to_owner(backups, app_owned_db)
    assert backup(app_owned_db, dst) == 0
    assert dst.stat().st_uid == app_owned_db.stat().st_uid
    with sqlite3.connect(dst) as con:
        assert con.execute("select x from t").fetchall() == [(42,)]
    assert backups.stat().st_mode & 0o777 == 0o700  # still nobody else's

"""Database work the updater does, stdlib only, run as the database's owner
(`python -m venuecam.update.dbops backup|restore|version|query ...`, prints JSON).

As the owner because root opening the database could leave root-owned -wal/-shm files that
the app user then cannot write. Backup and restore go through SQLite's online backup API, so
a WAL database is copied consistently; each result is fsynced before it counts.
"""

from __future__ import annotations

import json
import os
import sqlite3
import sys
from pathlib import Path
from typing import Any


def _connect(path: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, timeout=30)
    conn.execute("PRAGMA busy_timeout = 30000")
    return conn


def version(path: str) -> int:
    if not Path(path).exists():
        return 0
    with _connect(path) as conn:
        return int(conn.execute("PRAGMA user_version").fetchone()[0])


def _fsync(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def backup(src: str, dst: str) -> dict[str, Any]:
    if not Path(src).exists():
        return {"backup": None, "schema": 0}
    tmp = dst + ".tmp"
    Path(tmp).unlink(missing_ok=True)
    source = _connect(src)
    target = sqlite3.connect(tmp)
    try:
        source.backup(target)
        schema = int(source.execute("PRAGMA user_version").fetchone()[0])
    finally:
        target.close()
        source.close()
    _fsync(tmp)
    os.replace(tmp, dst)
    _fsync(str(Path(dst).parent))
    return {"backup": dst, "schema": schema, "bytes": Path(dst).stat().st_size}


def restore(src: str, dst: str) -> dict[str, Any]:
    """Put the backup's pages into the live database file (the stack is stopped)."""
    source = sqlite3.connect(f"file:{src}?mode=ro", uri=True)
    target = _connect(dst)
    try:
        source.backup(target)
        target.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        ok = target.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        schema = int(target.execute("PRAGMA user_version").fetchone()[0])
    finally:
        target.close()
        source.close()
    _fsync(dst)
    return {"restored": dst, "schema": schema, "integrity_ok": ok}


def query(path: str, sql: str, params: list[Any]) -> list[list[Any]]:
    if not sql.lstrip().upper().startswith("SELECT"):
        raise SystemExit("dbops query: only SELECT")
    if not Path(path).exists():
        return []
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    try:
        return [list(r) for r in conn.execute(sql, params).fetchall()]
    finally:
        conn.close()


def main(argv: list[str]) -> int:
    cmd, *rest = argv
    if cmd == "backup":
        out: Any = backup(rest[0], rest[1])
    elif cmd == "restore":
        out = restore(rest[0], rest[1])
    elif cmd == "version":
        out = {"schema": version(rest[0])}
    elif cmd == "query":
        out = query(rest[0], rest[1], json.loads(rest[2]) if len(rest) > 2 else [])
    else:
        raise SystemExit(f"dbops: unknown command {cmd!r}")
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

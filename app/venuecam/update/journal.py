"""The update journal: one JSON file (`<state_dir>/state.json`) saying what an update is doing,
which step it reached, what waits, and what happened before. Written whole to a temporary
file, fsynced and renamed, so a power cut leaves the old or the new journal, never half.

It lives in root's state directory, not in the app's data directory: the app user can write
there (and could rename a directory of ours away), and what the journal says is acted on as
root. statusd (the app user) only reads it. `lock()` makes one updater run at a time.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from venuecam.errors import VenuecamError
from venuecam.update.layout import fsync_dir

HISTORY_KEPT = 20


class Busy(VenuecamError):
    """Another updater holds the lock."""


def empty() -> dict[str, Any]:
    return {"op": None, "pending": None, "last": None, "history": [], "failed": {}, "poll": None,
            "reboot": None, "acknowledged": None}  # fmt: skip


class Journal:
    def __init__(self, state_dir: str | Path) -> None:
        self.dir = Path(state_dir)
        self.path = self.dir / "state.json"

    def ensure(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o755)
        for sub in ("downloads", "backups"):
            (self.dir / sub).mkdir(exist_ok=True, mode=0o700)

    def read(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return empty()
        except (OSError, ValueError) as e:
            raise VenuecamError(
                f"{self.path}: unreadable update journal ({e}); move it aside to start afresh"
            ) from None
        return {**empty(), **data} if isinstance(data, dict) else empty()

    def write(self, state: dict[str, Any]) -> None:
        self.ensure()
        tmp = self.path.with_suffix(".tmp")
        with open(tmp, "w") as f:
            json.dump(state, f, indent=1, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # statusd (the app user) reads it
        os.replace(tmp, self.path)
        fsync_dir(self.dir)

    def update(self, **changes: Any) -> dict[str, Any]:
        state = self.read()
        state.update(changes)
        self.write(state)
        return state

    def finish(self, outcome: dict[str, Any]) -> dict[str, Any]:
        """The operation is over: it becomes `last` and the head of the history."""
        state = self.read()
        state["op"] = None
        state["last"] = outcome
        state["history"] = [outcome, *state.get("history", [])][:HISTORY_KEPT]
        self.write(state)
        return state

    def discard(self, bundle: Path) -> None:
        """A bundle this box downloaded is removed once its update is over (committed, failed,
        rolled back or refused): the root filesystem is not for old bundles. Kept while a
        deferred update names it; a file given by path (outside downloads/) is never touched."""
        bundle = Path(bundle)
        if bundle.parent.resolve() != (self.dir / "downloads").resolve():
            return
        if (self.read().get("pending") or {}).get("bundle") == str(bundle):
            return
        bundle.unlink(missing_ok=True)

    @contextlib.contextmanager
    def lock(self, wait: bool = False) -> Iterator[None]:
        self.ensure()
        fd = os.open(self.dir / "lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
            except BlockingIOError:
                holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
                raise Busy(
                    f"another update is running (pid {holder}); `venuecam update --status` shows it"
                ) from None
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
            yield
        finally:
            os.close(fd)

    def locked_by_other(self) -> bool:
        """True while some updater holds the lock (for readers that only look)."""
        try:
            fd = os.open(self.dir / "lock", os.O_RDONLY)
        except OSError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            return False
        except BlockingIOError:
            return True
        finally:
            os.close(fd)

"""Stopping and starting the programs, and running things as the app's user.

- `systemd` (the box): `systemctl stop|start venuecam.service`; systemd runs supervise.
- `direct` (no systemd: a development machine, the tests): the updater starts
  `<install_dir>/current/bin/venuecam supervise` itself, detached (its own session, output
  to `<log_dir>/supervise.log`), and stops it by supervisord's pid file (SIGTERM, the
  programs finish their segments and tasks, then SIGKILL for what is left).

New release code runs as the user that owns the database (`venuecam` on the box), never as
root: the updater is root only to write /opt/venuecam and restart the service.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from venuecam.config import Config
from venuecam.errors import VenuecamError

UNIT = "venuecam.service"
STOP_TIMEOUT_S = 90.0


class StackError(VenuecamError):
    """The programs could not be stopped or started."""


def owner_ids(path: Path) -> tuple[int, int] | None:
    """(uid, gid) to run as for work on `path`, or None when that is us already."""
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    st = probe.stat()
    if os.geteuid() != 0 or st.st_uid == os.geteuid():
        return None
    return st.st_uid, st.st_gid


def run_as_owner(
    argv: list[str], owner_of: Path, timeout: float = 300, **kw: Any
) -> subprocess.CompletedProcess[str]:
    ids = owner_ids(owner_of)
    extra: dict[str, Any] = {}
    if ids:
        extra = {"user": ids[0], "group": ids[1], "extra_groups": _groups_of(ids[0])}
    env = {**os.environ, **kw.pop("env", {})}
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env,
                          stdin=subprocess.DEVNULL, **extra, **kw)  # fmt: skip


def _groups_of(uid: int) -> list[int]:
    import grp
    import pwd

    try:
        name = pwd.getpwuid(uid).pw_name
    except KeyError:
        return []
    return [g.gr_gid for g in grp.getgrall() if name in g.gr_mem]


def hand_to_owner(directory: Path, owner_of: Path) -> None:
    """Make `directory` (the updater's, created by root with mode 0700) belong to the owner of
    `owner_of`: what `dbop` writes there is written as that owner, never as root."""
    ids = owner_ids(owner_of)
    if ids:
        os.chown(directory, *ids)


def dbop(cfg: Config, *args: str) -> dict[str, Any] | list[Any]:
    """`python -m venuecam.update.dbops ...` as the database's owner; its JSON answer."""
    import sys

    r = run_as_owner([sys.executable, "-m", "venuecam.update.dbops", *args], cfg.db_path)
    if r.returncode != 0:
        raise StackError(f"database {args[0]} failed: {(r.stderr or r.stdout).strip().splitlines()[-1:]}")
    return json.loads(r.stdout)


class Stack:
    def __init__(self, cfg: Config, config_path: str) -> None:
        self.cfg = cfg
        self.config_path = config_path
        self.direct = cfg.update.service == "direct"

    def _pid(self) -> int | None:
        try:
            pid = int((self.cfg.run_dir / "supervisord.pid").read_text().strip())
        except (OSError, ValueError):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            return pid
        return pid

    def running(self) -> bool:
        if not self.direct:
            r = subprocess.run(["systemctl", "is-active", "--quiet", UNIT], capture_output=True)
            return r.returncode == 0
        return self._pid() is not None

    def stop(self) -> None:
        if not self.direct:
            _systemctl("stop", UNIT)
            return
        pid = self._pid()
        if pid is None:
            return
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        while time.monotonic() < deadline and _alive(pid):
            time.sleep(0.2)
        if _alive(pid):
            try:
                os.killpg(os.getpgid(pid), signal.SIGKILL)
            except ProcessLookupError:
                pass
        (self.cfg.run_dir / "supervisord.pid").unlink(missing_ok=True)

    def start(self) -> None:
        if not self.direct:
            _systemctl("start", UNIT)
            return
        if self._pid() is not None:
            return
        exe = Path(self.cfg.update.install_dir) / "current" / "bin" / "venuecam"
        self.cfg.log_dir.mkdir(parents=True, exist_ok=True)
        self.cfg.supervisor_socket.unlink(missing_ok=True)
        with open(self.cfg.log_dir / "supervise.log", "ab") as log:
            subprocess.Popen([str(exe), "--config", self.config_path, "supervise"], stdin=subprocess.DEVNULL,
                             stdout=log, stderr=subprocess.STDOUT, start_new_session=True, close_fds=True)  # fmt: skip

    def log_tail(self, lines: int = 5) -> str:
        if self.direct:
            try:
                text = (self.cfg.log_dir / "supervise.log").read_text(errors="replace")
            except OSError:
                return ""
            return " / ".join(ln for ln in text.strip().splitlines()[-lines:] if ln.strip())
        r = subprocess.run(["journalctl", "-u", UNIT, "-n", str(lines), "-o", "cat", "--no-pager"],
                           capture_output=True, text=True)  # fmt: skip
        return " / ".join(r.stdout.strip().splitlines())

    def reboot(self) -> None:
        _systemctl("reboot")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie child of ours counts as gone.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[-1][0] != "Z"
    except OSError:
        return False


def _systemctl(*args: str) -> None:
    r = subprocess.run(["systemctl", *args], capture_output=True, text=True, timeout=180)
    if r.returncode != 0:
        raise StackError(f"systemctl {' '.join(args)} failed: {r.stderr.strip()}")

"""Fixtures for statusd: a populated database and the real statusd under a real supervisord.

`status_box` starts `supervisord -n` with a minimal config (one program, statusd) and waits
for the status socket; `box.client` talks to it, `box.tcp_port` is its loopback TCP port.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from venuecam import config as config_mod
from venuecam import db as db_mod
from venuecam import ledger, shared_state
from venuecam.models import Booking, PendingTask, Segment, TaskStatus, TaskType
from venuecam.statusd.client import StatusClient
from venuecam.timeutil import booking_bounds, iso, naive_utc_to_ts, utcnow

STATUS_TOKEN = "status-token-0123456789"
SUPERVISORD = Path(sys.executable).parent / "supervisord"


def short_run_dir() -> Path:
    # AF_UNIX paths are limited to 108 bytes; pytest's tmp paths can be longer.
    return Path(tempfile.mkdtemp(prefix="vc-", dir="/tmp"))


def populate(cfg: config_mod.Config, now: dt.datetime | None = None) -> dict[str, Any]:
    """A little of everything: bookings, a ledger in every state, segments, connectivity."""
    now = now or utcnow()
    today = now.date().isoformat()
    yesterday = (now.date() - dt.timedelta(days=1)).isoformat()
    for i, (date, status, field_id) in enumerate(
        [(today, "success", 1), (today, "cancelled", 2), (yesterday, "success", 1)], start=1
    ):
        start, end = booking_bounds(date, f"{9 + i:02d}:00:00", f"{10 + i:02d}:00:00", cfg.tz)
        Booking.create(
            booking_id=f"BK-{i}",
            order_detail_id=700 + i,
            field_id=field_id,
            date=date,
            start_time=f"{9 + i:02d}:00:00",
            end_time=f"{10 + i:02d}:00:00",
            status=status,
            field_name=f"Lapangan {field_id}",
            user_name=f"User {i}",
            user_phone="0812000000",
            raw_json=json.dumps({"booking_id": f"BK-{i}"}),
            start_ts=start,
            end_ts=end,
        )
    ids: dict[str, int] = {}
    for n in range(3):
        row, _ = ledger.enqueue(TaskType.UPLOAD, f"upload_r2:BK-1-CAMERA_A-{n}", {"unique_id": f"BK-1-CAMERA_A-{n}"},
                                max_attempts=5, booking_id="BK-1", now=now)  # fmt: skip
        ids[f"upload{n}"] = row.id
    row, _ = ledger.enqueue(TaskType.NOTIFY, "notify:BK-1", {}, max_attempts=3, booking_id="BK-1", now=now)
    ids["notify"] = row.id
    # upload0: running at 40 %; upload1: completed an hour ago; upload2: failed for good
    ledger.claim(ids["upload0"], now=now)
    ledger.heartbeat(ids["upload0"], now=now, bytes_done=40_000_000, bytes_total=100_000_000)
    ledger.claim(ids["upload1"], now=now)
    ledger.complete(ids["upload1"], now=now - dt.timedelta(hours=1))
    PendingTask.update(status=TaskStatus.FAILED, attempts=5, error_msg="HTTP 500 from store").where(
        PendingTask.id == ids["upload2"]
    ).execute()
    now_ts = naive_utc_to_ts(now)
    for k in range(3):
        Segment.create(camera="CAMERA_A", start_ts=now_ts - 6 + 2 * k, end_ts=now_ts - 4 + 2 * k, duration=2.0,
                       path=f"/seg/a{k}.ts", bytes=1000)  # fmt: skip
    set_state("connectivity", {"status": "ONLINE", "since": iso(now - dt.timedelta(hours=2)),
                               "last_check": iso(now), "latency_ms": 12.5, "detail": "all probes ok"})  # fmt: skip
    return ids


def set_state(key: str, value: dict[str, Any], now: dt.datetime | None = None) -> None:
    shared_state.put_json(key, value, now)


def supervisord_conf(cfg: config_mod.Config, workdir: Path, extra_args: list[str] | None = None) -> str:
    cmd = " ".join(
        [sys.executable, "-m", "venuecam", "--config", cfg.source_path, "statusd", *(extra_args or [])]
    )
    return f"""[unix_http_server]
file={cfg.supervisor_socket}
chmod=0700

[supervisord]
nodaemon=true
logfile={workdir}/supervisord.log
pidfile={workdir}/supervisord.pid
childlogdir={workdir}

[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface

[supervisorctl]
serverurl=unix://{cfg.supervisor_socket}

[program:statusd]
command={cmd}
autorestart=true
startsecs=0
stopsignal=TERM
stopwaitsecs=10
redirect_stderr=true
stdout_logfile={workdir}/statusd.log
"""


@dataclass
class StatusBox:
    cfg: config_mod.Config
    workdir: Path
    proc: subprocess.Popen[bytes]
    tcp_port: int

    @property
    def client(self) -> StatusClient:
        return StatusClient(self.cfg.status_socket, timeout=10)

    def log(self) -> str:
        p = self.workdir / "statusd.log"
        return p.read_text(errors="replace") if p.exists() else ""

    def statusd_pid(self) -> int:
        out = subprocess.run([str(SUPERVISORD.parent / "supervisorctl"), "-c", str(self.workdir / "supervisord.conf"),
                              "pid", "statusd"], capture_output=True, text=True, timeout=10)  # fmt: skip
        return int(out.stdout.strip())

    def wait_ready(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"supervisord exited: {self.proc.returncode}\n{self.log()}")
            try:
                status, _ = self.client.get("/healthz")
                if status == 200:
                    return
            except Exception:
                pass
            time.sleep(0.1)
        raise TimeoutError(f"statusd did not answer within {timeout}s\n{self.log()}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def start_status_box(cfg: config_mod.Config, workdir: Path) -> StatusBox:
    cfg.supervisor_socket.parent.mkdir(parents=True, exist_ok=True)
    conf = workdir / "supervisord.conf"
    conf.write_text(supervisord_conf(cfg, workdir))
    proc = subprocess.Popen([str(SUPERVISORD), "-n", "-c", str(conf)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)  # fmt: skip
    box = StatusBox(cfg, workdir, proc, cfg.status.tcp_port)
    try:
        box.wait_ready()
    except BaseException:
        box.stop()
        raise
    return box


@pytest.fixture
def status_config(make_config: Callable[..., config_mod.Config]) -> Iterator[config_mod.Config]:
    from conftest import free_port

    run_dir = short_run_dir()
    cfg = make_config(
        device={"run_dir": str(run_dir)},
        status={"tcp_enabled": True, "tcp_port": free_port(), "token": STATUS_TOKEN},
    )
    yield cfg
    shutil.rmtree(run_dir, ignore_errors=True)


@pytest.fixture
def status_db(status_config: config_mod.Config) -> Iterator[Any]:
    d = db_mod.open_db(status_config.db_path)
    yield d
    d.close()


@pytest.fixture
def status_box(status_config: config_mod.Config, status_db: Any, tmp_path: Path) -> Iterator[StatusBox]:
    """statusd under supervisord over a populated database; `box.ids` names the ledger rows."""
    ids = populate(status_config)
    workdir = tmp_path / "supervisor"
    workdir.mkdir()
    box = start_status_box(status_config, workdir)
    box.ids = ids  # type: ignore[attr-defined]
    yield box
    box.stop()
    if os.environ.get("VENUECAM_KEEP_LOGS"):
        print(box.log())

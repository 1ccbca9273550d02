"""The capture program under a real supervisord: a dead source makes it exit non-zero and
supervisord restarts it; `supervisorctl stop` finalises the last segment."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import xmlrpc.client
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import base_sections, render_toml
from venuecam import config as config_mod
from venuecam.db import open_db
from venuecam.models import Segment

BIN = Path(sys.executable).parent
PROGRAM = "capture:CAMERA_A"


def wait_for(what: str, fn: Callable[[], Any], timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := fn():
            return value
        time.sleep(0.2)
    pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}")


class Supervisor:
    def __init__(self, tmp: Path) -> None:
        cam = {"name": "CAMERA_A", "field_id": 1, "source": "testsrc", "segment_seconds": 1,
               "width": 320, "height": 240, "fps": 10, "bitrate_kbps": 200}  # fmt: skip
        cfg_path = tmp / "venuecam.toml"
        cfg_path.write_text(render_toml(base_sections(tmp, cameras=[cam])))
        self.cfg = config_mod.load(cfg_path)
        self.sock = tmp / "sv.sock"
        self.capture_log = tmp / "capture.log"
        self.log = tmp / "supervisord.log"
        conf = tmp / "supervisord.conf"
        # The settings a capture program needs (PITFALLS: stopasgroup/killasgroup; a stop
        # longer than the capture's own ffmpeg grace of 5 s).
        conf.write_text(f"""
[unix_http_server]
file={self.sock}
[supervisord]
nodaemon=true
logfile={self.log}
pidfile={tmp / "supervisord.pid"}
childlogdir={tmp}
[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface
[group:capture]
programs=CAMERA_A
[program:CAMERA_A]
command={BIN / "venuecam"} --config {cfg_path} capture --camera CAMERA_A
autorestart=true
startsecs=1
startretries=100
stopsignal=TERM
stopwaitsecs=20
stopasgroup=true
killasgroup=true
redirect_stderr=true
stdout_logfile={self.capture_log}
""")
        self.proc = subprocess.Popen(
            [str(BIN / "supervisord"), "-c", str(conf)],
            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip

    def rpc(self) -> Any:
        from supervisor.xmlrpc import SupervisorTransport

        transport = SupervisorTransport(None, None, f"unix://{self.sock}")
        return xmlrpc.client.ServerProxy("http://localhost", transport=transport).supervisor

    def info(self) -> dict[str, Any]:
        try:
            return dict(self.rpc().getProcessInfo(PROGRAM))
        except (OSError, xmlrpc.client.Fault):
            return {}

    def segments(self) -> list[Segment]:
        db = open_db(self.cfg.db_path)
        try:
            return list(Segment.select().order_by(Segment.start_ts))
        finally:
            db.close()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)


@pytest.fixture
def supervisor(tmp_path: Path) -> Iterator[Supervisor]:
    sv = Supervisor(tmp_path)
    yield sv
    sv.close()


def children(pid: int) -> list[int]:
    text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    return [int(p) for p in text.split()]


def test_dead_source_is_restarted_by_supervisord_and_stop_is_clean(supervisor: Supervisor) -> None:
    info = wait_for("capture RUNNING", lambda: (i := supervisor.info()).get("statename") == "RUNNING" and i)
    wait_for("two segments", lambda: len(supervisor.segments()) >= 2)

    # The source dies: kill the capture's ffmpeg.
    first_pid = info["pid"]
    (ffmpeg_pid,) = children(first_pid)
    os.kill(ffmpeg_pid, signal.SIGKILL)
    restarted = wait_for(
        "a restarted capture",
        lambda: (i := supervisor.info()).get("statename") == "RUNNING" and i["pid"] != first_pid and i,
    )
    assert "exited: CAMERA_A (exit status 1; not expected)" in supervisor.log.read_text()
    assert "🎥 CAPTURE: camera CAMERA_A: ffmpeg exited with status -9" in supervisor.capture_log.read_text()
    count = len(supervisor.segments())
    wait_for("segments after the restart", lambda: len(supervisor.segments()) >= count + 2)

    # A stop from supervisord: exit 0, last segment finalised and indexed, no orphans.
    (ffmpeg_pid,) = children(restarted["pid"])
    supervisor.rpc().stopProcess(PROGRAM, True)
    assert supervisor.info()["statename"] == "STOPPED"
    assert "stopped: CAMERA_A (exit status 0)" in supervisor.log.read_text()
    assert not Path(f"/proc/{ffmpeg_pid}").exists()
    cam_dir = supervisor.cfg.segments_dir / "CAMERA_A"
    assert {str(p) for p in cam_dir.rglob("*.ts")} == {s.path for s in supervisor.segments()}
    segments = supervisor.segments()
    assert max(b.start_ts - a.end_ts for a, b in zip(segments, segments[1:], strict=False)) < 3.0

"""The `venuecam` CLI against the real statusd (under supervisord), and with it down."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from fixtures_status import StatusBox
from venuecam import config as config_mod
from venuecam.statusd.client import socket_path


def venuecam(box_or_cfg: StatusBox | config_mod.Config, *args: str) -> subprocess.CompletedProcess[str]:
    cfg = box_or_cfg.cfg if isinstance(box_or_cfg, StatusBox) else box_or_cfg
    return subprocess.run(
        [sys.executable, "-m", "venuecam", "--config", cfg.source_path, *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"},
    )


def test_status_is_a_plain_screenful_without_a_tty(status_box: StatusBox) -> None:
    out = venuecam(status_box, "status")
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert "\033[" not in text  # no colours into a pipe
    lines = text.splitlines()
    assert lines[0].startswith("venuecam test-box (venue 42)")
    assert lines[1].startswith("ONLINE since ") and "latency 12 ms" in lines[1]
    assert "NEEDS ATTENTION:" in text and "1 task(s) failed" in text
    # waiting, running, expired, failed, done
    assert any(line.split() == ["uploads", "0", "1", "0", "1", "1"] for line in lines), text
    assert any(line.split() == ["notifications", "1", "0", "0", "0", "0"] for line in lines), text
    assert "BK-1-CAMERA_A-0" in text and "40%" in text and "40.0 MB / 100.0 MB" in text
    assert "#" in text and "HTTP 500 from store" in text
    assert any(line.split()[:4] == ["CAMERA_A", "field", "1", "recording"] for line in lines), text
    assert any(line.startswith("disk:") for line in lines) and any(
        line.startswith("clock:") for line in lines
    )
    assert "programs:  statusd RUNNING" in text
    assert len(lines) < 40  # a screenful


def test_status_json_is_the_snapshot_for_scripts(status_box: StatusBox) -> None:
    out = venuecam(status_box, "status", "--json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["queue_stats"]["failed_tasks"] == 1 and data["connectivity"]["status"] == "ONLINE"


def test_queue_bookings_sync_and_jobs_commands(status_box: StatusBox) -> None:
    out = venuecam(status_box, "queue")
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[0].split() == [
        "ID",
        "TYPE",
        "STATE",
        "BOOKING",
        "TRIES",
        "NEXT",
        "TRY",
        "LAST",
        "ERROR",
    ]
    assert len(out.stdout.splitlines()) == 5
    failed = venuecam(status_box, "queue", "list", "--status", "failed")
    assert len(failed.stdout.splitlines()) == 2 and "HTTP 500 from store" in failed.stdout
    bad = venuecam(status_box, "queue", "list", "--status", "lost")
    assert bad.returncode == 2 and "invalid choice" in bad.stderr

    retry = venuecam(status_box, "queue", "retry")
    assert retry.returncode == 0, retry.stderr
    assert retry.stdout.startswith("1 failed task(s) re-driven")
    assert venuecam(status_box, "queue", "list", "--status", "failed").stdout == "no tasks\n"

    bookings = venuecam(status_box, "bookings", "--status", "cancelled")
    assert bookings.returncode == 0
    assert "BK-2" in bookings.stdout and "BK-1" not in bookings.stdout and "1 booking(s)" in bookings.stdout
    bad_date = venuecam(status_box, "bookings", "--date", "tomorrow")
    assert (
        bad_date.returncode == 1
        and "date: expected YYYY-MM-DD" in bad_date.stderr
        and "HTTP 400" in bad_date.stderr
    )

    sync = venuecam(status_box, "sync", "bookings")
    assert sync.returncode == 0, sync.stderr
    assert sync.stdout.startswith("Sync started in the background.")
    job_id = sync.stdout.splitlines()[1].split()[1]
    again = venuecam(status_box, "sync", "bookings")
    assert "still running" in again.stdout and job_id in again.stdout

    jobs = venuecam(status_box, "jobs")
    assert job_id in jobs.stdout and "queued" in jobs.stdout
    one = venuecam(status_box, "jobs", job_id)
    assert one.stdout.startswith(f"job {job_id} (bookings): queued, 0%")
    logs = venuecam(status_box, "jobs", job_id, "--logs")
    assert "INFO  Job created (requested by unix:" in logs.stdout
    missing = venuecam(status_box, "jobs", "nope")
    assert missing.returncode == 1 and "job nope not found" in missing.stderr


def test_cli_says_plainly_when_the_service_is_down(status_box: StatusBox) -> None:
    status_box.stop()
    for args in (["status"], ["queue"], ["jobs"], ["sync", "bookings"]):
        out = venuecam(status_box, *args)
        assert out.returncode == 3, (args, out.stdout, out.stderr)
        assert out.stdout == ""
        assert out.stderr.startswith("venuecam: statusd is not running: ")
        assert "Traceback" not in out.stderr


def test_cli_path_imports_no_database_or_cloud_library(status_box: StatusBox) -> None:
    code = (
        "import sys; from venuecam.cli.main import main; "
        f"rc = main(['--config', {status_box.cfg.source_path!r}, 'status', '--json']); "
        "print(sorted(m for m in ('peewee', 'boto3', 'huey', 'gpiozero', 'requests') if m in sys.modules), "
        "file=sys.stderr)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stderr.strip() == "[]"


def test_socket_path_read_fast_agrees_with_the_config_loader(
    make_config: Callable[..., config_mod.Config], tmp_path: Path
) -> None:
    cfg = make_config()
    assert socket_path(cfg.source_path) == str(cfg.status_socket)
    cfg = make_config(status={"socket_path": str(tmp_path / "x.sock")})
    assert socket_path(cfg.source_path) == str(cfg.status_socket)
    minimal = make_config(device={"device_id": "b", "venue_id": "1"})
    text = Path(minimal.source_path).read_text().replace(f'run_dir = "{tmp_path}/run"\n', "")
    assert "run_dir" not in text  # the default run_dir applies
    Path(minimal.source_path).write_text(text)
    assert socket_path(minimal.source_path) == str(config_mod.load(minimal.source_path).status_socket)

"""No secret reaches a log, a status output or an error message.

The whole stack runs under supervisord with known secrets in its config: the platform token
(wrong for the platform, so every call to it is a 401), the store's secret key, the status
socket's token, and a camera password in an RTSP URL (the camera cannot be reached). Every
error we can provoke is provoked (auth failures, a dead-lettered notification, a camera that
does not answer, bad requests and wrong tokens on the status socket, a bad config file);
then every log file, the databases, every status output and every answer are searched for
each secret: 0 hits.
"""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import free_port
from resilience_rig import Stack, wait_until

pytestmark = pytest.mark.slow

TOKEN = "vc-secret-token-7f3a9c0d"
S3_SECRET_KEY = "vc-secret-s3key-5be1d0aa"
STATUS_TOKEN = "vc-secret-status-44d1e8f2"
RTSP_PASSWORD = "vc-secret-rtsp-91e2b7c3"
SECRETS = (TOKEN, S3_SECRET_KEY, STATUS_TOKEN, RTSP_PASSWORD)


@pytest.fixture
def stack(tmp_path: Path, s3: Any, platform: Any) -> Iterator[Stack]:
    port = free_port()
    camera = {"name": "CAMERA_B", "field_id": 2, "source": f"rtsp://viewer:{RTSP_PASSWORD}@127.0.0.1:9/live",
              "segment_seconds": 2}  # fmt: skip
    s = Stack(
        tmp_path, s3.endpoint, platform.url,
        booking_api={"api_token": TOKEN},
        storage={"secret_access_key": S3_SECRET_KEY},
        status={"tcp_enabled": True, "tcp_port": port, "token": STATUS_TOKEN},
        queue={"notify_schedule_s": [1], "upload_schedule_s": [1, 2], "clip_schedule_s": [1],
               "sync_schedule_s": [1], "stale_after_s": 20},
        cameras=[camera],
    )  # fmt: skip
    assert set(SECRETS) <= set(s.cfg.secrets())  # the config knows them as secrets
    yield s
    s.stop()
    s.close_db()


def http(
    url: str, method: str = "GET", body: bytes | None = None, headers: dict[str, str] | None = None
) -> str:
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return f"{r.status} {r.read().decode(errors='replace')}"
    except urllib.error.HTTPError as e:
        return f"{e.code} {e.read().decode(errors='replace')}"


def test_known_secrets_appear_in_no_log_status_or_error(stack: Stack, tmp_path: Path) -> None:
    seen: list[tuple[str, str]] = []  # (what, text)

    def cli(*args: str) -> None:
        out = subprocess.run(
            [sys.executable, "-m", "venuecam", "--config", str(stack.path), *args],
            capture_output=True, text=True, timeout=60, env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"},
        )  # fmt: skip
        seen.append((f"venuecam {' '.join(args)}", out.stdout + out.stderr))

    stack.start(wait=False)
    wait_until(
        "worker and statusd RUNNING",
        lambda: all(stack.states().get(p) == "RUNNING" for p in ("worker:worker", "statusd:statusd")),
        60,
    )
    clip = stack.make_clip("BK-SECRET-1", 1024 * 1024)  # uploaded, then its notification is refused
    stack.dispatch()
    wait_until(
        "the notification dead-lettered (401)",
        lambda: (r := stack.task("notify_ayo_api", clip.unique_id)) is not None and r["status"] == "failed",
        90,
    )

    def camera_failed() -> bool:
        return any("CAMERA_B" in p.read_text(errors="replace") for p in stack.cfg.log_dir.glob("*.log"))

    wait_until("the camera's failure logged", camera_failed, 30)

    base = f"http://127.0.0.1:{stack.cfg.status.tcp_port}"
    wrong = {"Authorization": "Bearer not-the-token", "Content-Type": "application/json"}
    for path in ("/api/queue-status", "/api/jobs", "/api/queue/tasks?status=failed", "/metrics", "/healthz",
                 "/api/bookings", "/api/nothing-here", "/api/queue/tasks?limit=-1"):  # fmt: skip
        seen.append((f"GET {path}", http(base + path)))
    jobs = json.loads(http(base + "/api/jobs").split(" ", 1)[1])
    for job in (jobs.get("jobs") or jobs.get("data") or [])[:3] if isinstance(jobs, dict) else []:
        job_id = job.get("id") or job.get("job_id")
        seen.append((f"job {job_id} logs", http(f"{base}/api/jobs/{job_id}/logs")))
    for path, body in (
        ("/api/queue/process", b"{}"),
        ("/api/queue/retry", b"{not json"),
        ("/api/sync/bookings", b""),
        ("/api/request-booking-video", b'{"field_id": 2}'),
    ):
        seen.append((f"POST {path} (wrong token)", http(base + path, "POST", body, wrong)))
        seen.append((f"POST {path} (no token)", http(base + path, "POST", body)))
    seen.append(("POST retry (right token)", http(base + "/api/queue/retry", "POST", b'{"ids": "x"}',
                                                  {"Authorization": f"Bearer {STATUS_TOKEN}"})))  # fmt: skip
    for args in (("status",), ("status", "--json"), ("queue", "list"), ("queue", "list", "--status", "failed"),
                 ("jobs",), ("bookings",), ("sync", "bookings"), ("config",), ("config", "--dump")):  # fmt: skip
        cli(*args)
    bad = tmp_path / "bad.toml"
    bad.write_text(stack.path.read_text().replace('timezone = "Asia/Jakarta"', 'timezone = "Mars/Olympus"'))
    cli("config", "--check", str(bad))
    broken = tmp_path / "broken.toml"
    broken.write_text(stack.path.read_text().replace(f'"{TOKEN}"', f"{TOKEN}"))  # a TOML syntax error
    cli("config", "--check", str(broken))
    stack.stop()
    stack.close_db()

    files = [p for p in tmp_path.rglob("*") if p.is_file() and p not in (stack.path, bad, broken)]
    assert any(p.suffix == ".log" for p in files) and any(p.name == "venuecam.db" for p in files)
    for p in files:
        try:
            data = p.read_bytes()
        except FileNotFoundError:  # a -shm/-wal file removed as its database closed
            continue
        if b"\0" in data and p.suffix not in (".db", ".db-wal", ".log"):
            continue  # media and the like
        seen.append((str(p.relative_to(tmp_path)), data.decode(errors="replace")))
    hits = [(what, s) for what, text in seen for s in SECRETS if s in text]
    assert not hits, hits
    # The errors were provoked, not missed.
    everything = "\n".join(text for _, text in seen)
    assert "401" in everything and "CAMERA_B" in everything and "Mars/Olympus" in everything

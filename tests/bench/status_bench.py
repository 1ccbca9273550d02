"""Status benchmarks: `venuecam status` as a fresh process with 10,000 ledger rows
(`status_cli_ms`, median of 20; `status_cli_p90_ms` beside it) and statusd's resident memory at idle (`rss_statusd_mb`).

statusd runs under a real supervisord, as on the box. Run alone:
    .venv/bin/python tests/bench/run.py --only status_bench
"""

from __future__ import annotations

import datetime as dt
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests/: the status fixtures

LEDGER_ROWS = 10_000
RUNS = 20


def _config(workdir: Path) -> Path:
    path = workdir / "venuecam.toml"
    path.write_text(f"""[device]
device_id = "bench-box"
venue_id = "1"
timezone = "Asia/Jakarta"
data_dir = "{workdir}/data"
run_dir = "{workdir}/run"
demo = true

[booking_api]
base_url = "http://127.0.0.1:9"
api_token = "bench-token-123456"

[storage]
endpoint_url = "http://127.0.0.1:9"
bucket = "b"
access_key_id = "bench-key"
secret_access_key = "bench-secret"

[[cameras]]
name = "CAMERA_A"
field_id = 1
source = "testsrc"

[[cameras]]
name = "CAMERA_B"
field_id = 2
source = "testsrc"

[leds]
pin_factory = "mock"
""")
    return path


def _populate(now: dt.datetime) -> None:
    from venuecam.models import PendingTask, Segment, TaskStatus, TaskType
    from venuecam.timeutil import naive_utc_to_ts

    rng = random.Random(7)
    types = [TaskType.UPLOAD, TaskType.NOTIFY, TaskType.CLIP]
    statuses = (
        [TaskStatus.COMPLETED] * 6 + [TaskStatus.PENDING] * 2 + [TaskStatus.FAILED, TaskStatus.PROCESSING]
    )
    rows: list[dict[str, Any]] = []
    for i in range(LEDGER_ROWS):
        status = TaskStatus.PROCESSING if i < 3 else rng.choice(statuses)
        created = now - dt.timedelta(minutes=rng.randrange(60 * 24 * 7))
        rows.append(
            {
                "task_type": TaskType.UPLOAD if i < 3 else rng.choice(types),
                "unique_key": f"bench:{i}",
                "task_data": f'{{"unique_id": "BK-{i}-CAMERA_A-full"}}',
                "status": status,
                "booking_id": f"BK-{i // 3}",
                "attempts": 5 if status == TaskStatus.FAILED else 1,
                "error_msg": "HTTP 500" if status == TaskStatus.FAILED else None,
                "created_at": created,
                "updated_at": created,
                "finished_at": created if status in (TaskStatus.COMPLETED, TaskStatus.FAILED) else None,
                "bytes_done": 5_000_000 if status == TaskStatus.PROCESSING else 0,
                "bytes_total": 20_000_000 if status == TaskStatus.PROCESSING else 0,
            }
        )
    db = PendingTask._meta.database
    with db.atomic():
        for k in range(0, len(rows), 500):
            PendingTask.insert_many(rows[k : k + 500]).execute()
        end = naive_utc_to_ts(now)
        segs = [
            {
                "camera": cam,
                "start_ts": end - 10 * (j + 1),
                "end_ts": end - 10 * j,
                "duration": 10.0,
                "path": f"/seg/{cam}/{j}.ts",
                "bytes": 1,
            }  # fmt: skip
            for cam in ("CAMERA_A", "CAMERA_B")
            for j in range(2000)
        ]
        for k in range(0, len(segs), 500):
            Segment.insert_many(segs[k : k + 500]).execute()


def _compile_package() -> None:
    """Bytecode for every venuecam module, as pip writes it when it installs the box's release.

    A working tree that is edited under PYTHONDONTWRITEBYTECODE=1 would otherwise leave stale
    .pyc files behind, and every timed run would compile those modules from source again.
    """
    import compileall

    import venuecam

    compileall.compile_dir(str(Path(venuecam.__file__).parent), quiet=1)


def run(workdir: Path) -> dict[str, float]:
    from fixtures_status import start_status_box
    from venuecam import config, db
    from venuecam.timeutil import utcnow

    cfg = config.load(_config(workdir))
    database = db.open_db(cfg.db_path)
    _populate(utcnow())
    database.close()
    sup = workdir / "supervisor"
    sup.mkdir()
    box = start_status_box(cfg, sup)
    try:
        _compile_package()
        exe = Path(sys.executable).parent / "venuecam"
        argv = [str(exe), "--config", cfg.source_path, "status"]
        first = subprocess.run(argv, capture_output=True, text=True, timeout=30)
        if first.returncode != 0:
            raise RuntimeError(f"venuecam status failed: {first.stderr}")
        times = []
        for _ in range(RUNS):
            t0 = time.perf_counter()
            subprocess.run(argv, capture_output=True, timeout=30, check=True)
            times.append((time.perf_counter() - t0) * 1000)
        time.sleep(2.0)  # idle
        pid = box.statusd_pid()
        rss_kb = next(
            int(line.split()[1]) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
            if line.startswith("VmRSS:")
        )  # fmt: skip
    finally:
        box.stop()
    times.sort()
    return {
        "status_cli_ms": round(statistics.median(times), 1),
        "status_cli_p90_ms": round(times[int(0.9 * RUNS) - 1], 1),
        "rss_statusd_mb": round(rss_kb / 1024, 1),
    }


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory(prefix="vc-bench-") as d:
        print(run(Path(d)))

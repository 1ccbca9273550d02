"""The upload cap on real uploads to the moto S3 server (its own process), and in the status.

The lower bounds on elapsed time are the cap's arithmetic: n bytes at r bytes/s, less the
one burst the bucket starts with, cannot go in less than (n - burst) / r. On loopback the
same uploads take a fraction of a second without the cap.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from conftest import S3Server
from fixtures_status import STATUS_TOKEN, StatusBox, short_run_dir
from venuecam.config import Config
from venuecam.storage import ratecap
from venuecam.storage.client import make_client
from venuecam.storage.multipart import MIB, upload_file

BUCKET = "venue-videos"


def capped_config(make_config: Callable[..., Config], s3: S3Server, cap: Any) -> Config:
    return make_config(storage={"endpoint_url": s3.endpoint, "max_upload_mbit": cap})


@pytest.fixture(autouse=True)
def no_cap_left_behind(make_config: Callable[..., Config]) -> Iterator[None]:
    yield
    ratecap.shared(make_config().storage)  # the process's cap back to none for other tests


def upload(client: Any, path: Path, key: str) -> Any:
    """As the worker uploads: 5 MiB parts, one PUT up to 5 MiB."""
    saved: list[dict[str, Any]] = []
    return upload_file(client, BUCKET, key, path, part_size=5 * MIB, threshold=5 * MIB, state={},
                       save_state=lambda s: saved.append(dict(s)))  # fmt: skip


def stored(s3: S3Server, key: str) -> bytes:
    return s3.client().get_object(Bucket=BUCKET, Key=key)["Body"].read()


def least_time(nbytes: int, mbit: float) -> float:
    rate = ratecap.bytes_per_s(mbit)
    return (nbytes - ratecap.burst_for(rate)) / rate


def test_a_multipart_upload_goes_no_faster_than_the_cap(
    tmp_path: Path, s3: S3Server, make_config: Callable[..., Config]
) -> None:
    cfg = capped_config(make_config, s3, 8)
    data = os.urandom(5 * MIB + 256 * 1024)  # two parts: 5 MiB and 256 KiB
    (tmp_path / "v.mp4").write_bytes(data)
    started = time.monotonic()
    result = upload(make_client(cfg.storage), tmp_path / "v.mp4", "cap/v.mp4")
    elapsed = time.monotonic() - started
    assert result.parts == 2 and stored(s3, "cap/v.mp4") == data
    floor = least_time(len(data), 8)  # 5.25 s
    assert elapsed >= floor, f"{len(data)} bytes in {elapsed:.2f} s: faster than 8 Mbit/s"
    assert elapsed < floor * 1.3 + 2, f"{elapsed:.2f} s: held back far more than the cap says"


def test_uploads_at_once_share_the_cap(
    tmp_path: Path, s3: S3Server, make_config: Callable[..., Config]
) -> None:
    """Two uploads on two clients, as two worker threads run them: together under the cap."""
    cfg = capped_config(make_config, s3, 4)
    files = {f"cap/{n}.jpg": os.urandom(1_200_000) for n in ("a", "b")}  # one PUT each
    for key, data in files.items():
        (tmp_path / key.replace("/", "_")).write_bytes(data)
    results: dict[str, Any] = {}

    def run(key: str) -> None:
        results[key] = upload(make_client(cfg.storage), tmp_path / key.replace("/", "_"), key)

    threads = [threading.Thread(target=run, args=(key,)) for key in files]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    elapsed = time.monotonic() - started
    assert sorted(results) == sorted(files) and all(r.parts == 0 for r in results.values())
    assert all(stored(s3, key) == data for key, data in files.items())
    floor = least_time(sum(map(len, files.values())), 4)  # 4.55 s; each alone would take 2.2 s
    assert elapsed >= floor, f"two uploads in {elapsed:.2f} s: together faster than 4 Mbit/s"


def test_without_a_cap_nothing_is_held_back(
    tmp_path: Path, s3: S3Server, make_config: Callable[..., Config]
) -> None:
    cfg = capped_config(make_config, s3, 0)
    data = os.urandom(5 * MIB + 256 * 1024)
    (tmp_path / "v.mp4").write_bytes(data)
    client = make_client(cfg.storage)
    waited = ratecap.cap_of(client).waited_s  # the process's cap: other tests waited too
    started = time.monotonic()
    assert upload(client, tmp_path / "v.mp4", "free/v.mp4").parts == 2
    assert time.monotonic() - started < least_time(len(data), 8) / 2
    assert ratecap.cap_of(client).waited_s == waited and stored(s3, "free/v.mp4") == data


def test_any_put_of_a_capped_client_is_held_back(
    tmp_path: Path, s3: S3Server, make_config: Callable[..., Config]
) -> None:
    """A caller that sends plain bytes (the live uploader's parts, the updater's probe) is
    capped too: every client make_client gives wraps them."""
    cfg = capped_config(make_config, s3, 4)
    client = make_client(cfg.storage)
    cap = ratecap.cap_of(client)
    assert cap is ratecap.shared(cfg.storage)
    data = os.urandom(1_000_000)
    started = time.monotonic()
    client.put_object(Bucket=BUCKET, Key="cap/plain.bin", Body=data)
    up = client.create_multipart_upload(Bucket=BUCKET, Key="cap/parts.bin")
    client.upload_part(Bucket=BUCKET, Key="cap/parts.bin", UploadId=up["UploadId"], PartNumber=1, Body=data)
    elapsed = time.monotonic() - started
    client.abort_multipart_upload(Bucket=BUCKET, Key="cap/parts.bin", UploadId=up["UploadId"])
    assert stored(s3, "cap/plain.bin") == data
    assert elapsed >= least_time(2 * len(data), 4)


# ---------------------------------------------------------------- status


@pytest.fixture
def status_config(make_config: Callable[..., Config]) -> Iterator[Config]:
    """The status box of fixtures_status, with a cap from an hour ago to an hour from now."""
    from conftest import free_port

    local = dt.datetime.now(ZoneInfo("Asia/Jakarta"))
    start, end = local - dt.timedelta(hours=1), local + dt.timedelta(hours=1)
    window = {"mbit": 8, "from": f"{start:%H:%M}", "to": f"{end:%H:%M}"}
    run_dir = short_run_dir()
    cfg = make_config(
        device={"run_dir": str(run_dir)},
        status={"tcp_enabled": True, "tcp_port": free_port(), "token": STATUS_TOKEN},
        storage={"max_upload_mbit": [window]},
    )
    yield cfg
    shutil.rmtree(run_dir, ignore_errors=True)


def venuecam(cfg: Config, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "venuecam", "--config", cfg.source_path, *args],
                          capture_output=True, text=True, timeout=60, env={"PATH": "/usr/bin:/bin"})  # fmt: skip


def test_status_shows_the_cap_in_force(status_box: StatusBox) -> None:
    until = status_box.cfg.storage.max_upload_mbit[0].end
    hhmm = f"{until // 60:02d}:{until % 60:02d}"
    out = venuecam(status_box.cfg, "status")
    assert out.returncode == 0, out.stderr
    assert f"upload:    cap 8 Mbit/s until {hhmm}, then no cap\n" in out.stdout
    data = json.loads(venuecam(status_box.cfg, "status", "--json").stdout)
    assert data["upload_cap"]["mbit"] == 8.0 and data["upload_cap"]["until_local"] == hhmm
    assert data["upload_cap"]["next_mbit"] is None and data["upload_cap"]["timezone"] == "Asia/Jakarta"

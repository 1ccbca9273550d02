"""Fault test: the disk holding the clips fills up (issue 3).

The data directory (databases, segments, clips: one SD card on the box) is a small tmpfs the
test mounts, filled with a ballast file until a booking's clip no longer fits. The whole
stack runs under supervisord against the moto S3 server and the platform simulator.

What must hold while the disk is full: the clip task fails with a log line naming ENOSPC,
the attempt is not counted (the row is never dead-lettered for it), no half-written clip is
left on disk or registered, no segment of the booking is lost, and retention frees what is
already safe in the bucket but never the recorded, not yet uploaded video. Once space is
freed: every object in the bucket (bytes match SHA-256), exactly one delivered notification
per unique_id, every ledger row completed, both databases pass `PRAGMA integrity_check`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import needs_root
from resilience_rig import (
    MIB,
    ClipFiles,
    Stack,
    assert_delivered,
    assert_ledger_done,
    bucket_objects,
    sha256_file,
    wait_until,
)

TMPFS_SIZE = 32 * MIB
# Left free by the ballast: less than the clip (~3.9 MB), and less than the clip still after
# retention frees the old clip and the unneeded segment (~1.5 MB together).
FREE_LEFT = int(1.5 * MIB)
SEGMENTS = 8  # 1 s each at 4 Mbit/s: ~0.5 MB a file, the clip ~3.9 MB
CAMERA = {
    "name": "CAMERA_A",
    "field_id": 1,
    # Configured (retention protects a camera's bookings) but absent: its capture program
    # fails at once and writes nothing, so the only writer on the full disk is the clip task.
    "source": "/dev/video-venuecam-absent",
    "segment_seconds": 1,
    "width": 640,
    "height": 360,
    "fps": 10,
    "bitrate_kbps": 4000,
}
PROGRAMS = ("worker:worker", "watchdog:watchdog", "statusd:statusd")


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[Path]:
    """A TMPFS_SIZE tmpfs as the stack's data directory; unmounted after the stack stopped."""
    needs_root()
    data = tmp_path / "data"
    data.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={TMPFS_SIZE},mode=0755", "tmpfs", str(data)],
                   check=True, timeout=30)  # fmt: skip
    try:
        yield data
    finally:
        if subprocess.run(["umount", str(data)], timeout=30, check=False).returncode != 0:
            subprocess.run(["umount", "-l", str(data)], timeout=30, check=False)


@pytest.fixture
def stack(tmp_path: Path, disk: Path, s3: Any, platform: Any) -> Iterator[Stack]:
    s = Stack(tmp_path, s3.endpoint, platform.url, cameras=[CAMERA])
    assert s.cfg.data_dir == disk
    yield s
    s.stop()
    s.close_db()


def record_segments(stack: Stack, start_ts: float, count: int) -> list[Path]:
    """`count` 1 s MPEG-TS segments of one continuous recording (made by ffmpeg, not by the
    code under test), filed and indexed as capture files them."""
    from venuecam.capture.segment_index import SegmentIndex
    from venuecam.capture.segments import segment_path
    from venuecam.media.probe import probe

    work = stack.tmp / "recording"
    work.mkdir()
    subprocess.run(
        ["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc2=size=640x360:rate=10", "-t", str(count),
         "-c:v", "libx264", "-preset", "ultrafast", "-b:v", "4000k", "-minrate", "4000k",
         "-maxrate", "4000k", "-bufsize", "2000k", "-x264-params", "nal-hrd=cbr", "-g", "10",
         "-f", "segment", "-segment_time", "1", "-segment_format", "mpegts", str(work / "%03d.ts")],
        check=True, timeout=60,
    )  # fmt: skip
    index = SegmentIndex(stack.cfg.db_path)
    paths = []
    for i, src in enumerate(sorted(work.glob("*.ts"))):
        dest = segment_path(stack.cfg.segments_dir, CAMERA["name"], start_ts + i)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dest)
        index.insert(CAMERA["name"], dest, start_ts + i, start_ts + i + 1, probe(dest))
        paths.append(dest)
    index.close()
    assert len(paths) == count
    return paths


def add_booking(booking_id: str, start_ts: float, end_ts: float, order_detail_id: int) -> Any:
    import datetime as dt

    from resilience_rig import TZ
    from venuecam.models import Booking

    local = dt.datetime.fromtimestamp(start_ts, TZ)
    with Booking._meta.database.atomic():
        return Booking.create(
            booking_id=booking_id, order_detail_id=order_detail_id, field_id=CAMERA["field_id"],
            date=local.date().isoformat(), start_time=local.strftime("%H:%M:%S"),
            end_time=dt.datetime.fromtimestamp(end_ts, TZ).strftime("%H:%M:%S"), status="success",
            start_ts=start_ts, end_ts=end_ts,
        )  # fmt: skip


def old_uploaded_clip(stack: Stack, now: float) -> tuple[Any, list[Path]]:
    """A booking of two hours ago, its clip uploaded and notified: safe in the bucket, so
    retention may free its files."""
    from venuecam.models import Video, VideoStatus

    add_booking("BK-DISK-OLD", now - 7200, now - 6600, 700)
    folder = stack.cfg.clips_dir / "BK-DISK-OLD" / "CAMERA_A"
    folder.mkdir(parents=True)
    uid = "BK-DISK-OLD-CAMERA_A-full"
    files = [folder / f"{uid}.mp4", folder / f"{uid}_preview.mp4", folder / f"{uid}.jpg"]
    for f, size in zip(files, (900_000, 100_000, 20_000), strict=True):
        f.write_bytes(os.urandom(size))
    with Video._meta.database.atomic():
        video = Video.create(
            unique_id=uid, booking_id="BK-DISK-OLD", camera="CAMERA_A", field_id=1, video_type="full",
            status=VideoStatus.NOTIFIED, start_ts=now - 7200, end_ts=now - 6600, mp4_path=str(files[0]),
            preview_path=str(files[1]), thumb_path=str(files[2]), duration_s=600.0, size_bytes=900_000,
        )  # fmt: skip
    return video, files


def fill_disk(data: Path, leave: int) -> Path:
    """A ballast file taking all but `leave` bytes of the filesystem."""
    ballast = data / "ballast"
    free = shutil.disk_usage(data).free
    assert free > leave, f"only {free} bytes free before the ballast"
    with ballast.open("wb") as f:
        os.posix_fallocate(f.fileno(), 0, free - leave)
    return ballast


def leftovers(clips_dir: Path, booking_id: str) -> list[str]:
    """Files of a booking's clip on disk, temporaries included."""
    folder = clips_dir / booking_id
    return (
        sorted(str(p.relative_to(clips_dir)) for p in folder.rglob("*") if p.is_file())
        if folder.exists()
        else []
    )


@pytest.mark.slow  # ~30 s: a dozen seconds of retries on a full disk, then delivery
def test_disk_full_while_cutting_waits_for_space_then_delivers(
    stack: Stack, disk: Path, s3: Any, platform: Any
) -> None:
    from venuecam import pipeline, retention
    from venuecam.clips.service import clip_paths
    from venuecam.models import Segment, Video, VideoStatus

    stack.db()
    now = time.time()
    start = float(int(now) - 60)
    booking = add_booking("BK-DISK-1", start, start + SEGMENTS, 789)
    segments = record_segments(stack, start, SEGMENTS)
    segment_sha = {str(p): sha256_file(p) for p in segments}
    orphan = record_orphan_segment(stack, segments[0], now - 3600)
    old_video, old_files = old_uploaded_clip(stack, now)
    video = pipeline.ensure_video(stack.cfg, booking, "CAMERA_A", "full", start, start + SEGMENTS)
    clip_row, _ = pipeline.enqueue_clip(stack.cfg, video)
    uid = video.unique_id
    ballast = fill_disk(disk, FREE_LEFT)

    stack.start(wait=False)
    wait_until("worker, watchdog and statusd RUNNING",
               lambda: all(stack.states().get(p) == "RUNNING" for p in PROGRAMS), 60)  # fmt: skip
    stack.dispatch()

    # More ENOSPC attempts than max_attempts: counted, the row would be `failed` by now.
    wait_until("five attempts refused by the full disk",
               lambda: stack.log("worker").count("attempt not counted") >= clip_row.max_attempts + 1, 60)  # fmt: skip
    log = stack.log("worker")
    assert "disk full (ENOSPC" in log and "attempt not counted" in log
    assert "Traceback" not in log, log[-3000:]
    row = stack.task("clip", uid)
    assert row is not None and row["status"] in ("pending", "processing"), row
    assert row["attempts"] <= 1 and "ENOSPC" in (row["error_msg"] or ""), row
    # Nothing half-written: no clip file (nor temporary) on disk, the video not registered.
    stack.db()
    video = Video.get(Video.unique_id == uid)
    assert video.status == VideoStatus.PENDING and video.mp4_path is None and video.sha256 is None
    assert leftovers(stack.cfg.clips_dir, "BK-DISK-1") == []
    assert not list(stack.cfg.clips_dir.glob(".*")) and not list(disk.rglob("*.ffconcat"))

    # Retention on the low disk: frees the clip already in the bucket and the segment no
    # booking needs, never the booking's recording; the disk stays short (the ballast).
    # (The worker's own retention, every 5 minutes, may have done it already: either is right.)
    outcome = retention.enforce(stack.cfg, time.time())
    assert outcome.still_short, outcome
    assert not any(f.exists() for f in old_files) and not orphan.exists()
    assert Video.get_by_id(old_video.id).mp4_path is None
    assert_recording_intact(segment_sha)
    assert Segment.select().where(Segment.camera == "CAMERA_A").count() == SEGMENTS

    # Still not enough room for the clip: it keeps waiting, still not counted.
    seen = stack.log("worker").count("attempt not counted")
    wait_until("another refused attempt", lambda: stack.log("worker").count("attempt not counted") > seen, 30)
    row = stack.task("clip", uid)
    assert row is not None and row["status"] != "failed" and row["attempts"] <= 1, row

    ballast.unlink()  # space is back: the next retry cuts, uploads and notifies
    wait_until("the clip notified", lambda: platform.summary()["counts"].get(uid), 60, 1.0)
    wait_until(
        "every ledger row completed",
        lambda: all((r := stack.task(k, uid)) is not None and r["status"] == "completed"
                    for k in ("clip", "upload_r2", "notify_ayo_api")),
        30,
    )  # fmt: skip
    time.sleep(1.5)  # a duplicate notification would show up now
    video = Video.get(Video.unique_id == uid)
    mp4, preview, thumb = clip_paths(stack.cfg, video)
    assert video.status == VideoStatus.NOTIFIED and sha256_file(mp4) == video.sha256
    # Every second of the booking made it into the clip: no segment was lost on the way.
    assert video.gaps_json in (None, "[]") and abs(video.duration_s - SEGMENTS) <= 1.5, video.duration_s
    clip = ClipFiles(uid, "BK-DISK-1", video.sha256, video.size_bytes,
                     {"mp4": mp4, "preview": preview, "thumb": thumb})  # fmt: skip
    assert_delivered([clip], bucket_objects(s3.client()), platform.summary())
    assert_ledger_done(stack, [uid])
    assert stack.task("clip", uid)["attempts"] == 1  # type: ignore[index]
    assert_recording_intact(segment_sha)
    stack.close_db()
    stack.stop()
    assert stack.integrity() == {"venuecam.db": "ok", "huey.db": "ok"}


def record_orphan_segment(stack: Stack, like: Path, start_ts: float) -> Path:
    """A segment an hour old that no booking covers: retention's to remove when space is short."""
    from venuecam.capture.segment_index import SegmentIndex
    from venuecam.capture.segments import segment_path
    from venuecam.media.probe import probe

    dest = segment_path(stack.cfg.segments_dir, CAMERA["name"], start_ts)
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(like, dest)
    index = SegmentIndex(stack.cfg.db_path)
    index.insert(CAMERA["name"], dest, start_ts, start_ts + 1, probe(dest))
    index.close()
    return dest


def assert_recording_intact(segment_sha: dict[str, str]) -> None:
    from venuecam.models import Segment

    indexed = {s.path for s in Segment.select(Segment.path)}
    for path, sha in segment_sha.items():
        assert path in indexed, f"segment {path} lost its row"
        assert Path(path).exists() and sha256_file(Path(path)) == sha, f"segment {path} lost or changed"


def test_capture_on_a_full_disk_exits_clearly_and_indexes_only_what_was_written(tmp_path: Path) -> None:
    """Capture meets ENOSPC: it exits non-zero with ffmpeg's reason in its log (no traceback,
    so supervisord's restart is the only reaction), every indexed segment holds what its row
    says (a segment cut short by the full disk is indexed with the seconds it holds, never
    with the segment list's claim), nothing is left unindexed; with space back it records."""
    from conftest import base_sections, render_toml
    from venuecam import config as config_mod
    from venuecam.db import open_db
    from venuecam.media.probe import probe
    from venuecam.models import Segment

    needs_root()
    cam = {**CAMERA, "source": "testsrc"}
    cfg_path = tmp_path / "venuecam.toml"
    cfg_path.write_text(render_toml(base_sections(tmp_path, cameras=[cam])))
    cfg = config_mod.load(cfg_path)
    cfg.segments_dir.mkdir(parents=True)
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4M", "tmpfs", str(cfg.segments_dir)], check=True, timeout=30
    )
    venuecam = str(Path(sys.executable).parent / "venuecam")
    argv = [venuecam, "--config", str(cfg_path), "capture", "--camera", "CAMERA_A"]
    proc: subprocess.Popen[bytes] | None = None
    try:
        ballast = fill_disk(cfg.segments_dir, MIB)  # two or three segments' worth
        with (tmp_path / "capture-1.log").open("wb") as out:
            proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
        assert proc.wait(60) != 0
        log = (tmp_path / "capture-1.log").read_text(errors="replace")
        assert "No space left on device" in log and "ffmpeg exited with status" in log, log
        assert "Traceback" not in log, log

        db = open_db(cfg.db_path)
        try:
            rows = list(Segment.select().order_by(Segment.start_ts))
            assert rows, f"nothing recorded before the disk filled up:\n{log}"
            for s in rows:
                path = Path(s.path)
                assert path.exists() and path.stat().st_size == s.bytes > 0, s.path
                held = probe(path).duration
                assert abs(held - s.duration) <= 0.15 and abs((s.end_ts - s.start_ts) - held) <= 0.15, (
                    s.path, held, s.duration, s.end_ts - s.start_ts)  # fmt: skip
            on_disk = {str(p) for p in (cfg.segments_dir / "CAMERA_A").rglob("*.ts")}
            assert on_disk == {s.path for s in rows}  # nothing half-written left, nothing unindexed

            ballast.unlink()
            with (tmp_path / "capture-2.log").open("wb") as out:
                proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
            wait_until("segments recorded again", lambda: Segment.select().count() >= len(rows) + 2, 30, 0.2)
            proc.terminate()
            assert proc.wait(30) == 0
        finally:
            db.close()
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(10)
        if subprocess.run(["umount", str(cfg.segments_dir)], timeout=30, check=False).returncode != 0:
            subprocess.run(["umount", "-l", str(cfg.segments_dir)], timeout=30, check=False)

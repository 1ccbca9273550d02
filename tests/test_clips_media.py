"""Cutting clips with real ffmpeg from small MPEG-TS segments the test records itself."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from venuecam.clips.assemble import (
    assemble_mp4,
    build_runs,
    make_preview,
    make_thumbnail,
    moov_before_mdat,
    mp4_duration,
    top_level_atoms,
)
from venuecam.clips.plan import plan_clip
from venuecam.clips.service import cut_video
from venuecam.errors import BadInputError, ClipError
from venuecam.media import tsinfo
from venuecam.media.probe import probe
from venuecam.models import Segment, Video, VideoStatus

BASE_TS = 1_737_648_000.0  # 2025-01-23T16:00:00Z, 23:00 in Jakarta (the test config's zone)

pytestmark = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs ffmpeg")


@dataclass(frozen=True)
class Seg:
    path: str
    start_ts: float
    end_ts: float


def record_segments(
    folder: Path, seconds: int, width: int = 320, height: int = 240, audio: bool = False
) -> list[Path]:
    """What capture writes: 2 s MPEG-TS segments, H.264 with a keyframe every second."""
    folder.mkdir(parents=True, exist_ok=True)
    sound = ["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000", "-c:a", "aac"] if audio else []
    subprocess.run(
        [
            "ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y",
            "-f", "lavfi", "-i", f"testsrc=s={width}x{height}:r=10", *sound, "-t", str(seconds),
            "-c:v", "libx264", "-preset", "ultrafast", "-g", "10", "-keyint_min", "10",
            "-sc_threshold", "0", "-bf", "0", "-pix_fmt", "yuv420p",
            "-f", "segment", "-segment_time", "2", "-segment_format", "mpegts",
            str(folder / "seg%03d.ts"),
        ],
        check=True,
        timeout=120,
    )  # fmt: skip
    return sorted(folder.glob("seg*.ts"))


def as_segments(paths: list[Path], base_ts: float = BASE_TS) -> list[Seg]:
    """Wall-clock bounds from each file's first timestamp, as capture's index would hold them."""
    pts = [tsinfo.first_video_pts(p) for p in paths]
    assert all(p is not None for p in pts)
    secs = [p / 90_000 for p in pts]  # type: ignore[operator]
    out = []
    for i, path in enumerate(paths):
        end = secs[i + 1] if i + 1 < len(secs) else secs[i] + probe(path).duration
        out.append(Seg(str(path), base_ts + secs[i] - secs[0], base_ts + end - secs[0]))
    return out


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> list[Seg]:
    """16 s of 320x240 @ 10 fps in 8 segments, starting at BASE_TS."""
    return as_segments(record_segments(tmp_path_factory.mktemp("segs") / "cam", 16))


@pytest.fixture(scope="module")
def recorded_large(tmp_path_factory: pytest.TempPathFactory) -> list[Seg]:
    """4 s of 640x360, to follow `recorded` in time (a camera whose settings changed)."""
    return as_segments(record_segments(tmp_path_factory.mktemp("segs-large") / "cam", 4, 640, 360))


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def ffprobe_streams(path: Path) -> list[dict[str, Any]]:
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-print_format", "json", "-show_streams", str(path)],
        capture_output=True, text=True, check=True, timeout=30,
    ).stdout  # fmt: skip
    return list(json.loads(out)["streams"])


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


# ---------------------------------------------------------------- assemble


def test_whole_recording_becomes_one_progressive_mp4(recorded: list[Seg], tmp_path: Path) -> None:
    start, end = recorded[0].start_ts, recorded[-1].end_ts
    out = tmp_path / "clip.mp4"
    result = assemble_mp4(plan_clip(recorded, start, end), out, timeout=60)
    assert abs(result.duration_s - (end - start)) <= 1.0
    assert abs(probe(out).duration - (end - start)) <= 1.0
    assert mp4_duration(out) == pytest.approx(probe(out).duration, abs=0.05)
    assert result.size_bytes == out.stat().st_size
    assert result.sha256 == sha256_of(out)
    kinds = [kind for kind, _, _ in top_level_atoms(out)]
    assert kinds[0] == "ftyp"
    assert kinds.index("moov") < kinds.index("mdat")
    (video,) = ffprobe_streams(out)
    assert (video["codec_name"], video["width"], video["height"]) == ("h264", 320, 240)
    assert leftovers(tmp_path) == []


def test_clip_is_trimmed_to_the_booking_within_a_second(recorded: list[Seg], tmp_path: Path) -> None:
    start, end = BASE_TS + 3.4, BASE_TS + 11.6  # both inside segments
    plan = plan_clip(recorded, start, end)
    assert plan.items[0].trimmed_start and plan.items[-1].trimmed_end
    result = assemble_mp4(plan, tmp_path / "clip.mp4", timeout=60)
    assert abs(result.duration_s - (end - start)) <= 1.0


def test_missing_segments_give_the_clip_of_what_exists(recorded: list[Seg], tmp_path: Path) -> None:
    kept = recorded[:2] + recorded[5:]  # seconds 4-10 were never recorded
    start, end = recorded[0].start_ts, recorded[-1].end_ts
    plan = plan_clip(kept, start, end)
    assert len(plan.gaps) == 1
    gap_start, gap_end = plan.gaps[0]
    assert abs(gap_start - recorded[2].start_ts) < 0.01 and abs(gap_end - recorded[5].start_ts) < 0.01
    result = assemble_mp4(plan, tmp_path / "clip.mp4", timeout=60)
    assert abs(result.duration_s - plan.covered_s) <= 1.0
    assert plan.covered_s == pytest.approx(end - start - (gap_end - gap_start))


def test_overlapping_recordings_are_not_repeated(recorded: list[Seg], tmp_path: Path) -> None:
    # The same seconds indexed twice (a second file for segments 2-4): the clip holds them once.
    doubled = recorded + [Seg(s.path + "", s.start_ts + 0.9, s.end_ts + 0.9) for s in recorded[2:5]]
    start, end = recorded[0].start_ts, recorded[-1].end_ts
    plan = plan_clip(doubled, start, end)
    result = assemble_mp4(plan, tmp_path / "clip.mp4", timeout=60)
    assert abs(result.duration_s - (end - start)) <= 1.5


def test_a_capture_restart_starts_a_new_run_and_the_clip_stays_whole(
    recorded: list[Seg], tmp_path: Path
) -> None:
    # Capture restarted at +8 s: the next files' timestamps begin again from the start.
    first = recorded[:4]
    restarted = [Seg(s.path, s.start_ts + 8.0, s.end_ts + 8.0) for s in recorded[:4]]
    start, end = first[0].start_ts, restarted[-1].end_ts
    plan = plan_clip(first + restarted, start, end)
    assert plan.gaps == []
    runs = build_runs(plan.items)
    assert [len(r.items) for r in runs] == [4, 4]
    result = assemble_mp4(plan, tmp_path / "clip.mp4", timeout=60)
    assert abs(result.duration_s - (end - start)) <= 1.0


def test_audio_is_kept(tmp_path: Path) -> None:
    segs = as_segments(record_segments(tmp_path / "cam", 6, audio=True))
    out = tmp_path / "clip.mp4"
    result = assemble_mp4(plan_clip(segs, segs[0].start_ts, segs[-1].end_ts), out, timeout=60)
    assert sorted(s["codec_type"] for s in ffprobe_streams(out)) == ["audio", "video"]
    assert abs(result.duration_s - 6.0) <= 1.0
    assert moov_before_mdat(out)


def test_an_empty_plan_is_refused_and_nothing_is_written(tmp_path: Path) -> None:
    out = tmp_path / "clip.mp4"
    with pytest.raises(ClipError, match="nothing to cut"):
        assemble_mp4(plan_clip([], BASE_TS, BASE_TS + 10), out)
    assert not out.exists()


def test_failed_assembly_leaves_no_file_at_the_final_name(recorded: list[Seg], tmp_path: Path) -> None:
    # The index claims 20 s for a 2 s file: ffmpeg writes a 2 s clip, which must not be kept.
    lying = [Seg(recorded[0].path, BASE_TS, BASE_TS + 20)]
    out = tmp_path / "clip.mp4"
    with pytest.raises(ClipError, match="does not match its segments"):
        assemble_mp4(plan_clip(lying, BASE_TS, BASE_TS + 20), out, timeout=60)
    assert not out.exists()
    assert leftovers(tmp_path) == []  # neither the temporary file nor the concat list


def test_failed_assembly_keeps_an_earlier_good_clip(recorded: list[Seg], tmp_path: Path) -> None:
    out = tmp_path / "clip.mp4"
    good = assemble_mp4(plan_clip(recorded, BASE_TS, BASE_TS + 6), out, timeout=60)
    lying = [Seg(recorded[0].path, BASE_TS, BASE_TS + 20)]
    with pytest.raises(ClipError):
        assemble_mp4(plan_clip(lying, BASE_TS, BASE_TS + 20), out, timeout=60)
    assert sha256_of(out) == good.sha256


def test_preview_is_short_and_small(recorded: list[Seg], tmp_path: Path) -> None:
    clip = tmp_path / "clip.mp4"
    assemble_mp4(plan_clip(recorded, recorded[0].start_ts, recorded[-1].end_ts), clip, timeout=60)
    preview = make_preview(clip, tmp_path / "clip_preview.mp4", seconds=5, height=120)
    (video,) = ffprobe_streams(preview)
    assert video["height"] == 120 and video["width"] == 160
    assert probe(preview).duration <= 5.0 + 0.2
    assert moov_before_mdat(preview)
    # A source smaller than the preview height is not blown up.
    same = make_preview(clip, tmp_path / "p2.mp4")
    assert ffprobe_streams(same)[0]["height"] == 240
    assert probe(same).duration <= 30.0


def test_thumbnail_is_a_jpeg(recorded: list[Seg], tmp_path: Path) -> None:
    clip = tmp_path / "clip.mp4"
    assemble_mp4(plan_clip(recorded, recorded[0].start_ts, recorded[-1].end_ts), clip, timeout=60)
    thumb = make_thumbnail(clip, tmp_path / "clip.jpg", at_s=5.0)
    data = thumb.read_bytes()
    assert data[:3] == b"\xff\xd8\xff" and data[-2:] == b"\xff\xd9"
    (image,) = ffprobe_streams(thumb)
    assert (image["codec_name"], image["width"], image["height"]) == ("mjpeg", 320, 240)


def test_thumbnail_past_the_end_is_an_error_not_an_empty_file(recorded: list[Seg], tmp_path: Path) -> None:
    clip = tmp_path / "clip.mp4"
    assemble_mp4(plan_clip(recorded[:1], recorded[0].start_ts, recorded[0].end_ts), clip, timeout=60)
    out = tmp_path / "clip.jpg"
    with pytest.raises(ClipError, match="thumbnail"):
        make_thumbnail(clip, out, at_s=60.0)
    assert not out.exists()


# ---------------------------------------------------------------- service (database rows)


def index(rows: list[Seg], camera: str = "CAMERA_A", **params: Any) -> None:
    defaults = {"codec": "h264", "width": 320, "height": 240}
    for s in rows:
        Segment.create(
            camera=camera, start_ts=s.start_ts, end_ts=s.end_ts, duration=s.end_ts - s.start_ts,
            path=s.path, bytes=Path(s.path).stat().st_size, **{**defaults, **params},
        )  # fmt: skip


@pytest.fixture
def new_video(database: Any) -> Callable[..., Video]:
    def make(start_ts: float, end_ts: float, booking_id: str = "BK-123456") -> Video:
        return Video.create(
            unique_id=f"{booking_id}-CAMERA_A-full", booking_id=booking_id, camera="CAMERA_A",
            field_id=1, start_ts=start_ts, end_ts=end_ts,
        )  # fmt: skip

    return make


def test_cut_video_writes_three_files_and_fills_the_row(
    cfg: Any, recorded: list[Seg], new_video: Callable[..., Video]
) -> None:
    index(recorded)
    video = new_video(BASE_TS + 1.0, BASE_TS + 13.0)
    cut_video(cfg, video)
    row = Video.get_by_id(video.id)
    folder = cfg.clips_dir / "BK-123456" / "CAMERA_A"
    assert row.status == VideoStatus.READY
    assert Path(row.mp4_path) == folder / "BK-123456-CAMERA_A-full.mp4"
    assert Path(row.preview_path) == folder / "BK-123456-CAMERA_A-full_preview.mp4"
    assert Path(row.thumb_path) == folder / "BK-123456-CAMERA_A-full.jpg"
    assert abs(row.duration_s - 12.0) <= 1.0
    assert row.size_bytes == Path(row.mp4_path).stat().st_size
    assert row.sha256 == sha256_of(Path(row.mp4_path))
    assert row.gaps == []
    assert Path(row.thumb_path).read_bytes()[:2] == b"\xff\xd8"
    assert leftovers(folder) == []


def test_cut_video_records_the_gap_of_missing_segments(
    cfg: Any, recorded: list[Seg], new_video: Callable[..., Video]
) -> None:
    index(recorded[:3])  # the camera died after 6 s
    video = cut_video(cfg, new_video(BASE_TS, BASE_TS + 16.0))
    assert video.status == VideoStatus.READY
    assert abs(video.duration_s - (recorded[2].end_ts - BASE_TS)) <= 1.0
    ((gap_start, gap_end),) = video.gaps
    assert gap_start == pytest.approx(recorded[2].end_ts, abs=0.01) and gap_end == BASE_TS + 16.0


def five_fps_segments(folder: Path, seconds: float) -> list[Seg]:
    """1 s segments at 5 fps (a keyframe each second), the soak's accelerated camera."""
    folder.mkdir(parents=True)
    subprocess.run(
        ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i",
         "testsrc=s=160x120:r=5", "-t", str(seconds), "-c:v", "libx264", "-preset", "ultrafast", "-g", "5",
         "-bf", "0", "-pix_fmt", "yuv420p", "-f", "segment", "-segment_time", "1", "-segment_format", "mpegts",
         str(folder / "seg%03d.ts")],
        check=True, timeout=60,
    )  # fmt: skip
    return as_segments(sorted(folder.glob("seg*.ts")))


def test_footage_without_a_keyframe_after_the_in_point_is_cut_from_the_segment_start(
    cfg: Any, new_video: Callable[..., Video]
) -> None:
    """Found by the soak: a booking that began 0.4 s into the last segment before a power
    cut. Stream copy from that in-point wrote an MP4 with no frame at all, which was taken
    for a clip; its preview then failed every attempt and the footage was never delivered.
    Now it is cut from the segment's keyframe, up to a keyframe interval early."""
    segs = five_fps_segments(cfg.data_dir / "segs5", 3)
    index(segs, width=160, height=120)
    last = segs[-1].end_ts
    video = cut_video(cfg, new_video(last - 0.6, last + 10.0))
    assert video.status == VideoStatus.READY and 0.5 <= video.duration_s <= 1.5
    assert Path(video.thumb_path).read_bytes()[:2] == b"\xff\xd8"


def test_a_short_clip_whose_frames_begin_after_its_start_gets_a_thumbnail(
    cfg: Any, new_video: Callable[..., Video]
) -> None:
    """Found by the soak: a 2 s booking starting 0.2 s into a segment. The MP4's frames begin
    at the next keyframe (0.8 s in), so a seek to half its 1.8 s landed past the last frame."""
    segs = five_fps_segments(cfg.data_dir / "segs5", 3)
    index(segs, width=160, height=120)
    video = cut_video(cfg, new_video(segs[0].start_ts + 0.2, segs[0].start_ts + 2.2))
    assert video.status == VideoStatus.READY
    assert Path(video.thumb_path).read_bytes()[:2] == b"\xff\xd8"


def test_a_clip_of_one_frame_gets_that_frame_as_its_thumbnail(
    cfg: Any, new_video: Callable[..., Video]
) -> None:
    """Found by the soak: a segment of one frame (the power went right after it began).
    The thumbnail's seek to half the clip's 0.2 s landed past that frame: an empty JPEG."""
    seg = five_fps_segments(cfg.data_dir / "one", 0.2)[0]
    index([Seg(seg.path, seg.start_ts, seg.start_ts + 1.0)], width=160, height=120)
    video = cut_video(cfg, new_video(seg.start_ts, seg.start_ts + 3.0))
    assert video.status == VideoStatus.READY and video.duration_s < 0.5
    assert Path(video.thumb_path).read_bytes()[:2] == b"\xff\xd8"


def test_cut_video_without_segments_raises_and_changes_nothing(
    cfg: Any, recorded: list[Seg], new_video: Callable[..., Video]
) -> None:
    index(recorded, camera="CAMERA_B")  # another camera's segments do not count
    video = new_video(BASE_TS, BASE_TS + 10.0)
    with pytest.raises(ClipError, match="no segments of camera CAMERA_A"):
        cut_video(cfg, video)
    row = Video.get_by_id(video.id)
    assert row.status == VideoStatus.PENDING and row.mp4_path is None
    assert not (cfg.clips_dir / "BK-123456").exists()


def test_corrupt_and_empty_segments_are_skipped_as_gaps(
    cfg: Any, recorded: list[Seg], new_video: Callable[..., Video], tmp_path: Path
) -> None:
    empty = tmp_path / "empty.ts"
    empty.write_bytes(b"")
    garbage = tmp_path / "garbage.ts"
    garbage.write_bytes(b"\x00not a transport stream\x00" * 2000)
    segs = list(recorded)
    segs[2] = Seg(str(empty), recorded[2].start_ts, recorded[2].end_ts)
    segs[5] = Seg(str(garbage), recorded[5].start_ts, recorded[5].end_ts)
    index(segs)
    video = cut_video(cfg, new_video(BASE_TS, recorded[-1].end_ts))
    gaps = video.gaps
    assert len(gaps) == 2
    assert gaps[0] == pytest.approx([recorded[2].start_ts, recorded[2].end_ts], abs=0.01)
    assert gaps[1] == pytest.approx([recorded[5].start_ts, recorded[5].end_ts], abs=0.01)
    covered = recorded[-1].end_ts - BASE_TS - sum(b - a for a, b in gaps)
    assert abs(video.duration_s - covered) <= 1.0


def test_segments_of_another_resolution_are_not_concatenated(
    cfg: Any, recorded: list[Seg], recorded_large: list[Seg], new_video: Callable[..., Video]
) -> None:
    # The camera switched to 640x360 after 16 s; the index lacks parameters for those rows,
    # so they are probed.
    shift = recorded[-1].end_ts - recorded_large[0].start_ts
    later = [Seg(s.path, s.start_ts + shift, s.end_ts + shift) for s in recorded_large]
    index(recorded)
    index(later, codec="", width=0, height=0)
    video = cut_video(cfg, new_video(BASE_TS, later[-1].end_ts))
    (stream,) = ffprobe_streams(Path(video.mp4_path))
    assert (stream["width"], stream["height"]) == (320, 240)
    assert abs(video.duration_s - (recorded[-1].end_ts - BASE_TS)) <= 1.0
    ((gap_start, gap_end),) = video.gaps
    assert gap_start == pytest.approx(later[0].start_ts, abs=0.01)
    assert gap_end == pytest.approx(later[-1].end_ts, abs=0.01)


@pytest.mark.parametrize("booking_id", ["../etc", "a/b", "..", "bk\n1", "bk\x00"])
def test_unsafe_booking_ids_are_refused_before_anything_is_written(
    cfg: Any, recorded: list[Seg], new_video: Callable[..., Video], booking_id: str
) -> None:
    index(recorded)
    video = new_video(BASE_TS, BASE_TS + 6.0, booking_id=booking_id)
    with pytest.raises(BadInputError, match="booking id"):
        cut_video(cfg, video)
    assert not cfg.clips_dir.exists()
    assert Video.get_by_id(video.id).status == VideoStatus.PENDING

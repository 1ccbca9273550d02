"""The live path (venuecam.live) with real parts: segments recorded by ffmpeg, the moto S3
server in its own process behind the fault proxy, the database; the clock is passed in, and
segments are indexed as the recording would close them.

What a user gets: the booking's MP4 is in the bucket and verified moments after the end, its
parts sent during the booking, byte-identical to the local file, playable, the right length;
and every fault of the issue's list leaves the right video or none, and no multipart upload.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from conftest import S3Server
from faultproxy import FaultProxy
from recorded import Seg, as_segments, index, record_segments
from test_worker_flow import add_booking as _add_booking
from venuecam import db as db_mod
from venuecam import ledger, pipeline, videos
from venuecam.clips.assemble import top_level_atoms
from venuecam.config import Config
from venuecam.live import clip as live_clip
from venuecam.live import manager, mp4file
from venuecam.live import upload as live_upload
from venuecam.live.clip import DONE, STOPPED, LiveClip
from venuecam.models import Booking, PendingTask, TaskType, Video, VideoStatus
from venuecam.storage.client import make_client
from venuecam.timeutil import naive_utc_to_ts, utcnow

pytestmark = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs ffmpeg")
UID = "BK-L1-CAMERA_A-full"


class PowerCut(BaseException):
    """The box lost power: nothing after this point ran (not an Exception: no handler sees it)."""


@dataclass
class Env:
    cfg: Config
    s3: S3Server
    proxy: FaultProxy
    segs: list[Seg]
    base: float

    def bucket(self) -> Any:
        return self.s3.client()

    def uploads_in_progress(self) -> list[Any]:
        return self.bucket().list_multipart_uploads(Bucket="venue-videos").get("Uploads", [])


@pytest.fixture(scope="module")
def footage(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """44 s at 3 Mbit/s in 2 s segments (about 16 MB: parts of 5 MiB go during a booking)."""
    return record_segments(tmp_path_factory.mktemp("footage"), 44, bitrate_kbps=3000)


@pytest.fixture
def make_env(
    make_config: Any, s3: S3Server, tmp_path: Path, footage: list[Path]
) -> Iterator[Callable[..., Env]]:
    """make_env(storage={...}, ...) -> the live tests' Env, these config values on top of
    theirs (the store behind the fault proxy, clips.grace_s 20); one per test."""
    port = int(s3.endpoint.rsplit(":", 1)[1])
    proxy = FaultProxy.start(("127.0.0.1", 0), ("127.0.0.1", port), tmp_path / "proxy.sock")
    databases: list[Any] = []

    def make(**over: dict[str, Any]) -> Env:
        sections: dict[str, dict[str, Any]] = {
            "storage": {"endpoint_url": proxy.endpoint},
            "clips": {"grace_s": 20},
        }
        for name, values in over.items():
            sections[name] = {**sections.get(name, {}), **values}
        cfg = make_config(**sections)
        databases.append(db_mod.open_db(cfg.db_path))
        copies = tmp_path / "segs"
        copies.mkdir()
        paths = [Path(shutil.copy(p, copies / p.name)) for p in footage]
        base = naive_utc_to_ts(utcnow()) - 3600
        return Env(cfg, s3, proxy, as_segments(paths, base), base)

    try:
        yield make
    finally:
        proxy.stop()
        for database in databases:
            database.close()


@pytest.fixture
def env(make_env: Callable[..., Env]) -> Env:
    return make_env()


def add_booking(
    cfg: Config, start_ts: float, end_ts: float, booking_id: str = "BK-L1", field_id: int = 1
) -> Booking:
    return _add_booking(cfg, booking_id, start_ts, end_ts, field_id)


class Play:
    """The booking being played: segments are indexed when they close, the clip stepped."""

    def __init__(self, env: Env, uid: str = UID) -> None:
        self.env, self.uid = env, uid
        self.indexed = 0
        self.clip: LiveClip | None = None

    def start(self, now: float) -> LiveClip:
        self.close_until(now)
        started = manager.start_due(self.env.cfg, now)
        assert any(v.unique_id == self.uid for v in started)
        self.clip = LiveClip(self.env.cfg, videos.get(self.uid), make_client(self.env.cfg.storage))
        return self.clip

    def close_until(self, now: float) -> None:
        todo = [s for s in self.env.segs[self.indexed :] if s.end_ts <= now]
        if todo:
            index(todo, "CAMERA_A")
            self.indexed += len(todo)

    def step(self, now: float, online: bool = True) -> str:
        assert self.clip is not None
        self.close_until(now)
        return self.clip.step(online, now=now)

    def run(self, t0: float, t1: float, online: bool = True) -> tuple[str, float]:
        t = t0
        while t <= t1:
            outcome = self.step(t, online)
            if outcome in (DONE, STOPPED):
                return outcome, t
            t += 1.0
        return "running", t


def ffprobe(path: Path) -> dict[str, Any]:
    out = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "format=duration:stream=nb_frames",
                          "-of", "json", str(path)], capture_output=True, text=True, check=True).stdout  # fmt: skip
    return dict(json.loads(out))


def decode_errors(path: Path) -> str:
    return subprocess.run(["ffmpeg", "-v", "error", "-i", str(path), "-f", "null", "-"],
                          capture_output=True, text=True).stderr  # fmt: skip


def stored(env: Env, key: str, tmp_path: Path) -> Path:
    out = tmp_path / Path(key).name
    env.bucket().download_file("venue-videos", key, str(out))
    return out


# ---------------------------------------------------------------- the whole flow


def test_a_live_video_is_sent_during_the_booking_and_stored_right_after_its_end(
    env: Env, tmp_path: Path
) -> None:
    start, end = env.base + 3, env.base + 37
    add_booking(env.cfg, start, end)
    play = Play(env)
    clip = play.start(start)
    outcome, _ = play.run(start, end - 1)
    assert outcome == "running"
    during = clip.upload.sent_bytes
    assert during >= 5 * 1024 * 1024, "parts go while the booking is played"
    assert clip.summary()["recorded_bytes"] > during
    # No byte is provisional: every whole part went, from part 1 on; less than one part waits.
    assert sorted(map(int, clip.upload.state["parts"])) == list(range(1, len(clip.upload.state["parts"]) + 1))
    assert clip.summary()["recorded_bytes"] - during < 5 * 1024 * 1024
    outcome, t = play.run(end, end + 10)
    assert outcome == DONE and t <= end + 3  # the segment holding the end closes at end + 1 s

    video = videos.get(UID)
    assert video.status == VideoStatus.UPLOADED
    local = Path(video.mp4_path)
    got = stored(env, video.mp4_key, tmp_path)
    assert got.read_bytes() == local.read_bytes()
    assert (
        hashlib.sha256(got.read_bytes()).hexdigest() == video.sha256
        and got.stat().st_size == video.size_bytes
    )
    assert abs(float(ffprobe(got)["format"]["duration"]) - (end - start)) <= 1.0
    assert decode_errors(got) == ""
    kinds = [k for k, _, _ in top_level_atoms(got)]
    assert kinds[0] == "ftyp" and kinds[-1] == "moov" and set(kinds[1:-1]) == {"mdat"}
    # A short booking is "near its end" throughout: the first box sealed, then one per segment.
    assert 3 <= kinds.count("mdat") <= 2 + (end - start) // 2 + 1
    for key in (video.preview_key, video.thumb_key):
        assert env.bucket().head_object(Bucket="venue-videos", Key=key)["ContentLength"] > 0
    assert env.uploads_in_progress() == []
    assert env.proxy.stats()["resent_bytes"] == 0  # nothing sent twice
    notify = PendingTask.get(PendingTask.unique_key == f"notify_ayo_api:{UID}")
    assert notify.task_type == TaskType.NOTIFY and notify.status == "pending"
    assert not list(local.parent.glob("*.live.json")) and not list(local.parent.glob("*.samples"))


def test_the_live_object_is_what_the_after_booking_path_would_deliver(env: Env, tmp_path: Path) -> None:
    """Same keys, the same length of footage: the platform cannot tell which path made it."""
    start, end = env.base + 3, env.base + 13
    add_booking(env.cfg, start, end)
    play = Play(env)
    play.start(start)
    assert play.run(start, end + 10)[0] == DONE
    live = videos.get(UID)
    # The after-booking path on the same footage, for the same booking, in a fresh database.
    Video.update(status=VideoStatus.PENDING, mp4_path=None).where(Video.id == live.id).execute()
    keys = (live.mp4_key, live.preview_key, live.thumb_key)
    from venuecam.clips.service import cut_video

    after = cut_video(env.cfg, videos.get(UID))
    from venuecam.storage.service import video_keys

    assert tuple(video_keys(env.cfg, after).values()) == keys
    assert abs(after.duration_s - live.duration_s) <= 1.0


# ---------------------------------------------------------------- faults


def test_offline_during_the_booking_parts_wait_and_go_when_the_link_is_back(env: Env) -> None:
    start, end = env.base + 3, env.base + 23
    add_booking(env.cfg, start, end)
    play = Play(env)
    clip = play.start(start)
    assert play.run(start, end + 5, online=False)[0] == "running"
    assert clip.upload.sent_bytes == 0 and clip.doc["finished"]  # ready to go
    assert play.run(end + 6, end + 10)[0] == DONE
    assert env.proxy.stats()["resent_bytes"] == 0


def test_the_store_failing_on_a_part_resumes_from_the_last_acknowledged_part(
    env: Env, tmp_path: Path
) -> None:
    start, end = env.base + 3, env.base + 23
    add_booking(env.cfg, start, end)
    play = Play(env)
    clip = play.start(start)
    env.proxy.fail(status=503, count=3, query_contains="partNumber=2")  # its tries (botocore retries once)
    outcome, t = play.run(start, end + 20)
    if outcome != DONE:  # backed off: a later step goes on
        outcome, t = play.run(t + 60, t + 120)
    assert outcome == DONE
    assert clip.failures == 0
    video = videos.get(UID)
    got = stored(env, video.mp4_key, tmp_path)
    assert hashlib.sha256(got.read_bytes()).hexdigest() == video.sha256
    assert env.proxy.stats()["injected"] == 3 and env.uploads_in_progress() == []
    assert env.proxy.stats()["resent_bytes"] == 0  # refused before its body went (100-continue)


def test_a_part_on_the_wire_does_not_hold_up_the_next_segment(env: Env, tmp_path: Path) -> None:
    """The cameras' segments close together, so every clip remuxes at once; a clip that waited
    for its parts before its next remux left the link idle for those seconds every segment."""
    start, end = env.base + 3, env.base + 41
    add_booking(env.cfg, start, end)
    play = Play(env)
    clip = play.start(start)
    env.proxy.stall(count=1, seconds=6.0, query_contains="partNumber=1")  # then cut: sent again
    t = start
    while clip.upload.in_flight == 0 and t < end:
        play.step(t)
        t += 1.0
    assert clip.upload.in_flight == 1, "part 1 never went"
    cursor = clip.doc["cursor_ts"]
    play.step(t + 4.0)  # two more segments closed while part 1 is held on the wire
    assert clip.doc["cursor_ts"] > cursor, "the next segments waited for the part on the wire"
    assert "1" not in clip.upload.state["parts"] and clip.upload.in_flight == 1
    saved = json.loads(clip.state_path.read_text())  # the state on disk is the clip's
    assert saved["cursor_ts"] == clip.doc["cursor_ts"] and saved["mp4"] == clip.doc["mp4"]
    outcome, t = play.run(t + 5.0, end + 20)
    if outcome != DONE:  # the cut part backed the clip off: a later step goes on
        outcome, t = play.run(t + 60, t + 120)
    assert outcome == DONE
    video = videos.get(UID)
    got = stored(env, video.mp4_key, tmp_path)
    assert hashlib.sha256(got.read_bytes()).hexdigest() == video.sha256
    assert env.proxy.stats()["injected"] == 1 and env.uploads_in_progress() == []


def test_a_worker_killed_mid_booking_goes_on_from_its_state_with_at_most_one_part_again(
    env: Env, tmp_path: Path
) -> None:
    start, end = env.base + 3, env.base + 41
    add_booking(env.cfg, start, end)
    play = Play(env)
    clip = play.start(start)
    play.run(start, start + 33)
    clip.close()  # its parts on the wire land (or fail) before the next process reads the state
    parts_before = len(clip.upload.state["parts"])
    assert parts_before >= 1
    # A power cut mid-append: bytes past the checkpoint on disk, the process gone.
    with open(clip.mp4.path, "ab") as f:
        f.write(b"\xde\xad" * 5000)
    with open(clip.mp4.records_path, "ab") as f:
        f.write(b"\x01" * 21 * 3)
    play.clip = LiveClip(env.cfg, videos.get(UID), make_client(env.cfg.storage))
    assert len(play.clip.upload.state["parts"]) == parts_before
    assert play.run(start + 34, end + 10)[0] == DONE
    video = videos.get(UID)
    got = stored(env, video.mp4_key, tmp_path)
    assert hashlib.sha256(got.read_bytes()).hexdigest() == video.sha256
    assert decode_errors(got) == "" and abs(float(ffprobe(got)["format"]["duration"]) - (end - start)) <= 1.0
    assert env.proxy.stats()["resent_bytes"] <= 5 * 1024 * 1024


def test_a_restart_after_the_file_is_finished_sends_it_as_finished(env: Env, tmp_path: Path) -> None:
    """Offline at the end, the file finished (its last box sealed, moov written), then the
    worker restarts before the link is back: what goes up is that file, byte for byte (the
    soak found a resume writing the sealed box's header back to its provisional size)."""
    start, end = env.base + 3, env.base + 23
    add_booking(env.cfg, start, end)
    play = Play(env)
    clip = play.start(start)
    assert play.run(start, end + 5, online=False)[0] == "running"
    finished = dict(clip.doc["finished"])
    before = clip.mp4.path.read_bytes()
    assert hashlib.sha256(before).hexdigest() == finished["sha256"]
    play.clip = LiveClip(env.cfg, videos.get(UID), make_client(env.cfg.storage))  # the restart
    assert play.clip.mp4.path.read_bytes() == before
    assert play.run(end + 6, end + 10)[0] == DONE
    video = videos.get(UID)
    got = stored(env, video.mp4_key, tmp_path)
    assert got.read_bytes() == before and video.sha256 == finished["sha256"]
    assert decode_errors(got) == ""


def test_a_booking_cancelled_mid_way_aborts_its_upload_and_notifies_nothing(env: Env) -> None:
    start, end = env.base + 3, env.base + 41
    add_booking(env.cfg, start, end)
    play = Play(env)
    clip = play.start(start)
    play.run(start, start + 33)
    assert clip.upload.state.get("upload_id") and env.uploads_in_progress()
    video = videos.get(UID)
    videos.transition(video, VideoStatus.CANCELLED, "Booking cancelled via API")
    Booking.update(status="cancelled").execute()
    assert play.step(start + 34) == STOPPED
    assert env.uploads_in_progress() == []
    assert not clip.mp4.path.exists() and not clip.state_path.exists()
    assert PendingTask.select().where(PendingTask.task_type == TaskType.NOTIFY).count() == 0


def test_a_lost_answer_to_the_live_create_and_a_power_cut_after_it_leave_no_upload_behind(
    env: Env, tmp_path: Path
) -> None:
    """storage/orphans.py on the live path: the store's answer to the create lost (botocore asks
    again), then the power cut right after the next create, before its id was saved."""
    start, end = env.base + 3, env.base + 23
    add_booking(env.cfg, start, end)
    play = Play(env)
    clip = play.start(start)
    env.proxy.lose_reply(methods=("POST",), query_contains="uploads")

    def cut_once_the_id_is_known() -> None:
        if clip.upload.state.get("upload_id"):
            raise PowerCut
        clip._save()

    clip.upload.save = cut_once_the_id_is_known
    with pytest.raises(PowerCut):
        play.run(start, end)
    assert len(env.uploads_in_progress()) == 2  # two created by the store; neither id saved
    play.clip = LiveClip(env.cfg, videos.get(UID), make_client(env.cfg.storage))  # the reboot
    assert play.clip.upload.state.get("creating") is True
    assert play.run(start + 1, end + 10)[0] == DONE
    assert env.uploads_in_progress() == []
    video = videos.get(UID)
    assert hashlib.sha256(stored(env, video.mp4_key, tmp_path).read_bytes()).hexdigest() == video.sha256


def test_a_booking_extended_mid_way_is_followed_to_its_new_end(env: Env, tmp_path: Path) -> None:
    start, end = env.base + 3, env.base + 15
    booking = add_booking(env.cfg, start, end)
    play = Play(env)
    play.start(start)
    play.run(start, start + 8)
    new_end = env.base + 25
    Booking.update(end_ts=new_end, end_time="x").where(Booking.id == booking.id).execute()
    changed = pipeline.booking_changed(env.cfg, Booking.get_by_id(booking.id))
    assert [v.status for v in changed] == [VideoStatus.LIVE]
    outcome, t = play.run(start + 9, new_end + 10)
    assert outcome == DONE and t >= new_end
    video = videos.get(UID)
    got = stored(env, video.mp4_key, tmp_path)
    assert abs(float(ffprobe(got)["format"]["duration"]) - (new_end - start)) <= 1.0


def test_a_booking_shortened_before_what_is_recorded_goes_to_the_after_booking_path(env: Env) -> None:
    start, end = env.base + 3, env.base + 25
    booking = add_booking(env.cfg, start, end)
    play = Play(env)
    clip = play.start(start)
    play.run(start, start + 16)
    Booking.update(end_ts=start + 6).where(Booking.id == booking.id).execute()
    pipeline.booking_changed(env.cfg, Booking.get_by_id(booking.id))
    assert play.step(start + 17) == STOPPED
    video = videos.get(UID)
    assert video.status == VideoStatus.PENDING and video.end_ts == start + 6 and video.revision == 1
    assert env.uploads_in_progress() == [] and not clip.mp4.path.exists()
    # ... and the after-booking path cuts it.
    (row,) = pipeline.scan(env.cfg, start + 60)
    assert row.task_type == TaskType.CLIP


def test_a_booking_moved_to_a_later_start_restarts_the_live_video(env: Env) -> None:
    start, end = env.base + 3, env.base + 25
    booking = add_booking(env.cfg, start, end)
    play = Play(env)
    first = play.start(start)
    play.run(start, start + 10)
    Booking.update(start_ts=start + 4).where(Booking.id == booking.id).execute()
    pipeline.booking_changed(env.cfg, Booking.get_by_id(booking.id))
    assert videos.get(UID).status == VideoStatus.PENDING
    assert play.step(start + 11) == STOPPED and env.uploads_in_progress() == []
    assert not first.mp4.path.exists()
    assert [v.unique_id for v in manager.start_due(env.cfg, start + 12)] == [UID]


def test_a_segment_that_fails_mid_booking_becomes_a_gap_and_the_video_stays_whole(
    env: Env, tmp_path: Path
) -> None:
    start, end = env.base + 3, env.base + 19
    add_booking(env.cfg, start, end)
    Path(env.segs[5].path).write_bytes(b"\x47" + bytes(188 * 50))  # sync bytes, no video in it
    play = Play(env)
    play.start(start)
    assert play.run(start, end + 10)[0] == DONE
    video = videos.get(UID)
    assert len(video.gaps) == 1 and video.gaps[0][0] == pytest.approx(env.segs[5].start_ts, abs=0.01)
    got = stored(env, video.mp4_key, tmp_path)
    assert decode_errors(got) == ""
    assert abs(float(ffprobe(got)["format"]["duration"]) - (end - start - 2)) <= 1.0


def test_two_bookings_back_to_back_share_the_boundary_segment(env: Env, tmp_path: Path) -> None:
    mid = env.base + 13  # inside the segment [12, 14)
    add_booking(env.cfg, env.base + 3, mid, booking_id="BK-L1")
    add_booking(env.cfg, mid, env.base + 23, booking_id="BK-L2")
    second_uid = "BK-L2-CAMERA_A-full"
    play = Play(env)
    play.start(env.base + 3)
    second: LiveClip | None = None
    outcomes: dict[str, str] = {}
    t = env.base + 3
    while len(outcomes) < 2 and t < env.base + 40:
        play.close_until(t)
        if second is None and any(v.unique_id == second_uid for v in manager.start_due(env.cfg, t)):
            second = LiveClip(env.cfg, videos.get(second_uid), make_client(env.cfg.storage))
        for uid, c in ((UID, play.clip), (second_uid, second)):
            if c is not None and uid not in outcomes:
                got = c.step(True, now=t)
                if got in (DONE, STOPPED):
                    outcomes[uid] = got
        t += 1.0
    assert outcomes == {UID: DONE, second_uid: DONE}
    for uid, length in ((UID, 10), (second_uid, 10)):
        v = videos.get(uid)
        got = stored(env, v.mp4_key, tmp_path)
        assert abs(float(ffprobe(got)["format"]["duration"]) - length) <= 1.0
        assert hashlib.sha256(got.read_bytes()).hexdigest() == v.sha256 and decode_errors(got) == ""
    assert env.uploads_in_progress() == []


def test_a_camera_whose_stream_changes_mid_booking_goes_to_the_after_booking_path(
    env: Env, tmp_path: Path
) -> None:
    start, end = env.base + 3, env.base + 23
    add_booking(env.cfg, start, end)
    other = record_segments(tmp_path / "small", 4, width=160, height=120)
    shutil.copy(other[0], env.segs[6].path)  # the camera came back at another size
    play = Play(env)
    play.start(start)
    assert play.run(start, end + 10)[0] == STOPPED
    assert videos.get(UID).status == VideoStatus.PENDING
    assert env.uploads_in_progress() == []


def test_a_second_try_after_a_hand_back_is_not_made_live_again(env: Env) -> None:
    start, end = env.base + 3, env.base + 23
    add_booking(env.cfg, start, end)
    play = Play(env)
    play.start(start)
    video = videos.get(UID)
    play.clip.hand_back(video, "test")  # type: ignore[union-attr]
    assert manager.start_due(env.cfg, start + 2) == []


def test_at_most_the_cap_is_live_the_next_goes_live_when_a_place_frees(make_env: Callable[..., Env]) -> None:
    env = make_env(clips={"live_max_videos": 2})
    start, end = env.base + 3, env.base + 23
    for n in (1, 2, 3):  # first come, first served: by booking start
        add_booking(env.cfg, start + n, end, booking_id=f"BK-L{n}")
    assert [v.unique_id for v in manager.start_due(env.cfg, start + 4)] == [UID, "BK-L2-CAMERA_A-full"]
    assert [v.unique_id for v in manager.due_videos(env.cfg, start + 5)] == ["BK-L3-CAMERA_A-full"]
    assert manager.start_due(env.cfg, start + 5) == []
    assert videos.get("BK-L3-CAMERA_A-full").status == VideoStatus.PENDING
    videos.transition(videos.get(UID), VideoStatus.CANCELLED, "test: a place frees")
    assert [v.unique_id for v in manager.start_due(env.cfg, start + 6)] == ["BK-L3-CAMERA_A-full"]
    # Still waiting when its booking ends: it stays pending, for the after-booking path.
    add_booking(env.cfg, start + 7, end, booking_id="BK-L4")
    assert manager.start_due(env.cfg, start + 8) == []
    assert manager.start_due(env.cfg, end + 1) == []
    assert videos.get("BK-L4-CAMERA_A-full").status == VideoStatus.PENDING


def test_the_manager_runs_at_most_the_cap_and_status_says_how_many_wait(make_env: Callable[..., Env]) -> None:
    from venuecam.status import facts, render

    env = make_env(clips={"live_max_videos": 1})
    now = time.time()
    for n in (1, 2):
        add_booking(env.cfg, now - 10 + n, now + 60, booking_id=f"BK-L{n}")
    # A worker with a higher cap left two live videos: the new one runs one, the other waits.
    for video in manager.due_videos(env.cfg, now):
        videos.transition(video, VideoStatus.LIVE, "test: left by a worker with a higher cap")
    live = manager.LiveManager(env.cfg, None)
    try:
        live.tick(now)
        assert len(live.runners) == 1 and live.waiting == 1
        live.publish()
        assert facts.live_waiting() == {"videos": 1, "cap": 1}
        text = render.render(facts.collect(env.cfg, with_programs=False, with_clock=False))
        assert "1 more video(s) wait for a live place (at most 1 at once)" in text
    finally:
        live.stop()
        for runner in live.runners.values():
            runner.join(timeout=30)


def test_a_clip_row_waits_while_the_video_is_built_live(env: Env) -> None:
    start, end = env.base + 3, env.base + 23
    add_booking(env.cfg, start, end)
    Play(env).start(start)
    video = pipeline.ensure_video(env.cfg, Booking.get(), "CAMERA_A", "full", start, end)
    row, _ = pipeline.enqueue_clip(env.cfg, video)
    from venuecam.errors import RetryLater
    from venuecam.worker.handlers import handle_clip

    with pytest.raises(RetryLater, match="built live"):
        handle_clip(env.cfg, ledger.get(row.id))


def test_a_live_file_checkpoint_that_does_not_match_the_disk_is_refused_by_name(tmp_path: Path) -> None:
    f = mp4file.LiveMP4(tmp_path / "x.mp4")
    cp = f.checkpoint()
    cp["length"] += 1000
    with pytest.raises(Exception, match="x.mp4: .* bytes on disk, the checkpoint says"):
        mp4file.LiveMP4(tmp_path / "x.mp4", checkpoint=cp)
    with pytest.raises(Exception, match="unreadable live checkpoint"):
        mp4file.LiveMP4(tmp_path / "x.mp4", checkpoint={"length": "a lot"})


def test_module_constants_are_what_the_docs_say() -> None:
    assert live_clip.TOLERANCE_S == 0.5


def test_status_shows_each_live_upload_with_bytes_sent_of_recorded(env: Env) -> None:
    from venuecam import shared_state
    from venuecam.status import facts, render

    start, end = env.base + 3, env.base + 41
    add_booking(env.cfg, start, end)
    play = Play(env)
    clip = play.start(start)
    play.run(start, start + 33)
    summary = clip.summary()
    assert summary["sent_bytes"] >= 5 * 1024 * 1024 and summary["recorded_bytes"] > summary["sent_bytes"]
    shared_state.put_json(shared_state.LIVE_UPLOADS, {"uploads": [summary], "published_ts": time.time()})
    snapshot = facts.collect(env.cfg, with_programs=False, with_clock=False)
    (row,) = snapshot["live_uploads"]
    assert row["booking_id"] == "BK-L1" and row["camera"] == "CAMERA_A" and not row["stale"]
    text = render.render(snapshot)
    assert "live now" in text and "BK-L1 CAMERA_A" in text and "sent of" in text
    # A worker that stopped publishing: said so, not shown as progressing.
    assert facts.live_uploads(now_ts=time.time() + 60)[0]["stale"]


def test_the_platform_unreachable_at_the_end_the_video_is_stored_and_notified_when_it_is_back(
    make_env: Callable[..., Env],
) -> None:
    from conftest import free_port
    from fixtures_platform import start_simulator
    from venuecam.worker.app import make_huey
    from venuecam.worker.execute import execute_row
    from venuecam.worker.tasks import register

    port = free_port()
    env = make_env(booking_api={"base_url": f"http://127.0.0.1:{port}"})
    cfg, base = env.cfg, env.base
    start, end = base + 3, base + 15
    add_booking(cfg, start, end)
    play = Play(env)
    play.start(start)
    assert play.run(start, end + 10)[0] == DONE  # stored with nobody listening at the platform
    tasks = register(make_huey(cfg), cfg)
    row = PendingTask.get(PendingTask.unique_key == f"notify_ayo_api:{UID}")
    execute_row(cfg, tasks, row.id)
    row = ledger.get(row.id)
    assert row.status == "pending" and row.error_msg, "the failure is kept, the row waits"
    assert videos.get(UID).status == VideoStatus.UPLOADED
    sim = start_simulator(port=port)
    try:
        execute_row(cfg, tasks, row.id, now=row.next_retry_at)
        assert videos.get(UID).status == VideoStatus.NOTIFIED
        (note,) = sim.notifications()
        video = videos.get(UID)
        body = note.get("body", note)
        assert body["unique_id"] == UID and body["sha256"] == video.sha256
        assert int(body["size_bytes"]) == video.size_bytes
    finally:
        sim.stop()


def test_a_camera_restarting_mid_booking_gives_one_video_spanning_the_restart_with_the_gap(
    env: Env, tmp_path: Path
) -> None:
    """A capture restart starts a new ffmpeg run: its timestamps start again from zero."""
    again = record_segments(tmp_path / "run2", 12, bitrate_kbps=3000)
    second_run = as_segments(again, env.segs[10].end_ts + 4.0)  # back 4 s after the 11th segment
    env.segs = env.segs[:11] + second_run
    start, end = env.base + 3, second_run[-1].end_ts - 1
    add_booking(env.cfg, start, end)
    play = Play(env)
    play.start(start)
    assert play.run(start, end + 10)[0] == DONE
    video = videos.get(UID)
    assert [[round(a - env.base), round(b - env.base)] for a, b in video.gaps] == [[22, 26]]
    got = stored(env, video.mp4_key, tmp_path)
    assert decode_errors(got) == ""
    assert abs(float(ffprobe(got)["format"]["duration"]) - (end - start - 4)) <= 1.0


def test_live_uploads_keep_to_the_upload_cap(make_env: Callable[..., Env]) -> None:
    """storage.max_upload_mbit holds for the live path too (its client is capped like every
    other upload): the bytes of a live video take at least as long as the cap allows."""
    env = make_env(storage={"max_upload_mbit": 8})
    cfg, base = env.cfg, env.base
    start, end = base + 3, base + 37
    add_booking(cfg, start, end)
    play = Play(env)
    clip = play.start(start)
    began = time.monotonic()
    assert play.run(start, end + 10)[0] == DONE
    elapsed = time.monotonic() - began
    sent = clip.upload.sent_bytes + sum(Path(p).stat().st_size for p in (clip.preview_path, clip.thumb_path))
    assert elapsed >= sent * 8 / 8e6 * 0.95, f"{sent} bytes in {elapsed:.2f} s: faster than 8 Mbit/s"


def test_the_live_store_client_keeps_a_connection_for_every_request_the_live_videos_make(env: Env) -> None:
    """Beyond its pool a request opens a connection and closes it after: a handshake and a
    slow start for each part (four cameras, two parts each, overflowed the old pool of four)."""
    live = manager.LiveManager(env.cfg, None)
    try:
        client = live._store()
        want = env.cfg.live_video_cap() * (live_upload.PARALLEL_PARTS + 1)
        assert client.meta.config.max_pool_connections == want
    finally:
        live.stop()

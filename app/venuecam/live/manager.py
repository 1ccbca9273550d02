"""The live path's place in the worker process: which videos go live, one thread each.

Every `TICK_S` the manager looks for `success` bookings being played now whose field a
camera films, and makes their videos `live` (only videos still `pending`: one the
after-booking path already has is left to it). Each live video gets a thread running its
`LiveClip` until it is stored or handed back; after a worker restart the videos still `live`
are picked up again from their saved state. Not a huey task: a booking holds its runner for
the whole booking, and the worker's threads are for the queue.

At most `Config.live_video_cap()` videos are live at once: each holds a thread and a
connection to the database (the store client is the manager's, one for all: boto3 clients
are thread-safe, and making one costs ~0.1 s of CPU here, seconds on a Pi 3), and a box
that has fallen behind (a long outage, a backlog of bookings) must not grow them without
bound. A video over the cap stays
`pending`, goes live when a place frees while its booking is still played, or else is cut
after its booking like any other; first come, first served (by booking start).

What each clip is doing is published for `venuecam status` (shared_state LIVE_UPLOADS),
with how many videos wait for a place.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING, Any

from venuecam import logs, pipeline, shared_state, videos, wallclock
from venuecam.live.clip import DONE, HANDED_BACK, STOPPED, WORKING, LiveClip
from venuecam.live.upload import PARALLEL_PARTS
from venuecam.models import Booking, Video, VideoStatus
from venuecam.storage.botocore_patch import SocketTracker
from venuecam.storage.client import make_client
from venuecam.storage.linkwatch import LinkWatch
from venuecam.worker import dispatch

if TYPE_CHECKING:
    from venuecam.config import Config
    from venuecam.worker.tasks import Tasks

log = logging.getLogger("venuecam.live")
TICK_S = 1.0
PUBLISH_S = 2.0
# Videos waiting for a live place are said in the log at most this often (status has them live).
WAITING_LOG_S = 60.0


def running_bookings(now_ts: float) -> list[Booking]:
    return list(
        Booking.select()
        .where(
            (Booking.status == "success")
            & Booking.start_ts.is_null(False)
            & (Booking.start_ts <= now_ts)
            & (Booking.end_ts > now_ts)
        )
        .order_by(Booking.start_ts, Booking.id)
    )


def due_videos(cfg: Config, now_ts: float) -> list[Video]:
    """The videos that could go live now: `pending` first revisions of bookings being played."""
    due: list[Video] = []
    if not cfg.clips.live or not wallclock.trust().trusted:
        return due  # an unset clock does not know which booking is on
    for booking in running_bookings(now_ts):
        cameras = cfg.cameras_for_field(booking.field_id) if booking.field_id is not None else []
        for cam in cameras:
            video = pipeline.ensure_video(cfg, booking, cam.name, "full", booking.start_ts, booking.end_ts)
            if video.status != VideoStatus.PENDING or video.revision != 1:
                continue  # the after-booking path (or a new revision of it) has it
            if str(video.status_msg or "").startswith(HANDED_BACK):
                continue
            due.append(video)
    return due


def live_videos() -> list[Video]:
    return list(Video.select().where(Video.status == VideoStatus.LIVE).order_by(Video.id))


def start_due(cfg: Config, now_ts: float, due: list[Video] | None = None) -> list[Video]:
    """Make the due videos `live` while there is a place (the cap); returns those it changed."""
    due = due_videos(cfg, now_ts) if due is None else due
    places = cfg.live_video_cap() - Video.select().where(Video.status == VideoStatus.LIVE).count()
    started: list[Video] = []
    for video in due:
        if len(started) >= places:
            break
        try:
            started.append(videos.transition(video, VideoStatus.LIVE, "built while the booking is played"))
        except videos.VideoChanged:
            continue
    return started


class LiveManager(threading.Thread):
    def __init__(self, cfg: Config, tasks: Tasks | None, wrap: Any = None) -> None:
        super().__init__(daemon=True, name="live")
        self.cfg, self.tasks, self.wrap = cfg, tasks, wrap
        self.stopped = threading.Event()
        self.runners: dict[str, _Runner] = {}
        self._last_publish = 0.0
        self._published_rows = True  # a restart clears what an earlier worker left
        self.waiting = 0  # videos that would be live but for the cap
        self._last_waiting_log = -WAITING_LOG_S
        self._client: Any = None
        self._watch: LinkWatch | None = None

    def _store(self) -> Any:
        """The runners' store client, its sockets dropped when the link comes back."""
        if self._client is None:
            # Each live video has up to PARALLEL_PARTS parts on the wire and one more request
            # (a preview, the completion); all of them keep their connections.
            pool = self.cfg.live_video_cap() * (PARALLEL_PARTS + 1)
            self._client = make_client(self.cfg.storage, connections=pool)
            self._watch = LinkWatch(self.cfg.run_dir, SocketTracker(self._client)).__enter__()
        return self._client

    def run(self) -> None:
        while not self.stopped.wait(TICK_S):
            try:
                self.tick()
            except Exception:  # a bad tick must not end the live path; the next one tries again
                log.exception("%s live manager tick failed", logs.CLIP)

    def tick(self, now_ts: float | None = None) -> None:
        now_ts = time.time() if now_ts is None else now_ts
        due = due_videos(self.cfg, now_ts)
        started = start_due(self.cfg, now_ts, due)
        for uid in [u for u, r in self.runners.items() if not r.is_alive()]:
            del self.runners[uid]
        # Live videos beyond the cap (left by a worker with a higher one) wait for a runner.
        idle = [v for v in live_videos() if v.unique_id not in self.runners]
        places = max(0, self.cfg.live_video_cap() - len(self.runners))
        for video in idle[:places]:
            runner = _Runner(self.cfg, str(video.unique_id), self.tasks, self.wrap, self._store())
            self.runners[video.unique_id] = runner
            runner.start()
        waiting = len(due) - len(started) + max(0, len(idle) - places)
        if waiting and time.monotonic() - self._last_waiting_log >= WAITING_LOG_S:
            self._last_waiting_log = time.monotonic()
            log.info("%s %d video(s) wait for a live place (at most %d at once); cut after the booking "
                     "if none frees", logs.CLIP, waiting, self.cfg.live_video_cap())  # fmt: skip
        self.waiting = waiting
        if time.monotonic() - self._last_publish >= PUBLISH_S:
            self.publish()

    def publish(self) -> None:
        self._last_publish = time.monotonic()
        rows = [r.summary for r in self.runners.values() if r.summary]
        if not rows and not self.waiting and not self._published_rows:
            return  # nothing live, and status already says so: no write every 2 s
        self._published_rows = bool(rows) or bool(self.waiting)
        doc = {"uploads": rows, "waiting": self.waiting, "cap": self.cfg.live_video_cap()}
        shared_state.put_json(shared_state.LIVE_UPLOADS, {**doc, "published_ts": time.time()})

    def stop(self) -> None:
        self.stopped.set()
        for r in self.runners.values():
            r.stopped.set()
        if self._watch is not None:
            self._watch.__exit__(None, None, None)


class _Runner(threading.Thread):
    """One live clip's loop."""

    def __init__(self, cfg: Config, uid: str, tasks: Tasks | None, wrap: Any, client: Any) -> None:
        super().__init__(daemon=True, name=f"live-{uid}")
        self.cfg, self.uid, self.tasks, self.wrap, self.client = cfg, uid, tasks, wrap, client
        self.stopped = threading.Event()
        self.summary: dict[str, Any] = {}

    def run(self) -> None:
        try:
            self._loop(self.client)
        except Exception:
            log.exception("%s live %s failed; the manager starts it again", logs.CLIP, self.uid)
            self.stopped.wait(10.0)

    def _loop(self, client: Any) -> None:
        video = videos.get(self.uid)
        if video is None or video.status != VideoStatus.LIVE:
            return
        clip = LiveClip(self.cfg, video, client, wrap=self.wrap)
        try:
            while not self.stopped.is_set():
                outcome = clip.step(dispatch.online())
                self.summary = clip.summary()
                if outcome == DONE:
                    row = getattr(clip, "notify_row", None)
                    if row is not None and self.tasks is not None:
                        dispatch.dispatch_new(self.tasks, row)
                    break
                if outcome == STOPPED:
                    if self.tasks is not None:
                        self.tasks.scan()  # a video handed back is cut by the after-booking path
                    break
                if outcome != WORKING:
                    clip.wait(TICK_S)  # a part landing wakes it: the next part goes at once
        finally:
            clip.close()
            self.summary = {}

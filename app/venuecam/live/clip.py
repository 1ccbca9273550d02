"""One booking x camera built and uploaded while the booking is played.

`LiveClip.step()` does what can be done now and returns; its thread (`live.manager`) calls
it again and again until the video is stored, or handed back to the after-booking path:

1. append the segments closed since the last step (each stream-copied by `remux`, its
   samples added to the growing MP4 `mp4file.LiveMP4`), then checkpoint;
2. once the first `clips.preview_seconds` are in, make the preview and the thumbnail;
3. if the link is up, send the parts that are final (`upload.LiveUpload`), the preview and
   the thumbnail;
4. when a closed segment reaches the booking's end (or `clips.grace_s` after the end,
   whatever came), append the last piece, write the `moov`, send what is left, complete
   and verify; then, in one commit, the video becomes `uploaded` and its notification row
   is queued: from there on it is the same flow, and the same object keys, as a video cut
   after its booking.

Handed back (the video goes `pending` again and the after-booking path cuts it, its
multipart upload aborted and local files removed): the camera's stream changed mid-booking,
the booking now ends before footage already in the video, no frame was recorded, or the
store refused the upload for good. A cancelled booking, a booking change that moves its
start or field (`pipeline.booking_changed` makes the video `pending` again): the runner
sees the video is no longer `live`, aborts and removes its files.
"""

from __future__ import annotations

import copy
import json
import logging
import threading
import time
from pathlib import Path
from typing import Any

from venuecam import ledger, logs, pipeline, videos
from venuecam.clips import assemble
from venuecam.clips.plan import ClipItem, plan_clip
from venuecam.clips.service import UsableSegment, clip_paths, usable_segments
from venuecam.config import Config
from venuecam.errors import AuthError, BadInputError, ClipError, PermanentError, TransientError
from venuecam.live import fragments, remux, state
from venuecam.live.mp4file import LiveMP4, StreamChanged
from venuecam.live.upload import BATCH_PARTS, LiveUpload, UploadGone
from venuecam.media.probe import probe
from venuecam.models import Booking, PendingTask, Segment, Video, VideoStatus
from venuecam.storage.multipart import MIB, upload_file
from venuecam.storage.service import video_keys, video_urls

log = logging.getLogger("venuecam.live")

TOLERANCE_S = 0.5  # as clips.plan: capture's bounds carry a little jitter
MAX_BACKOFF_S = 60.0
# From this long (plus two segments) before the end, each segment gets its own mdat box
# (`LiveMP4.close_box`), so no part of the tail waits for a header; long enough for the part
# the sealed box held (5 MiB a camera) to go in the slack of a link 80% used (at 5 s: p95 30 s).
NEAR_END_MARGIN_S = 60.0

WORKING, IDLE, DONE, STOPPED = "working", "idle", "done", "stopped"
# The status message of a video the live path handed back: it is not made live again.
HANDED_BACK = "handed to the after-booking path"


class HandBack(Exception):
    """The live path gives this video to the after-booking path."""


class LiveClip:
    def __init__(self, cfg: Config, video: Video, client: Any, wrap: Any = None) -> None:
        self.cfg, self.client, self.wrap = cfg, client, wrap
        self.uid = str(video.unique_id)
        self.mp4_path, self.preview_path, self.thumb_path = clip_paths(cfg, video)
        self.state_path = state.path_for(self.mp4_path)
        doc = state.load(self.state_path)
        if doc is not None and (
            doc.get("revision") != video.revision or doc.get("start_ts") != video.start_ts
        ):
            self._remove_files()  # left by an earlier attempt for other bounds
            doc = None
        if doc is None:
            doc = {"unique_id": self.uid, "revision": video.revision, "start_ts": float(video.start_ts),
                   "cursor_ts": float(video.start_ts), "gaps": [], "segments": 0, "mp4": None,
                   "upload": {}, "preview": {}, "thumb": {}, "extras": False, "finished": None,
                   "keys": video_keys(cfg, video)}  # fmt: skip
            self.mp4_path.parent.mkdir(parents=True, exist_ok=True)
            self.mp4 = LiveMP4(self.mp4_path)
            doc["mp4"] = self.mp4.checkpoint()
            state.save(self.state_path, doc)
        else:
            # `finished` and its checkpoint are saved in one write: a finished file's bytes
            # are final (said here too for a checkpoint saved before it carried `sealed`).
            self.mp4 = LiveMP4(self.mp4_path, checkpoint={**doc["mp4"], "sealed": bool(doc.get("finished"))})
        self.doc = doc
        # The live state is one document, saved whole: the clip's thread changes it, and so do
        # the upload's part threads (each acknowledged part), each under this lock.
        self._lock = threading.RLock()
        self.upload = LiveUpload(client, cfg.storage.bucket, doc["keys"]["mp4"], doc["upload"], self._save,
                                 wrap=wrap, lock=self._lock)  # fmt: skip
        self.failures = 0
        self.retry_at = 0.0
        self.last_error = ""

    # ------------------------------------------------------------------ state

    def _save(self) -> None:
        with self._lock:  # the clip's thread and the part threads: one whole document at a time
            state.save(self.state_path, self.doc)

    def summary(self) -> dict[str, Any]:
        return {
            "unique_id": self.uid, "camera": self.mp4_path.parent.name,
            "booking_id": self.mp4_path.parent.parent.name,
            "recorded_bytes": self.mp4.length, "sent_bytes": self.upload.sent_bytes,
            "recorded_s": round(self.mp4.duration / remux.TIMESCALE, 1),
            "finishing": bool(self.doc.get("finished")), "error": self.last_error or None,
        }  # fmt: skip

    # ------------------------------------------------------------------ one step

    def step(self, online: bool, now: float | None = None) -> str:
        now = time.time() if now is None else now
        video = videos.get(self.uid)
        if video is None or video.status != VideoStatus.LIVE or video.revision != self.doc["revision"]:
            why = "gone" if video is None else f"{video.status} r{video.revision}"
            self.discard(f"the video is now {why}")
            return STOPPED
        try:
            return self._step(video, online, now)
        except HandBack as e:
            self.hand_back(video, str(e))
            return STOPPED

    def _step(self, video: Video, online: bool, now: float) -> str:
        booking = Booking.get_or_none(Booking.booking_id == video.booking_id)
        if booking is None or booking.status != "success":
            raise HandBack(f"booking is {getattr(booking, 'status', 'gone')}")
        end_ts = float(video.end_ts)
        if end_ts < self.doc["cursor_ts"] - TOLERANCE_S:
            raise HandBack("the booking now ends before footage already in the live video")
        finished = self.doc.get("finished")
        worked = False
        if not finished:
            worked = self._append(video, end_ts, now)
            if not self.doc["extras"] and self._extras_due(video, end_ts):
                self._make_extras(video)
                worked = True
        if online and now >= self.retry_at:
            try:
                worked |= self._send(final=bool(self.doc.get("finished")))
                if self._ready_to_finish(end_ts) and not self.doc.get("finished"):
                    self._finish_file()
                    worked = True
                if self.doc.get("finished"):
                    self._send(final=True)
                    self._send_extras(video)
                    self._complete(video)
                    self.failures, self.last_error = 0, ""
                    return DONE
                self.failures, self.last_error = 0, ""
            except UploadGone as e:
                log.warning("%s %s; starting it again", logs.UPLOAD, e)
                self.upload.restart()
            except (TransientError, AuthError) as e:
                self._back_off(e, now)
            except PermanentError as e:
                raise HandBack(f"the store refused the upload: {e}") from None
        elif not online and self._ready_to_finish(end_ts) and not self.doc.get("finished"):
            self._finish_file()  # offline at the end: the file is ready the moment the link is back
        return WORKING if worked else IDLE

    def _back_off(self, e: Exception, now: float) -> None:
        self.failures += 1
        delay = min(MAX_BACKOFF_S, 2.0**self.failures)
        self.retry_at = now + delay
        self.last_error = f"{type(e).__name__}: {e}"
        log.warning("%s live upload of %s failed (%d in a row), again in %.0f s: %s",
                    logs.UPLOAD, self.uid, self.failures, delay, self.last_error)  # fmt: skip

    # ------------------------------------------------------------------ footage

    def _segments(self, video: Video, after: float, before: float) -> tuple[list[UsableSegment], list[str]]:
        """The camera's segments (clock checked) ending after `after` and starting before
        `before`, in order: the usable ones, and why the others are not (`usable_segments`)."""
        rows = list(
            Segment.select()
            .where(
                (Segment.camera == video.camera)
                & (Segment.end_ts > after)
                & (Segment.start_ts < before)
                & (Segment.clock_ok == 1)
            )
            .order_by(Segment.start_ts)
        )
        return usable_segments(rows)

    def _closed_past(self, video: Video, end_ts: float) -> bool:
        """Has a closed segment of this camera reached the booking's end?"""
        return (
            Segment.select()
            .where(
                (Segment.camera == video.camera)
                & (Segment.end_ts >= end_ts - TOLERANCE_S)
                & (Segment.clock_ok == 1)
            )  # fmt: skip
            .exists()
        )

    def _ending(self, video: Video, end_ts: float, now: float) -> bool:
        return now >= end_ts and (self._closed_past(video, end_ts) or now >= end_ts + self.cfg.clips.grace_s)

    def _append(self, video: Video, end_ts: float, now: float) -> bool:
        """Append the segments closed since the last step. The live state changes under the
        lock (a background part saves it whole); the remux, seconds on a busy Pi, outside it."""
        cursor = float(self.doc["cursor_ts"])
        if cursor >= end_ts - TOLERANCE_S:
            with self._lock:
                self.doc["ending"] = self._ending(video, end_ts, now)
            return False
        ending = self._ending(video, end_ts, now)
        segments, skipped = self._segments(video, cursor + TOLERANCE_S, end_ts)
        for reason in skipped:
            log.warning("%s live %s: skipping segment %s", logs.CLIP, self.uid, reason)
        if not segments:
            if ending:
                with self._lock:
                    self._gap(cursor, end_ts)
                    self.doc["cursor_ts"] = end_ts
                    self.doc["ending"] = True
                    self._save()
            return False
        near = end_ts - 2 * self.cfg.camera(video.camera).segment_seconds - NEAR_END_MARGIN_S
        if cursor < near - self.cfg.camera(video.camera).segment_seconds and not self.mp4.box_open:
            self.mp4.open_box()  # the booking was extended: far from its end again, few boxes
        plan = plan_clip(segments, cursor, end_ts)
        appended = False
        for item in plan.items:
            if item.trimmed_end and not ending:
                break  # the booking's last piece: when the booking is over
            seg = self._remux(item)
            with self._lock:
                for a, b in plan.gaps:
                    if b <= item.start_ts + TOLERANCE_S and a >= cursor - TOLERANCE_S:
                        self._gap(a, b)
                self._add(item, seg)
            cursor = item.end_ts
            appended = True
        with self._lock:
            if (
                ending
                and self.doc["cursor_ts"] < end_ts - TOLERANCE_S
                and (not plan.items or plan.items[-1].end_ts <= self.doc["cursor_ts"] + TOLERANCE_S)
            ):
                self._gap(self.doc["cursor_ts"], end_ts)
                self.doc["cursor_ts"] = end_ts
            self.doc["ending"] = ending and self.doc["cursor_ts"] >= end_ts - TOLERANCE_S
            if appended and self.doc["cursor_ts"] >= near and self.mp4.box_open:
                # The part holding the open box's header would wait for the end, and with it the
                # tail: seal the box now; the segments from here on get boxes of their own.
                self.mp4.close_box()
                self.mp4.flush()
                self.doc["mp4"] = self.mp4.checkpoint()
            self._save()
        return appended

    def _remux(self, item: ClipItem) -> fragments.Segment | None:
        """The item's samples; None (logged) when its segment cannot be remuxed: a gap."""
        try:
            return remux.remux(item)
        except ClipError as e:
            log.warning("%s live %s: %s; its seconds become a gap", logs.CLIP, self.uid, e)
            return None

    def _add(self, item: ClipItem, seg: fragments.Segment | None) -> None:
        """The remuxed item into the MP4, durable, then the state that says so (under the lock)."""
        if seg is None:
            self._gap(item.start_ts, item.end_ts)
        else:
            try:
                self.mp4.append(seg)
            except StreamChanged as e:
                raise HandBack(str(e)) from None
            self.mp4.flush()
            self.doc["segments"] += 1
        self.doc["cursor_ts"] = item.end_ts
        self.doc["mp4"] = self.mp4.checkpoint()
        self._save()

    def _gap(self, a: float, b: float) -> None:
        if b - a > TOLERANCE_S:
            self.doc["gaps"].append([round(a, 3), round(b, 3)])

    def _ready_to_finish(self, end_ts: float) -> bool:
        return bool(self.doc.get("ending")) and self.doc["cursor_ts"] >= end_ts - TOLERANCE_S

    # ------------------------------------------------------------------ preview and thumbnail

    def _extras_due(self, video: Video, end_ts: float) -> bool:
        want = min(float(self.cfg.clips.preview_seconds), end_ts - float(video.start_ts))
        return (
            self.doc["cursor_ts"] >= float(video.start_ts) + want - TOLERANCE_S and self.doc["segments"] > 0
        )

    def _make_extras(self, video: Video) -> None:
        """The preview and thumbnail from the booking's first seconds, as the after-booking
        path makes them from its MP4 (same sizes, same moment)."""
        start = float(video.start_ts)
        end = min(float(video.end_ts), start + float(self.cfg.clips.preview_seconds))
        usable, _ = self._segments(video, start, end)  # the skipped ones: logged by _append
        plan = plan_clip(usable, start, end)
        if plan.empty:
            return
        head = self.mp4_path.with_name(self.mp4_path.stem + ".head.mp4")
        try:
            assemble.assemble_mp4(plan, head)
            assemble.make_preview(head, self.preview_path, seconds=self.cfg.clips.preview_seconds,
                                  height=self.cfg.clips.preview_height)  # fmt: skip
            plays_s = assemble.mp4_duration(head) - probe(head).start_time
            at_s = min(5.0, plays_s / 2) if plays_s >= 1.0 else 0.0
            assemble.make_thumbnail(head, self.thumb_path, at_s=at_s)
        except (ClipError, BadInputError) as e:
            log.warning("%s live %s: preview/thumbnail not made yet: %s", logs.CLIP, self.uid, e)
            return
        finally:
            head.unlink(missing_ok=True)
        with self._lock:
            self.doc["extras"] = True
            self._save()

    def _send_extras(self, video: Video) -> None:
        if not self.doc["extras"]:
            self._make_extras(video)
            if not self.doc["extras"]:
                raise HandBack("no preview or thumbnail could be made")
        storage = self.cfg.storage
        for name, path in (("preview", self.preview_path), ("thumb", self.thumb_path)):
            if self.doc[name].get("done"):
                continue
            # upload_file changes its state as it goes, and a part of the MP4 may land and save
            # the live state meanwhile: the document takes a copy of it, under the lock.
            sub = copy.deepcopy(self.doc[name])

            def keep(_state: Any, name: str = name, sub: dict[str, Any] = sub) -> None:
                with self._lock:
                    self.doc[name] = copy.deepcopy(sub)
                    self._save()

            upload_file(self.client, storage.bucket, self.doc["keys"][name], path,
                        part_size=storage.part_size_mb * MIB, threshold=storage.multipart_threshold_mb * MIB,
                        state=sub, save_state=keep, parallel_parts=1)  # fmt: skip
            keep(sub)

    # ------------------------------------------------------------------ parts and the end

    def _send(self, final: bool) -> bool:
        """Send the parts that can go (and the preview and thumbnail once made). During the
        booking the parts go in the background (the next segment is remuxed meanwhile); at
        the end (`final`) they are waited for. Raises the first failure of a part."""
        sent = self.upload.collect() > 0
        due = self.upload.due_parts(self.mp4, self.doc["mp4"]["length"], final)
        if not final:
            sent |= self.upload.start_parts(self.mp4, due) > 0
        for i in range(0, len(due) if final else 0, BATCH_PARTS):
            self.upload.send_parts(self.mp4, due[i : i + BATCH_PARTS])
            sent = True
            video = videos.get(self.uid)
            if video is None or video.status != VideoStatus.LIVE:
                return sent  # step() notices and stops
        if self.doc["extras"] and not (self.doc["preview"].get("done") and self.doc["thumb"].get("done")):
            video = videos.get(self.uid)
            if video is not None:
                self._send_extras(video)
                sent = True
        return sent

    def wait(self, timeout: float) -> None:
        """Until a background part finishes (the next can go) or `timeout`."""
        self.upload.changed.wait(timeout)
        self.upload.changed.clear()

    def close(self) -> None:
        """The runner stops: wait for the parts on their way and end their threads."""
        self.upload.close()

    def _finish_file(self) -> None:
        if self.doc["segments"] == 0 or self.mp4.samples == 0:
            raise HandBack("no frame of the booking was recorded live")
        with self._lock:
            size, sha = self.mp4.finish()
            self.doc["finished"] = {
                "size": size,
                "sha256": sha,
                "duration_s": round(self.mp4.duration / remux.TIMESCALE, 3),
            }
            self.doc["mp4"] = self.mp4.checkpoint()
            self._save()
        log.info("%s live %s: %.1f s, %d bytes, sha256 %s…", logs.CLIP, self.uid,
                 self.doc["finished"]["duration_s"], size, sha[:12])  # fmt: skip

    def _complete(self, video: Video) -> None:
        fin = self.doc["finished"]
        if not self.upload.done:
            self.upload.complete(int(fin["size"]), str(fin["sha256"]))
        keys = self.doc["keys"]
        video.mp4_key, video.preview_key, video.thumb_key = keys["mp4"], keys["preview"], keys["thumb"]
        urls = video_urls(self.cfg, video)
        # Store the video's outcome and queue its notification in one commit.
        with Video._meta.database.atomic():
            video = videos.transition(
                video, VideoStatus.UPLOADED, "built and stored live: all three objects verified",
                prefix=logs.UPLOAD, mp4_path=str(self.mp4_path), preview_path=str(self.preview_path),
                thumb_path=str(self.thumb_path), duration_s=float(fin["duration_s"]),
                size_bytes=int(fin["size"]), sha256=str(fin["sha256"]), gaps_json=json.dumps(self.doc["gaps"]),
                mp4_key=keys["mp4"], preview_key=keys["preview"], thumb_key=keys["thumb"],
                mp4_url=urls["mp4_url"], preview_url=urls["preview_url"], thumb_url=urls["thumbnail_url"],
            )  # fmt: skip
            row, _ = ledger.enqueue_row(pipeline.notify_step(self.cfg, video))
        self.notify_row: PendingTask | None = row
        for p in (self.mp4.records_path, self.mp4.track_path, self.state_path):
            p.unlink(missing_ok=True)
        log.info("%s Upload completed live for %s (booking %s)", logs.UPLOAD, self.uid, video.booking_id)

    # ------------------------------------------------------------------ giving up

    def discard(self, why: str) -> None:
        """Stop: abort the multipart upload, remove the live files."""
        try:
            self.upload.abort()
        except Exception as e:  # the upload sweep (worker.upload_sweep) gets it once online
            log.warning("%s live %s: could not abort its upload: %s", logs.UPLOAD, self.uid, e)
        self._remove_files()
        log.info("%s live %s stopped: %s", logs.CLIP, self.uid, why)

    def hand_back(self, video: Video, why: str) -> None:
        log.warning("%s live %s handed to the after-booking path: %s", logs.CLIP, self.uid, why)
        self.discard(why)
        try:
            videos.transition(video, VideoStatus.PENDING, f"live path gave it up: {why}",
                              status_msg=f"{HANDED_BACK}: {why}"[:2000])  # fmt: skip
        except videos.VideoChanged:
            pass

    def _remove_files(self) -> None:
        mp4 = self.mp4_path
        for p in (mp4, mp4.with_name(mp4.name + ".samples"), mp4.with_name(mp4.name + ".track"),
                  self.preview_path, self.thumb_path, self.state_path):  # fmt: skip
            Path(p).unlink(missing_ok=True)

"""Tables of the application database. Models name no database: `db.open_db` binds them.

Times are naive UTC datetimes (`timeutil.utcnow()`), except segment bounds, which are
UTC epoch seconds (REAL) because clip matching does arithmetic on them.
"""

from __future__ import annotations

import json
from typing import Any

from peewee import (
    AutoField,
    BigIntegerField,
    CharField,
    DateTimeField,
    FloatField,
    IntegerField,
    Model,
    TextField,
)

from venuecam.timeutil import utcnow


class BaseModel(Model):
    class Meta:
        legacy_table_names = False


class Booking(BaseModel):
    """Seed 001's `bookings` table, as the platform last sent it."""

    id = AutoField()
    booking_id = CharField(unique=True)
    order_detail_id = IntegerField(null=True)
    field_id = IntegerField(null=True, index=True)
    date = CharField(null=True, index=True)  # venue-local YYYY-MM-DD
    start_time = CharField(null=True)  # venue-local HH:MM:SS
    end_time = CharField(null=True)
    status = CharField(null=True, index=True)  # success | cancelled | pending | expired | unknown
    field_name = CharField(null=True)
    user_name = CharField(null=True)
    user_phone = CharField(null=True)
    created_at = DateTimeField(default=utcnow)
    updated_at = DateTimeField(default=utcnow)
    raw_json = TextField(null=True)
    last_sync_at = DateTimeField(default=utcnow)
    # Derived at upsert: the booking's bounds in UTC epoch seconds (crosses midnight, DST).
    start_ts = FloatField(null=True, index=True)
    end_ts = FloatField(null=True, index=True)

    class Meta:
        table_name = "bookings"


class Segment(BaseModel):
    """One finished, validated recording segment of one camera."""

    id = AutoField()
    camera = CharField(index=True)
    start_ts = FloatField(index=True)
    end_ts = FloatField(index=True)
    duration = FloatField()
    path = CharField(unique=True)
    bytes = BigIntegerField()
    # Codec parameters; concat with -c copy needs them equal across inputs.
    codec = CharField(default="")
    width = IntegerField(default=0)
    height = IntegerField(default=0)
    created_at = DateTimeField(default=utcnow)
    # Wall-clock trust (venuecam.wallclock): a segment filed before time synced has
    # clock_ok 0 and its start as a monotonic instant of boot `boot_id`, so the worker can
    # re-time it once the clock is set (worker/clockwatch.py). Clips never use clock_ok 0.
    mono_start = FloatField(null=True)
    boot_id = CharField(null=True)
    clock_ok = IntegerField(default=1)

    class Meta:
        table_name = "segments"
        # A camera's latest segment for every status call (MAX(end_ts) WHERE camera = ?).
        indexes = ((("camera", "end_ts"), False),)


class VideoStatus:
    """A video's states; `venuecam.videos.transition` is the only writer (its table says
    which changes are allowed and why)."""

    PENDING = "pending"  # waiting to be cut
    LIVE = "live"  # being built and uploaded while its booking is played (venuecam.live)
    READY = "ready"  # cut; waiting for upload
    UPLOADED = "uploaded"  # all three objects stored and verified
    NOTIFIED = "notified"  # the platform acknowledged it
    CANCELLED = "cancelled"  # the booking was cancelled (or moved to a field this camera does not film)
    FAILED = "failed"  # a step dead-lettered; `venuecam queue retry` re-drives it
    EXPIRED = "expired"  # waited past queue.expiration_hours and the operator gave it up


class Video(BaseModel):
    """One clip: a booking x camera x video type, under one stable unique_id."""

    id = AutoField()
    unique_id = CharField(unique=True)  # e.g. BK-123456-CAMERA_A-full
    booking_id = CharField(index=True)
    camera = CharField()
    field_id = IntegerField(null=True)
    video_type = CharField(default="full")  # full | highlight
    status = CharField(default=VideoStatus.PENDING, index=True)
    status_msg = TextField(null=True)
    start_ts = FloatField()
    end_ts = FloatField()
    mp4_path = CharField(null=True)
    preview_path = CharField(null=True)
    thumb_path = CharField(null=True)
    duration_s = FloatField(null=True)
    size_bytes = BigIntegerField(null=True)
    sha256 = CharField(null=True)
    gaps_json = TextField(default="[]")  # [[start_ts, end_ts], ...] not covered by segments
    mp4_key = CharField(null=True)
    preview_key = CharField(null=True)
    thumb_key = CharField(null=True)
    mp4_url = TextField(null=True)
    preview_url = TextField(null=True)
    thumb_url = TextField(null=True)
    created_at = DateTimeField(default=utcnow)
    updated_at = DateTimeField(default=utcnow)
    # booking-api.md 2b: 1 for the first cut; +1 each time a booking change replaces a video the
    # platform may already hold. `replaces_sha256` is the MP4 that revision replaces.
    revision = IntegerField(default=1)
    replaces_sha256 = CharField(null=True)

    class Meta:
        table_name = "videos"

    @property
    def gaps(self) -> list[list[float]]:
        return json.loads(self.gaps_json or "[]")


class TaskType:
    CLIP = "clip"
    UPLOAD = "upload_r2"
    NOTIFY = "notify_ayo_api"
    SYNC = "sync"  # one attempt of a seed-002 sync job per claim; the job row holds its story


TASK_TYPES = (TaskType.CLIP, TaskType.UPLOAD, TaskType.NOTIFY, TaskType.SYNC)


class TaskStatus:
    PENDING = "pending"
    PROCESSING = "processing"
    COMPLETED = "completed"
    FAILED = "failed"  # dead letter: kept, re-driven by hand
    CANCELLED = "cancelled"  # the booking was cancelled, or the operator gave the work up
    # Written only by earlier releases, which stopped work older than queue.expiration_hours;
    # the worker revives such rows at start. Expired work now stays pending (ledger.overdue).
    EXPIRED = "expired"


class PendingTask(BaseModel):
    """Seed 000's `pending_tasks` ledger, extended. The row exists before work starts."""

    id = AutoField()
    task_type = CharField(index=True)
    task_data = TextField(default="{}")
    attempts = IntegerField(default=0)
    max_attempts = IntegerField(default=5)
    next_retry_at = DateTimeField(null=True, index=True)
    status = CharField(default=TaskStatus.PENDING, index=True)
    created_at = DateTimeField(default=utcnow)
    updated_at = DateTimeField(default=utcnow)
    error_msg = TextField(null=True)
    # --- extensions
    # One row per unit of work: "upload_r2:<unique_id>"; enqueueing again returns the row.
    unique_key = CharField(unique=True)
    booking_id = CharField(null=True, index=True)
    # Ordering: the booking's start (oldest first).
    priority_ts = FloatField(default=0.0)
    started_at = DateTimeField(null=True)
    heartbeat_at = DateTimeField(null=True)
    finished_at = DateTimeField(null=True)
    dispatched_at = DateTimeField(null=True)
    # Attempts that failed only because the device was offline (not counted in attempts).
    offline_failures = IntegerField(default=0)
    # Resumable upload state: {"key": ..., "upload_id": ..., "parts": [{"n":1,"etag":..}], ...}
    progress_json = TextField(default="{}")
    bytes_done = BigIntegerField(default=0)
    bytes_total = BigIntegerField(default=0)

    class Meta:
        table_name = "pending_tasks"
        # Covering index for the status counts (`ledger.counts()`), read on every status call.
        indexes = ((("task_type", "status"), False),)

    @property
    def data(self) -> dict[str, Any]:
        return json.loads(self.task_data or "{}")

    @property
    def progress(self) -> dict[str, Any]:
        return json.loads(self.progress_json or "{}")


class SyncJob(BaseModel):
    """Seed 002's background sync job: one per run, reused until forced."""

    id = AutoField()
    job_id = CharField(unique=True)  # e.g. sync-bookings-1699999999999
    job_type = CharField(index=True)  # handler registry key: "bookings", ...
    state = CharField(default="queued", index=True)  # queued | active | completed | failed
    progress = IntegerField(default=0)
    progress_json = TextField(default="{}")  # stage, message, offset, currentTotal, expectedTotal
    result_json = TextField(null=True)
    error_msg = TextField(null=True)
    attempts = IntegerField(default=0)
    requested_by = CharField(default="system")
    created_at = DateTimeField(default=utcnow)
    started_at = DateTimeField(null=True)
    finished_at = DateTimeField(null=True)
    heartbeat_at = DateTimeField(null=True)

    class Meta:
        table_name = "sync_jobs"


class JobLog(BaseModel):
    """Seed 003's `job_logs`: what a job said, with level and time."""

    id = AutoField()
    job_id = CharField(index=True)
    level = CharField(default="info")
    message = TextField()
    created_at = DateTimeField(default=utcnow)

    class Meta:
        table_name = "job_logs"


class ConnectivityLog(BaseModel):
    """Seed 004's `connectivity_log`: one row per status change or probe round."""

    id = AutoField()
    timestamp = DateTimeField(default=utcnow, index=True)
    status = CharField()  # ONLINE | OFFLINE
    latency = FloatField(null=True)  # seconds
    error_details = TextField(null=True)

    class Meta:
        table_name = "connectivity_log"


class State(BaseModel):
    """Small shared facts between processes (connectivity, LEDs, last sync), by key."""

    key = CharField(primary_key=True)
    value = TextField()
    updated_at = DateTimeField(default=utcnow)

    class Meta:
        table_name = "state"


ALL_MODELS: list[type[BaseModel]] = [
    Booking,
    Segment,
    Video,
    PendingTask,
    SyncJob,
    JobLog,
    ConnectivityLog,
    State,
]

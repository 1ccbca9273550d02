"""The worker's sweep of its cameras' multipart uploads that no state of this box holds.

Most leftovers are aborted when their key's upload starts again (storage/orphans.py); this
catches the rest: a booking cancelled while its upload was half done, an abort that failed
while the link was down. Run at worker start and every ten minutes, when online.

What the box holds: every ledger row that may still run (not completed, not cancelled: a
failed row is re-driven by hand and resumes its upload) and every live clip's state file.
When one of them cannot be read, nothing is aborted: an upload is kept when in doubt.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from venuecam import logs
from venuecam.errors import BadInputError, VenuecamError
from venuecam.live import state as live_state
from venuecam.models import PendingTask, TaskStatus
from venuecam.storage import kept
from venuecam.storage.keys import check_component
from venuecam.storage.orphans import Tracked, abort_untracked
from venuecam.worker import dispatch

if TYPE_CHECKING:
    from venuecam.config import Config

log = logging.getLogger("worker")


def tracked(cfg: Config) -> Tracked:
    """The upload ids and starting keys of every state of this box (BadInputError if one is unreadable)."""
    found = Tracked()
    rows = PendingTask.select(PendingTask.id, PendingTask.progress_json).where(
        PendingTask.status.not_in([TaskStatus.COMPLETED, TaskStatus.CANCELLED]),
        PendingTask.progress_json.contains("upload_id") | PendingTask.progress_json.contains("creating"),
    )
    for row in rows:
        try:
            found.add_state(json.loads(row.progress_json))
        except ValueError as e:
            raise BadInputError(f"ledger row {row.id}: unreadable upload progress ({e})") from None
    for path in sorted(cfg.clips_dir.glob(f"*/*/*{live_state.SUFFIX}")):
        found.add_state(live_state.load(path))
    return found


def owned_keys(cfg: Config) -> tuple[list[str], Callable[[str], bool]]:
    """The key prefixes to list (one per field of this box's cameras) and whether a key is
    this box's: a venue that outgrew one box has several under its prefix, each owning its
    cameras, whose keys (venue/field/date/booking/camera/file, storage/keys.py) say whose."""
    venue = check_component("venue_id", cfg.device.venue_id)
    cameras = {(str(c.field_id), c.name) for c in cfg.cameras}

    def mine(key: str) -> bool:
        parts = key.split("/")
        return len(parts) == 6 and parts[0] == venue and (parts[1], parts[4]) in cameras

    return sorted({f"{venue}/{field}/" for field, _ in cameras}), mine


def sweep(cfg: Config) -> list[tuple[str, str]]:
    """Abort this box's untracked uploads; return the aborted (key, upload id) pairs."""
    if not dispatch.online():
        return []
    prefixes, mine = owned_keys(cfg)
    try:
        with kept.upload_client(cfg) as client:
            gone = abort_untracked(client, cfg.storage.bucket, prefixes, lambda: tracked(cfg), mine)
    except BadInputError as e:
        log.warning("%s Left the store's unfinished uploads alone: %s", logs.UPLOAD, e)
        return []
    except VenuecamError as e:  # offline, a store error: the next sweep tries again
        log.info("%s Could not look for abandoned uploads: %s", logs.UPLOAD, e)
        return []
    if gone:
        log.warning("%s Aborted %d multipart upload(s) this box no longer tracks: %s",
                    logs.UPLOAD, len(gone), [key for key, _ in gone])  # fmt: skip
    return gone

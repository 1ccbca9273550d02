"""No multipart upload left behind in the store.

An upload the store started but the box never recorded holds its parts in the bucket, unseen
and billed, until R2's 7-day rule drops it. Three things make one: the answer to
CreateMultipartUpload lost to a dropped link (the store did it, botocore tries again and gets
a second id), a power cut between the store's answer and our save, and an abort that failed
(a video given up while the link was down). So an upload is started in three saved steps:

  1. the intent, `"creating": true`, saved with the key before the request goes;
  2. the id, saved as soon as the store answers;
  3. every other upload of that key aborted, then the intent cleared.

A resume that finds the intent still set does what is left of it. Only one upload of a key
runs at a time (handlers.handle_upload waits for an older revision's; the live path hands a
video back only after it stopped its own), so the others are all leftovers.

Uploads of keys the box will not upload again (a booking cancelled mid-upload, a failed
abort) are swept by `abort_untracked`: it lists the box's uploads first (its own cameras'
keys: a venue's boxes share its prefix, each owning its cameras) and reads its states
second, so an upload started in between is known by its intent or its id by then. It needs no clock: moto stamps every upload with one fixed date, and R2's clock is not
ours.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from venuecam import logs
from venuecam.storage.client import error_code, map_error

log = logging.getLogger(__name__)

CREATING = "creating"


@dataclass
class Tracked:
    """What the box's states hold: upload ids it resumes, keys whose upload is being started."""

    upload_ids: set[str] = field(default_factory=set)
    creating_keys: set[str] = field(default_factory=set)

    def add_state(self, state: Any) -> None:
        """Collect from an upload state (multipart's or the live path's), walking nested ones."""
        if isinstance(state, dict):
            if state.get("upload_id"):
                self.upload_ids.add(str(state["upload_id"]))
            if state.get(CREATING) and state.get("key"):
                self.creating_keys.add(str(state["key"]))
            for value in state.values():
                if isinstance(value, dict):
                    self.add_state(value)


def start_upload(
    client: Any,
    bucket: str,
    key: str,
    state: dict[str, Any],
    save: Callable[[], None],
    create: Callable[[], str],
) -> str:
    """The id of the multipart upload `state` describes for `key`, started by the three steps
    above (`create` makes it and returns its id); saves `state` through `save`."""
    if not state.get("upload_id"):
        state["key"] = key
        state[CREATING] = True
        save()
        state["upload_id"] = create()
        save()
    if state.get(CREATING):
        abort_others(client, bucket, key, keep=str(state["upload_id"]))
        state.pop(CREATING)
        save()
    return str(state["upload_id"])


def abort_others(client: Any, bucket: str, key: str, keep: str | None) -> list[str]:
    """Abort every incomplete upload of exactly `key` but `keep`; return the ids aborted."""
    gone = []
    for up in _uploads(client, bucket, key):
        if up["Key"] == key and up["UploadId"] != keep:
            _abort(client, bucket, up)
            gone.append(str(up["UploadId"]))
    if gone and keep is not None:
        log.info("%s aborted %d upload(s) of %s left behind by an earlier start", logs.UPLOAD, len(gone), key)
    return gone


def abort_untracked(
    client: Any,
    bucket: str,
    prefixes: Iterable[str],
    tracked: Callable[[], Tracked],
    mine: Callable[[str], bool] = lambda key: True,
) -> list[tuple[str, str]]:
    """Abort the incomplete uploads under `prefixes` whose key is `mine` and that no state of
    the box knows (`tracked` is asked after the listing); return the aborted (key, upload id)
    pairs."""
    listed = [up for prefix in prefixes for up in _uploads(client, bucket, prefix) if mine(str(up["Key"]))]
    if not listed:
        return []
    known = tracked()
    gone = []
    for up in listed:
        if up["UploadId"] in known.upload_ids or up["Key"] in known.creating_keys:
            continue
        _abort(client, bucket, up)
        gone.append((str(up["Key"]), str(up["UploadId"])))
    return gone


def _uploads(client: Any, bucket: str, prefix: str) -> Iterator[dict[str, Any]]:
    markers: dict[str, str] = {}
    while True:
        try:
            resp = client.list_multipart_uploads(Bucket=bucket, Prefix=prefix, **markers)
        except Exception as e:
            raise map_error(e, f"list_multipart_uploads {prefix}") from e
        yield from resp.get("Uploads", [])
        if not resp.get("IsTruncated"):
            return
        markers = {"KeyMarker": resp["NextKeyMarker"], "UploadIdMarker": resp["NextUploadIdMarker"]}


def _abort(client: Any, bucket: str, up: dict[str, Any]) -> None:
    try:
        client.abort_multipart_upload(Bucket=bucket, Key=up["Key"], UploadId=up["UploadId"])
    except Exception as e:
        if error_code(e) != "NoSuchUpload":
            raise map_error(e, f"abort_multipart_upload {up['Key']}") from e

"""A live clip's durable state: one JSON file beside its MP4, replaced atomically.

Owned by that clip's runner (`live.clip`); `venuecam status` only reads it. Written after
each appended segment and each acknowledged part, always after the bytes it describes are
on disk (`LiveMP4.flush`), so a power cut leaves a state that is true of the disk.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from venuecam.clips.files import fsync_dir
from venuecam.errors import BadInputError

SUFFIX = ".live.json"


def path_for(mp4_path: Path) -> Path:
    return mp4_path.with_name(mp4_path.stem + SUFFIX)


def load(path: Path) -> dict[str, Any] | None:
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    try:
        doc = json.loads(text)
    except ValueError as e:
        raise BadInputError(f"{path}: unreadable live state ({e})") from None
    if not isinstance(doc, dict):
        raise BadInputError(f"{path}: live state is not a JSON object")
    return doc


def save(path: Path, doc: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as f:
        json.dump(doc, f, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)

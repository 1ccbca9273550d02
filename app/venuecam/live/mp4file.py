"""The booking's MP4 as it grows on disk while the booking is played.

Layout: `ftyp`, then one `mdat` box per appended segment (its header written with the box's
real size: the whole segment is in hand when it is appended), then `moov` at the end.

Why this shape (rather than `moov` first, as the after-booking path writes, or fragmented
MP4): the object's SHA-256 and its multipart parts are computed and sent *while* it grows,
so every byte must be final when written. A `moov` at the front depends on every sample, and
re-reading a 1.8 GB file at the end takes over a minute on a Pi 3's SD card. Fragmented MP4
is append-only too, but browsers seek in it only with an index at the front (`sidx`; ffmpeg,
inside Chromium, reads `mfra` only when asked to): without one, a seek to the middle reads
half the file. A `moov` at the end is read with one range request and indexes every frame.
One box per segment (a 16-byte header every 10 s of video) means no byte is ever provisional:
every part can go the moment its bytes are on disk, and what is left for the booking's end is
only the last segment, the rest of the last part and the `moov`. (An earlier layout used
64 MiB boxes whose open box's header said its size only at the end: the part holding it
waited, and with it a part's worth of the tail.)

Durability: the file and the sample records (`<file>.samples`, fixed-size records) are only
appended; the caller persists `LiveMP4.checkpoint()` after `flush()`, and a restart
truncates both to the checkpoint, so a segment half-appended at a power cut is appended again.
A checkpoint taken after `finish()` says so (`sealed`): that file is final and a restart leaves
its bytes as they are.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from venuecam.errors import BadInputError
from venuecam.live import boxes, moov
from venuecam.live.fragments import Segment, Track

MIB = 1024 * 1024
_BOX_HEADER = 16  # 64-bit size form: one layout whatever a segment's size
_RECORD = struct.Struct(">QIIiB")  # offset, size, duration, cto, sync
FTYP = boxes.make(b"ftyp", b"isom", struct.pack(">I", 0x200), b"isom", b"iso2", b"avc1", b"mp41")
LAYOUT = 2  # one exact-size mdat box per segment; checkpoints without it: 64 MiB boxes


class StreamChanged(BadInputError):
    """A segment's codec or picture differs from the clip's (a camera reconfigured)."""


class LiveMP4:
    def __init__(self, path: Path, checkpoint: dict[str, Any] | None = None) -> None:
        self.path = Path(path)
        self.records_path = self.path.with_name(self.path.name + ".samples")
        self.track_path = self.path.with_name(self.path.name + ".track")
        self.track: Track | None = None
        self.sealed = False  # finish() wrote the moov: no byte changes from here
        self._sha = hashlib.sha256()  # over every byte of the file
        if checkpoint:
            self._resume(checkpoint)
        else:
            self._create()

    # ------------------------------------------------------------------ state

    def _create(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.samples = 0
        self.duration = 0  # track timescale
        with open(self.path, "wb") as f:
            f.write(FTYP)
        open(self.records_path, "wb").close()
        self.length = len(FTYP)
        self._sha.update(FTYP)

    def checkpoint(self) -> dict[str, Any]:
        return {"layout": LAYOUT, "length": self.length, "samples": self.samples,
                "duration": self.duration, "sealed": self.sealed}  # fmt: skip

    def _resume(self, cp: dict[str, Any]) -> None:
        try:
            self.length, self.samples = int(cp["length"]), int(cp["samples"])
            self.duration = int(cp["duration"])
            self.sealed = bool(cp.get("sealed", False))
            open_box = None if cp.get("layout") == LAYOUT or self.sealed else int(cp["box_start"])
        except (KeyError, TypeError, ValueError) as e:
            raise BadInputError(f"{self.path.name}: unreadable live checkpoint ({e})") from None
        size = self.path.stat().st_size if self.path.exists() else -1
        if size < self.length:
            raise BadInputError(f"{self.path.name}: {size} bytes on disk, the checkpoint says {self.length}")
        # Whatever was appended after the checkpoint is appended again.
        os.truncate(self.path, self.length)
        os.truncate(self.records_path, self.samples * _RECORD.size)
        if self.track_path.exists():
            self.track = _load_track(self.track_path)
        if open_box is not None:
            self._seal_old_box(open_box)
        # The hash is not saved: read the file once to rebuild it (only after a restart).
        if not self.sealed:
            with open(self.path, "rb") as f:
                for chunk in _chunks(f, 0, self.length):
                    self._sha.update(chunk)

    def _seal_old_box(self, box_start: int) -> None:
        """A checkpoint of the earlier layout: its open box's header was provisional (no part
        holding it was sent). Give it its real size, or drop it if it holds nothing yet."""
        if self.length - box_start <= _BOX_HEADER:
            self.length = box_start
            os.truncate(self.path, self.length)
            return
        with open(self.path, "r+b") as f:
            f.seek(box_start)
            f.write(_mdat_header(self.length - box_start))

    # ------------------------------------------------------------------ growing

    def append(self, seg: Segment) -> None:
        """The segment's samples at the end, in a box of their own; durable after `flush()`."""
        if self.sealed:
            raise BadInputError(f"{self.path.name}: finished; nothing can be appended")
        if self.track is None:
            self.track = seg.track
            _save_track(self.track_path, seg.track)
        elif not self.track.same_stream(seg.track):
            raise StreamChanged(f"{self.path.name}: the camera's stream changed (codec, size or timescale)")
        if not seg.samples:
            return
        payload = memoryview(seg.payload)[: sum(s.size for s in seg.samples)]
        header = _mdat_header(_BOX_HEADER + len(payload))
        records = bytearray()
        offset = self.length + _BOX_HEADER
        for s in seg.samples:
            records += _RECORD.pack(offset, s.size, s.duration, s.cto, int(s.sync))
            offset += s.size
            self.duration += s.duration
        with open(self.path, "r+b") as f:
            f.seek(self.length)
            f.write(header)
            f.write(payload)
        with open(self.records_path, "ab") as r:
            r.write(records)
        self._sha.update(header)
        self._sha.update(payload)
        self.length = offset
        self.samples += len(seg.samples)

    def flush(self) -> None:
        for p in (self.path, self.records_path):
            fd = os.open(p, os.O_RDONLY)
            try:
                os.fdatasync(fd)
            finally:
                os.close(fd)

    def read(self, start: int, end: int) -> bytes:
        with open(self.path, "rb") as f:
            f.seek(start)
            data = f.read(end - start)
        if len(data) != end - start:
            raise BadInputError(
                f"{self.path.name}: short read at {start} ({len(data)} of {end - start} bytes)"
            )
        return data

    # ------------------------------------------------------------------ the end

    def finish(self) -> tuple[int, str]:
        """Write the moov: (size, sha256). Idempotent only through the caller's checkpoint
        (call once per checkpoint)."""
        if self.sealed:
            raise BadInputError(f"{self.path.name}: finished already")
        if self.track is None or self.samples == 0:
            raise BadInputError(f"{self.path.name}: no frame was recorded for the clip")
        entries = [moov.Entry(*r[:4], bool(r[4])) for r in self.iter_records()]
        tail = moov.build(self.track, entries)
        with open(self.path, "r+b") as f:
            f.seek(self.length)
            f.write(tail)
            f.truncate()
        self._sha.update(tail)
        self.length += len(tail)
        self.sealed = True
        self.flush()
        return self.length, self._sha.hexdigest()

    def iter_records(self) -> Iterator[tuple[int, int, int, int, int]]:
        data = self.records_path.read_bytes()[: self.samples * _RECORD.size]
        return (_RECORD.unpack_from(data, i) for i in range(0, len(data), _RECORD.size))

    def remove(self) -> None:
        for p in (self.path, self.records_path, self.track_path):
            p.unlink(missing_ok=True)


def _mdat_header(size: int) -> bytes:
    return struct.pack(">I4sQ", 1, b"mdat", size)


def _chunks(f: Any, start: int, end: int, step: int = 4 * MIB) -> Iterator[bytes]:
    f.seek(start)
    left = end - start
    while left > 0:
        data = f.read(min(step, left))
        if not data:
            raise BadInputError(f"short read at {end - left}")
        left -= len(data)
        yield data


def _save_track(path: Path, track: Track) -> None:
    doc = {k: base64.b64encode(v).decode() if isinstance(v, bytes) else v for k, v in vars(track).items()}
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(doc))
    fd = os.open(tmp, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def _load_track(path: Path) -> Track:
    try:
        doc = json.loads(path.read_text())
        return Track(
            timescale=int(doc["timescale"]), width=int(doc["width"]), height=int(doc["height"]),
            **{k: base64.b64decode(doc[k]) for k in ("handler", "media_header", "dinf", "stsd")},
        )  # fmt: skip
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise BadInputError(f"{path.name}: unreadable track description ({e})") from None

"""The booking's MP4 as it grows on disk while the booking is played.

Layout: `ftyp`, then the samples in `mdat` boxes of exactly BOX_BYTES each, then (from
`close_box()`, called near the booking's end) one `mdat` box per segment, then `moov` at the end.

Why this shape (rather than `moov` first, as the after-booking path writes, or fragmented
MP4): the object's SHA-256 and its multipart parts are computed and sent *while* it grows,
so every byte must be final when written. A `moov` at the front depends on every sample, and
re-reading a 1.8 GB file at the end takes over a minute on a Pi 3's SD card. Fragmented MP4
is append-only too, but browsers seek in it only with an index at the front (`sidx`; ffmpeg,
inside Chromium, reads `mfra` only when asked to): without one, a seek to the middle reads
half the file. A `moov` at the end is read with one range request and indexes every frame.
The `mdat` boxes have a fixed size, so each box header is known when the box opens; only the
open box's header is provisional (it says BOX_BYTES until the box is closed with its real
size), and the part holding it waits. Near the end that would hold a part back into the
booking's tail, so `close_box()` seals the open box there and every later segment gets a box
of its own, its header written with its real size (the whole segment is in hand): from then
on no byte is provisional. Why not a box per segment throughout: a browser walks the top-level
boxes to the `moov`, one range request per box (360 for an hour of 10 s segments); with
64 MiB boxes an hour is ~30. A sample that does not fit in a box's rest is put in the next
box and the rest left as zeros (at most one frame per box).

Durability: the file and the sample records (`<file>.samples`, fixed-size records) are only
appended; the caller persists `LiveMP4.checkpoint()` after `flush()`, and a restart
truncates both to the checkpoint, so a segment half-appended at a power cut is appended again.
A checkpoint taken after `finish()` says so (`sealed`): that file is final and a restart leaves
its bytes as they are (its last box's header holds the real size, not the provisional one).
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
BOX_BYTES = 64 * MIB
_BOX_HEADER = 16  # 64-bit size form: the size may need it
_RECORD = struct.Struct(">QIIiB")  # offset, size, duration, cto, sync
FTYP = boxes.make(b"ftyp", b"isom", struct.pack(">I", 0x200), b"isom", b"iso2", b"avc1", b"mp41")


class StreamChanged(BadInputError):
    """A segment's codec or picture differs from the clip's (a camera reconfigured)."""


class LiveMP4:
    def __init__(
        self, path: Path, checkpoint: dict[str, Any] | None = None, box_bytes: int | None = None
    ) -> None:
        self.path = Path(path)
        self.records_path = self.path.with_name(self.path.name + ".samples")
        self.track_path = self.path.with_name(self.path.name + ".track")
        self.box_bytes = box_bytes or BOX_BYTES
        self.track: Track | None = None
        self.sealed = False  # finish() wrote the moov: no open box, no byte changes from here
        self.box_start: int | None = None  # the open fixed-size box; None: a box per segment
        self._sha = hashlib.sha256()  # over every byte before the open box (all, if none is open)
        self._spec = hashlib.sha256()  # _sha, then the open box as it stands (header: full size)
        if checkpoint:
            self._resume(checkpoint)
        else:
            self._create()

    # ------------------------------------------------------------------ state

    def _create(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.length = 0
        self.samples = 0
        self.duration = 0  # track timescale
        with open(self.path, "wb") as f:
            f.write(FTYP)
        open(self.records_path, "wb").close()
        self.length = len(FTYP)
        self._sha.update(FTYP)
        self._open_box()

    def open_box(self) -> None:
        """Open a fixed-size box for the segments from here on (far from the booking's end)."""
        if self.box_start is not None:
            return
        self._open_box()

    def _open_box(self) -> None:
        self.box_start = self.length
        header = _mdat_header(self.box_bytes)
        with open(self.path, "r+b") as f:
            f.seek(self.length)
            f.write(header)
        self.length += _BOX_HEADER
        self._spec = self._sha.copy()
        self._spec.update(header)

    def checkpoint(self) -> dict[str, Any]:
        return {"length": self.length, "samples": self.samples, "duration": self.duration,
                "box_start": self.box_start, "box_bytes": self.box_bytes, "sealed": self.sealed}  # fmt: skip

    def _resume(self, cp: dict[str, Any]) -> None:
        try:
            self.length, self.samples = int(cp["length"]), int(cp["samples"])
            self.duration = int(cp["duration"])
            self.box_start = None if cp["box_start"] is None else int(cp["box_start"])
            self.box_bytes = int(cp.get("box_bytes", self.box_bytes))
            self.sealed = bool(cp.get("sealed", False))
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
        if self.sealed:
            # Finished: its boxes' headers have their real sizes and the moov follows. Writing
            # a provisional header back would change bytes the finished SHA-256 covers.
            return
        # The hashes are not saved: read the file once to rebuild them (only after a restart).
        if self.box_start is None:
            with open(self.path, "rb") as f:
                for chunk in _chunks(f, 0, self.length):
                    self._sha.update(chunk)
            return
        # A `close_box` cut short before its checkpoint wrote the box's real size: the open
        # box's header is provisional again (the box goes on filling).
        with open(self.path, "r+b") as f:
            f.seek(self.box_start)
            f.write(_mdat_header(self.box_bytes))
        with open(self.path, "rb") as f:
            for chunk in _chunks(f, 0, self.box_start):
                self._sha.update(chunk)
            self._spec = self._sha.copy()
            self._spec.update(_mdat_header(self.box_bytes))
            for chunk in _chunks(f, self.box_start + _BOX_HEADER, self.length):
                self._spec.update(chunk)

    @property
    def provisional(self) -> tuple[int, int] | None:
        """The byte range not final yet (the open box's header), if any."""
        if self.box_start is None:
            return None
        return self.box_start, self.box_start + _BOX_HEADER

    # ------------------------------------------------------------------ growing

    def append(self, seg: Segment) -> None:
        """The segment's samples at the end; not durable until `flush()`."""
        if self.sealed:
            raise BadInputError(f"{self.path.name}: finished; nothing can be appended")
        if self.track is None:
            self.track = seg.track
            _save_track(self.track_path, seg.track)
        elif not self.track.same_stream(seg.track):
            raise StreamChanged(f"{self.path.name}: the camera's stream changed (codec, size or timescale)")
        if self.box_start is None:
            self._append_own_box(seg)
            return
        records = bytearray()
        payload = memoryview(seg.payload)
        pos = 0
        with open(self.path, "r+b") as f:
            f.seek(self.length)
            for s in seg.samples:
                if s.size + _BOX_HEADER > self.box_bytes:
                    raise BadInputError(f"{self.path.name}: a {s.size}-byte frame does not fit a box")
                if self.length + s.size > self.box_start + self.box_bytes:
                    self._close_full_box(f)
                data = payload[pos : pos + s.size]
                f.write(data)
                self._spec.update(data)
                records += _RECORD.pack(self.length, s.size, s.duration, s.cto, int(s.sync))
                self.length += s.size
                self.samples += 1
                self.duration += s.duration
                pos += s.size
        with open(self.records_path, "ab") as r:
            r.write(records)

    def _append_own_box(self, seg: Segment) -> None:
        """The segment in a box of its own, its header with the real size: nothing provisional."""
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

    def _close_full_box(self, f: Any) -> None:
        assert self.box_start is not None
        pad = self.box_start + self.box_bytes - self.length
        zeros = bytes(pad)
        f.write(zeros)
        self._spec.update(zeros)
        self.length += pad
        self._sha = self._spec  # its header said the full size: it was right
        self.box_start = self.length
        header = _mdat_header(self.box_bytes)
        f.write(header)
        self.length += _BOX_HEADER
        self._spec = self._sha.copy()
        self._spec.update(header)

    @property
    def box_open(self) -> bool:
        return self.box_start is not None

    def close_box(self) -> None:
        """End the open box where the file ends now (its header gets its real size); every
        later segment gets a box of its own. Near a booking's end: the part holding the old
        header can then go during the booking instead of after it, and no later part waits.
        Costs one read of the box (page cache) for the hash."""
        if self.box_start is None:
            return
        # An empty box stays as a 16-byte box: truncating its header away would leave the file
        # shorter than the last checkpoint says until the next one is saved.
        self._sha = self._seal_open_box()
        self.box_start = None

    def _seal_open_box(self) -> Any:
        """Write the open box's real size into its header; the hash of everything up to the
        file's end (the box read back once: its header was provisional when it was written)."""
        assert self.box_start is not None
        header = _mdat_header(self.length - self.box_start)
        sha = self._sha.copy()
        sha.update(header)
        with open(self.path, "r+b") as f:
            f.seek(self.box_start)
            f.write(header)
            for chunk in _chunks(f, self.box_start + _BOX_HEADER, self.length):
                sha.update(chunk)
        return sha

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
        """Close the open box at its real size and write the moov: (size, sha256). Idempotent
        only through the caller's checkpoint (call once per checkpoint)."""
        if self.sealed:
            raise BadInputError(f"{self.path.name}: finished already")
        if self.track is None or self.samples == 0:
            raise BadInputError(f"{self.path.name}: no frame was recorded for the clip")
        entries = [moov.Entry(*r[:4], bool(r[4])) for r in self.iter_records()]
        tail = moov.build(self.track, entries)
        sha = self._sha.copy() if self.box_start is None else self._seal_open_box()
        with open(self.path, "r+b") as f:
            f.seek(self.length)
            f.write(tail)
            f.truncate()
        sha.update(tail)
        self.length += len(tail)
        self.sealed = True
        self.flush()
        return self.length, sha.hexdigest()

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

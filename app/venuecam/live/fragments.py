"""ffmpeg's fragmented MP4 of one segment, read back as a track description and samples.

The live path asks ffmpeg to stream-copy each closed segment to a fragmented MP4 on a pipe
(`remux.py`): ffmpeg does the demuxing, Annex B to length-prefixed NAL units and the codec
configuration box (avcC/hvcC), and we only read its boxes: the init segment's sample
description and timescale, then each fragment's `trun` (per sample: size, duration, flags,
composition offset) and the sample bytes in its `mdat`. Reading boxes costs a few
microseconds per sample, so the per-segment cost is ffmpeg's own (measured in `make bench`).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from venuecam.errors import BadInputError
from venuecam.live import boxes

# trun flags
_DATA_OFFSET = 0x1
_FIRST_FLAGS = 0x4
_DURATION = 0x100
_SIZE = 0x200
_FLAGS = 0x400
_CTO = 0x800
# tfhd flags
_BASE_OFFSET = 0x1
_DESC_INDEX = 0x2
_DEF_DURATION = 0x8
_DEF_SIZE = 0x10
_DEF_FLAGS = 0x20
_NON_SYNC = 0x10000  # sample_is_non_sync_sample, in sample flags


@dataclass(frozen=True)
class Track:
    """What a progressive MP4 needs to describe the track (taken from ffmpeg's init segment)."""

    timescale: int
    handler: bytes  # the hdlr box, whole
    media_header: bytes  # vmhd (video) box, whole
    dinf: bytes  # the dinf box, whole
    stsd: bytes  # the sample description box, whole: codec and its configuration
    width: int  # 16.16 fixed point, as in tkhd
    height: int

    def same_stream(self, other: Track) -> bool:
        """Can samples described by `other` follow ours in one track?"""
        return (self.timescale, _description_key(self.stsd), self.width, self.height) == (
            other.timescale, _description_key(other.stsd), other.width, other.height,
        )  # fmt: skip


def _description_key(stsd: bytes) -> bytes:
    """The sample description as a decoder sees it. Each segment's H.264 parameter sets come
    from its own keyframes, and an MPEG-TS copy may keep an access unit's trailing zero bytes
    on the last one (a PPS of `68 ef 8f 19 21 90` in one segment, `... 90 00` in the next):
    the same parameters, so trailing zeros of each parameter set do not count. The `btrt`
    box (bitrates measured over the one segment) does not count either."""
    entry = boxes.find(stsd, "stsd")
    if entry is None:
        return stsd
    body = stsd[entry.body + 8 :]  # version/flags, entry count
    if body[4:8] not in (b"avc1", b"avc3"):
        return body
    # VisualSampleEntry: 8 (box header) + 78 bytes, then its child boxes (avcC, pasp, btrt...).
    key = bytearray(body[8:86])
    for child in boxes.iter_boxes(body, 86, int.from_bytes(body[0:4], "big")):
        if child.kind == b"avcC":
            key += b"avcC" + _avcc_key(child.payload(body))
        elif child.kind != b"btrt":
            key += child.raw(body)
    return bytes(key)


def _avcc_key(avcc: bytes) -> bytes:
    out = bytearray(avcc[:5])
    pos, groups = 5, 2
    for g in range(groups):
        count = avcc[pos] & (0x1F if g == 0 else 0xFF)
        out.append(count)
        pos += 1
        for _ in range(count):
            n = int.from_bytes(avcc[pos : pos + 2], "big")
            out += avcc[pos + 2 : pos + 2 + n].rstrip(b"\0") + b"|"
            pos += 2 + n
    return bytes(out)


@dataclass(frozen=True)
class Sample:
    size: int
    duration: int  # in the track's timescale
    cto: int  # composition time offset (pts - dts)
    sync: bool


@dataclass
class Segment:
    """One segment's track and samples; `payload` holds the samples' bytes back to back."""

    track: Track
    samples: list[Sample] = field(default_factory=list)
    payload: bytearray = field(default_factory=bytearray)

    @property
    def duration(self) -> int:
        return sum(s.duration for s in self.samples)


def parse(data: bytes) -> Segment:
    """Parse ffmpeg's fragmented MP4 (one video track). BadInputError names what is wrong."""
    view = memoryview(data)
    moov = boxes.find(view, "moov")
    if moov is None:
        raise BadInputError("fragmented MP4: no moov (init segment)")
    traks = boxes.children(view, moov, b"trak")
    if len(traks) != 1:
        raise BadInputError(f"fragmented MP4: expected one track, found {len(traks)}")
    seg = Segment(_track(view, traks[0]))
    for box in boxes.iter_boxes(view):
        if box.kind == b"moof":
            _fragment(view, box, seg)
    if not seg.samples:
        raise BadInputError("fragmented MP4: no samples")
    return seg


def _need(box: boxes.Box | None, what: str) -> boxes.Box:
    if box is None:
        raise BadInputError(f"fragmented MP4: no {what}")
    return box


def _track(view: memoryview, trak: boxes.Box) -> Track:
    tkhd = _need(boxes.find(view, "tkhd", trak.body, trak.end), "tkhd")
    mdia = _need(boxes.find(view, "mdia", trak.body, trak.end), "mdia")
    mdhd = _need(boxes.find(view, "mdhd", mdia.body, mdia.end), "mdhd")
    hdlr = _need(boxes.find(view, "hdlr", mdia.body, mdia.end), "hdlr")
    minf = _need(boxes.find(view, "minf", mdia.body, mdia.end), "minf")
    vmhd = _need(boxes.find(view, "vmhd", minf.body, minf.end), "vmhd (a video track)")
    dinf = _need(boxes.find(view, "dinf", minf.body, minf.end), "dinf")
    stsd = _need(boxes.find(view, "stbl/stsd", minf.body, minf.end), "stsd")
    version, _ = boxes.full_header(view, mdhd)
    at = mdhd.body + 4 + (16 if version == 1 else 8)
    (timescale,) = struct.unpack_from(">I", view, at)
    if timescale <= 0:
        raise BadInputError("fragmented MP4: track timescale is 0")
    width, height = struct.unpack_from(">II", view, tkhd.end - 8)
    return Track(timescale, hdlr.raw(view), vmhd.raw(view), dinf.raw(view), stsd.raw(view), width, height)


def _fragment(view: memoryview, moof: boxes.Box, seg: Segment) -> None:
    for traf in boxes.children(view, moof, b"traf"):
        tfhd = _need(boxes.find(view, "tfhd", traf.body, traf.end), "tfhd")
        _, tf_flags = boxes.full_header(view, tfhd)
        pos = tfhd.body + 8  # version/flags, track_ID
        base = moof.start
        if tf_flags & _BASE_OFFSET:
            (base,) = struct.unpack_from(">Q", view, pos)
            pos += 8
        if tf_flags & _DESC_INDEX:
            pos += 4
        def_duration = def_size = def_flags = 0
        if tf_flags & _DEF_DURATION:
            (def_duration,) = struct.unpack_from(">I", view, pos)
            pos += 4
        if tf_flags & _DEF_SIZE:
            (def_size,) = struct.unpack_from(">I", view, pos)
            pos += 4
        if tf_flags & _DEF_FLAGS:
            (def_flags,) = struct.unpack_from(">I", view, pos)
        data_end = base
        for trun in boxes.children(view, traf, b"trun"):
            version, flags = boxes.full_header(view, trun)
            (count,) = struct.unpack_from(">I", view, trun.body + 4)
            pos = trun.body + 8
            offset = data_end
            if flags & _DATA_OFFSET:
                (rel,) = struct.unpack_from(">i", view, pos)
                offset = base + rel
                pos += 4
            first_flags = None
            if flags & _FIRST_FLAGS:
                (first_flags,) = struct.unpack_from(">I", view, pos)
                pos += 4
            for i in range(count):
                duration, size, sflags, cto = def_duration, def_size, def_flags, 0
                if flags & _DURATION:
                    (duration,) = struct.unpack_from(">I", view, pos)
                    pos += 4
                if flags & _SIZE:
                    (size,) = struct.unpack_from(">I", view, pos)
                    pos += 4
                if flags & _FLAGS:
                    (sflags,) = struct.unpack_from(">I", view, pos)
                    pos += 4
                elif i == 0 and first_flags is not None:
                    sflags = first_flags
                if flags & _CTO:
                    (cto,) = struct.unpack_from(">i" if version else ">I", view, pos)
                    pos += 4
                if pos > trun.end or offset + size > len(view):
                    raise BadInputError("fragmented MP4: a trun runs past its box or its data")
                seg.samples.append(Sample(size, duration, cto, not sflags & _NON_SYNC))
                seg.payload += view[offset : offset + size]
                offset += size
            data_end = offset

"""The MPEG-TS header reader the assembler uses instead of ffprobe for every segment."""

from __future__ import annotations

from pathlib import Path

from venuecam.media import tsinfo


def ts_packet(payload: bytes, pusi: bool = True, pid: int = 0x100) -> bytes:
    header = bytes([0x47, (0x40 if pusi else 0) | (pid >> 8), pid & 0xFF, 0x10])
    return (header + payload).ljust(188, b"\xff")


def pes_with_pts(pts: int, stream_id: int = 0xE0) -> bytes:
    p = bytes(
        [
            0x21 | ((pts >> 29) & 0x0E),
            (pts >> 22) & 0xFF,
            0x01 | ((pts >> 14) & 0xFE),
            (pts >> 7) & 0xFF,
            0x01 | ((pts << 1) & 0xFE),
        ]
    )
    return b"\x00\x00\x01" + bytes([stream_id, 0, 0, 0x80, 0x80, 5]) + p


def test_first_video_pts_skips_tables_and_audio(tmp_path: Path) -> None:
    f = tmp_path / "a.ts"
    pat = ts_packet(b"\x00" + b"\x00" * 20, pid=0)
    audio = ts_packet(pes_with_pts(1234, stream_id=0xC0), pid=0x101)
    video = ts_packet(pes_with_pts(8_589_000_000))  # near the 33-bit limit
    f.write_bytes(pat + audio + video + ts_packet(b"", pusi=False))
    assert tsinfo.first_video_pts(f) == 8_589_000_000
    assert tsinfo.head_info(f).has_audio


def test_first_video_pts_of_bad_files_is_none(tmp_path: Path) -> None:
    empty = tmp_path / "empty.ts"
    empty.write_bytes(b"")
    text = tmp_path / "text.ts"
    text.write_bytes(b"hello, not a transport stream\n" * 100)
    no_video = tmp_path / "novideo.ts"
    no_video.write_bytes(ts_packet(pes_with_pts(90_000, stream_id=0xC0)) * 3)
    assert tsinfo.first_video_pts(empty) is None
    assert tsinfo.first_video_pts(text) is None
    assert tsinfo.first_video_pts(no_video) is None
    assert tsinfo.first_video_pts(tmp_path / "missing.ts") is None


def test_frame_rate_from_the_head(tmp_path: Path) -> None:
    f = tmp_path / "a.ts"
    f.write_bytes(b"".join(ts_packet(pes_with_pts(90_000 + i * 3000)) for i in range(31)))
    info = tsinfo.head_info(f)
    assert info.fps == 30.0 and not info.has_audio

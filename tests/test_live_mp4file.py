"""The growing live MP4's layout (venuecam.live.mp4file): fixed-size boxes far from the end, a
box per segment near it, and a file that is whole (plays, its SHA-256 what was computed as it
grew) whichever way it was built, also across a restart. Real fragments: ffmpeg's own."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import pytest

from venuecam.clips.assemble import top_level_atoms
from venuecam.live import fragments, mp4file

BOX = 64 * 1024  # small boxes: a few segments fill one


@pytest.fixture(scope="module")
def segment(tmp_path_factory: pytest.TempPathFactory) -> fragments.Segment:
    out = tmp_path_factory.mktemp("frag") / "seg.mp4"
    subprocess.run(
        ["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=10", "-t", "2",
         "-c:v", "libx264", "-g", "10", "-b:v", "300k", "-movflags", "frag_keyframe+empty_moov+default_base_moof",
         "-f", "mp4", str(out)],
        check=True, timeout=60,
    )  # fmt: skip
    return fragments.parse(out.read_bytes())


def whole(path: Path, size: int, sha: str) -> list[str]:
    data = path.read_bytes()
    assert len(data) == size and hashlib.sha256(data).hexdigest() == sha
    errors = subprocess.run(["ffmpeg", "-v", "error", "-i", str(path), "-f", "null", "-"],
                            capture_output=True, text=True, timeout=60).stderr  # fmt: skip
    assert errors == ""
    return [k for k, _, _ in top_level_atoms(path)]


def test_near_the_end_each_segment_gets_a_box_of_its_own_and_nothing_is_held(
    tmp_path: Path, segment: fragments.Segment
) -> None:
    f = mp4file.LiveMP4(tmp_path / "v.mp4", box_bytes=BOX)
    for _ in range(3):
        f.append(segment)
    assert f.provisional is not None  # the open box's header: its part waits
    f.close_box()
    assert f.provisional is None and not f.box_open
    for _ in range(2):
        f.append(segment)
    assert f.provisional is None
    size, sha = f.finish()
    kinds = whole(f.path, size, sha)
    boxes_fixed = -(-3 * len(segment.payload) // BOX)
    assert kinds[0] == "ftyp" and kinds[-1] == "moov"
    assert boxes_fixed + 2 <= kinds.count("mdat") <= boxes_fixed + 3


def sealed_then_one_more(path: Path, segment: fragments.Segment) -> mp4file.LiveMP4:
    """A segment in a fixed box, the box sealed (near the end), a segment in a box of its own."""
    f = mp4file.LiveMP4(path, box_bytes=BOX)
    f.append(segment)
    f.close_box()
    f.append(segment)
    return f


def test_a_restart_after_the_box_was_sealed_goes_on_from_the_checkpoint(
    tmp_path: Path, segment: fragments.Segment
) -> None:
    f = sealed_then_one_more(tmp_path / "v.mp4", segment)
    f.flush()
    cp = f.checkpoint()
    assert cp["box_start"] is None
    f.append(segment)  # half-appended at a power cut: not in the checkpoint
    with open(f.path, "ab") as out:
        out.write(b"\xde\xad" * 100)
    again = mp4file.LiveMP4(tmp_path / "v.mp4", checkpoint=cp)
    assert again.length == cp["length"] and again.provisional is None
    again.append(segment)
    size, sha = again.finish()
    assert whole(again.path, size, sha).count("mdat") == 3


def test_a_booking_extended_far_past_its_end_opens_a_fixed_box_again(
    tmp_path: Path, segment: fragments.Segment
) -> None:
    f = sealed_then_one_more(tmp_path / "v.mp4", segment)
    f.open_box()
    assert f.provisional == (f.length - 16, f.length)
    for _ in range(4):
        f.append(segment)
    f.flush()
    cp = f.checkpoint()
    again = mp4file.LiveMP4(tmp_path / "v.mp4", checkpoint=cp)  # a restart inside the new box
    again.append(segment)
    size, sha = again.finish()
    assert whole(again.path, size, sha)[-1] == "moov"
    assert again.samples == 7 * len(segment.samples)

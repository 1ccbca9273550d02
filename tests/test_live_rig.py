"""The live bench's rig (tests/live_rig.py) end to end: one short booking recorded, synced
from the platform, cut (live or after the booking: whichever path the config chooses) and
delivered through the netns link shaped to 20 Mbit/s / 40 ms, then every figure the bench
takes checked against what a user would find: the notified MP4 in the bucket byte for byte.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from live_rig import Scenario, percentile, run
from netns import missing_requirement


def test_percentile_interpolates_between_ranks() -> None:
    assert percentile([3.0], 95) == 3.0
    assert percentile([1.0, 2.0, 3.0, 4.0, 5.0], 50) == 3.0
    assert percentile([10.0, 20.0], 95) == pytest.approx(19.5)
    with pytest.raises(ValueError):
        percentile([], 95)


@pytest.mark.root
@pytest.mark.slow
def test_one_short_booking_through_the_shaped_link(tmp_path: Path) -> None:
    if why := missing_requirement():
        pytest.skip(why)
    # Small and quick: 1 Mbit/s at 640x360 for 20 s, 2 s segments, a 3 s grace.
    scn = Scenario(booking_s=20, width=640, height=360, fps=15, bitrate_kbps=1000, segment_seconds=2,
                   grace_s=3, lead_s=8, deliver_timeout_s=120)  # fmt: skip
    t0 = time.monotonic()
    res = run(scn, tmp_path)
    (rnd,) = res.rounds
    (video,) = rnd.videos
    # The rig checked the bucket against the notification; check its record of it too.
    assert len(video.sha256) == 64 and video.size > 0
    assert video.made_by == scn.path  # the path the config chose (live where clips.live exists)
    assert video.stored_bytes > video.size  # preview and thumbnail as well
    assert 0 < video.ready_s < 90, video.ready_s
    assert rnd.end_ts - rnd.start_ts == 20
    assert 0 <= video.segment_wait_s <= 2 + 0.5, video.segment_wait_s  # 2 s segments
    assert 0 < rnd.tail_tx_bytes <= rnd.tx_bytes
    # What was recorded is what was asked for, within x264's and MPEG-TS's margins.
    assert 0.7 < video.recorded_mbit < 1.4, video.recorded_mbit
    # Every stored byte crossed the veth once at least; headers and a retry or two, no more.
    assert 1.0 < res.wire_overhead() < 1.3, res.wire_overhead()
    assert rnd.idle_tx_bytes_per_s < 20_000
    # The worker's CPU was read: something (syncs, probes, ffmpeg) and less than two cores.
    assert 0 < rnd.cpu_booking_s <= rnd.cpu_total_s < 2 * (time.monotonic() - t0)
    assert res.cpu_s_per_hour() == pytest.approx(rnd.cpu_booking_s * 3600 / 20)

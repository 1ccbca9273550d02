"""The soak's checker can fail: a short real run (the stack under supervisord, the moto
server, the platform simulator) with one delivery deliberately dropped (its upload never
queued) reports exactly that video as lost, and nothing else."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from resilience_rig import BUCKET, MIB, Stack, bucket_objects, wait_until
from soak_check import FIELDS, figures, passed, write


@pytest.fixture
def stack(tmp_path: Path, s3: Any, platform: Any) -> Iterator[Stack]:
    s = Stack(tmp_path, s3.endpoint, platform.url)
    yield s
    s.stop()
    s.close_db()


def test_one_dropped_delivery_is_reported_as_lost(
    stack: Stack, s3: Any, platform: Any, tmp_path: Path
) -> None:
    clips = [stack.make_clip(f"BK-SOAK-{i}", MIB, enqueue=i != 1) for i in range(3)]  # BK-SOAK-1 dropped
    stack.start()
    delivered = {clips[0].unique_id, clips[2].unique_id}
    wait_until(
        "the other two notified",
        lambda: delivered <= {n["unique_id"] for n in platform.notifications() if n["http_status"] == 201},
        60,
    )
    client = s3.client()
    notes = platform.summary()["notifications"]
    orphans = len(client.list_multipart_uploads(Bucket=BUCKET).get("Uploads", []))
    result = figures(
        {c.unique_id: c.sha256 for c in clips}, notes, bucket_objects(client), orphans, bookings=3
    )
    assert (result["videos_expected"], result["videos_delivered"], result["lost"]) == (3, 2, 1)
    assert result["lost_ids"] == [clips[1].unique_id]
    assert (result["duplicated"], result["sha256_mismatches"], result["orphan_uploads"]) == (0, 0, 0)
    assert not passed(result)
    out = tmp_path / "soak.json"
    write(result, out)
    saved = json.loads(out.read_text())
    assert set(saved) == set(FIELDS) and all(isinstance(v, int | float) for v in saved.values())
    # Counted as the checker counts it: the same record with a duplicate is a duplicate.
    twice = figures({c.unique_id: c.sha256 for c in clips}, notes + notes[-1:], bucket_objects(client), 0, 3)
    assert twice["duplicated"] == 1


def test_planned_power_cuts_never_come_closer_than_the_gap() -> None:
    import random

    from soak import plan_faults

    # Two cuts a round over 50 min do not fit 45 s apart: the extra ones are left out, not
    # piled up at the end (they were: 124 planned, 0.3 s apart).
    for share, gap in ((2, 45.0), (1, 35.0), (2, 12.0)):
        plan = plan_faults(random.Random(1313), 3009, 4.0, share, gap)
        cuts = [t for t, k in plan if k == "power_cut"]
        assert len(cuts) >= 50 and min(b - a for a, b in zip(cuts, cuts[1:], strict=False)) >= gap, (
            share,
            gap,
        )
        assert len(plan) > 600 and {k for _, k in plan} >= {"link_cut", "disk_fill", "program_kill"}


def test_a_soak_that_filmed_nothing_or_little_does_not_pass() -> None:
    """Seen: a run whose bookings were all judged "no footage" (the stack checked before they
    were played) passed with 0 expected and 0 delivered."""
    from soak import verdict_ok

    good = {"lost": 0, "duplicated": 0, "sha256_mismatches": 0, "orphan_uploads": 0, "unexpected_deliveries": 0,
            "failed_tasks": 0, "integrity_ok": 1, "platform_409s": 0, "late_replies": 0,
            "videos_expected": 90, "no_footage": 10}  # fmt: skip
    assert verdict_ok(good)
    assert not verdict_ok({**good, "videos_expected": 0, "no_footage": 143})
    assert not verdict_ok({**good, "videos_expected": 60, "no_footage": 40})
    assert not verdict_ok({**good, "lost": 1})

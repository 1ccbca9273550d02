"""The soak in `make test`, short: the same code as `make soak` (tests/soak.py) with a few
dozen bookings and a few of each fault, then the same verdict. It can fail: the checker
itself is shown to catch a dropped delivery in tests/test_soak_check.py."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from netns import missing_requirement
from soak import Soak, report, verdict_ok

pytestmark = [pytest.mark.slow, pytest.mark.root]


def test_a_short_soak_loses_nothing(tmp_path: Path) -> None:
    why = missing_requirement()
    if why:
        pytest.skip(why)
    seed = int(os.environ.get("SOAK_SEED") or 13)
    # With one power cut per round, a round of the bag is 11 faults: two rounds while the
    # bookings run (the planned schedule keeps its pace; 0.8 s and two cuts a round left most
    # bookings wholly in a reboot).
    result = Soak(
        tmp_path, seed, bookings=20, cameras=2, spacing=0.8, fault_interval=1.2, power_cut_share=1, power_cut_gap=12.0,
        heal_timeout=120,
    ).run()  # fmt: skip
    report(result, None)
    assert verdict_ok(result), {k: v for k, v in result.items() if v}
    assert result["platform_409s"] >= result["late_replies"]
    assert result["videos_delivered"] >= 8
    assert min(result[k] for k in ("power_cuts", "program_kills", "link_faults", "store_faults",
                                   "platform_faults", "disk_fills")) >= 1  # fmt: skip

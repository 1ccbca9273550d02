"""The soak's verdict (issue 13): from the platform's record, the bucket and the device's
databases, how many videos were expected, delivered, lost, duplicated, stored with the wrong
bytes, left as orphaned multipart uploads. Written to build/soak.json as numbers.

The checker is checked too (tests/test_soak_check.py): a run with one delivery deliberately
dropped must come out as lost. The soak itself is tests/soak.py (`make soak`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

FIELDS = ("bookings", "videos_expected", "videos_delivered", "lost", "duplicated", "sha256_mismatches",
          "orphan_uploads", "power_cuts", "program_kills", "link_faults", "store_faults", "platform_faults",
          "clock_jumps", "wall_s")  # fmt: skip


def figures(
    expected: Mapping[str, str],
    notifications: list[dict[str, Any]],
    stored: Mapping[str, str],
    orphan_uploads: int,
    bookings: int,
    **counters: float,
) -> dict[str, Any]:
    """`expected`: unique_id -> the SHA-256 recorded for its clip; `notifications`: the
    simulator's record (`status` 201 = delivered); `stored`: bucket key -> SHA-256 of the
    bytes served. Returns every field of FIELDS (counters not given are 0) and, for a human,
    `lost_ids`, `duplicated_ids`, `mismatched_ids`."""
    delivered: dict[str, int] = {}
    for n in notifications:
        if n.get("status") == 201:
            delivered[n["unique_id"]] = delivered.get(n["unique_id"], 0) + 1
    lost = sorted(u for u in expected if not delivered.get(u))
    duplicated = sorted(u for u, k in delivered.items() if k > 1)
    # Only objects that are there: a video never stored is lost, not mismatched.
    mismatched = sorted(u for u, sha in expected.items() if (k := _mp4_key(stored, u)) and stored[k] != sha)
    out: dict[str, Any] = {f: 0 for f in FIELDS}
    out.update(counters)
    out.update(
        bookings=bookings, videos_expected=len(expected), videos_delivered=sum(1 for u in expected if delivered.get(u)),
        lost=len(lost), duplicated=sum(delivered[u] - 1 for u in duplicated), sha256_mismatches=len(mismatched),
        orphan_uploads=orphan_uploads, lost_ids=lost, duplicated_ids=duplicated, mismatched_ids=mismatched,
    )  # fmt: skip
    return out


def _mp4_key(stored: Mapping[str, str], unique_id: str) -> str:
    return next((k for k in stored if k.endswith(f"/{unique_id}.mp4")), "")


def write(result: Mapping[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({k: result[k] for k in FIELDS}, indent=2, sort_keys=True) + "\n")


def passed(result: Mapping[str, Any]) -> bool:
    return not (
        result["lost"] or result["duplicated"] or result["sha256_mismatches"] or result["orphan_uploads"]
    )

"""`venuecam update` on a box with its whole stack running: a good release is committed; broken
ones are rolled back by the health gate (or refused before the switch), and the box is always
left on a release that works. Real supervisord, ffmpeg, moto and the platform simulator."""

from __future__ import annotations

import json
import sqlite3
from typing import Any

import pytest

from update_rig import BASE_SCHEMA, Box, Releases

pytestmark = pytest.mark.slow


def schema(box: Box) -> int:
    with sqlite3.connect(box.cfg.db_path) as conn:
        return conn.execute("PRAGMA user_version").fetchone()[0]


def test_good_release_with_a_migration_is_committed(box: Box, releases: Releases) -> None:
    good = releases.build("0.2.0", "migrate")
    r = box.venuecam("update", str(good), "--json", timeout=400)
    assert r.returncode == 0, r.stdout + r.stderr
    result = json.loads(r.stdout)
    assert result["outcome"] == "committed", result
    assert box.link("current") == box.link("committed") == "0.2.0"
    assert box.releases() == ["0.1.0", "0.2.0"]
    assert schema(box) == BASE_SCHEMA + 1
    gate = result["gate"]
    assert gate["ok"] and gate["checks"]["camera CAMERA_A"].startswith("ok")
    assert gate["checks"]["upload probe"].startswith("ok") and gate["checks"]["booking sync"].startswith("ok")
    status = json.loads(box.venuecam("status", "--json").stdout)
    assert status["update"]["release"] == "0.2.0"
    assert status["update"]["history"][0]["outcome"] == "committed"
    print(f"\nFIGURE update to committed: {result['seconds']} s; bundle {good.stat().st_size} bytes")


@pytest.mark.parametrize(
    ("breakage", "expect"),
    [
        ("crash", "program watchdog:watchdog"),
        ("no_segment", "camera CAMERA_A wrote no new segment"),
        ("bad_upload", "upload probe failed"),
    ],
)
def test_broken_release_is_rolled_back(box: Box, releases: Releases, breakage: str, expect: str) -> None:
    bad = releases.build("0.3.0", "migrate", breakage)
    r = box.venuecam("update", str(bad), "--json", timeout=400)
    result = json.loads(r.stdout)
    assert r.returncode == 4, r.stdout + r.stderr
    assert result["outcome"] == "rolled_back" and expect in result["reason"], result
    assert result["reason"].startswith("rolled back to 0.1.0: 0.3.0 failed its health gate")
    assert box.link("current") == "0.1.0" and box.releases() == ["0.1.0"]
    assert schema(box) == BASE_SCHEMA  # the migration ran, the backup was restored
    health = box.wait_healthy()
    assert health["ok"]
    status = json.loads(box.venuecam("status", "--json").stdout)
    assert any("rolled back to 0.1.0" in a for a in status["needs_attention"]), status["needs_attention"]
    text = box.venuecam("status", "--no-color").stdout
    assert "rolled back to 0.1.0" in text
    print(
        f"\nFIGURE {breakage}: back on 0.1.0 after {result['seconds']} s (gate {result['gate']['seconds']} s)"
    )


def test_release_that_does_not_import_is_refused_before_the_switch(box: Box, releases: Releases) -> None:
    bad = releases.build("0.3.1", "import")
    r = box.venuecam("update", str(bad), "--json", timeout=400)
    result: dict[str, Any] = json.loads(r.stdout)
    assert r.returncode == 1 and result["outcome"] == "failed", result
    assert "does not start" in result["reason"] and "deliberately broken" in result["reason"]
    assert [s for s, _ in result["steps"]] == ["verified", "installed"]
    assert box.link("current") == "0.1.0" and box.releases() == ["0.1.0"]
    assert box.wait_healthy()["ok"]

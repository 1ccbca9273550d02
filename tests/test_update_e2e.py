"""`venuecam update` on a box with its whole stack running: a good release is committed; broken
ones are rolled back by the health gate (or refused before the switch), and the box is always
left on a release that works; `--rollback` takes a committed release back by hand. Real
supervisord, ffmpeg, moto and the platform simulator.

The tests share one booted box (fixtures_update.box): a refused or rolled-back update leaves
it on 0.1.0, as found; the good release comes after them, then the rollback by hand."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from fixtures_update import Shared, schema
from update_rig import BASE_SCHEMA, HEALTH_TIMEOUT_S, Box, Releases

pytestmark = pytest.mark.slow


def test_release_that_does_not_import_is_refused_before_the_switch(box: Box, releases: Releases) -> None:
    bad = releases.build("0.3.1", "import")
    r = box.venuecam("update", str(bad), "--json", timeout=400)
    result: dict[str, Any] = json.loads(r.stdout)
    assert r.returncode == 1 and result["outcome"] == "failed", result
    assert "does not start" in result["reason"] and "deliberately broken" in result["reason"]
    assert [s for s, _ in result["steps"]] == ["verified", "installed"]
    assert box.link("current") == "0.1.0" and box.releases() == ["0.1.0"]
    assert box.wait_healthy()["ok"]


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
    # A camera that never records fails the gate when its time limit expires: a short one here.
    short = {"health_timeout_s": 15} if breakage == "no_segment" else {}
    box.configure(update=short)
    try:
        r = box.venuecam("update", str(bad), "--json", timeout=400)
    finally:
        box.configure(update={"health_timeout_s": HEALTH_TIMEOUT_S})
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


def test_config_push_is_validated_then_applied_behind_the_gate_with_the_old_file_kept(
    box: Box, tmp_path: Path
) -> None:
    """What provisioning/ansible/config.yml runs on each box: `config --check`, `--apply-config`."""
    live, prev = box.config_path, box.config_path.with_name("venuecam.toml.prev")
    old = live.read_text()
    assert "\ngrace_s = 3\n" in old
    bad = tmp_path / "bad.toml"
    bad.write_text(old.replace("\ngrace_s = 3\n", '\ngrace_s = "soon"\n'))
    r = box.venuecam("config", "--check", str(bad))
    assert r.returncode == 1 and "clips.grace_s" in r.stderr, r.stdout + r.stderr
    r = box.venuecam("update", "--apply-config", str(bad), "--json")
    assert r.returncode == 1 and "clips.grace_s" in r.stderr, r.stdout + r.stderr
    assert live.read_text() == old and not prev.exists()  # refused: nothing changed

    new = tmp_path / "new.toml"
    new.write_text(old.replace("\ngrace_s = 3\n", "\ngrace_s = 4\n"))
    assert box.venuecam("config", "--check", str(new)).returncode == 0
    r = box.venuecam("update", "--apply-config", str(new), "--json", timeout=400)
    assert r.returncode == 0, r.stdout + r.stderr
    result = json.loads(r.stdout)
    assert result["outcome"] == "committed" and result["kind"] == "config" and result["gate"]["ok"], result
    assert live.read_text() == new.read_text() and prev.read_text() == old
    box.configure(clips={"grace_s": 4})  # the rig's idea of the file, as the box has it now
    assert live.read_text() == new.read_text()
    assert box.link("current") == "0.1.0" and box.wait_healthy()["ok"]


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


def test_rollback_by_hand_needs_force_to_restore_the_database(shared_box: Shared, releases: Releases) -> None:
    box = shared_box.current
    if box is None or box.link("committed") != "0.2.0":  # run alone: commit 0.2.0 first
        box = shared_box.get()
        r = box.venuecam("update", str(releases.build("0.2.0", "migrate")), "--json", timeout=400)
        assert json.loads(r.stdout)["outcome"] == "committed", r.stdout + r.stderr
    r = box.venuecam("update", "--rollback")
    assert r.returncode == 1 and "restores the database" in r.stderr and "--force" in r.stderr, r.stderr
    assert box.link("current") == "0.2.0" and schema(box) == BASE_SCHEMA + 1  # refused: nothing changed
    r = box.venuecam("update", "--rollback", "--force", "--json", timeout=400)
    assert r.returncode == 0, r.stdout + r.stderr
    result = json.loads(r.stdout)
    assert result["outcome"] == "committed" and result["kind"] == "rollback", result
    assert (result["from"], result["to"]) == ("0.2.0", "0.1.0")
    assert box.link("current") == box.link("committed") == "0.1.0"
    assert schema(box) == BASE_SCHEMA  # the backup taken before 0.2.0 migrated it
    assert box.releases() == ["0.1.0", "0.2.0"]  # the one we came from is kept
    status = json.loads(box.venuecam("status", "--json").stdout)
    assert status["update"]["release"] == "0.1.0" and status["update"]["previous"] == "0.2.0"
    assert status["update"]["history"][0]["origin"] == "rollback by hand"

"""A power cut at every step of an update: SIGKILL of everything (the updater, supervisord,
every program, ffmpeg), then a fresh start as systemd would do it at boot (the boot-check
unit, then the stack). The box must always come back on a release that passes the health
gate: the old one (database restored where the new one had migrated it), or the new one when
its gate had passed. The updater is frozen right after it journals the step (SIGSTOP), so the
cut lands exactly there."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from update_rig import BASE_SCHEMA, Box, Releases, wait_for
from venuecam.update.engine import STOP_AT_ENV

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cut_box(tmp_path_factory: pytest.TempPathFactory, releases: Releases, base_bundle: Path,
            s3_server: Any, platform_server: Any) -> Iterator[Box]:  # fmt: skip
    s3_server.reset()
    s3_server.client().create_bucket(Bucket="venue-videos")
    platform_server.reset()  # no booking another module left on the shared simulator defers the update
    b = Box(tmp_path_factory.mktemp("powercut") / "box", releases, s3_server.endpoint, platform_server.url)
    b.install(base_bundle)
    b.start()
    yield b
    b.kill_all()


def frozen(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[-1][0] == "T"
    except OSError:
        return False


def schema(box: Box) -> int:
    with sqlite3.connect(box.cfg.db_path) as conn:
        return conn.execute("PRAGMA user_version").fetchone()[0]


def cut_at(box: Box, bundle: Path, step: str) -> None:
    proc = box.update_bg(str(bundle), env={STOP_AT_ENV: step})
    wait_for(f"the updater frozen at {step}", lambda: frozen(proc.pid) or proc.poll() is not None, 240, 0.1)
    assert proc.poll() is None, (
        f"the updater ended before {step}: {proc.stdout.read() if proc.stdout else ''}"
    )
    assert box.state()["op"]["step"] == step
    box.power_cut()
    box.boot()


FORWARD = ["installed", "checked", "stopped", "backed_up", "switched", "started", "gating"]
BACKWARD = ["rolling_back", "switched_back", "restored"]


@pytest.mark.parametrize("step", FORWARD)
def test_power_cut_before_the_gate_passed_comes_back_on_the_old_release(
    cut_box: Box, releases: Releases, step: str
) -> None:
    cut_at(cut_box, releases.build("0.2.0", "migrate"), step)
    health = cut_box.wait_healthy()
    assert health["ok"], health
    assert cut_box.link("current") == "0.1.0" and schema(cut_box) == BASE_SCHEMA
    last = cut_box.state()["last"]
    touched = step not in ("installed", "checked")
    assert last["outcome"] == ("rolled_back" if touched else "failed"), last
    assert f"interrupted at {step}" in last["reason"]
    assert cut_box.releases() == ["0.1.0"]


@pytest.mark.parametrize("step", BACKWARD)
def test_power_cut_during_a_rollback_finishes_it(cut_box: Box, releases: Releases, step: str) -> None:
    cut_at(cut_box, releases.build("0.3.0", "migrate", "crash"), step)
    assert cut_box.wait_healthy()["ok"]
    assert cut_box.link("current") == "0.1.0" and schema(cut_box) == BASE_SCHEMA
    assert cut_box.state()["last"]["outcome"] == "rolled_back"


def test_power_cut_after_the_gate_passed_keeps_the_new_release(cut_box: Box, releases: Releases) -> None:
    cut_at(cut_box, releases.build("0.2.0", "migrate"), "passed")
    assert cut_box.wait_healthy()["ok"]
    assert (
        cut_box.link("current") == cut_box.link("committed") == "0.2.0" and schema(cut_box) == BASE_SCHEMA + 1
    )
    assert cut_box.state()["last"]["outcome"] == "committed"

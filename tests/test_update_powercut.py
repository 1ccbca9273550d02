"""A power cut at every step of an update: SIGKILL of everything (the updater, supervisord,
every program, ffmpeg), then a fresh start as systemd would do it at boot (the boot-check
unit, then the stack). The box must always come back on a release that passes the health
gate: the old one (database restored where the new one had migrated it), or the new one when
its gate had passed. The updater is frozen right after it journals the step (SIGSTOP), so the
cut lands exactly there.

The cuts run on BOXES booted boxes at once (most of a cut is waiting: a stop, a stable
window), each box taking its share of the steps one after the other; every step is its own
test, which reads what its cut left: the links, the schema, the journal, the health check."""

from __future__ import annotations

import threading
import traceback
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from fixtures_update import booted_box, fresh_servers, schema
from update_rig import BASE_SCHEMA, Box, Releases, wait_for
from venuecam.update.engine import STOP_AT_ENV

pytestmark = pytest.mark.slow

FORWARD = ["installed", "checked", "stopped", "backed_up", "switched", "started", "gating"]
BACKWARD = ["rolling_back", "switched_back", "restored"]
BOXES = 4


def frozen(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[-1][0] == "T"
    except OSError:
        return False


def cut_at(box: Box, bundle: Path, step: str) -> dict[str, Any]:
    """Cut the power at `step`, boot, wait for health; what the box is on then."""
    proc = box.update_bg(str(bundle), env={STOP_AT_ENV: step})
    wait_for(f"the updater frozen at {step}", lambda: frozen(proc.pid) or proc.poll() is not None, 240, 0.1)
    assert proc.poll() is None, (
        f"the updater ended before {step}: {proc.stdout.read() if proc.stdout else ''}"
    )
    assert box.state()["op"]["step"] == step
    box.power_cut()
    box.boot()
    health = box.wait_healthy()
    return {"health": health, "current": box.link("current"), "committed": box.link("committed"),
            "schema": schema(box), "last": box.state()["last"], "releases": box.releases()}  # fmt: skip


@pytest.fixture(scope="module")
def cuts(tmp_path_factory: pytest.TempPathFactory, releases: Releases, base_bundle: Path,
         s3_server: Any, platform_server: Any) -> dict[str, Any]:  # fmt: skip
    """step -> what the box was on after the cut there (or the error that stopped it)."""
    good = releases.build("0.2.0", "migrate")
    bad = releases.build("0.3.0", "migrate", "crash")
    plan = [(s, good) for s in FORWARD] + [(s, bad) for s in BACKWARD]
    shares = [plan[i::BOXES] for i in range(BOXES)]
    shares[-1].append(("passed", good))  # last on its box (one with fewer cuts): it leaves it on 0.2.0
    fresh_servers(s3_server, platform_server)
    roots = [tmp_path_factory.mktemp("powercut") / "box" for _ in range(BOXES)]
    with ThreadPoolExecutor(BOXES) as pool:
        booting = [pool.submit(booted_box, roots[i], releases, base_bundle, s3_server, platform_server,
                               device={"device_id": f"cut-box-{i}"}) for i in range(BOXES)]  # fmt: skip
    boxes = [f.result() for f in booting if not f.exception()]
    if len(boxes) < BOXES:
        for b in boxes:
            b.kill_all()
        raise next(e for f in booting if (e := f.exception()))
    results: dict[str, Any] = {}

    def work(box: Box, share: list[tuple[str, Path]]) -> None:
        for step, bundle in share:
            try:
                results[step] = cut_at(box, bundle, step)
            except BaseException:  # noqa: BLE001 - the step's own test reports it
                results[step] = traceback.format_exc()
                return  # the box is in an unknown state: its remaining steps are not run

    threads = [threading.Thread(target=work, args=(b, s)) for b, s in zip(boxes, shares, strict=True)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        for b in boxes:
            b.kill_all()
    return results


def after(cuts: dict[str, Any], step: str) -> dict[str, Any]:
    got = cuts.get(step, f"not run: an earlier cut on the same box failed ({sorted(cuts)})")
    if isinstance(got, str):
        pytest.fail(f"the cut at {step} failed:\n{got}")
    assert got["health"]["ok"], got["health"]
    return got


@pytest.mark.parametrize("step", FORWARD)
def test_power_cut_before_the_gate_passed_comes_back_on_the_old_release(
    cuts: dict[str, Any], step: str
) -> None:
    got = after(cuts, step)
    assert got["current"] == "0.1.0" and got["schema"] == BASE_SCHEMA
    last = got["last"]
    touched = step not in ("installed", "checked")
    assert last["outcome"] == ("rolled_back" if touched else "failed"), last
    assert f"interrupted at {step}" in last["reason"]
    assert got["releases"] == ["0.1.0"]


@pytest.mark.parametrize("step", BACKWARD)
def test_power_cut_during_a_rollback_finishes_it(cuts: dict[str, Any], step: str) -> None:
    got = after(cuts, step)
    assert got["current"] == "0.1.0" and got["schema"] == BASE_SCHEMA
    assert got["last"]["outcome"] == "rolled_back"


def test_power_cut_after_the_gate_passed_keeps_the_new_release(cuts: dict[str, Any]) -> None:
    got = after(cuts, "passed")
    assert got["current"] == got["committed"] == "0.2.0" and got["schema"] == BASE_SCHEMA + 1
    assert got["last"]["outcome"] == "committed"

"""An update over the air on the emulated Raspberry Pi 3, the way an operator (or Ansible's
update.yml) runs one: `venuecam update s3://... --wait` over ssh, as root.

The bundles are real: `venuecam.update.build release` for the image's target (Python 3.13 on
aarch64, the wheels downloaded for it), cut as delta bundles against the release the image
shipped (its marker, read off the box, records the wheels it was installed from), signed with a
key made for the test whose line is added to the box's /etc/venuecam/release-signers, put in a
bucket of the S3 server the box already reaches (fixtures_image.services). A bundle signed by a
key the box does not trust and one with a byte flipped inside a wheel are refused first, each
saying why, with nothing changed; then the good one is downloaded, verified, installed over a
hard-linked copy of the running release (pip on the Pi installs only what differs),
self-checked, switched to behind the health gate and committed, and the box records on it;
last, `venuecam update --rollback` takes it back to the release the image shipped.

It runs on the boot every Pi 3 check shares, after all of them: it changes the box's release
(marker changes_the_box; see fixtures_image.pytest_collection_modifyitems). Figures (bundle
size, the update's steps on the emulated Pi) go to build/image-test-figures.json.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import shlex
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import qemu_pi
from fixtures_image import ALL_RUNNING, CHANGES_THE_BOX, SEGMENTS, SUPERVISORCTL, record
from update_rig import Releases, build_mod, tamper
from venuecam import __version__
from venuecam.update import manifest as mf
from venuecam.update.engine import FORWARD

pytestmark = [
    pytest.mark.slow,
    pytest.mark.root,
    getattr(pytest.mark, CHANGES_THE_BOX),
]

BUCKET = "venuecam-releases"
SIGNERS = "/etc/venuecam/release-signers"
# Download, verify, install (pip on the emulated Pi), self-check, restart, health gate.
UPDATE_TIMEOUT_S = 3600
# What must not move when a bundle is refused: the links, the releases, no unpacked files,
# every program (same pid), the journal (nothing running, waiting or newly finished).
FACTS = (
    "readlink /opt/venuecam/current /opt/venuecam/committed; ls /opt/venuecam/releases | paste -sd' ';"
    " (ls /var/lib/venuecam-update/downloads | grep -c '^unpack-' || true);"
    f" {SUPERVISORCTL} | awk '{{print $1, $2, $4}}';"
    " venuecam update --status --json"
)


def next_version(version: str) -> str:
    """The source's version with its last number raised: newer than the image built from it."""
    parts = version.split(".")
    return ".".join([*parts[:-1], str(int(parts[-1]) + 1)])


@dataclass
class Kit:
    version: str
    good: Path
    unknown_signer: Path
    tampered: Path
    tampered_member: str
    signer_line: str

    def url(self, bundle: Path) -> str:
        return f"s3://{BUCKET}/{self.version}/{bundle.name}"


@pytest.fixture(scope="module")
def kit(_pi3_session: qemu_pi.PiBox, releases: Releases, services: dict[str, object],
        tmp_path_factory: pytest.TempPathFactory) -> Kit:  # fmt: skip
    """The bundles, built here for the image's target as deltas against the release the box
    runs, and put in the box's S3 server. (The session's box itself: each test asks for
    `pi3_box`, which makes it the active one, before this.)"""
    tmp = tmp_path_factory.mktemp("pi-update")
    version = next_version(__version__)
    shipped = tmp / "shipped-marker.json"
    shipped.write_text(_pi3_session.out("cat /opt/venuecam/current/.venuecam-release.json"))
    assert json.loads(shipped.read_text()).get("wheels"), "the image's release marker lists no wheels"
    target = build_mod.IMAGE_TARGET
    good = releases.build(version, target=target, delta_from=shipped)
    other_key = tmp / "other-key"
    build_mod.main(["key", "--out", str(other_key)])
    signed_elsewhere = releases.build(version, key=other_key, target=target, delta_from=shipped)
    unknown = tmp / f"venuecam-{version}-unknown-signer.bundle"
    unknown.write_bytes(signed_elsewhere.read_bytes())
    tampered = tmp / f"venuecam-{version}-tampered.bundle"
    member = tamper(good, tampered)
    client = services["s3"].client()  # type: ignore[attr-defined]
    client.create_bucket(Bucket=BUCKET)
    made = Kit(version, good, unknown, tampered, member, releases.signer_line())
    for bundle in (good, unknown, tampered):
        client.upload_file(str(bundle), BUCKET, made.url(bundle).split("/", 3)[3])
    return made


def trust(box: qemu_pi.PiBox, kit: Kit) -> None:
    """The test key's line in the box's signers file, as `make release-key` says to add it."""
    line = shlex.quote(kit.signer_line)
    box.out(f"grep -qxF {line} {SIGNERS} || echo {line} >> {SIGNERS}")


def facts(box: qemu_pi.PiBox) -> tuple[list[str], dict[str, Any]]:
    text = box.out(FACTS)
    lines, js = text[: text.index("{")], text[text.index("{") :]
    status = json.loads(js)
    keep = {k: status[k] for k in ("release", "committed", "previous", "in_progress", "pending")}
    keep["last"] = (status.get("last") or {}).get("id")
    return lines.splitlines(), keep


def json_tail(text: str) -> dict[str, Any]:
    """The JSON object `--json` printed last (anything before it is stderr's)."""
    start = text.rindex("\n{") + 1 if "\n{" in text else text.index("{")
    return json.loads(text[start:])


def uptime_s(line: str) -> float | None:
    """Seconds up of a program, from supervisorctl's "name RUNNING pid 123, uptime 0:01:02"."""
    m = re.search(r"uptime (?:(\d+) days?, )?(\d+):(\d\d):(\d\d)", line)
    if not m:
        return None
    days, h, mi, s = (int(g or 0) for g in m.groups())
    return float(((days * 24 + h) * 60 + mi) * 60 + s)


def step_seconds(steps: list[list[str]], a: str, b: str) -> float:
    at = {name: dt.datetime.fromisoformat(when.replace("Z", "+00:00")) for name, when in steps}
    return (at[b] - at[a]).total_seconds()


def test_bundles_from_an_unknown_signer_or_with_a_tampered_byte_are_refused_on_the_pi3(
    pi3_box: qemu_pi.PiBox, kit: Kit
) -> None:
    box = pi3_box
    trust(box, kit)
    before = facts(box)
    assert before[1]["release"] == before[1]["committed"] and before[1]["in_progress"] is None
    cases = [
        ("unknown_signer", kit.unknown_signer, f"signature: made by a key that {SIGNERS} does not trust"),
        ("tampered", kit.tampered,
         f"{kit.tampered_member}: does not match the signed manifest (tampered or damaged)"),
    ]  # fmt: skip
    for case, bundle, why in cases:
        t0 = time.monotonic()
        status, out = box.run(f"venuecam update {kit.url(bundle)} --json", timeout=900)
        assert status == 1, out
        assert f"venuecam update: {why}" in out, out
        record(**{f"raspi3b_update_refused_{case}_s": round(time.monotonic() - t0, 1)})
        assert facts(box) == before, f"{bundle.name} was refused but the box changed"


def test_an_update_over_the_air_is_committed_and_the_box_records_on_it_on_the_pi3(
    pi3_box: qemu_pi.PiBox, kit: Kit
) -> None:
    box = pi3_box
    trust(box, kit)  # run alone, the refusals have not added it
    old = box.out("readlink /opt/venuecam/current").strip().rsplit("/", 1)[-1]
    assert mf.newer(kit.version, old), f"the box runs {old}, not older than {kit.version}"
    free_before = int(box.out("df -B1 --output=avail / | tail -1"))
    t0 = time.monotonic()
    status, out = box.run(f"venuecam update {kit.url(kit.good)} --wait --json", timeout=UPDATE_TIMEOUT_S)
    wall = time.monotonic() - t0
    assert status == 0, out[-4000:]
    result = json_tail(out)
    assert result["outcome"] == "committed", result
    assert (result["from"], result["to"]) == (old, kit.version)
    gate = result["gate"]
    assert gate["ok"], gate
    for check in ("programs", "status socket", "camera CAM_A", "booking sync", "upload probe"):
        assert gate["checks"][check].startswith("ok"), (check, gate["checks"])
    steps = result["steps"]
    assert [s for s, _ in steps] == FORWARD, steps
    marker = json.loads(box.out(f"cat /opt/venuecam/releases/{kit.version}/.venuecam-release.json"))
    assert marker["delta_from"] == old and marker["carried_files"] < marker["files"], marker

    # What the operator reads afterwards: the new release current and committed, the old kept.
    said = json.loads(box.out("venuecam update --status --json"))
    assert (said["release"], said["committed"], said["previous"]) == (kit.version, kit.version, old), said
    assert said["in_progress"] is None and said["pending"] is None
    assert said["history"][0]["outcome"] == "committed" and said["history"][0]["to"] == kit.version
    assert box.out("venuecam --version").strip() == kit.version
    assert box.out("ls /opt/venuecam/releases").split() == sorted([old, kit.version])
    assert box.out("systemctl is-active venuecam.service").strip() == "active"

    # Every program up on the new release, and the camera still recording.
    running = box.wait_until("all programs RUNNING on the new release", ALL_RUNNING, timeout=300)
    for program in ("capture:CAM_A", "worker", "watchdog", "statusd"):
        assert program in running
    # Each started by the update (after the switch to the new release), none since.
    since_update = time.monotonic() - t0
    for line in running.splitlines():
        up = uptime_s(line)
        assert up is not None and up <= since_update, f"not restarted by the update: {line}"
    filed = int(box.out(SEGMENTS))
    box.wait_until("a segment recorded on the new release", f'test "$({SEGMENTS})" -gt {filed}', timeout=300)
    answer = box.out("venuecam status")
    assert "CAM_A" in answer and "recording" in answer, answer

    free_after = int(box.out("df -B1 --output=avail / | tail -1"))
    record(
        raspi3b_update_bundle_bytes=kit.good.stat().st_size,
        raspi3b_update_release_wheel_bytes=marker["bytes"],
        raspi3b_update_wheels_carried=f"{marker['carried_files']} of {marker['files']}",
        raspi3b_update_wall_s=round(wall, 1),
        raspi3b_update_apply_s=result["seconds"],
        raspi3b_update_download_and_verify_s=round(wall - float(result["seconds"]), 1),
        raspi3b_update_install_s=step_seconds(steps, "verified", "installed"),
        raspi3b_update_self_check_s=step_seconds(steps, "installed", "checked"),
        raspi3b_update_stop_to_started_s=step_seconds(steps, "checked", "started"),
        raspi3b_update_gate_s=gate["seconds"],
        raspi3b_update_root_bytes_used=free_before - free_after,
    )
    print(f"\nraspi3b update {old} -> {kit.version}: {wall:.0f} s in all, {result['seconds']} s applying; "
          f"steps {steps}; gate {gate['checks']}")  # fmt: skip


def test_the_update_left_no_bundle_on_the_root_filesystem_of_the_pi3(
    pi3_box: qemu_pi.PiBox, kit: Kit
) -> None:
    """The downloaded bundles (the refused ones, the applied one) are gone: 22 MB each on the
    2 GiB root slot, which holds the releases too (the one running and the one before)."""
    left = pi3_box.out("ls -A /var/lib/venuecam-update/downloads").split()
    assert not [name for name in left if name.endswith(".bundle")], left


def test_the_image_release_is_gone_back_to_by_hand_on_the_pi3(pi3_box: qemu_pi.PiBox, kit: Kit) -> None:
    """`venuecam update --rollback`: the release the image shipped is one to go back to (its
    marker, written by the image build), behind the same gate; the box ends as it was booted."""
    box = pi3_box
    said = json.loads(box.out("venuecam update --status --json"))
    if said["release"] != kit.version:  # run alone: the update first
        trust(box, kit)
        status, out = box.run(f"venuecam update {kit.url(kit.good)} --wait --json", timeout=UPDATE_TIMEOUT_S)
        assert status == 0 and json_tail(out)["outcome"] == "committed", out[-4000:]
        said = json.loads(box.out("venuecam update --status --json"))
    old = said["previous"]
    assert old and mf.newer(kit.version, old), said
    t0 = time.monotonic()
    status, out = box.run("venuecam update --rollback --json", timeout=UPDATE_TIMEOUT_S)
    wall = time.monotonic() - t0
    assert status == 0, out[-4000:]
    result = json_tail(out)
    assert result["outcome"] == "committed" and result["kind"] == "rollback", result
    assert (result["from"], result["to"]) == (kit.version, old)
    said = json.loads(box.out("venuecam update --status --json"))
    assert (said["release"], said["committed"], said["previous"]) == (old, old, kit.version), said
    assert box.out("venuecam --version").strip() == old
    box.wait_until("all programs RUNNING on the image's release", ALL_RUNNING, timeout=300)
    filed = int(box.out(SEGMENTS))
    box.wait_until("a segment recorded after the rollback", f'test "$({SEGMENTS})" -gt {filed}', timeout=300)
    record(raspi3b_rollback_by_hand_wall_s=round(wall, 1), raspi3b_rollback_by_hand_apply_s=result["seconds"])

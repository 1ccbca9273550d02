"""Pull mode: `venuecam update --tick` (what the timer runs) polls a signed channel file in the
bucket and fetches the release it names when this box's rollout slot is inside the staged
percentage; a channel nobody trusted signed, or whose bundle differs from its sha256, fetches
nothing. The release fetched waits for the maintenance window, so no stack is needed here:
applying a pending update is what test_update_defer proves. Real moto, real bundles."""

from __future__ import annotations

import datetime as dt
import json
import shutil
import time
from pathlib import Path
from typing import Any

import pytest

from update_rig import Box, Releases, build_mod
from venuecam.update import channel

CHANNEL = "releases/stable.json"


def publish(s3: Any, releases: Releases, bundle: Path, tmp: Path, percent: int, *, key: Path | None = None,
            sha256: str | None = None) -> None:  # fmt: skip
    """What a release manager does: the bundle and a signed channel file naming it."""
    doc = tmp / "stable.json"
    doc.unlink(missing_ok=True)
    doc.with_name("stable.json.sig").unlink(missing_ok=True)
    digest = sha256 or (bundle.parent / f"{bundle.name}.sha256").read_text().split()[0]
    build_mod.main(["channel", "--key", str(key or releases.key), "--out", str(doc), "--version", "0.2.0",
                    "--url", bundle.name, "--sha256", digest, "--percent", str(percent)])  # fmt: skip
    c = s3.client()
    c.upload_file(str(bundle), "venue-videos", f"releases/{bundle.name}")
    c.upload_file(str(doc), "venue-videos", CHANNEL)
    c.upload_file(str(doc) + ".sig", "venue-videos", CHANNEL + ".sig")


@pytest.fixture(scope="module")
def pull_root(tmp_path_factory: pytest.TempPathFactory, releases: Releases, base_bundle: Path,
              s3_server: Any) -> Box:  # fmt: skip
    """One install of 0.1.0 for the module (no stack); each test starts from a clean journal."""
    b = Box(tmp_path_factory.mktemp("pull") / "box", releases, s3_server.endpoint, "http://127.0.0.1:9")
    b.install(base_bundle)
    return b


@pytest.fixture
def pull_box(pull_root: Box, s3: Any) -> Box:
    """The box on 0.1.0 polling the channel, its maintenance window hours away."""
    shutil.rmtree(pull_root.state_dir, ignore_errors=True)
    local = dt.datetime.now(dt.UTC).astimezone(dt.timezone(dt.timedelta(hours=7)))  # Asia/Jakarta
    window = f"{(local + dt.timedelta(hours=3)):%H:00}-{(local + dt.timedelta(hours=4)):%H:00}"
    pull_root.configure(update={"channel_url": f"s3://venue-videos/{CHANNEL}", "poll_interval_s": 3600,
                                "maintenance_window": window})  # fmt: skip
    return pull_root


def tick(box: Box) -> dict[str, Any]:
    r = box.venuecam("update", "--tick", timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    return box.state()


def downloads(box: Box) -> list[str]:
    d = box.state_dir / "downloads"
    return sorted(p.name for p in d.iterdir()) if d.exists() else []


def test_a_box_inside_the_rollout_fetches_the_release_and_waits_for_its_window(
    pull_box: Box, releases: Releases, s3: Any, tmp_path: Path
) -> None:
    slot = channel.rollout_slot(pull_box.cfg.device.device_id)
    good = releases.build("0.2.0", "migrate")
    publish(s3, releases, good, tmp_path, percent=slot)  # the first `slot` % of boxes: not this one
    state = tick(pull_box)
    assert (
        state["poll"]["result"] == f"0.2.0 is not rolled out to this box yet (slot {slot}, rollout {slot} %)"
    )
    assert not state.get("pending") and downloads(pull_box) == []

    publish(s3, releases, good, tmp_path, percent=slot + 1)  # raised by one: now it is
    first = state["poll"]
    state = tick(pull_box)
    assert state["poll"] == first and not state.get("pending")  # poll_interval_s not passed: not read
    pull_box.configure(update={"poll_interval_s": 1})
    time.sleep(max(0.0, first["at_ts"] + 1.05 - time.time()))  # that interval has passed
    state = tick(pull_box)
    assert state["poll"]["result"] == f"fetched 0.2.0 (slot {slot} < {slot + 1} %)", state["poll"]
    pending = state["pending"]
    assert pending["version"] == "0.2.0" and pending["origin"] == "channel stable"
    assert pending["waiting"] == [f"outside the maintenance window {pull_box.cfg.update.maintenance_window}"]
    assert downloads(pull_box) == ["venuecam-0.2.0.bundle"]
    assert Path(pending["bundle"]).read_bytes() == good.read_bytes()
    assert pull_box.link("current") == "0.1.0" and pull_box.releases() == ["0.1.0"]  # not before its window
    status = json.loads(pull_box.venuecam("update", "--status", "--json").stdout)
    assert status["pending"]["version"] == "0.2.0" and status["poll"]["result"].startswith("fetched 0.2.0")


@pytest.mark.parametrize("fault", ["other_key", "sha256"])
def test_a_channel_that_does_not_check_out_fetches_nothing(
    pull_box: Box, releases: Releases, s3: Any, tmp_path: Path, fault: str
) -> None:
    good = releases.build("0.2.0", "migrate")
    if fault == "other_key":
        other = tmp_path / "other-key"
        build_mod.main(["key", "--out", str(other)])
        publish(s3, releases, good, tmp_path, percent=100, key=other)
        expect = "poll failed: "
    else:
        publish(s3, releases, good, tmp_path, percent=100, sha256="0" * 64)
        expect = "sha256 differs from the channel file's"
    state = tick(pull_box)
    assert state["poll"]["result"].startswith("poll failed: ") and expect in state["poll"]["result"], state[
        "poll"
    ]
    assert not state.get("pending") and downloads(pull_box) == []
    text = pull_box.venuecam("update", "--status").stdout
    assert "channel: poll failed" in text


def test_a_bundle_signed_by_an_unknown_key_is_refused_from_its_first_bytes(
    pull_box: Box, releases: Releases, s3: Any, tmp_path: Path
) -> None:
    other = tmp_path / "other-key"
    build_mod.main(["key", "--out", str(other)])
    bad = releases.build("0.2.0", key=other)
    s3.client().upload_file(str(bad), "venue-videos", f"releases/untrusted/{bad.name}")
    r = pull_box.venuecam("update", f"s3://venue-videos/releases/untrusted/{bad.name}", timeout=120)
    assert r.returncode == 1 and "does not trust" in r.stderr, r.stdout + r.stderr
    # Refused before the download: not even a partial file was written.
    assert downloads(pull_box) == [] and " bytes in " not in r.stdout
    assert pull_box.link("current") == "0.1.0" and pull_box.releases() == ["0.1.0"]


def test_the_first_bytes_decide_only_when_they_hold_the_whole_signed_manifest(
    releases: Releases, tmp_path: Path
) -> None:
    from venuecam.update import bundle

    good = releases.build("0.2.0", "migrate").read_bytes()
    assert len(good) > bundle.HEAD_BYTES
    assert bundle.check_head(good[: bundle.HEAD_BYTES], releases.signers)  # the signer's name
    assert bundle.check_head(good[:1500], releases.signers) is None  # manifest cut: the whole file decides
    with pytest.raises(channel.BundleError, match="first bytes are not a tar archive"):
        bundle.check_head(b"\x89PNG" + bytes(bundle.HEAD_BYTES), releases.signers)

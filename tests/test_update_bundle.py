"""Bundles that must be refused before anything is unpacked: a bad signature, a tampered file,
a bundle for another machine; and the pure parts (manifest rules, windows, rollout slots)."""

from __future__ import annotations

import datetime as dt
import io
import json
import shutil
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from update_rig import Box, Releases, tamper
from venuecam.update import bundle, channel, manifest, window
from venuecam.update.manifest import BundleError


@pytest.fixture(scope="module")
def idle_box(tmp_path_factory: pytest.TempPathFactory, releases: Releases, base_bundle: Path) -> Box:
    b = Box(tmp_path_factory.mktemp("idle") / "box", releases, "http://127.0.0.1:9", "http://127.0.0.1:9")
    b.install(base_bundle)
    return b


def untouched(box: Box) -> None:
    assert box.link("current") == "0.1.0" and box.releases() == ["0.1.0"]
    downloads = box.state_dir / "downloads"
    assert not downloads.exists() or list(downloads.iterdir()) == []  # nothing was unpacked


def test_bundle_signed_by_an_unknown_key_is_refused_before_unpacking(
    idle_box: Box, releases: Releases, tmp_path: Path
) -> None:
    from update_rig import build_mod

    other = tmp_path / "other-key"
    build_mod.main(["key", "--out", str(other)])
    bad = releases.build("0.2.0", key=other)
    r = idle_box.venuecam("update", str(bad))
    assert r.returncode == 1 and "does not trust" in r.stderr, r.stderr
    untouched(idle_box)


def test_tampered_file_is_refused_before_unpacking(idle_box: Box, releases: Releases, tmp_path: Path) -> None:
    good = releases.build("0.2.0", "migrate")
    bad = tmp_path / "venuecam-0.2.0.bundle"
    name = tamper(good, bad)
    r = idle_box.venuecam("update", str(bad))
    assert r.returncode == 1, r.stderr
    assert f"{name}: does not match the signed manifest (tampered or damaged)" in r.stderr
    untouched(idle_box)


def test_edited_manifest_fails_its_signature(releases: Releases, base_bundle: Path, tmp_path: Path) -> None:
    bad = tmp_path / "edited.bundle"
    with tarfile.open(base_bundle) as tin, tarfile.open(bad, "w", format=tarfile.PAX_FORMAT) as tout:
        for m in tin.getmembers():
            data = tin.extractfile(m).read()  # type: ignore[union-attr]
            if m.name == "manifest.json":
                data = data.replace(b'"db_schema": 1', b'"db_schema": 0', 1)
                m.size = len(data)
            tout.addfile(m, io.BytesIO(data))
    with pytest.raises(BundleError, match="signature: does not verify"):
        bundle.verify(bad, releases.signers)


def test_not_a_bundle_and_no_signers_are_clear_errors(
    releases: Releases, base_bundle: Path, tmp_path: Path
) -> None:
    junk = tmp_path / "junk.bundle"
    junk.write_bytes(b"hello" * 100)
    with pytest.raises(BundleError, match="not a venuecam bundle"):
        bundle.verify(junk, releases.signers)
    empty = tmp_path / "signers"
    empty.write_text("# no keys yet\n")
    with pytest.raises(BundleError, match="lists no signing key"):
        bundle.verify(base_bundle, empty)


def test_older_or_same_version_is_refused_without_allow_downgrade(idle_box: Box, base_bundle: Path) -> None:
    r = idle_box.venuecam("update", str(base_bundle))
    assert r.returncode == 1 and "not newer than 0.1.0" in r.stderr
    untouched(idle_box)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A directory served over HTTP on loopback (where a box downloads bundles from)."""
    import functools
    import http.server
    import threading

    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    handler.log_message = lambda *a: None  # type: ignore[attr-defined]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield tmp_path, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_a_downloaded_bundle_is_not_kept_once_refused_and_a_deferred_one_is(
    idle_box: Box, releases: Releases, served: tuple[Path, str]
) -> None:
    """The root filesystem is not for old bundles: one fetched by URL goes when its update is
    over (here: refused); a deferred update's stays for the timer; a file given by path stays."""
    root, url = served
    good = releases.build("0.2.0", "migrate")
    name = tamper(good, root / "venuecam-0.2.0.bundle")
    r = idle_box.venuecam("update", f"{url}/venuecam-0.2.0.bundle")
    assert r.returncode == 1 and f"{name}: does not match the signed manifest" in r.stderr, r.stderr
    untouched(idle_box)  # nothing in downloads/ either
    assert (root / "venuecam-0.2.0.bundle").exists()
    r = idle_box.venuecam("update", str(root / "venuecam-0.2.0.bundle"))
    assert r.returncode == 1 and (root / "venuecam-0.2.0.bundle").exists()  # given by path: kept

    (root / "venuecam-0.2.0.bundle").write_bytes(good.read_bytes())
    local = dt.datetime.now(idle_box.cfg.tz)
    window = f"{(local + dt.timedelta(hours=3)):%H:00}-{(local + dt.timedelta(hours=4)):%H:00}"
    idle_box.configure(update={"maintenance_window": window})
    try:
        r = idle_box.venuecam("update", f"{url}/venuecam-0.2.0.bundle")
        assert r.returncode == 0 and "deferred: outside the maintenance window" in r.stdout, (
            r.stdout + r.stderr
        )
        pending = idle_box.state()["pending"]
        assert Path(pending["bundle"]).read_bytes() == good.read_bytes()  # kept for the timer
    finally:
        idle_box.configure(update={"maintenance_window": ""})
        shutil.rmtree(idle_box.state_dir, ignore_errors=True)


def test_the_release_an_image_ships_is_complete_to_the_updater(idle_box: Box) -> None:
    """Marked by its own code as the image build does (`build shipped`): a failed gate, a power
    cut and `update --rollback` can go back to it (Layout.point refuses an incomplete release)."""
    from venuecam import db as db_mod
    from venuecam.update.layout import Layout

    layout = Layout(idle_box.install_dir)
    assert layout.installed() == ["0.1.0"] and layout.complete("0.1.0")
    marker = layout.marker("0.1.0") or {}
    assert marker["origin"] == "image" and marker["version"] == "0.1.0"
    assert marker["provides"] == {"config_version": 1, "db_schema": db_mod.SCHEMA_VERSION}
    layout.point("committed", "0.1.0")
    assert idle_box.link("committed") == "0.1.0"
    (idle_box.install_dir / "committed").unlink()


def valid_manifest(**over: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "format": 1, "name": "venuecam", "version": "1.2.0", "built_at": "",
        "target": {"python": "3.13", "machine": "aarch64"},
        "requires": {"config_version": 1, "db_schema": 1, "update_from": ""},
        "provides": {"config_version": 1, "db_schema": 2},
        "files": {"wheels/venuecam-1.2.0-py3-none-any.whl": {"sha256": "a" * 64, "size": 10}},
    }  # fmt: skip
    doc.update(over)
    return doc


@pytest.mark.parametrize(
    ("over", "message"),
    [
        ({"version": "1.2-beta"}, "expected numbers separated by dots"),
        ({"format": 2}, "format 2 is not one this updater reads"),
        ({"files": {"../etc/passwd": {"sha256": "a" * 64, "size": 1}}}, "is not a wheel under wheels/"),
        (
            {"files": {"wheels/boto3-1-py3-none-any.whl": {"sha256": "a" * 64, "size": 1}}},
            "exactly one venuecam",
        ),
        ({"requires": {"config_version": 1}}, "requires.db_schema: missing"),
    ],
)
def test_manifest_rules(over: dict[str, Any], message: str) -> None:
    with pytest.raises(BundleError, match=message):
        manifest.parse(json.dumps(valid_manifest(**over)).encode())


def test_versions_compare_numerically() -> None:
    assert manifest.newer("0.10.0", "0.9.9") and not manifest.newer("1.0", "1.0.0")


def test_maintenance_window_may_cross_midnight() -> None:
    at = dt.datetime(2026, 1, 1, 23, 30)
    assert window.in_window("23:00-02:00", at) and window.in_window("23:00-02:00", at.replace(hour=1))
    assert not window.in_window("23:00-02:00", at.replace(hour=12)) and window.in_window("", at)
    assert window.next_window_start("02:00-05:00", at) == dt.datetime(2026, 1, 2, 2, 0)


def test_rollout_slots_are_stable_and_spread() -> None:
    slots = [channel.rollout_slot(f"box-{i}") for i in range(1000)]
    assert slots == [channel.rollout_slot(f"box-{i}") for i in range(1000)]
    assert 70 <= sum(s < 10 for s in slots) <= 130  # about 10 % of boxes in a 10 % rollout


def test_an_installed_release_is_compiled_except_pip(idle_box: Box) -> None:
    # Programs run under ProtectSystem=strict and cannot write .pyc themselves; pip and
    # setuptools are only carried for the next update, and compiling them was most of the
    # install on the emulated Pi.
    (site,) = (idle_box.install_dir / "releases" / "0.1.0" / "lib").glob("python3*/site-packages")
    for package in ("venuecam", "botocore", "huey"):
        assert list((site / package).glob("__pycache__/*.pyc")), package
    assert list(site.glob("__pycache__/peewee.*.pyc"))  # a module, not a package
    assert (site / "pip").is_dir() and not list((site / "pip").rglob("*.pyc"))

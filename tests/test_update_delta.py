"""Delta bundles and installing over the running release: a bundle cut against a release carries
only the wheels that release lacks; the box builds the new release from the running one's tree
(hard links) and installs only what differs, leaving the running release byte for byte as it
was; a delta the box cannot complete is refused before anything changes. Real bundles, a real
box with its stack running (supervisord, ffmpeg, moto, the platform simulator)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from update_rig import Box, Releases
from venuecam.update import build as build_mod
from venuecam.update import bundle, manifest, reuse
from venuecam.update.layout import MARKER
from venuecam.update.manifest import BundleError

pytestmark = pytest.mark.slow

BOTO = "lib/python{py}/site-packages/botocore/__init__.py"


def tree(root: Path) -> dict[str, str]:
    """Every file under `root` (links as their target) -> its sha256: what a release holds."""
    out = {}
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root))
        if path.is_symlink():
            out[rel] = "-> " + os.readlink(path)
        elif path.is_file():
            out[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def site(release: Path) -> Path:
    return next((release / "lib").glob("python3.*/site-packages"))


def test_a_delta_bundle_carries_only_the_wheels_its_base_lacks(releases: Releases, base_bundle: Path) -> None:
    full = releases.build("0.2.0", "migrate")
    delta = releases.build("0.2.0", "migrate", delta_from=base_bundle)
    assert delta.name == "venuecam-0.2.0-from-0.1.0.bundle"
    v = bundle.verify(delta, releases.signers)
    whole = bundle.verify(full, releases.signers).manifest
    m = v.manifest
    deps = {n: sha for n, sha in m.wheels.items() if not n.startswith("venuecam-")}
    assert m.delta_from == "0.1.0" and set(m.wheels) == set(whole.wheels)  # the same release, all listed
    assert deps == {n: sha for n, sha in whole.wheels.items() if not n.startswith("venuecam-")}
    assert list(m.carried) == [m.app_wheel]  # the dependencies are 0.1.0's very own
    with tarfile.open(delta) as tar:
        assert tar.getnames() == [bundle.MANIFEST, bundle.SIGNATURE, m.app_wheel]
    print(f"\nFIGURE delta bundle {delta.stat().st_size} bytes, full {full.stat().st_size} bytes "
          f"({len(m.carried)} of {len(m.files)} wheels carried)")  # fmt: skip
    assert delta.stat().st_size * 10 < full.stat().st_size


def test_a_delta_is_installed_over_the_running_release_which_is_left_as_it_was(
    box: Box, releases: Releases, base_bundle: Path
) -> None:
    base_dir = box.install_dir / "releases" / "0.1.0"
    before = tree(base_dir)
    delta = releases.build("0.2.0", "migrate", delta_from=base_bundle)
    r = box.venuecam("update", str(delta), "--json", timeout=400)
    assert r.returncode == 0, r.stdout + r.stderr
    result = json.loads(r.stdout)
    assert result["outcome"] == "committed" and result["gate"]["ok"], result
    new_dir = box.install_dir / "releases" / "0.2.0"
    assert tree(base_dir) == before  # the release it was made from: not a byte moved

    # The dependencies are the running release's files (one inode each), the app is new, and
    # every script and the virtualenv name the new release's own directory.
    py = next((new_dir / "lib").glob("python3.*")).name.removeprefix("python")
    assert (new_dir / BOTO.format(py=py)).stat().st_ino == (base_dir / BOTO.format(py=py)).stat().st_ino
    assert (site(new_dir) / "venuecam" / "__init__.py").read_text() != (
        site(base_dir) / "venuecam" / "__init__.py"
    ).read_text()
    for script in (new_dir / "bin").iterdir():
        if script.is_file() and not script.is_symlink():
            assert str(base_dir) not in script.read_text(errors="replace"), script
    assert str(base_dir) not in (new_dir / "pyvenv.cfg").read_text()
    marker = json.loads((new_dir / MARKER).read_text())
    assert marker["delta_from"] == "0.1.0" and len(marker["wheels"]) > 10
    assert any(n.startswith("pytest-") for n in marker["wheels"])  # venuecam-hw-check keeps its pytest

    # The new release stands on its own: without the one it was made from, it still runs.
    hidden = base_dir.with_name(".hidden-0.1.0")
    base_dir.rename(hidden)
    try:
        r = subprocess.run([str(new_dir / "bin" / "python"), "-c", "import boto3, huey, peewee, pytest, venuecam;"
                            " print(venuecam.__version__)"], capture_output=True, text=True)  # fmt: skip
        assert r.returncode == 0 and r.stdout.strip() == "0.2.0", r.stderr
        r = subprocess.run([str(new_dir / "bin" / "venuecam"), "--version"], capture_output=True, text=True)
        assert r.returncode == 0 and r.stdout.strip() == "0.2.0", r.stderr
    finally:
        hidden.rename(base_dir)
    r = box.venuecam("update", "--rollback", "--force", "--json", timeout=400)
    assert json.loads(r.stdout)["outcome"] == "committed", r.stdout + r.stderr
    shutil.rmtree(new_dir)  # the shared box back as the next test expects it
    assert box.releases() == ["0.1.0"]


def test_a_delta_the_running_release_cannot_complete_is_refused_and_nothing_changes(
    box: Box, releases: Releases, base_bundle: Path
) -> None:
    delta = releases.build("0.2.0", "migrate", delta_from=base_bundle)
    left_out = next(n for n, f in bundle.verify(delta, releases.signers).manifest.files.items()
                    if f.get("carried") is False).split("/", 1)[1]  # fmt: skip
    marker_path = box.install_dir / "releases" / "0.1.0" / MARKER
    marker = json.loads(marker_path.read_text())
    # A box whose release came from another build of that wheel (or an older image): the
    # marker records every wheel, and this one differs.
    changed = {**marker, "wheels": {**marker["wheels"], left_out: "0" * 64}}
    marker_path.write_text(json.dumps(changed))
    try:
        before = tree(box.install_dir)
        r = box.venuecam("update", str(delta), "--json", timeout=400)
        assert r.returncode == 1, r.stdout + r.stderr
        assert (
            "is a delta bundle cut against 0.1.0: this box's release 0.1.0 lacks 1 of the wheels" in r.stderr
        )
        assert left_out in r.stderr and "use the full bundle" in r.stderr
        assert tree(box.install_dir) == before and box.releases() == ["0.1.0"]
    finally:
        marker_path.write_text(json.dumps(marker))
    assert box.wait_healthy()["ok"]


def test_delta_manifest_rules(releases: Releases, base_bundle: Path, tmp_path: Path) -> None:
    man = bundle.verify(base_bundle, releases.signers).manifest
    files = {n: dict(f) for n, f in man.files.items()}
    some_dep = next(n for n in files if n != man.app_wheel)

    def build(files: dict[str, dict[str, object]], delta_from: str = "") -> bytes:
        return manifest.build(
            "0.1.0", "", man.python, man.machine, man.requires, man.provides, files, delta_from
        )

    with pytest.raises(BundleError, match=r"is not carried, but delta_from names no release"):
        build({**files, some_dep: {**files[some_dep], "carried": False}})
    with pytest.raises(BundleError, match=r"the release's own wheel must be carried"):
        build({**files, man.app_wheel: {**files[man.app_wheel], "carried": False}}, "0.0.9")
    with pytest.raises(BundleError, match=r"carried: expected true or false"):
        build({**files, some_dep: {**files[some_dep], "carried": "no"}}, "0.0.9")
    with pytest.raises(BundleError, match=r"delta_from: expected a version"):
        build(files, "latest")

    # A bundle that holds a file its signed manifest says it leaves out: refused.
    raw = build({**files, some_dep: {**files[some_dep], "carried": False}}, "0.0.9")
    (tmp_path / "m.json").write_bytes(raw)
    from venuecam.update import signing

    sig = signing.sign(releases.key, tmp_path / "m.json", signing.RELEASE).read_bytes()
    with tarfile.open(base_bundle) as tar:
        tar.extractall(tmp_path / "x", filter="data")
    paths = {n: tmp_path / "x" / n for n in files}
    odd = tmp_path / "odd.bundle"
    bundle.write(odd, raw, sig, paths)
    with tarfile.open(odd, "a") as tar:
        tar.add(paths[some_dep], arcname=some_dep)
    with pytest.raises(BundleError, match="says it does not carry"):
        bundle.verify(odd, releases.signers)


def test_delta_from_names_what_it_cannot_read(releases: Releases, tmp_path: Path) -> None:
    junk = tmp_path / "junk.json"
    junk.write_text('{"version": "0.1.0"}')
    with pytest.raises(SystemExit, match=r"junk.json: neither a bundle, a manifest nor a release marker"):
        build_mod.release_wheels(junk)
    broken = tmp_path / "broken.bundle"
    broken.write_bytes(b"\0" * 2048)
    with pytest.raises(SystemExit, match=r"broken.bundle"):
        build_mod.release_wheels(broken)


def test_reuse_plan_installs_what_differs_and_removes_what_is_dropped() -> None:
    have = {"venuecam-0.1.0-py3-none-any.whl": "a", "boto3-1.0-py3-none-any.whl": "b",
            "six-1.0-py2.py3-none-any.whl": "c", "Old_Thing-2.0-py3-none-any.whl": "d"}  # fmt: skip
    want = {"venuecam-0.2.0-py3-none-any.whl": "e", "boto3-1.1-py3-none-any.whl": "f",
            "six-1.0-py2.py3-none-any.whl": "c"}  # fmt: skip
    install, remove = reuse.plan(have, want)
    assert install == ["boto3-1.1-py3-none-any.whl", "venuecam-0.2.0-py3-none-any.whl"]
    assert remove == ["old-thing"]  # boto3 and venuecam are replaced by pip, not removed first

"""Installing a release: from its bundle into a fresh virtualenv (every wheel by pip), against
over a hard-linked copy of the running release (pip for what differs), and what a delta bundle
saves on the line. Real bundles for this machine, built from this tree (tests/update_rig).

- `update_install_full_s`, `update_install_reuse_s`, `update_install_reuse_ratio` (full/reuse);
- `update_bundle_full_mb`, `update_bundle_delta_mb`, `update_bundle_delta_ratio` (full/delta);
- `update_release_disk_full_mb`, `update_release_disk_reuse_mb`: what the new release adds to
  the root slot beside the running one (du counts a hard-linked file once).
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(TESTS))

from update_rig import BOX_PYTHON, Releases  # noqa: E402
from venuecam.update import bundle  # noqa: E402
from venuecam.update.layout import Layout  # noqa: E402

MB = 1e6


def _du_bytes(*paths: Path) -> int:
    out = subprocess.run(
        ["du", "-s", "-B1", "-c", *map(str, paths)], capture_output=True, text=True, check=True
    )
    return int(out.stdout.splitlines()[-1].split()[0])


def _install(layout: Layout, bundle_path: Path, releases: Releases, work: Path, base: str | None) -> float:
    v = bundle.verify(bundle_path, releases.signers)
    files = bundle.extract(v, work / f"unpack-{v.manifest.version}-{base}")
    marker = {**v.manifest.summary()}
    t0 = time.monotonic()
    layout.install(v.manifest.version, sorted(files.values()), BOX_PYTHON, marker, base)
    return time.monotonic() - t0


def run(work: Path) -> dict[str, float]:
    releases = Releases(work / "releases")
    old = releases.build("0.1.0")
    new = releases.build("0.2.0")
    delta = releases.build("0.2.0", delta_from=old)

    full = Layout(work / "full")
    _install(full, old, releases, work, None)
    full_s = _install(full, new, releases, work, None)
    full_disk = _du_bytes(full.dir("0.1.0"), full.dir("0.2.0")) - _du_bytes(full.dir("0.1.0"))

    reused = Layout(work / "reuse")
    _install(reused, old, releases, work, None)
    reuse_s = _install(reused, delta, releases, work, "0.1.0")
    reuse_disk = _du_bytes(reused.dir("0.1.0"), reused.dir("0.2.0")) - _du_bytes(reused.dir("0.1.0"))

    return {
        "update_install_full_s": round(full_s, 2),
        "update_install_reuse_s": round(reuse_s, 2),
        "update_install_reuse_ratio": round(full_s / reuse_s, 1),
        "update_bundle_full_mb": round(new.stat().st_size / MB, 2),
        "update_bundle_delta_mb": round(delta.stat().st_size / MB, 3),
        "update_bundle_delta_ratio": round(new.stat().st_size / delta.stat().st_size, 1),
        "update_release_disk_full_mb": round(full_disk / MB, 1),
        "update_release_disk_reuse_mb": round(reuse_disk / MB, 1),
    }

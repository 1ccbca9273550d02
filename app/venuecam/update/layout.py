"""Releases on disk: `<install_dir>/releases/<version>/` (one virtualenv each), `current` (what
runs: every program is started through it) and `committed` (the last release that passed its
health gate: what a reboot falls back to). Links change by an atomic rename, then a directory
fsync, so a power cut leaves either the old link or the new one.

A release directory is complete only once its marker `.venuecam-release.json` exists (written
last); anything else under releases/ is a leftover and is removed before reuse.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from venuecam.errors import VenuecamError
from venuecam.update import reuse

MARKER = ".venuecam-release.json"


class InstallError(VenuecamError):
    """A release could not be installed (pip, venv, disk)."""


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Layout:
    def __init__(self, install_dir: str | Path) -> None:
        self.root = Path(install_dir)
        self.releases = self.root / "releases"

    def dir(self, version: str) -> Path:
        return self.releases / version

    def _link(self, name: str) -> str | None:
        try:
            target = os.readlink(self.root / name)
        except OSError:
            return None
        return Path(target).name

    def current(self) -> str | None:
        return self._link("current")

    def committed(self) -> str | None:
        """The fallback release; before any update, the one the image shipped (current)."""
        return self._link("committed") or self.current()

    def point(self, name: str, version: str) -> None:
        if not self.complete(version):
            raise InstallError(f"release {version} is not installed completely: not switching {name} to it")
        tmp = self.root / f".{name}.tmp"
        tmp.unlink(missing_ok=True)
        os.symlink(f"releases/{version}", tmp)
        os.replace(tmp, self.root / name)
        fsync_dir(self.root)

    def marker(self, version: str) -> dict[str, Any] | None:
        try:
            return json.loads((self.dir(version) / MARKER).read_text())
        except (OSError, ValueError):
            return None

    def complete(self, version: str) -> bool:
        return self.marker(version) is not None and (self.dir(version) / "bin" / "venuecam").exists()

    def installed(self) -> list[str]:
        if not self.releases.is_dir():
            return []
        return sorted(p.name for p in self.releases.iterdir() if p.is_dir() and self.complete(p.name))

    def install(self, version: str, wheels: list[Path], python: str, marker: dict[str, Any],
                base: str | None = None) -> bool:  # fmt: skip
        """Make releases/<version>/ from the wheels; False when that exact build is there already.

        With `base` (the release running, when its marker lists its wheels) the new release is
        that one's tree hard-linked, with only the wheels that differ installed over it
        (update.reuse); `marker["wheels"]` is every wheel of the new release, and the ones not
        in `wheels` (a delta bundle's) must be the base's very own."""
        have = self.marker(version)
        if have and have.get("digest") == marker.get("digest") and self.complete(version):
            return False
        if version in (self.current(), self._link("committed")):
            raise InstallError(
                f"release {version} is in use with different contents: give the new build a new version"
            )
        target = self.dir(version)
        self.remove(version)
        self.releases.mkdir(parents=True, exist_ok=True)
        # Without the new release's wheel list there is nothing to compare: install it whole.
        base_wheels = self.wheels(base) if base and marker.get("wheels") else None
        if base_wheels is not None:
            assert base
            wheels = self._from_base(base, base_wheels, target, wheels, marker.get("wheels") or {})
        else:
            missing = sorted(set(marker.get("wheels") or {}) - {w.name for w in wheels})
            if missing:
                raise InstallError(f"release {version}: {len(missing)} wheel(s) not in the bundle and no "
                                   f"release to take them from: {', '.join(missing[:3])}")  # fmt: skip
            # --system-site-packages: on Raspberry Pi OS that is how python3-picamera2 is seen.
            _run(
                [python, "-m", "venv", "--without-pip", "--system-site-packages", str(target)],
                "making the virtualenv",
            )
        if wheels:
            # This release's pip installs the next one; the bundle carries pip for the one after.
            # Over a copy of the base, --force-reinstall replaces what the copy has of a wheel.
            how = "--force-reinstall" if base_wheels is not None else "--ignore-installed"
            _run([sys.executable, "-m", "pip", "--python", str(target / "bin" / "python"), "install", "--quiet",
                  "--no-index", "--no-deps", how, "--disable-pip-version-check",
                  "--no-warn-script-location", "--no-compile", *map(str, wheels)], "installing the wheels")  # fmt: skip
        compile_release(target)
        if not (target / "bin" / "venuecam").exists():
            raise InstallError(f"release {version}: the wheels installed no venuecam command")
        self.mark(version, marker)
        return True

    def wheels(self, version: str) -> dict[str, str] | None:
        """The wheels a complete release was installed from (file name -> sha256), if recorded."""
        got = (self.marker(version) or {}).get("wheels") if self.complete(version) else None
        return dict(got) if isinstance(got, dict) and got else None

    def _from_base(self, base: str, have: dict[str, str], target: Path, wheels: list[Path],
                   want: dict[str, str]) -> list[Path]:  # fmt: skip
        """Copy the base release into `target` and remove what the new one drops; returns the
        wheels still to install."""
        install, remove = reuse.plan(have, want)
        by_name = {w.name: w for w in wheels}
        lacking = [n for n in install if n not in by_name]
        if lacking:
            raise InstallError(f"{len(lacking)} wheel(s) neither in the bundle nor in release {base}: "
                               f"{', '.join(lacking[:3])}")  # fmt: skip
        reuse.clone(self.dir(base), target)
        if remove:
            _run([sys.executable, "-m", "pip", "--python", str(target / "bin" / "python"), "uninstall", "--yes",
                  "--quiet", "--disable-pip-version-check", *remove], "removing what the release dropped")  # fmt: skip
        return [by_name[n] for n in install]

    def mark(self, version: str, marker: dict[str, Any]) -> None:
        """Write the release's marker, last: from here on it is complete (fsynced, renamed in)."""
        target = self.dir(version)
        tmp = target / (MARKER + ".tmp")
        with open(tmp, "w") as f:
            json.dump(marker, f, indent=1)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target / MARKER)
        fsync_dir(target)
        subprocess.run(["sync", "-f", str(target / MARKER)], capture_output=True)

    def remove(self, version: str) -> None:
        target = self.dir(version)
        if version in (self.current(), self._link("committed")):
            raise InstallError(f"not removing release {version}: it is in use")
        if target.exists() or target.is_symlink():
            # The marker goes first: a half-removed release is never taken as complete.
            (target / MARKER).unlink(missing_ok=True)
            shutil.rmtree(target, ignore_errors=True)

    def prune(self, keep: set[str]) -> list[str]:
        """Remove every release directory (complete or not) outside `keep` and the links' targets."""
        keep = keep | {v for v in (self.current(), self._link("committed")) if v}
        gone = []
        if self.releases.is_dir():
            for p in sorted(self.releases.iterdir()):
                if p.name not in keep:
                    self.remove(p.name)
                    gone.append(p.name)
        return gone


# pip and setuptools are carried for the next update only: no program imports them.
NOT_COMPILED = r"[/\\]site-packages[/\\](pip|setuptools|_distutils_hack)[/\\]"


def compile_release(target: Path) -> None:
    """Byte-compile what the programs import, on every core, but not pip or setuptools.

    The programs run under ProtectSystem=strict and cannot write their own .pyc, so a release
    is compiled at install. pip would compile serially and everything, itself included
    (measured on the emulated Pi 3: most of the install step); compileall's -j 0 uses all
    cores. A file that does not compile is left as pip leaves it (the self-check imports
    what the programs need, and judges).
    """
    subprocess.run(
        [str(target / "bin" / "python"), "-m", "compileall", "-q", "-j", "0", "-x", NOT_COMPILED,
         str(target / "lib")],
        capture_output=True, timeout=1800,
    )  # fmt: skip


def _run(argv: list[str], what: str) -> None:
    r = subprocess.run(argv, capture_output=True, text=True, timeout=1800)
    if r.returncode != 0:
        tail = (r.stderr or r.stdout).strip().splitlines()[-3:]
        raise InstallError(f"{what} failed: {' / '.join(tail) or r.returncode}")

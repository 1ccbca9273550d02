"""A new release made from the one the box runs: its tree hard-linked, then pip only for the
wheels that differ. Measured on the emulated Pi 3, pip installing every wheel of a release
(botocore's thousands of files above all) was most of an update's install step; a release
usually changes the app's wheel and little else.

Sharing inodes is safe because nothing writes a release's files in place: pip unlinks a file
before it writes one at that path (and an uninstall unlinks), byte-compiling writes a new
file and renames it over, the programs cannot write under ProtectSystem=strict, and the few
files holding the release's own path (script interpreter lines, pyvenv.cfg) are rewritten
here as new files. The running release's files are what it was installed from (its marker
records each wheel's sha256), so a wheel is reused only when the new manifest names the same
file with the same hash.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

# The marker files of a release, never carried over (the new release writes its own, last).
SKIP = re.compile(r"^\.venuecam-release\.json(\.tmp)?$")


def dist_name(wheel: str) -> str:
    """The distribution a wheel file installs, normalised as pip compares them."""
    return re.sub(r"[-_.]+", "-", wheel.split("-", 1)[0]).lower()


def plan(have: dict[str, str], want: dict[str, str]) -> tuple[list[str], list[str]]:
    """(the wheels to install over the copy, the distributions to remove from it), given the
    running release's wheels and the new one's, each file name -> sha256."""
    install = sorted(name for name, sha in want.items() if have.get(name) != sha)
    kept = {dist_name(name) for name in want}
    remove = sorted({dist_name(name) for name in have} - kept)
    return install, remove


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:  # a file system without hard links: the same tree, at the cost of its size
        shutil.copy2(src, dst)


def clone(base: Path, target: Path) -> None:
    """Make `target` a copy of the release at `base` (hard links), its own path in every file
    that names the release's directory."""
    shutil.copytree(base, target, symlinks=True, copy_function=_link_or_copy,
                    ignore=lambda d, names: [n for n in names if Path(d) == base and SKIP.match(n)])  # fmt: skip
    old, new = str(base).encode(), str(target).encode()
    for path in [*sorted((target / "bin").iterdir()), target / "pyvenv.cfg"]:
        if path.is_symlink() or not path.is_file():
            continue
        data = path.read_bytes()
        if old not in data:
            continue
        mode = path.stat().st_mode
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_bytes(data.replace(old, new))
        os.chmod(tmp, mode)
        os.replace(tmp, path)  # a new inode: the running release's file is left as it was

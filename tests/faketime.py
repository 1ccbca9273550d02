"""libfaketime for whole-stack runs: the stack's wall clock set by a file the test rewrites,
the monotonic clock left real (as on a Pi whose clock NTP steps). Never this machine's clock.

`FAKETIME_DONT_FAKE_MONOTONIC=1` needs the small shim in faketime_sleepfix.c preloaded first
(libfaketime 0.9.10 breaks Python 3.11's time.sleep under it); it is compiled once per session.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

LIBFAKETIME = Path("/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1")
SHIM_SOURCE = Path(__file__).with_name("faketime_sleepfix.c")


class FakeClock:
    """The stack's wall clock: `set("-8d")`, `set("+0")` (libfaketime's relative offsets)."""

    def __init__(self, folder: Path, shim: Path) -> None:
        self.rc = folder / "faketime.rc"
        self.set("+0")
        self.env = {
            "LD_PRELOAD": f"{shim} {LIBFAKETIME}",
            "FAKETIME_TIMESTAMP_FILE": str(self.rc),
            "FAKETIME_NO_CACHE": "1",  # a rewrite is seen at the next call
            "FAKETIME_DONT_FAKE_MONOTONIC": "1",
        }

    def set(self, offset: str) -> None:
        tmp = self.rc.with_suffix(".tmp")
        tmp.write_text(f"{offset}\n")
        tmp.replace(self.rc)


def build_shim(folder: Path) -> Path:
    """The shim as a shared object in `folder`; skips (saying why) where the tools are missing."""
    if not LIBFAKETIME.exists():
        pytest.skip(f"{LIBFAKETIME} missing: `make deps-test` installs libfaketime")
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no C compiler for the libfaketime sleep shim: `make deps-test` installs gcc")
    out = folder / "faketime_sleepfix.so"
    subprocess.run([cc, "-shared", "-fPIC", "-O2", "-o", str(out), str(SHIM_SOURCE), "-ldl"], check=True)
    return out

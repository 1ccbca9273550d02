"""Headless Chromium (Debian's `chromium`) for tests and benchmarks: load a page, return its
DOM after its scripts ran, or a PNG screenshot; or keep a page open until stopped."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

VIRTUAL_TIME_MS = 4000  # scripts, fetches and timers get this long (virtual time) before the dump


def binary() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        pytest.skip("chromium is not installed (`make deps-test` installs Debian's chromium)")
    return exe


def _argv(profile: str, width: int, height: int) -> list[str]:
    argv = [binary(), "--headless", "--disable-gpu", "--no-first-run", "--hide-scrollbars", "--mute-audio",
            "--disable-dev-shm-usage", "--disable-extensions", f"--user-data-dir={profile}",
            f"--window-size={width},{height}"]  # fmt: skip
    if os.geteuid() == 0:
        argv.append("--no-sandbox")  # Chromium refuses to run as root with its sandbox
    return argv


def _run(
    extra: list[str], url: str, width: int, height: int, timeout: float
) -> subprocess.CompletedProcess[str]:
    with tempfile.TemporaryDirectory(prefix="vc-chromium-") as profile:
        argv = [*_argv(profile, width, height), f"--virtual-time-budget={VIRTUAL_TIME_MS}", *extra, url]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"chromium exited {done.returncode}: {done.stderr[-2000:]}")
    return done


def dump_dom(url: str, width: int = 1100, height: int = 1500, timeout: float = 60) -> str:
    return _run(["--dump-dom"], url, width, height, timeout).stdout


def screenshot(url: str, out: Path, width: int = 1100, height: int = 1500, timeout: float = 60) -> Path:
    _run([f"--screenshot={out}"], url, width, height, timeout)
    if not out.exists():
        raise RuntimeError(f"chromium wrote no screenshot to {out}")
    return out


def open_page(url: str, profile: str, width: int = 1100, height: int = 1500) -> subprocess.Popen[bytes]:
    """Chromium with the page open (its scripts running) until the caller stops it."""
    return subprocess.Popen([*_argv(profile, width, height), "--remote-debugging-port=0", url],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)  # fmt: skip

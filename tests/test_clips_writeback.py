"""`files.WritebackFollower`: a file being written goes to disk as it grows, not at the end.

The kernel's own count of a file's dirty pages (the `cachestat` syscall, Linux 6.5+) is the
witness: without the follower they stay dirty for the kernel's 30 s expiry.
"""

from __future__ import annotations

import ctypes
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import pytest

from venuecam.clips import files

SYS_CACHESTAT = 451  # the same number on x86_64 and arm64
MIB = 1024 * 1024


class _Range(ctypes.Structure):
    _fields_ = [("off", ctypes.c_uint64), ("len", ctypes.c_uint64)]


class _Stat(ctypes.Structure):
    _fields_ = [(name, ctypes.c_uint64) for name in
                ("nr_cache", "nr_dirty", "nr_writeback", "nr_evicted", "nr_recently_evicted")]  # fmt: skip


def dirty_pages(path: Path) -> int:
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(path, os.O_RDONLY)
    try:
        stat = _Stat()
        if libc.syscall(SYS_CACHESTAT, fd, ctypes.byref(_Range(0, 0)), ctypes.byref(stat), 0) != 0:
            err = ctypes.get_errno()
            pytest.skip(f"cachestat unavailable: {os.strerror(err)}")
        return int(stat.nr_dirty)
    finally:
        os.close(fd)


# A writer in another process, as ffmpeg is: 96 MiB, then it waits (no fsync) until told to end.
WRITER = """
import os, sys
with open(sys.argv[1], "wb") as f:
    for _ in range(96):
        f.write(os.urandom(1024 * 1024))
    f.flush()
    print("written", flush=True)
    sys.stdin.readline()
"""


def start_writer(path: Path) -> subprocess.Popen[str]:
    fs = subprocess.run(["stat", "-f", "-c", "%T", str(path.parent)], capture_output=True, text=True).stdout
    if fs.strip() in ("tmpfs", "ramfs"):
        pytest.skip(f"{path.parent} is on {fs.strip()}: its pages are never written back")
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)  # fmt: skip
    assert proc.stdout is not None and proc.stdout.readline().strip() == "written"
    return proc


def finish(proc: subprocess.Popen[str]) -> None:
    assert proc.stdin is not None
    proc.stdin.write("\n")
    proc.stdin.close()
    assert proc.wait(30) == 0


def wait_for_clean(path: Path, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    while (left := dirty_pages(path)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return left


@pytest.mark.skipif(platform.system() != "Linux", reason="cachestat is Linux")
def test_the_followed_file_is_written_back_while_its_writer_still_runs(tmp_path: Path) -> None:
    path = tmp_path / "clip.mp4"
    proc = start_writer(path)
    try:
        assert dirty_pages(path) * 4096 >= 48 * MIB  # still in memory: nothing asked for it yet
        with files.WritebackFollower(path, interval=0.05):
            left = wait_for_clean(path, timeout=20)
        assert left * 4096 < 4 * MIB, f"{left} pages still dirty"
    finally:
        finish(proc)
    assert path.stat().st_size == 96 * MIB


@pytest.mark.skipif(platform.system() != "Linux", reason="cachestat is Linux")
def test_without_the_follower_the_pages_stay_dirty(tmp_path: Path) -> None:
    """The control: what the test above sees is the follower's doing, not the kernel's."""
    path = tmp_path / "clip.mp4"
    proc = start_writer(path)
    try:
        time.sleep(1.0)
        assert dirty_pages(path) * 4096 >= 48 * MIB
    finally:
        finish(proc)
        os.sync()


def test_a_file_that_never_appears_or_vanishes_is_no_error(tmp_path: Path) -> None:
    missing = tmp_path / "never.mp4"
    with files.WritebackFollower(missing, interval=0.01):
        time.sleep(0.1)
    assert not missing.exists()

    short_lived = tmp_path / "gone.mp4"
    short_lived.write_bytes(b"x" * MIB)
    with files.WritebackFollower(short_lived, interval=0.01):
        time.sleep(0.05)
        short_lived.unlink()
        time.sleep(0.05)
    assert not short_lived.exists()

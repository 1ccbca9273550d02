"""Running ffmpeg and friends: no shell, stderr captured, a timeout on every wait,
and children that die with their parent (PR_SET_PDEATHSIG) so none holds a camera."""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass

from venuecam.errors import VenuecamError

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # runs in the child between fork and exec
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except OSError:
        pass


class CommandError(VenuecamError):
    """A tool exited non-zero or timed out; the message carries its last stderr lines."""

    def __init__(self, argv: Sequence[str], returncode: int | None, stderr: str) -> None:
        tail = "\n".join(stderr.strip().splitlines()[-5:])
        what = "timed out" if returncode is None else f"exited {returncode}"
        super().__init__(f"{os.path.basename(argv[0])} {what}: {tail}")
        self.returncode = returncode
        self.stderr = stderr


@dataclass(frozen=True)
class Result:
    stdout: str
    stderr: str


def run(argv: Sequence[str], timeout: float, input_text: str | None = None) -> Result:
    """Run a command to completion; raise CommandError on failure or timeout."""
    try:
        proc = subprocess.run(
            list(argv),
            input=input_text,
            capture_output=True,
            text=True,
            timeout=timeout,
            preexec_fn=_die_with_parent,
            check=False,
        )
    except subprocess.TimeoutExpired as e:
        stderr = e.stderr.decode(errors="replace") if isinstance(e.stderr, bytes) else (e.stderr or "")
        raise CommandError(argv, None, stderr) from None
    if proc.returncode != 0:
        raise CommandError(argv, proc.returncode, proc.stderr)
    return Result(proc.stdout, proc.stderr)


def popen(argv: Sequence[str], **kwargs: object) -> subprocess.Popen[bytes]:
    """Start a long-running child in its own process group, dying with its parent."""
    return subprocess.Popen(  # type: ignore[call-overload, no-any-return]
        list(argv), preexec_fn=_die_with_parent, start_new_session=True, **kwargs
    )


def _low_priority_child() -> None:  # between fork and exec: die with the parent, yield the CPU
    _die_with_parent()
    try:
        os.nice(10)
    except OSError:
        pass


def run_bytes(argv: Sequence[str], timeout: float, low_priority: bool = False) -> bytes:
    """Run a command that writes binary stdout (a JPEG); its stdout, or CommandError.

    `low_priority`: niced, so a picture asked for never takes CPU from recording."""
    try:
        proc = subprocess.run(
            list(argv),
            capture_output=True,
            timeout=timeout,
            preexec_fn=_low_priority_child if low_priority else _die_with_parent,
            check=False,
        )
    except subprocess.TimeoutExpired as e:
        raise CommandError(argv, None, (e.stderr or b"").decode(errors="replace")) from None
    if proc.returncode != 0:
        raise CommandError(argv, proc.returncode, proc.stderr.decode(errors="replace"))
    return proc.stdout


die_with_parent = _die_with_parent  # for callers that run subprocess themselves (binary output)

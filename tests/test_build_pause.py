"""The background image build can be held still for a timing test: every process it started,
including those in a session of their own (as apt starts dpkg), stops and resumes."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from fixtures_image import _descendants, _stopped_group


def state(pid: int) -> str:
    text = Path(f"/proc/{pid}/stat").read_text()
    return text[text.rindex(")") + 2]


def test_the_build_and_its_detached_children_stop_and_resume() -> None:
    proc = subprocess.Popen(["bash", "-c", "setsid sleep 60 & sleep 60 & wait"], start_new_session=True)
    try:
        deadline = time.monotonic() + 10
        while len(tree := _descendants(proc.pid)) < 3:
            assert time.monotonic() < deadline, tree
            time.sleep(0.05)
        with _stopped_group(proc):
            assert {state(p) for p in tree} == {"T"}, [(p, state(p)) for p in tree]
        assert "T" not in {state(p) for p in tree}
    finally:
        for pid in _descendants(proc.pid):
            subprocess.run(["kill", "-9", str(pid)], check=False)
        proc.wait(10)

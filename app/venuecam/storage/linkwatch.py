"""Resume at once when the link comes back, instead of waiting out TCP's retransmission backoff.

After a cut of a few seconds, a connection with data in flight retransmits on a growing
timer (1, 2, 4, 8 ... s): the link can be back for 6-7 s before it sends again. While an
upload runs, `LinkWatch` polls the watchdog's marker file (`connectivity.state.peek`, cheap
every 100 ms); when it sees the link come back (ONLINE with a newer generation after an
OFFLINE, or a whole flap missed between two looks) it shuts down the S3 client's sockets.
The blocked send fails at once and the request is retried on a fresh connection without
botocore's backoff delay; the part being sent goes again from its start (the store never
keeps half a part), the parts before it are already acknowledged and saved in the ledger.

The client's sockets are found by `botocore_patch.SocketTracker` (botocore has no public
way to reach them); if its internals moved, tracking is off and uploads simply resume at
TCP's pace.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from venuecam import logs
from venuecam.connectivity import state as conn_state
from venuecam.storage.botocore_patch import SocketTracker

log = logging.getLogger("venuecam.storage")
POLL_S = 0.1


class LinkWatch(threading.Thread):
    """While an upload runs: on the watchdog's reconnect, abort the stalled connections."""

    def __init__(self, run_dir: Path, tracker: SocketTracker, poll_s: float = POLL_S) -> None:
        super().__init__(daemon=True, name="linkwatch")
        self.run_dir = run_dir
        self.tracker = tracker
        self.poll_s = poll_s
        self.stopped = threading.Event()
        self.aborts = 0

    def run(self) -> None:
        last_status, last_gen = conn_state.peek(self.run_dir)
        while not self.stopped.wait(self.poll_s):
            status, gen = conn_state.peek(self.run_dir)
            back = (
                status == conn_state.ONLINE
                and gen > last_gen
                and (last_status == conn_state.OFFLINE or gen - last_gen >= 2)
            )
            if back:
                n = self.tracker.abort()
                self.aborts += 1
                log.info("%s Link is back (generation %d): %d stalled connection(s) dropped, resending now",
                         logs.UPLOAD, gen, n)  # fmt: skip
            if status != conn_state.UNKNOWN:
                last_status, last_gen = status, gen

    def __enter__(self) -> LinkWatch:
        if self.tracker.installed:
            self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopped.set()
        if self.is_alive():
            self.join(1.0)

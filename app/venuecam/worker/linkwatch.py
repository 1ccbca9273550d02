"""Resume at once when the link comes back, instead of waiting out TCP's retransmission backoff.

After a cut of a few seconds, a connection with data in flight retransmits on a growing
timer (1, 2, 4, 8 ... s): the link can be back for 6-7 s before it sends again. While an
upload runs, `LinkWatch` polls the watchdog's marker file (`connectivity.state.peek`, cheap
every 100 ms); when it sees the link come back (ONLINE with a newer generation after an
OFFLINE, or a whole flap missed between two looks) it shuts down the S3 client's sockets.
The blocked send fails at once and the request is retried on a fresh connection without
botocore's backoff delay; the part being sent goes again from its start (the store never
keeps half a part), the parts before it are already acknowledged and saved in the ledger.

The client's sockets are found by giving its connection pools a connection class that
records each socket it opens. That reaches into botocore's session like
`storage.client._install_socket_options` does; if the internals moved, tracking is off and
uploads simply resume at TCP's pace.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import weakref
from pathlib import Path
from typing import Any

from venuecam import logs
from venuecam.connectivity import state as conn_state

log = logging.getLogger("worker")
POLL_S = 0.1


class SocketTracker:
    """Records every socket one boto3 client opens, so they can be shut down on demand."""

    def __init__(self, client: Any) -> None:
        self.sockets: weakref.WeakSet[socket.socket] = weakref.WeakSet()
        self.retry_now = threading.Event()
        self.installed = self._install(client)
        if self.installed:
            # A request failing because we cut it is retried at once, not after a backoff.
            client.meta.events.register_first("needs-retry.s3", self._needs_retry)

    def _install(self, client: Any) -> bool:
        session = getattr(getattr(client, "_endpoint", None), "http_session", None)
        manager = getattr(session, "_manager", None)
        classes = getattr(session, "_pool_classes_by_scheme", None)
        if manager is None or not isinstance(classes, dict) or len(getattr(manager, "pools", ()) or ()):
            return False
        registry = self.sockets
        tracked: dict[str, Any] = {}
        for scheme, pool_cls in classes.items():
            conn_cls = pool_cls.ConnectionCls

            def _new_conn(self: Any, _base: Any = conn_cls) -> Any:
                sock = _base._new_conn(self)
                registry.add(sock)
                return sock

            conn = type(f"Tracked{conn_cls.__name__}", (conn_cls,), {"_new_conn": _new_conn})
            tracked[scheme] = type(f"Tracked{pool_cls.__name__}", (pool_cls,), {"ConnectionCls": conn})
        session._pool_classes_by_scheme = tracked
        manager.pool_classes_by_scheme = tracked
        return True

    def _needs_retry(self, caught_exception: Exception | None = None, **_: Any) -> float | None:
        if caught_exception is not None and self.retry_now.is_set():
            self.retry_now.clear()
            return 0.0
        return None

    def abort(self) -> int:
        """Shut down every open socket of the client; returns how many."""
        n = 0
        self.retry_now.set()
        for sock in list(self.sockets):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
                n += 1
        return n


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

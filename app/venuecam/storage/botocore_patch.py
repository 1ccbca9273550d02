"""The two places we reach into botocore's internals, kept together so an upgrade is checked once.

botocore offers no public way to set socket options beyond TCP_NODELAY/SO_KEEPALIVE, nor to
reach the sockets of a client's connection pools. Both patches are contained to one client,
made before its first request, and give up (returning False, changing nothing) when the
internals they expect are not there: uploads then run with the system's TCP defaults and
resume after a link cut at TCP's own pace.

- `install_socket_options`: our per-socket TCP settings (`storage.client.socket_options`).
- `SocketTracker`: records each socket the client opens, so `storage.linkwatch.LinkWatch`
  can shut the stalled ones down when the link comes back. A socket is recorded when its
  `connect()` starts (Python's `socket.connect` audit event, on the thread opening one of
  this client's connections), not when it returns: a link cut while a connection is still
  in `connect()` would otherwise leave it waiting out TCP's SYN retries (1, 3, 7 s ...)
  after the link is back. Shutting down a connecting socket ends its `connect()` at once.
"""

from __future__ import annotations

import contextlib
import socket
import sys
import threading
import weakref
from typing import Any

# The registry of the tracked connection being opened on this thread, if any.
_opening = threading.local()
_hook_lock = threading.Lock()
_hook_installed = False


def _audit(event: str, args: tuple[Any, ...]) -> None:
    # Called for every audit event of the process: return at once unless it is ours.
    if event != "socket.connect":
        return
    registry = getattr(_opening, "registry", None)
    if registry is not None and isinstance(args[0], socket.socket):
        registry.add(args[0])


def _install_audit_hook() -> None:
    global _hook_installed
    with _hook_lock:
        if not _hook_installed:
            sys.addaudithook(_audit)  # cannot be removed; does nothing outside a tracked connect
            _hook_installed = True


def install_socket_options(client: Any, opts: list[tuple[int, int, int | bytes]]) -> bool:
    """Give the client's connection pools our socket options.

    botocore has no public knob beyond TCP_NODELAY/SO_KEEPALIVE; its URLLib3Session hands one
    list to urllib3's PoolManager, which copies it into each pool it creates lazily. Replacing
    that list before the first request is contained to this client. If botocore's internals
    moved, nothing is changed and the defaults apply.
    """
    session = getattr(getattr(client, "_endpoint", None), "http_session", None)
    manager = getattr(session, "_manager", None)
    pool_kw = getattr(manager, "connection_pool_kw", None)
    if session is None or not isinstance(getattr(session, "_socket_options", None), list) or pool_kw is None:
        return False
    if getattr(manager, "pools", None) is not None and len(manager.pools):
        return False  # connections exist already; do not mix settings
    session._socket_options = opts
    pool_kw["socket_options"] = opts
    return True


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
                _opening.registry = registry  # the socket is recorded as its connect() starts
                try:
                    sock = _base._new_conn(self)
                finally:
                    _opening.registry = None
                registry.add(sock)
                return sock

            conn = type(f"Tracked{conn_cls.__name__}", (conn_cls,), {"_new_conn": _new_conn})
            tracked[scheme] = type(f"Tracked{pool_cls.__name__}", (pool_cls,), {"ConnectionCls": conn})
        session._pool_classes_by_scheme = tracked
        manager.pool_classes_by_scheme = tracked
        _install_audit_hook()
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

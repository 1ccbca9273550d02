"""The worker's one store client for its after-booking uploads, kept for the process's life.

Making a boto3 client costs ~0.1 s of CPU here and seconds on a Pi 3; the soak found the
worker spending a third of its time making one per upload. The uploads running at once share
it (boto3 clients are thread-safe; its pool has room for all their parts) and one LinkWatch,
which runs while at least one of them does: two watches on one client would each drop its
connections on the same reconnect, the second one the connection the first upload had just
opened to resend.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from venuecam.storage.botocore_patch import SocketTracker
from venuecam.storage.client import make_client, store_identity
from venuecam.storage.linkwatch import LinkWatch

if TYPE_CHECKING:
    from venuecam.config import Config


@dataclass
class _Kept:
    client: Any
    # One tracker for the client's life: it hooks the client's connection pools once, when
    # they are empty (a second one on a used client would record nothing).
    tracker: SocketTracker
    watch: LinkWatch | None = None
    users: int = 0


_kept: dict[tuple[str, ...], _Kept] = {}
_lock = threading.Lock()


@contextmanager
def upload_client(cfg: Config) -> Iterator[Any]:
    """This process's client for `cfg`'s store, its stalled sockets dropped when the
    watchdog sees the link come back, for as long as the block runs."""
    s = cfg.storage
    key = (*store_identity(s), str(cfg.run_dir))
    with _lock:
        kept = _kept.get(key)
        if kept is None:
            client = make_client(s, uploads=cfg.queue.max_concurrent_uploads)
            kept = _kept[key] = _Kept(client, SocketTracker(client))
        kept.users += 1
        if kept.watch is None:
            kept.watch = LinkWatch(cfg.run_dir, kept.tracker).__enter__()
    try:
        yield kept.client
    finally:
        with _lock:
            kept.users -= 1
            watch = kept.watch if kept.users == 0 else None
            if watch is not None:
                kept.watch = None
        if watch is not None:
            watch.__exit__(None, None, None)

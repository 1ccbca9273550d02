"""The worker's kept store client (storage/kept.py): one per store, one link watch while uploads run."""

from __future__ import annotations

import threading
from collections.abc import Callable

from venuecam.config import Config
from venuecam.storage import kept


def watches() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "linkwatch" and t.is_alive()]


def test_uploads_share_one_client_and_one_watch_that_runs_only_while_they_do(
    make_config: Callable[..., Config],
) -> None:
    cfg = make_config(storage={"endpoint_url": "http://127.0.0.1:9", "parallel_parts": 3},
                      queue={"max_concurrent_uploads": 2})  # fmt: skip
    before = len(watches())
    with kept.upload_client(cfg) as first:
        assert len(watches()) == before + 1
        with kept.upload_client(cfg) as second:
            assert second is first and len(watches()) == before + 1
        assert len(watches()) == before + 1  # the first upload still runs
    assert len(watches()) == before
    with kept.upload_client(cfg) as again:
        assert again is first and len(watches()) == before + 1
    assert len(watches()) == before
    # Room in the pool for both uploads' parts at once.
    assert first.meta.config.max_pool_connections == 6


def test_another_store_gets_its_own_client(make_config: Callable[..., Config]) -> None:
    a = make_config(storage={"endpoint_url": "http://127.0.0.1:9"})
    b = make_config(storage={"endpoint_url": "http://127.0.0.1:10"})
    with kept.upload_client(a) as ca, kept.upload_client(b) as cb:
        assert ca is not cb

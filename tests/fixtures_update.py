"""Fixtures for the update tests: one signing key and the bundles built once per session, and
booted boxes (a stack running and healthy on 0.1.0) shared by the tests of a module.

A box costs an install (a virtualenv, every wheel) and a stack start; the tests that only
update it and see it roll back (or refuse) leave it as they found it, so they share one:
`box` hands the module's box to each test after checking that it is still on the base
release with its stack up, and boots a fresh one when it is not (a test that failed halfway).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from update_rig import BASE_SCHEMA, Box, Releases

BASE = "0.1.0"


@pytest.fixture(scope="session")
def releases(tmp_path_factory: pytest.TempPathFactory) -> Releases:
    return Releases(tmp_path_factory.mktemp("releases"))


@pytest.fixture(scope="session")
def base_bundle(releases: Releases) -> Path:
    return releases.build(BASE)


def fresh_servers(s3_server: Any, platform_server: Any) -> None:
    s3_server.reset()
    s3_server.client().create_bucket(Bucket="venue-videos")
    platform_server.reset()  # no booking another module left on the shared simulator defers an update


def booted_box(root: Path, releases: Releases, base_bundle: Path, s3_server: Any, platform_server: Any,
               **over: Any) -> Box:  # fmt: skip
    """A box on the base release, its stack running and healthy (the servers as they are)."""
    b = Box(root, releases, s3_server.endpoint, platform_server.url, **over)
    try:
        b.install(base_bundle)
        b.start()
    except BaseException:
        b.kill_all()
        raise
    return b


def schema(box: Box) -> int:
    with sqlite3.connect(box.cfg.db_path) as conn:
        return conn.execute("PRAGMA user_version").fetchone()[0]


def on_base(box: Box) -> bool:
    """As a fresh box is: the base release only, nothing in progress, the stack up."""
    return (
        box.link("current") == BASE
        and box.link("committed") in (None, BASE)
        and box.releases() == [BASE]
        and not (box.state().get("op") or box.state().get("pending"))
        and box.supervisord_pid() is not None
        and schema(box) == BASE_SCHEMA
    )


class Shared:
    """The module's box, replaced by a freshly booted one when a test left it changed."""

    def __init__(self, factory: pytest.TempPathFactory, releases: Releases, base_bundle: Path,
                 s3_server: Any, platform_server: Any) -> None:  # fmt: skip
        self.args = (releases, base_bundle, s3_server, platform_server)
        self.factory = factory
        self.current: Box | None = None

    def get(self) -> Box:
        if self.current is None or not on_base(self.current):
            self.close()
            fresh_servers(*self.args[2:])
            self.current = booted_box(self.factory.mktemp("box") / "box", *self.args)
        return self.current

    def close(self) -> None:
        if self.current is not None:
            self.current.kill_all()
            self.current = None


@pytest.fixture(scope="module")
def shared_box(tmp_path_factory: pytest.TempPathFactory, releases: Releases, base_bundle: Path,
               s3_server: Any, platform_server: Any) -> Iterator[Shared]:  # fmt: skip
    shared = Shared(tmp_path_factory, releases, base_bundle, s3_server, platform_server)
    yield shared
    shared.close()


@pytest.fixture
def box(shared_box: Shared) -> Box:
    """A booted box on 0.1.0 (the module's, when the last test left it so)."""
    return shared_box.get()

"""Fixtures for the update tests: one signing key and the bundles built once per session."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from update_rig import Box, Releases


@pytest.fixture(scope="session")
def releases(tmp_path_factory: pytest.TempPathFactory) -> Releases:
    return Releases(tmp_path_factory.mktemp("releases"))


@pytest.fixture(scope="session")
def base_bundle(releases: Releases) -> Path:
    return releases.build("0.1.0")


@pytest.fixture
def box(tmp_path: Path, releases: Releases, base_bundle: Path, s3: Any, platform: Any) -> Iterator[Box]:
    """A box on 0.1.0 with its stack running and healthy."""
    b = Box(tmp_path / "box", releases, s3.endpoint, platform.url)
    b.install(base_bundle)
    b.start()
    yield b
    b.kill_all()

"""Shared fixtures: a config in a temp dir, the database, an S3 server in its own process.

Fixture modules per area live beside this file (fixtures_*.py) and load as plugins.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from faultproxy import FaultProxy
from venuecam import config as config_mod
from venuecam import config_dump
from venuecam import db as db_mod

pytest_plugins = ["fixtures_platform", "fixtures_status", "fixtures_update", "fixtures_image", "netns"]

VENV_BIN = Path(sys.executable).parent
S3_KEY_ID = "testing-key-id"
S3_SECRET = "testing-secret-key-0123456789"
API_TOKEN = "test-token-abcdef123456"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "slow: takes more than ~30 s (image builds, long outages)")
    config.addinivalue_line("markers", "root: needs root (network namespaces, loop devices)")
    os.environ.setdefault("GPIOZERO_PIN_FACTORY", "mock")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(host: str, port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"nothing listening on {host}:{port} after {timeout}s")


def needs_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root")


def toml_value(v: Any) -> str:
    return config_dump.toml_value(v)


def render_toml(sections: dict[str, Any]) -> str:
    lines: list[str] = []
    for name, body in sections.items():
        if isinstance(body, list):
            for item in body:
                lines.append(f"[[{name}]]")
                lines += [f"{k} = {toml_value(v)}" for k, v in item.items()]
        else:
            lines.append(f"[{name}]")
            lines += [f"{k} = {toml_value(v)}" for k, v in body.items()]
    return "\n".join(lines) + "\n"


def base_sections(data_dir: Path, **over: dict[str, Any]) -> dict[str, Any]:
    """A complete, valid config as TOML sections; `over` replaces keys per section."""
    sections: dict[str, Any] = {
        "device": {
            "device_id": "test-box",
            "venue_id": "42",
            "timezone": "Asia/Jakarta",
            "data_dir": str(data_dir / "data"),
            "run_dir": str(data_dir / "run"),
            "demo": True,
        },
        "booking_api": {"base_url": "http://127.0.0.1:9", "api_token": API_TOKEN, "timeout_s": 5.0},
        "storage": {
            "endpoint_url": "http://127.0.0.1:9",
            "bucket": "venue-videos",
            "access_key_id": S3_KEY_ID,
            "secret_access_key": S3_SECRET,
            "region": "us-east-1",
            "part_size_mb": 5,
            "multipart_threshold_mb": 8,
        },
        "cameras": [
            {
                "name": "CAMERA_A",
                "field_id": 1,
                "source": "testsrc",
                "segment_seconds": 2,
                "width": 320,
                "height": 240,
                "fps": 10,
                "bitrate_kbps": 300,
            },
        ],  # fmt: skip
        "leds": {"pin_factory": "mock"},
    }
    for section, values in over.items():
        if isinstance(values, list) or section not in sections:
            sections[section] = values
        else:
            sections[section] = {**sections[section], **values}
    return sections


@pytest.fixture
def make_config(tmp_path: Path) -> Callable[..., config_mod.Config]:
    """make_config(storage={...}, cameras=[...]) -> a loaded Config written to tmp_path."""

    def make(**over: Any) -> config_mod.Config:
        path = tmp_path / "venuecam.toml"
        path.write_text(render_toml(base_sections(tmp_path, **over)))
        return config_mod.load(path)

    return make


@pytest.fixture
def cfg(make_config: Callable[..., config_mod.Config]) -> config_mod.Config:
    return make_config()


@pytest.fixture
def database(cfg: config_mod.Config) -> Iterator[Any]:
    d = db_mod.open_db(cfg.db_path)
    yield d
    d.close()


# ---------------------------------------------------------------- S3 (moto server)


class S3Server:
    def __init__(self, proc: subprocess.Popen[bytes], endpoint: str) -> None:
        self.proc = proc
        self.endpoint = endpoint

    def client(self) -> Any:
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=S3_KEY_ID,
            aws_secret_access_key=S3_SECRET,
            region_name="us-east-1",
        )

    def reset(self) -> None:
        import requests

        requests.post(f"{self.endpoint}/moto-api/reset", timeout=5)


def start_moto(host: str = "127.0.0.1", port: int | None = None) -> S3Server:
    port = port or free_port()
    exe = shutil.which("moto_server", path=str(VENV_BIN)) or "moto_server"
    proc = subprocess.Popen(
        [exe, "-H", host, "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    wait_for_port(host, port)
    return S3Server(proc, f"http://{host}:{port}")


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    server = start_moto()
    yield server
    server.proc.terminate()
    server.proc.wait(10)


@pytest.fixture
def s3(s3_server: S3Server) -> S3Server:
    """A fresh store with the test bucket."""
    s3_server.reset()
    s3_server.client().create_bucket(Bucket="venue-videos")
    return s3_server


@pytest.fixture
def proxy(s3: S3Server, tmp_path: Path) -> Iterator[FaultProxy]:
    """The fresh store behind tests/faultproxy.py (its own process), for faults on the wire."""
    host, port = s3.endpoint.removeprefix("http://").rsplit(":", 1)
    p = FaultProxy.start((host, 0), (host, int(port)), tmp_path / "proxy.sock")
    yield p
    p.stop()

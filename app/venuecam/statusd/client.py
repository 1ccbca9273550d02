"""A small client for the status socket: what the `venuecam` CLI uses. Stdlib only, fast to import.

client = StatusClient.from_config(args.config)
status, body = client.get("/api/queue-status")
"""

from __future__ import annotations

import http.client
import json
import os
import socket
from typing import Any

DEFAULT_CONFIG = "/etc/venuecam/venuecam.toml"  # = config.DEFAULT_PATH
CONFIG_ENV = "VENUECAM_CONFIG"  # = config.ENV_PATH
DEFAULT_RUN_DIR = "/run/venuecam"  # = DeviceConfig.run_dir


def socket_path(config_path: str | None) -> str:
    """Where the status socket is, read straight from the TOML.

    `config.load()` would validate the whole file, and building its dataclasses costs more
    than the rest of `venuecam status` together. A test keeps the two answers equal.
    The config is 0600 root on a real box: a user of group venuecam who cannot read it
    gets the default socket path.
    """
    import tomllib

    from venuecam.errors import ConfigError

    explicit = config_path or os.environ.get(CONFIG_ENV)
    path = explicit or DEFAULT_CONFIG
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except PermissionError:
        data = {}
    except FileNotFoundError:
        if explicit:
            raise ConfigError(f"{path}: config file not found (set --config or {CONFIG_ENV})") from None
        data = {}
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML: {e}") from None
    status, device = data.get("status") or {}, data.get("device") or {}
    custom = status.get("socket_path") if isinstance(status, dict) else None
    if isinstance(custom, str) and custom:
        return custom
    run_dir = device.get("run_dir") if isinstance(device, dict) else None
    return os.path.join(run_dir if isinstance(run_dir, str) else DEFAULT_RUN_DIR, "status.sock")


class ServiceDown(Exception):
    """Nothing answers on the status socket (statusd not running, or no permission)."""


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self._path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


class StatusClient:
    def __init__(self, socket_path: str | os.PathLike[str], timeout: float = 15.0) -> None:
        self.socket_path = os.fspath(socket_path)
        self.timeout = timeout

    @classmethod
    def from_config(cls, config_path: str | None) -> StatusClient:
        return cls(socket_path(config_path))

    def request(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        conn = _UnixConnection(self.socket_path, self.timeout)
        data = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"} if data is not None else {}
        try:
            conn.request(method, path, body=data, headers=headers)
            resp = conn.getresponse()
            raw = resp.read()
        except FileNotFoundError:
            raise ServiceDown(f"statusd is not running: no socket at {self.socket_path}") from None
        except PermissionError:
            raise ServiceDown(
                f"no permission to use {self.socket_path} (join group venuecam, or use sudo)"
            ) from None
        except ConnectionRefusedError:
            raise ServiceDown(f"statusd is not running: nothing listens on {self.socket_path}") from None
        except TimeoutError:
            raise ServiceDown(
                f"statusd did not answer within {self.timeout:g} s on {self.socket_path}"
            ) from None
        except (OSError, http.client.HTTPException) as e:
            raise ServiceDown(f"statusd connection failed on {self.socket_path}: {e}") from None
        finally:
            conn.close()
        ctype = resp.getheader("Content-Type", "")
        if ctype.startswith("application/json"):
            try:
                return resp.status, json.loads(raw.decode("utf-8"))
            except ValueError:
                pass
        return resp.status, raw.decode("utf-8", errors="replace")

    def get(self, path: str) -> tuple[int, Any]:
        return self.request("GET", path)

    def post(self, path: str, body: Any = None) -> tuple[int, Any]:
        return self.request("POST", path, body)


EXIT_API_ERROR = 1
EXIT_SERVICE_DOWN = 3


def call_or_exit(config_path: str | None, method: str, path: str, body: Any = None) -> Any:
    """For CLI commands: the answer's body, or a plain message on stderr and an exit code."""
    import sys

    client = StatusClient.from_config(config_path)
    try:
        status, data = client.request(method, path, body)
    except ServiceDown as e:
        print(f"venuecam: {e}", file=sys.stderr)
        print("  is it running? `supervisorctl status statusd`", file=sys.stderr)
        raise SystemExit(EXIT_SERVICE_DOWN) from None
    if status >= 400:
        message = data.get("message", data) if isinstance(data, dict) else data
        print(f"venuecam: {message} (HTTP {status})", file=sys.stderr)
        raise SystemExit(EXIT_API_ERROR)
    return data

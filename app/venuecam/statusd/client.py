"""A small client for the status socket: what the `venuecam` CLI uses. Stdlib only, fast to import.

client = StatusClient.from_config(args.config)
status, body = client.get("/api/queue-status")

It speaks just enough HTTP/1.1 itself (one request, `Connection: close`, read to the end):
`http.client` pulls in `email` and `ssl`, which cost `venuecam status` about a third of its
start-up time on a Pi, for nothing a Unix socket to our own server needs.
"""

from __future__ import annotations

import _socket  # socket.py's C core: the wrapper's enum set-up alone costs ~5 ms at start
import json
import os

from venuecam.statusd.config_peek import peek

TYPE_CHECKING = False  # no `typing` at run time: its import is ~5 ms of `venuecam status`
if TYPE_CHECKING:
    from typing import Any

DEFAULT_CONFIG = "/etc/venuecam/venuecam.toml"  # = config.DEFAULT_PATH
CONFIG_ENV = "VENUECAM_CONFIG"  # = config.ENV_PATH
DEFAULT_RUN_DIR = "/run/venuecam"  # = DeviceConfig.run_dir


SOCKET_SETTINGS = (("status", "socket_path"), ("device", "run_dir"))


def socket_path(config_path: str | None) -> str:
    """Where the status socket is, read straight from the TOML.

    `config.load()` would validate the whole file, and building its dataclasses costs more
    than the rest of `venuecam status` together; the two settings are peeked at (see
    config_peek), with `tomllib` for files in any other shape. A test keeps the answers equal.
    The config is 0600 root on a real box: a user of group venuecam who cannot read it
    gets the default socket path.
    """
    explicit = config_path or os.environ.get(CONFIG_ENV)
    path = explicit or DEFAULT_CONFIG
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except PermissionError:
        raw = b""
    except FileNotFoundError:
        if explicit:
            from venuecam.errors import ConfigError

            raise ConfigError(f"{path}: config file not found (set --config or {CONFIG_ENV})") from None
        raw = b""
    try:
        settings = peek(raw.decode("utf-8"), SOCKET_SETTINGS)
    except UnicodeDecodeError:
        settings = None
    if settings is None:
        settings = _settings_via_tomllib(path, raw)
    custom = settings.get(("status", "socket_path"))
    if isinstance(custom, str) and custom:
        return custom
    run_dir = settings.get(("device", "run_dir"))
    return os.path.join(run_dir if isinstance(run_dir, str) else DEFAULT_RUN_DIR, "status.sock")


def _settings_via_tomllib(path: str, raw: bytes) -> dict[tuple[str, str], Any]:
    import tomllib

    from venuecam.errors import ConfigError

    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise ConfigError(f"{path}: not valid TOML: {e}") from None
    out: dict[tuple[str, str], Any] = {}
    for table, key in SOCKET_SETTINGS:
        section = data.get(table)
        if isinstance(section, dict) and key in section:
            out[(table, key)] = section[key]
    return out


class ServiceDown(Exception):
    """Nothing answers on the status socket (statusd not running, or no permission)."""


class BadResponse(Exception):
    """The server's answer was not HTTP we understand (cut short, or garbled)."""


MAX_RESPONSE = 64 * 1024 * 1024  # a runaway answer must not eat the CLI's memory


def _request_bytes(method: str, path: str, data: bytes | None) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: localhost", "Connection: close"]
    if data is not None:
        lines += ["Content-Type: application/json", f"Content-Length: {len(data)}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (data or b"")


def _read_all(sock: _socket.socket) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        size += len(chunk)
        if size > MAX_RESPONSE:
            raise BadResponse(f"answer larger than {MAX_RESPONSE} bytes")


def parse_response(raw: bytes) -> tuple[int, dict[str, str], bytes]:
    """(status, headers with lower-case names, body) of one whole HTTP/1.x response."""
    head, sep, rest = raw.partition(b"\r\n\r\n")
    if not sep:
        raise BadResponse("the answer ended before its headers did")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    parts = status_line.split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
        raise BadResponse(f"not an HTTP status line: {status_line[:80]!r}")
    headers: dict[str, str] = {}
    for line in header_lines:
        name, colon, value = line.partition(":")
        if colon:
            headers[name.strip().lower()] = value.strip()
    length = headers.get("content-length")
    if length is not None:
        if not length.isdigit() or len(rest) < int(length):
            raise BadResponse(f"the answer's body was cut short ({len(rest)} of {length} bytes)")
        rest = rest[: int(length)]
    elif headers.get("transfer-encoding"):
        raise BadResponse("chunked answers are not supported")
    return int(parts[1]), headers, rest


class StatusClient:
    def __init__(self, socket_path: str | os.PathLike[str], timeout: float = 15.0) -> None:
        self.socket_path = os.fspath(socket_path)
        self.timeout = timeout

    @classmethod
    def from_config(cls, config_path: str | None) -> StatusClient:
        return cls(socket_path(config_path))

    def request(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        status, headers, raw = self.request_raw(method, path, body)
        if headers.get("content-type", "").startswith("application/json"):
            try:
                return status, json.loads(raw.decode("utf-8"))
            except ValueError:
                pass
        return status, raw.decode("utf-8", errors="replace")

    def request_raw(self, method: str, path: str, body: Any = None) -> tuple[int, dict[str, str], bytes]:
        """(status, headers with lower-case names, body bytes): for answers that are not text."""
        data = None if body is None else json.dumps(body).encode()
        sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self.socket_path)
            sock.sendall(_request_bytes(method, path, data))
            status, headers, raw = parse_response(_read_all(sock))
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
        except (OSError, BadResponse) as e:
            raise ServiceDown(f"statusd connection failed on {self.socket_path}: {e}") from None
        finally:
            sock.close()
        return status, headers, raw

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

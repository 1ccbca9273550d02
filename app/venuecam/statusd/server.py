"""The sockets: HTTP/1.1 on a Unix socket (0660, group venuecam) and optionally 127.0.0.1 TCP.

Each connection gets its own thread with a read timeout, so a slow or silent client only
ever holds itself up; past `MAX_CLIENTS` connections new ones get an immediate 503.
Every error, including a malformed request line or an oversized body, is a JSON answer.
"""

from __future__ import annotations

import grp
import http.server
import logging
import os
import pwd
import socket
import socketserver
import struct
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from venuecam.statusd.app import StatusApp
from venuecam.statusd.messages import Request, Response, error_body

log = logging.getLogger("venuecam.statusd")

MAX_BODY = 64 * 1024
FILE_CHUNK = 256 * 1024
READ_TIMEOUT_S = 10.0  # per read; a client that says nothing this long is dropped
MAX_CLIENTS = 64
# Requests are read by one thread per connection (a slow client holds only its own) and
# answered by a few long-lived threads, each keeping its database connection and its page
# cache warm: a fresh SQLite connection per request costs more than the query.
HANDLER_THREADS = 4
ANSWER_TIMEOUT_S = 60.0
SOCKET_MODE = 0o660
_BUSY = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nConnection: close\r\n"
    b'Content-Length: 85\r\n\r\n{"success": false, "status": "error", "code": 503, "message": "too many clients"}\n'
)


class StatusHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Answer unparseable and HTTP/0.9-style requests with a status line and headers too.
    default_request_version = "HTTP/1.1"
    server_version = "venuecam-statusd"
    sys_version = ""
    timeout = READ_TIMEOUT_S
    server: Any

    # --- transport details
    def address_string(self) -> str:
        # On a Unix socket client_address is '' (BaseHTTPRequestHandler would IndexError).
        return self.client_address[0] if isinstance(self.client_address, tuple) else "unix"

    def _peer(self) -> str:
        if self.server.via_tcp:
            return f"tcp:{self.address_string()}"
        try:
            creds = self.connection.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
            _, uid, _ = struct.unpack("3i", creds)
            return f"unix:{pwd.getpwuid(uid).pw_name}"
        except (OSError, KeyError):
            return "unix"

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)

    def log_request(self, code: Any = "-", size: Any = "-") -> None:
        if isinstance(code, int) and code >= 400:
            log.info("%s %r -> %s", self.address_string(), self.requestline[:200], code)

    # --- every answer is JSON, errors included
    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        text = message or self.responses.get(code, ("error",))[0]
        if code in (400, 408, 413, 414, 431) or code >= 500:
            self.close_connection = True
        self._send(Response(code, error_body(code, text)))

    def _send(self, resp: Response) -> None:
        if resp.file is not None:
            self._send_file(resp)
            return
        data = resp.encode()
        try:
            self.send_response(resp.status)
            self.send_header("Content-Type", resp.content_type)
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Cache-Control", "no-store")
            for k, v in resp.headers.items():
                self.send_header(k, v)
            if self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError, TimeoutError):
            self.close_connection = True

    def _send_file(self, resp: Response) -> None:
        """A file from disk (a cut clip): whole, or the one byte range a video player asks for."""
        assert resp.file is not None
        try:
            f = resp.file.open("rb")
        except OSError as e:
            self._send(Response(404, error_body(404, f"{resp.file.name}: {e.strerror}")))
            return
        with f:
            total = os.fstat(f.fileno()).st_size
            span = byte_range(self.headers.get("Range"), total)
            if span is None:
                self._send(Response(416, error_body(416, f"Range: expected bytes=START-END within {total} bytes"),
                                    headers={"Content-Range": f"bytes */{total}"}))  # fmt: skip
                return
            start, end = span
            partial = (start, end) != (0, total - 1) and total > 0
            try:
                self.send_response(206 if partial else 200)
                self.send_header("Content-Type", resp.content_type)
                self.send_header("Content-Length", str(end - start + 1 if total else 0))
                self.send_header("Accept-Ranges", "bytes")
                self.send_header("Cache-Control", "no-store")
                if partial:
                    self.send_header("Content-Range", f"bytes {start}-{end}/{total}")
                self.end_headers()
                if self.command == "HEAD" or not total:
                    return
                f.seek(start)
                left = end - start + 1
                while left > 0:
                    chunk = f.read(min(FILE_CHUNK, left))
                    if not chunk:
                        break
                    self.wfile.write(chunk)
                    left -= len(chunk)
            except (BrokenPipeError, ConnectionResetError, TimeoutError):
                self.close_connection = True

    def _read_body(self) -> bytes | None:
        if self.headers.get("Transfer-Encoding"):
            self.send_error(411, "chunked bodies are not supported: send Content-Length")
            return None
        raw = self.headers.get("Content-Length")
        if raw is None:
            return b""
        try:
            length = int(raw)
            if length < 0:
                raise ValueError
        except ValueError:
            self.send_error(400, f"Content-Length: expected a byte count, got {raw[:40]!r}")
            return None
        if length > MAX_BODY:
            self.send_error(413, f"body too large: {length} bytes (limit {MAX_BODY})")
            return None
        body = self.rfile.read(length)
        if len(body) < length:
            self.close_connection = True
            return None  # the client went away mid-body
        return body

    def _dispatch(self) -> None:
        body = self._read_body()
        if body is None:
            return
        parts = urlsplit(self.path)
        try:
            query = dict(
                parse_qsl(parts.query, keep_blank_values=True, strict_parsing=False, max_num_fields=50)
            )
        except ValueError:
            self.send_error(400, "too many query parameters")
            return
        req = Request(
            method=self.command,
            path=unquote(parts.path) or "/",
            query=query,
            headers={k.lower(): v for k, v in self.headers.items()},
            body=body,
            via_tcp=self.server.via_tcp,
            peer=self._peer(),
            via_lan=self.server.via_lan,
        )
        try:
            resp = self.server.answer(req)
        except TimeoutError:
            resp = Response(503, error_body(503, "statusd is busy; try again"))
        self._send(resp)

    def do_GET(self) -> None:  # noqa: N802 - the stdlib's naming
        self._dispatch()

    def do_POST(self) -> None:  # noqa: N802
        self._dispatch()

    def do_HEAD(self) -> None:  # noqa: N802
        self._dispatch()

    def _not_allowed(self) -> None:
        self.close_connection = True
        self.send_error(405, f"{self.command} is not supported")

    do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _not_allowed  # noqa: N815

    def handle_one_request(self) -> None:
        try:
            super().handle_one_request()
        except (TimeoutError, ConnectionResetError, BrokenPipeError):
            self.close_connection = True


def byte_range(header: str | None, total: int) -> tuple[int, int] | None:
    """(first, last) byte to send for a `Range` header (one range; none: the whole file);
    None when the range cannot be satisfied."""
    whole = (0, max(total - 1, 0))
    if not header:
        return whole
    unit, _, spec = header.strip().partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return whole  # other units or several ranges: the whole file is a valid answer
    first, dash, last = spec.strip().partition("-")
    try:
        if not dash:
            return None
        if first == "":  # the last N bytes
            n = int(last)
            return (max(total - n, 0), total - 1) if n > 0 and total else None
        a = int(first)
        b = int(last) if last else total - 1
    except ValueError:
        return None
    if a < 0 or a >= total or b < a:
        return None
    return a, min(b, total - 1)


class _Bounded(socketserver.ThreadingMixIn):
    daemon_threads = True
    block_on_close = False
    request_queue_size = 128  # listen backlog: bursts of clients queue instead of being refused
    via_tcp = False
    via_lan = False
    app: StatusApp

    def _init_slots(self, executor: ThreadPoolExecutor) -> None:
        self._slots = threading.BoundedSemaphore(MAX_CLIENTS)
        self._executor = executor

    def answer(self, req: Request) -> Response:
        return self._executor.submit(self.app.handle, req).result(timeout=ANSWER_TIMEOUT_S)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            try:
                request.sendall(_BUSY)
            except OSError:
                pass
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)  # type: ignore[misc]

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)  # type: ignore[misc]
        finally:
            self._slots.release()


class UnixStatusServer(_Bounded, socketserver.UnixStreamServer):
    pass


class TcpStatusServer(_Bounded, socketserver.TCPServer):
    allow_reuse_address = True
    via_tcp = True


class LanStatusServer(TcpStatusServer):
    """The installer's page on the venue's network: every request needs status.lan_token."""

    via_lan = True


class LanStatusServer6(LanStatusServer):
    address_family = socket.AF_INET6


def _claim_socket_path(path: Path) -> None:
    """Remove a stale socket file; refuse if a live server still answers on it."""
    if not path.exists() and not path.is_symlink():
        return
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.settimeout(1.0)
        probe.connect(str(path))
    except OSError:
        path.unlink()  # nobody listening: left over from a killed statusd
        return
    finally:
        probe.close()
    raise OSError(f"{path}: another statusd is already listening")


def make_executor() -> ThreadPoolExecutor:
    """The answering threads, shared by every listener."""
    return ThreadPoolExecutor(HANDLER_THREADS, thread_name_prefix="answer")


def bind_unix(app: StatusApp, path: Path, group: str, executor: ThreadPoolExecutor) -> UnixStatusServer:
    path.parent.mkdir(parents=True, exist_ok=True)
    _claim_socket_path(path)
    old = os.umask(0o117)  # the socket is born 0660: no moment where others could connect
    try:
        server = UnixStatusServer(str(path), StatusHandler)
    finally:
        os.umask(old)
    os.chmod(path, SOCKET_MODE)
    try:
        os.chown(path, -1, grp.getgrnam(group).gr_gid)
    except KeyError:
        log.warning(
            "group %r does not exist; %s keeps group %s", group, path, grp.getgrgid(os.getgid()).gr_name
        )
    except PermissionError:
        log.warning("cannot give %s to group %r (not allowed); socket keeps its group", path, group)
    server.app = app
    server._init_slots(executor)
    return server


def bind_lan(app: StatusApp, address: str, port: int, executor: ThreadPoolExecutor) -> LanStatusServer:
    cls = LanStatusServer6 if ":" in address else LanStatusServer
    server = cls((address, port), StatusHandler)
    server.app = app
    server._init_slots(executor)
    return server


def bind_tcp(app: StatusApp, port: int, executor: ThreadPoolExecutor) -> TcpStatusServer:
    server = TcpStatusServer(("127.0.0.1", port), StatusHandler)  # loopback only, never 0.0.0.0
    server.app = app
    server._init_slots(executor)
    return server

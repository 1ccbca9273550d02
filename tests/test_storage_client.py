"""The S3 client's error mapping and socket settings, against real servers on loopback."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from conftest import S3_KEY_ID, S3_SECRET, VENV_BIN, free_port, wait_for_port
from venuecam.config import Config
from venuecam.errors import AuthError, OfflineError, PermanentError, TransientError
from venuecam.storage.client import congestion_allowed, make_client, system_congestion, tcp_settings

BUCKET = "venue-videos"


@pytest.fixture
def enforcing_moto() -> Iterator[str]:
    """A moto server that checks credentials (no IAM user exists, so every key is wrong)."""
    port = free_port()
    env = {**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": "0"}
    proc = subprocess.Popen([str(VENV_BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        wait_for_port("127.0.0.1", port)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)


def test_rejected_credentials_are_an_auth_error(
    make_config: Callable[..., Config], enforcing_moto: str
) -> None:
    cfg = make_config(storage={"endpoint_url": enforcing_moto})
    client = make_client(cfg.storage)
    from venuecam.storage.client import map_error

    with pytest.raises(Exception) as raw:
        client.put_object(Bucket=BUCKET, Key="k", Body=b"x")
    err = map_error(raw.value, "put_object k")
    assert isinstance(err, AuthError)
    assert "InvalidAccessKeyId" in str(err)
    assert S3_KEY_ID not in str(err) and S3_SECRET not in str(err)


class _ErrorHandler(BaseHTTPRequestHandler):
    status = 503
    code = "SlowDown"

    def _reply(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        body = f"<?xml version='1.0'?><Error><Code>{self.code}</Code><Message>no</Message></Error>".encode()
        self.send_response(self.status)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_PUT = do_POST = do_HEAD = _reply

    def log_message(self, *args: Any) -> None:
        pass


def serve(status: int, code: str) -> tuple[ThreadingHTTPServer, str]:
    handler = type("H", (_ErrorHandler,), {"status": status, "code": code})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


@pytest.mark.parametrize(
    ("status", "code", "expected"),
    [
        (503, "SlowDown", TransientError),
        (500, "InternalError", TransientError),
        (403, "SignatureDoesNotMatch", AuthError),
        (404, "NoSuchBucket", PermanentError),
    ],
)
def test_store_errors_map_to_our_tree(
    make_config: Callable[..., Config], status: int, code: str, expected: type[Exception]
) -> None:
    from venuecam.storage.client import map_error

    server, url = serve(status, code)
    try:
        client = make_client(make_config(storage={"endpoint_url": url}).storage, max_attempts=1)
        with pytest.raises(Exception) as raw:
            client.put_object(Bucket=BUCKET, Key="k", Body=b"x")
        err = map_error(raw.value, "put_object k")
    finally:
        server.shutdown()
        server.server_close()
    assert type(err) is expected
    assert code in str(err) and not isinstance(err, OfflineError)


def test_a_silent_server_is_offline_after_the_read_timeout(make_config: Callable[..., Config]) -> None:
    """Accepts the connection, never answers: a dead upstream behind a live link."""
    from venuecam.storage.client import map_error

    listener = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []
    threading.Thread(target=lambda: accepted.append(listener.accept()[0]), daemon=True).start()
    cfg = make_config(storage={"endpoint_url": f"http://127.0.0.1:{listener.getsockname()[1]}"})
    client = make_client(cfg.storage, read_timeout_s=0.5, max_attempts=1)
    try:
        with pytest.raises(Exception) as raw:
            client.head_object(Bucket=BUCKET, Key="k")
    finally:
        for s in accepted:
            s.close()
        listener.close()
    err = map_error(raw.value, "head_object k")
    assert isinstance(err, OfflineError) and "ReadTimeout" in str(err)


class HoldingServer:
    """Answers one request only after the test has looked at the client's socket with `ss`."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.got_request = threading.Event()
        self.release = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        conn, _ = self.listener.accept()
        with conn:
            data = b""
            while b"\r\n\r\n" not in data:
                data += conn.recv(65536)
            self.got_request.set()
            self.release.wait(10)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")

    def client_socket_info(self) -> str:
        """`ss -ti` of the client's end of the connection (its destination is our port)."""
        out = subprocess.run(["ss", "-Htino", "dst", f"127.0.0.1:{self.port}"], capture_output=True, text=True,
                             check=True, timeout=10)  # fmt: skip
        return out.stdout

    def close(self) -> None:
        self.release.set()
        self.listener.close()


def observe_request(client: Any, server: HoldingServer) -> str:
    """Send one request through `client`; return what `ss` saw of its socket meanwhile."""
    errors: list[BaseException] = []

    def call() -> None:
        try:
            client.head_object(Bucket=BUCKET, Key="k")
        except BaseException as e:  # reported by the assertion below
            errors.append(e)

    t = threading.Thread(target=call)
    t.start()
    try:
        assert server.got_request.wait(10), "the client never sent its request"
        info = server.client_socket_info()
    finally:
        server.close()
        t.join(10)
    assert not errors, errors
    return info


needs_ss = pytest.mark.skipif(
    not hasattr(socket, "TCP_CONGESTION") or not shutil.which("ss"), reason="needs Linux and ss (iproute2)"
)


@needs_ss
def test_upload_sockets_get_the_chosen_congestion_control(make_config: Callable[..., Config]) -> None:
    # Prefer an algorithm other than the system default, so the per-socket setting is visible.
    wanted = next(
        (a for a in ("reno", "cubic", "bbr") if a != system_congestion() and congestion_allowed(a)), ""
    )
    if not wanted:
        pytest.skip("no second congestion control is allowed here")
    server = HoldingServer()
    client = make_client(make_config(storage={"endpoint_url": f"http://127.0.0.1:{server.port}"}).storage,
                         congestion=wanted)  # fmt: skip
    settings = tcp_settings(client)
    assert settings is not None and settings.forced and settings.congestion == wanted
    info = observe_request(client, server)
    assert f" {wanted} " in f" {info} ".replace("\n", " "), info
    assert "timer:(keepalive" in info, info  # SO_KEEPALIVE is on


@needs_ss
def test_a_refused_congestion_control_falls_back_silently(make_config: Callable[..., Config]) -> None:
    server = HoldingServer()
    client = make_client(make_config(storage={"endpoint_url": f"http://127.0.0.1:{server.port}"}).storage,
                         congestion="no-such-algorithm")  # fmt: skip
    settings = tcp_settings(client)
    assert settings is not None and not settings.forced and settings.congestion == system_congestion()
    info = observe_request(client, server)
    assert f" {system_congestion()} " in f" {info} ".replace("\n", " "), info

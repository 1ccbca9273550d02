"""A loopback TCP port that forwards each connection to a Unix socket: what
`ssh -L 8080:/run/venuecam/status.sock root@<box>` gives the installer, without sshd."""

from __future__ import annotations

import socket
import socketserver
import threading
from pathlib import Path
from typing import Any


def _pump(src: socket.socket, dst: socket.socket) -> None:
    try:
        while chunk := src.recv(65536):
            dst.sendall(chunk)
    except OSError:
        pass
    finally:
        try:
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass


class _Handler(socketserver.BaseRequestHandler):
    server: Any

    def handle(self) -> None:
        upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            upstream.connect(str(self.server.target))
        except OSError:
            upstream.close()
            return
        back = threading.Thread(target=_pump, args=(upstream, self.request), daemon=True)
        back.start()
        _pump(self.request, upstream)
        back.join(60)
        upstream.close()


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    target: Path


class Forward:
    """`with Forward(sock) as fwd: fwd.url` -> http://127.0.0.1:<port>"""

    def __init__(self, target: Path) -> None:
        self.server = _Server(("127.0.0.1", 0), _Handler)
        self.server.target = target
        self.port = int(self.server.server_address[1])
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True
        )

    def __enter__(self) -> Forward:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

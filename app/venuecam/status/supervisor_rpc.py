"""supervisord's program states over its own XML-RPC interface, on its Unix socket.

A tiny stdlib transport (AF_UNIX) instead of `supervisor.xmlrpc`, so the status daemon does
not import supervisor's packages. Anything wrong (no socket, refused, garbled) means
"unavailable": the status must still render.
"""

from __future__ import annotations

import http.client
import socket
import xmlrpc.client
from pathlib import Path
from typing import Any


class _UnixHTTPConnection(http.client.HTTPConnection):
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


class UnixTransport(xmlrpc.client.Transport):
    def __init__(self, path: str, timeout: float = 2.0) -> None:
        super().__init__()
        self._socket_path = path
        self._timeout = timeout

    def make_connection(self, host: Any) -> http.client.HTTPConnection:
        return _UnixHTTPConnection(self._socket_path, self._timeout)


def program_states(socket_path: str | Path, timeout: float = 2.0) -> dict[str, Any]:
    """{"available": bool, "programs": [{name, group, state, pid, uptime_s, description}], "error"?}"""
    proxy = xmlrpc.client.ServerProxy(
        "http://localhost/RPC2", transport=UnixTransport(str(socket_path), timeout)
    )
    try:
        infos = proxy.supervisor.getAllProcessInfo()
    except (OSError, xmlrpc.client.Error, http.client.HTTPException) as e:
        return {
            "available": False,
            "programs": [],
            "error": f"supervisord unavailable: {e.__class__.__name__}",
        }
    programs = []
    for info in infos:
        name = info.get("name", "?")
        group = info.get("group", name)
        start, now = info.get("start", 0), info.get("now", 0)
        running = info.get("statename") == "RUNNING"
        programs.append(
            {
                "name": name if group == name else f"{group}:{name}",
                "state": info.get("statename", "UNKNOWN"),
                "pid": info.get("pid") or None,
                "uptime_s": (now - start) if running and start else None,
                "description": info.get("description", ""),
            }
        )
    return {"available": True, "programs": programs}

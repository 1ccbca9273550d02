"""An HTTP-aware fault-injection proxy in front of an S3 server (moto), stdlib only.

Run as its own process (in a network namespace too), controlled over a Unix socket, which
works across namespaces because it is a file:

    proxy = FaultProxy.start(listen=("10.213.7.2", 0), upstream=("10.213.7.2", 9000),
                             control=tmp / "proxy.sock", prefix=net.argv([], "cloud"))
    proxy.fail(status=503, count=5)            # the next 5 PUT/POST requests get a 503
    proxy.fail(status=500, seconds=20)         # ... or every one for 20 s
    proxy.drop(after_bytes=1 << 20)            # cut the next upload after 1 MiB (RST)
    proxy.stall(after_bytes=0, seconds=30)     # stop reading a body for 30 s, then cut it
    proxy.lose_reply(query_contains="uploads")  # the store does the next create; its answer is cut
    proxy.stats()["resent_bytes"]              # payload bytes the store received twice

What it counts: the body bytes of every PUT it forwards, per object key, part number and
upload id, with the arrival time of each chunk (so a test can ask when data flowed again).
"Received twice" is, per (key, part): all bytes received minus the size of the copy that
stood (the last accepted attempt), whatever upload id each attempt used.

It answers `Expect: 100-continue` itself (and strips it upstream), so an injected error
reaches the client before it sends the body, as a real store's early rejection would.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import socket
import socketserver
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

CHUNK = 64 * 1024
DEFAULT_METHODS = ("PUT", "POST")
ERROR_CODES = {500: "InternalError", 502: "BadGateway", 503: "SlowDown", 504: "GatewayTimeout"}


# ---------------------------------------------------------------- shared state (in the proxy)


@dataclass
class Fault:
    mode: str  # status | drop | stall | lose_reply
    status: int = 503
    count: int | None = None  # remaining matching requests (None: time window only)
    until: float | None = None  # epoch seconds
    methods: tuple[str, ...] = DEFAULT_METHODS
    path_contains: str = ""
    query_contains: str = ""
    after_bytes: int = 0  # drop/stall: forward this many body bytes first
    seconds: float = 30.0  # stall: how long to stop reading before cutting

    def matches(self, method: str, target: str, now: float) -> bool:
        if self.until is not None and now > self.until:
            return False
        if self.count is not None and self.count <= 0:
            return False
        path, _, query = target.partition("?")
        return method in self.methods and self.path_contains in unquote(path) and self.query_contains in query


@dataclass
class Record:
    t_start: float
    method: str
    key: str
    part: int
    upload_id: str
    expected: int
    received: int = 0
    status: int = 0  # 0: no answer (cut)
    injected: str = ""
    t_end: float = 0.0


@dataclass
class Shared:
    lock: threading.Lock = field(default_factory=threading.Lock)
    faults: list[Fault] = field(default_factory=list)
    records: list[Record] = field(default_factory=list)
    # (epoch time, bytes) of every body chunk forwarded to the store, in arrival order.
    chunks: list[tuple[float, int]] = field(default_factory=list)
    requests: int = 0
    connections: int = 0

    def take_fault(self, method: str, target: str) -> Fault | None:
        now = time.time()
        with self.lock:
            self.requests += 1
            for f in self.faults:
                if f.matches(method, target, now):
                    if f.count is not None:
                        f.count -= 1
                    return Fault(**{k: getattr(f, k) for k in f.__dataclass_fields__})
            self.faults = [
                f
                for f in self.faults
                if not ((f.count is not None and f.count <= 0) or (f.until and now > f.until))
            ]
        return None

    def stats(self) -> dict[str, Any]:
        with self.lock:
            records = [dict(r.__dict__) for r in self.records]
            faults = [dict(f.__dict__) for f in self.faults]
            requests, connections = self.requests, self.connections
        groups: dict[tuple[str, int], list[dict[str, Any]]] = {}
        for r in records:
            if r["method"] == "PUT" and not r["injected"]:
                groups.setdefault((r["key"], r["part"]), []).append(r)
        resent = total = 0
        for attempts in groups.values():
            got = sum(a["received"] for a in attempts)
            ok = [a for a in attempts if 200 <= a["status"] < 300]
            stood = ok[-1]["received"] if ok else max(a["received"] for a in attempts)
            total += got
            resent += got - stood
        return {
            "requests": requests,
            "connections": connections,
            "records": records,
            "faults": faults,
            "put_bytes": total,
            "resent_bytes": resent,
            "injected": sum(1 for r in records if r["injected"]),
        }

    def first_chunk_after(self, t: float) -> float | None:
        with self.lock:
            for ts, _ in self.chunks:
                if ts >= t:
                    return ts
        return None

    def bytes_between(self, t0: float, t1: float) -> int:
        with self.lock:
            return sum(n for ts, n in self.chunks if t0 <= ts < t1)


def _key_of(target: str) -> tuple[str, int, str]:
    parts = urlsplit(target)
    q = parse_qs(parts.query)
    part = int(q.get("partNumber", ["0"])[0] or 0)
    return unquote(parts.path), part, q.get("uploadId", [""])[0]


# ---------------------------------------------------------------- the proxy


class _Cut(Exception):
    """The fault says: cut this connection now."""


class ProxyHandler(socketserver.StreamRequestHandler):
    server: ProxyServer

    def setup(self) -> None:
        super().setup()
        self.upstream: socket.socket | None = None
        self.up_r: Any = None
        with self.server.shared.lock:
            self.server.shared.connections += 1

    def handle(self) -> None:
        try:
            while self._one_request():
                pass
        except (OSError, _Cut, ValueError):
            pass
        finally:
            self._close_upstream()

    def _reset(self) -> None:
        """Close the client connection with a RST, as a dying middlebox or server would."""
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        with contextlib.suppress(OSError):
            self.connection.close()

    def _close_upstream(self) -> None:
        if self.upstream is not None:
            with contextlib.suppress(OSError):
                self.upstream.close()
        self.upstream = self.up_r = None

    def _connect_upstream(self) -> None:
        if self.upstream is None:
            self.upstream = socket.create_connection(self.server.upstream, timeout=300)
            self.upstream.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.up_r = self.upstream.makefile("rb")

    def _read_head(self, f: Any) -> tuple[str, list[tuple[str, str]]] | None:
        line = f.readline(65537)
        while line in (b"\r\n", b"\n"):
            line = f.readline(65537)
        if not line:
            return None
        headers: list[tuple[str, str]] = []
        while True:
            h = f.readline(65537)
            if h in (b"\r\n", b"\n", b""):
                break
            name, _, value = h.decode("latin-1").partition(":")
            headers.append((name.strip(), value.strip()))
        return line.decode("latin-1").rstrip("\r\n"), headers

    def _one_request(self) -> bool:
        got = self._read_head(self.rfile)
        if got is None:
            return False
        request_line, headers = got
        method, target, _version = request_line.split(" ", 2)
        h = {k.lower(): v for k, v in headers}
        length = int(h.get("content-length", "0") or 0)
        chunked = "chunked" in h.get("transfer-encoding", "").lower()
        expect = h.get("expect", "").lower() == "100-continue"
        keep_alive = h.get("connection", "").lower() != "close"
        key, part, upload_id = _key_of(target)
        rec = Record(time.time(), method, key, part, upload_id, length)
        shared = self.server.shared
        fault = shared.take_fault(method, target)

        if fault is not None and fault.mode == "status":
            rec.injected = f"status {fault.status}"
            with shared.lock:
                shared.records.append(rec)
            if expect:  # reject before the body, then close: the body will not come
                self._answer_error(fault.status, close=True)
                return False
            self._drain_body(length, chunked)
            self._answer_error(fault.status, close=not keep_alive)
            rec.status, rec.t_end = fault.status, time.time()
            return keep_alive

        with shared.lock:
            shared.records.append(rec)
        if expect:
            self.wfile.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            self.wfile.flush()
        self._connect_upstream()
        assert self.upstream is not None
        out_headers = [(k, v) for k, v in headers if k.lower() != "expect"]
        head = request_line + "\r\n" + "".join(f"{k}: {v}\r\n" for k, v in out_headers) + "\r\n"
        self.upstream.sendall(head.encode("latin-1"))
        try:
            self._forward_body(rec, length, chunked, fault)
        except _Cut:
            rec.t_end = time.time()
            self._reset()
            self._close_upstream()
            raise
        if fault is not None and fault.mode == "lose_reply":
            rec.injected = "reply lost"
            self._read_head(self.up_r)  # the store has done it; the client never hears so
            rec.t_end = time.time()
            self._reset()
            self._close_upstream()
            raise _Cut()
        status, close = self._relay_response(method)
        rec.status, rec.t_end = status, time.time()
        if close:
            self._close_upstream()
        return keep_alive and not close

    def _count(self, rec: Record, n: int) -> None:
        now = time.time()
        with self.server.shared.lock:
            rec.received += n
            if rec.method == "PUT":
                self.server.shared.chunks.append((now, n))

    def _check_cut(self, rec: Record, fault: Fault | None) -> None:
        if fault is None or fault.mode not in ("drop", "stall") or rec.received < fault.after_bytes:
            return
        rec.injected = f"{fault.mode} after {rec.received} bytes"
        if fault.mode == "stall":
            time.sleep(fault.seconds)  # stop reading: the client's send buffer fills and it hangs
        raise _Cut()

    def _forward_body(self, rec: Record, length: int, chunked: bool, fault: Fault | None) -> None:
        assert self.upstream is not None
        if chunked:
            self._forward_chunked(rec, fault)
            return
        left = length
        while left > 0:
            self._check_cut(rec, fault)
            want = min(CHUNK, left)
            if fault is not None and fault.mode in ("drop", "stall") and rec.received < fault.after_bytes:
                want = min(want, fault.after_bytes - rec.received)
            data = self.rfile.read1(want)
            if not data:
                raise _Cut()  # the client went away mid-body
            self.upstream.sendall(data)
            self._count(rec, len(data))
            left -= len(data)

    def _forward_chunked(self, rec: Record, fault: Fault | None) -> None:
        assert self.upstream is not None
        while True:
            size_line = self.rfile.readline(1024)
            if not size_line:
                raise _Cut()
            self.upstream.sendall(size_line)
            size = int(size_line.split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while True:  # trailers, then the blank line
                    t = self.rfile.readline(65537)
                    self.upstream.sendall(t)
                    if t in (b"\r\n", b"\n", b""):
                        return
            left = size
            while left > 0:
                self._check_cut(rec, fault)
                data = self.rfile.read1(min(CHUNK, left))
                if not data:
                    raise _Cut()
                self.upstream.sendall(data)
                self._count(rec, len(data))
                left -= len(data)
            self.upstream.sendall(self.rfile.readline(8))  # the CRLF after the chunk

    def _drain_body(self, length: int, chunked: bool) -> None:
        if chunked:
            while True:
                size = int(self.rfile.readline(1024).split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass
                    return
                self.rfile.read(size + 2)
        left = length
        while left > 0:
            data = self.rfile.read1(min(CHUNK, left))
            if not data:
                raise _Cut()
            left -= len(data)

    def _answer_error(self, status: int, close: bool) -> None:
        code = ERROR_CODES.get(status, "InjectedError")
        body = (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            f"<Error><Code>{code}</Code><Message>injected by faultproxy</Message></Error>"
        ).encode()
        reason = http.client.responses.get(status, "Error")
        head = (
            f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/xml\r\n"
            f"Content-Length: {len(body)}\r\n{'Connection: close' if close else 'Connection: keep-alive'}\r\n\r\n"
        )
        self.wfile.write(head.encode() + body)
        self.wfile.flush()

    def _relay_response(self, method: str) -> tuple[int, bool]:
        """Copy the upstream's answer to the client; (status, connection must close)."""
        while True:
            got = self._read_head(self.up_r)
            if got is None:
                raise _Cut()
            status_line, headers = got
            status = int(status_line.split(" ", 2)[1])
            head = status_line + "\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers) + "\r\n"
            self.wfile.write(head.encode("latin-1"))
            if status >= 200:
                break
            self.wfile.flush()  # an interim 1xx: the final answer follows
        h = {k.lower(): v for k, v in headers}
        close = h.get("connection", "").lower() == "close"
        if method == "HEAD" or status in (204, 304):
            pass
        elif "chunked" in h.get("transfer-encoding", "").lower():
            while True:
                size_line = self.up_r.readline(1024)
                self.wfile.write(size_line)
                size = int(size_line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while (t := self.up_r.readline(65537)) not in (b"\r\n", b"\n", b""):
                        self.wfile.write(t)
                    self.wfile.write(b"\r\n")
                    break
                self.wfile.write(self.up_r.read(size + 2))
        elif "content-length" in h:
            left = int(h["content-length"])
            while left > 0:
                data = self.up_r.read1(min(CHUNK, left))
                if not data:
                    raise _Cut()
                self.wfile.write(data)
                left -= len(data)
        else:
            while data := self.up_r.read1(CHUNK):
                self.wfile.write(data)
            close = True
        self.wfile.flush()
        return status, close


class ProxyServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, listen: tuple[str, int], upstream: tuple[str, int], shared: Shared) -> None:
        self.upstream = upstream
        self.shared = shared
        super().__init__(listen, ProxyHandler)


# ---------------------------------------------------------------- control (HTTP on a Unix socket)


class _UnixHTTPServer(socketserver.ThreadingMixIn, HTTPServer):
    address_family = socket.AF_UNIX
    daemon_threads = True

    def server_bind(self) -> None:
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = "faultproxy", 0


class ControlHandler(BaseHTTPRequestHandler):
    server: Any

    def address_string(self) -> str:  # client_address is '' on a Unix socket (PITFALLS)
        return "control"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _json(self, code: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        shared: Shared = self.server.shared
        url = urlsplit(self.path)
        q = parse_qs(url.query)
        if url.path == "/stats":
            self._json(200, shared.stats())
        elif url.path == "/first-payload-after":
            self._json(200, {"t": shared.first_chunk_after(float(q["t"][0]))})
        elif url.path == "/bytes-between":
            self._json(200, {"bytes": shared.bytes_between(float(q["t0"][0]), float(q["t1"][0]))})
        else:
            self._json(404, {"error": f"no such control path {url.path}"})

    def do_POST(self) -> None:
        shared: Shared = self.server.shared
        length = int(self.headers.get("Content-Length") or 0)
        try:
            body = json.loads(self.rfile.read(length) or b"{}")
            if self.path == "/fault":
                fault = parse_fault(body)
                with shared.lock:
                    shared.faults.append(fault)
                self._json(200, {"faults": len(shared.faults)})
            elif self.path == "/clear":
                with shared.lock:
                    shared.faults.clear()
                self._json(200, {"faults": 0})
            elif self.path == "/reset":
                with shared.lock:
                    shared.faults.clear()
                    shared.records.clear()
                    shared.chunks.clear()
                    shared.requests = shared.connections = 0
                self._json(200, {"reset": True})
            else:
                self._json(404, {"error": f"no such control path {self.path}"})
        except (ValueError, TypeError, KeyError) as e:
            self._json(400, {"error": str(e)})


def parse_fault(body: dict[str, Any]) -> Fault:
    """A fault from its JSON form; ValueError naming the bad field."""
    mode = body.get("mode")
    if mode not in ("status", "drop", "stall", "lose_reply"):
        raise ValueError(f"mode: expected status, drop, stall or lose_reply, got {mode!r}")
    count = body.get("count")
    seconds_window = body.get("for_seconds")
    if count is None and seconds_window is None:
        count = 1
    if count is not None and (not isinstance(count, int) or count < 0):
        raise ValueError(f"count: expected an integer >= 0, got {count!r}")
    status = int(body.get("status", 503))
    if not 100 <= status <= 599:
        raise ValueError(f"status: expected an HTTP status, got {status}")
    methods = tuple(str(m).upper() for m in body.get("methods", DEFAULT_METHODS))
    return Fault(
        mode=mode,
        status=status,
        count=count,
        until=None if seconds_window is None else time.time() + float(seconds_window),
        methods=methods,
        path_contains=str(body.get("path_contains", "")),
        query_contains=str(body.get("query_contains", "")),
        after_bytes=int(body.get("after_bytes", 0)),
        seconds=float(body.get("seconds", 30.0)),
    )


def serve(listen: tuple[str, int], upstream: tuple[str, int], control: Path) -> None:
    shared = Shared()
    proxy = ProxyServer(listen, upstream, shared)
    control.unlink(missing_ok=True)
    ctl = _UnixHTTPServer(str(control), ControlHandler)
    ctl.shared = shared  # type: ignore[attr-defined]
    threading.Thread(target=ctl.serve_forever, daemon=True).start()
    host, port = proxy.server_address[:2]
    print(f"ready http://{host}:{port}", flush=True)
    try:
        proxy.serve_forever()
    finally:
        control.unlink(missing_ok=True)


# ---------------------------------------------------------------- the test side


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float = 10.0) -> None:
        super().__init__("faultproxy", timeout=timeout)
        self.path = path

    def connect(self) -> None:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        s.connect(self.path)
        self.sock = s


class FaultProxy:
    """A running proxy process and its control calls."""

    def __init__(self, proc: subprocess.Popen[str], endpoint: str, control: Path) -> None:
        self.proc = proc
        self.endpoint = endpoint
        self.control = control

    @classmethod
    def start(
        cls,
        listen: tuple[str, int],
        upstream: tuple[str, int],
        control: str | os.PathLike[str],
        prefix: Sequence[str] = (),
        timeout: float = 20.0,
    ) -> FaultProxy:
        argv = [*prefix, sys.executable, str(Path(__file__).resolve()), "--listen", f"{listen[0]}:{listen[1]}",
                "--upstream", f"{upstream[0]}:{upstream[1]}", "--control", str(control)]  # fmt: skip
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, start_new_session=True)
        assert proc.stdout is not None
        deadline = time.monotonic() + timeout
        line = ""
        while time.monotonic() < deadline and proc.poll() is None:
            line = proc.stdout.readline()
            if line.startswith("ready "):
                return cls(proc, line.split()[1], Path(control))
        proc.kill()
        raise RuntimeError(f"faultproxy did not start: {line!r}")

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        conn = _UnixConnection(str(self.control))
        try:
            data = json.dumps(body).encode() if body is not None else None
            conn.request(method, path, body=data, headers={"Content-Type": "application/json"})
            resp = conn.getresponse()
            out = json.loads(resp.read())
            if resp.status != 200:
                raise ValueError(f"faultproxy {path}: {out.get('error')}")
            return out
        finally:
            conn.close()

    def fail(self, status: int = 503, count: int | None = None, for_seconds: float | None = None,
             methods: Sequence[str] = DEFAULT_METHODS, path_contains: str = "", query_contains: str = "") -> None:  # fmt: skip
        """Answer `status` to the next `count` matching requests, or to all for `for_seconds`."""
        self._call("POST", "/fault", {"mode": "status", "status": status, "count": count,
                                      "for_seconds": for_seconds, "methods": list(methods),
                                      "path_contains": path_contains, "query_contains": query_contains})  # fmt: skip

    def drop(self, count: int = 1, after_bytes: int = 0, methods: Sequence[str] = ("PUT",),
             path_contains: str = "", query_contains: str = "") -> None:  # fmt: skip
        """Cut (RST) the next `count` matching requests after `after_bytes` body bytes."""
        self._call("POST", "/fault", {"mode": "drop", "count": count, "after_bytes": after_bytes,
                                      "methods": list(methods), "path_contains": path_contains,
                                      "query_contains": query_contains})  # fmt: skip

    def stall(self, count: int = 1, after_bytes: int = 0, seconds: float = 30.0,
              methods: Sequence[str] = ("PUT",), path_contains: str = "", query_contains: str = "") -> None:  # fmt: skip
        """Stop reading the next matching body after `after_bytes` for `seconds`, then cut it."""
        self._call("POST", "/fault", {"mode": "stall", "count": count, "after_bytes": after_bytes,
                                      "seconds": seconds, "methods": list(methods),
                                      "path_contains": path_contains, "query_contains": query_contains})  # fmt: skip

    def lose_reply(self, count: int = 1, methods: Sequence[str] = DEFAULT_METHODS, path_contains: str = "",
                   query_contains: str = "") -> None:  # fmt: skip
        """Forward the next `count` matching requests whole, then cut the connection instead of
        relaying the store's answer: done, but the client cannot know it."""
        self._call("POST", "/fault", {"mode": "lose_reply", "count": count, "methods": list(methods),
                                      "path_contains": path_contains, "query_contains": query_contains})  # fmt: skip

    def clear(self) -> None:
        self._call("POST", "/clear", {})

    def reset(self) -> None:
        self._call("POST", "/reset", {})

    def stats(self) -> dict[str, Any]:
        return dict(self._call("GET", "/stats"))

    def first_payload_after(self, t: float) -> float | None:
        got = self._call("GET", f"/first-payload-after?t={t!r}")["t"]
        return None if got is None else float(got)

    def bytes_between(self, t0: float, t1: float) -> int:
        return int(self._call("GET", f"/bytes-between?t0={t0!r}&t1={t1!r}")["bytes"])

    def put_bytes(self, path_contains: str = "") -> int:
        return sum(r["received"] for r in self.stats()["records"]
                   if r["method"] == "PUT" and path_contains in r["key"])  # fmt: skip

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, 15)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, 9)
                self.proc.wait(10)
        if self.proc.stdout:
            self.proc.stdout.close()


def _host_port(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host, int(port)


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="faultproxy.py", description=__doc__.splitlines()[0])
    ap.add_argument("--listen", required=True, help="HOST:PORT to accept clients on (port 0: any)")
    ap.add_argument("--upstream", required=True, help="HOST:PORT of the S3 server")
    ap.add_argument("--control", required=True, help="Unix socket path for the control API")
    args = ap.parse_args(argv)
    serve(_host_port(args.listen), _host_port(args.upstream), Path(args.control))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

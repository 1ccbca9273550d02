"""The simulator's HTTP side (stdlib `http.server`): booking-api.md plus `/_sim/` controls.

    GET  /api/v1/bookings?venue_id&date&offset&limit   bearer token; 401 otherwise
    POST /api/v1/videos                                  bearer token + Idempotency-Key; keeps the
                                                         highest revision of each unique_id (2b)
    POST /_sim/bookings   {"bookings": [...], "date": opt, "append": opt, "remove": [ids]} or [...]
    POST /_sim/faults     {"bookings": {"mode": ..., "count": N, "after": K}, "videos": {...}}
                          ("queue": true: after the endpoint's unspent faults, not instead);
                          answers every endpoint's faults still to come ({} only asks)
    GET  /_sim/notifications    POST /_sim/reset    GET /_sim/health

Faults: html, truncated, wrong_type (top-level shapes that break the contract), reset (close
the connection unanswered), timeout (answer after `delay` s), endless (meta.total never
reached), redirect (a captive portal), or an HTTP code ("500", "401", "429" with retry_after).
"""

from __future__ import annotations

import hmac
import json
import logging
import socket
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from venuecam.errors import BadInputError
from venuecam.simulator.state import SimState, check_notification

log = logging.getLogger("venuecam.simulator")

MAX_LIMIT = 1000
MAX_BODY = 10 * 1024 * 1024


class SimServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, host: str, port: int, state: SimState, token: str, venue_id: str) -> None:
        if ":" in host:
            self.address_family = socket.AF_INET6
        self.state = state
        self.token = token
        self.venue_id = venue_id
        super().__init__((host, port), SimHandler)


class SimHandler(BaseHTTPRequestHandler):
    server: SimServer
    protocol_version = "HTTP/1.1"
    server_version = "venuecam-simulator/1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib's signature
        # The request line carries no token (it travels in a header).
        log.info("%s %s", self.address_string(), format % args)

    # ------------------------------------------------------------ routing

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        if path == "/api/v1/bookings":
            self._bookings()
        elif path == "/_sim/notifications":
            self._json(200, self.server.state.notifications_view())
        elif path == "/_sim/health":
            self._json(200, {"ok": True})
        else:
            self._json(404, {"error": f"no such endpoint: GET {path}"})

    def do_POST(self) -> None:
        path = urlsplit(self.path).path
        try:
            if path == "/api/v1/videos":
                self._videos()
            elif path == "/_sim/bookings":
                self._sim_bookings()
            elif path == "/_sim/faults":
                self.server.state.set_faults(self._read_json(expect=dict))
                self._json(200, {"faults": self.server.state.pending_faults()})
            elif path == "/_sim/reset":
                self._read_body()
                self.server.state.reset()
                self._json(200, {"reset": True})
            else:
                self._json(404, {"error": f"no such endpoint: POST {path}"})
        except BadInputError as e:
            self._json(400, {"error": str(e)})

    # ------------------------------------------------------------ the contract

    def _authorised(self) -> bool:
        got = self.headers.get("Authorization", "")
        want = f"Bearer {self.server.token}"
        if hmac.compare_digest(got.encode(), want.encode()):
            return True
        self._json(401, {"error": "invalid or missing bearer token"})
        return False

    def _bookings(self) -> None:
        fault = self.server.state.take_fault("bookings")
        if fault and self._apply_common_fault(fault):
            return
        if not self._authorised():
            return
        q = {k: v[-1] for k, v in parse_qs(urlsplit(self.path).query).items()}
        try:
            offset = int(q.get("offset", "0"))
            limit = int(q.get("limit", "100"))
        except ValueError:
            self._json(400, {"error": "offset and limit must be whole numbers"})
            return
        date = q.get("date", "")
        if not date or offset < 0 or not 1 <= limit <= MAX_LIMIT:
            self._json(400, {"error": f"need date, offset >= 0 and 1 <= limit <= {MAX_LIMIT}"})
            return
        if q.get("venue_id") != self.server.venue_id:
            self._json(200, {"data": [], "meta": {"total": 0, "offset": offset, "limit": limit}})
            return
        everything = self.server.state.bookings_on(date)
        data = everything[offset : offset + limit]
        doc: Any = {"data": data, "meta": {"total": len(everything), "offset": offset, "limit": limit}}
        mode = fault["mode"] if fault else ""
        if mode == "endless":
            doc = {"data": everything[:limit] or [{"booking_id": "BK-ENDLESS"}],
                   "meta": {"total": offset + 10**9, "offset": offset, "limit": limit}}  # fmt: skip
        elif mode == "wrong_type":
            doc = {"data": {"not": "a list"}, "meta": doc["meta"]}
        body = json.dumps(doc).encode()
        if mode == "truncated":
            body = body[: max(1, len(body) // 2)]
        self._send(200, body, "application/json")

    def _videos(self) -> None:
        fault = self.server.state.take_fault("videos")
        if fault and self._apply_common_fault(fault):
            return
        if not self._authorised():
            self._read_body()
            return
        key = self.headers.get("Idempotency-Key")
        payload = self._read_json(expect=None)
        unique_id, revision = check_notification(payload, key)  # BadInputError -> 400
        status = self.server.state.receive_notification(unique_id, revision, payload)
        if status == 409:
            self._json(409, {"error": "already delivered (this revision or a newer one)", "unique_id": unique_id,
                             "revision": revision})  # fmt: skip
        else:
            self._json(201, {"status": "created", "unique_id": unique_id, "revision": revision})

    def _apply_common_fault(self, fault: dict[str, Any]) -> bool:
        """Faults that replace the whole answer. True if the request was answered (or dropped)."""
        mode = fault["mode"]
        if mode.isdigit():
            code = int(mode)
            self._read_body()
            headers = {"Retry-After": fault["retry_after"]} if code == 429 else {}
            self._json(code, {"error": f"simulated HTTP {code}"}, headers)
            return True
        if mode == "html":
            self._read_body()
            page = b"<!DOCTYPE html><html><body><h1>Welcome to Venue WiFi</h1>Please log in.</body></html>"
            self._send(200, page, "text/html; charset=utf-8")
            return True
        if mode == "redirect":
            self._read_body()
            self._send(302, b"", "text/plain", {"Location": "http://portal.invalid/login"})
            return True
        if mode == "reset":
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return True
        if mode == "timeout":
            time.sleep(fault["delay"])
            return False  # then answer normally, far too late for the client
        return False

    # ------------------------------------------------------------ controls

    def _sim_bookings(self) -> None:
        body = self._read_json(expect=None)
        if isinstance(body, list):
            body = {"bookings": body}
        if not isinstance(body, dict):
            raise BadInputError('expected a list of bookings or {"bookings": [...]}')
        removed = self.server.state.remove_bookings(list(body.get("remove", [])))
        items = body.get("bookings", [])
        if not isinstance(items, list):
            raise BadInputError("bookings: expected a list")
        date = body.get("date")
        total = self.server.state.add_bookings(items, date=date, append=bool(body.get("append")))
        self._json(200, {"added": len(items), "removed": removed, "runtime_bookings": total})

    # ------------------------------------------------------------ plumbing

    def _read_body(self) -> bytes:
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            raise BadInputError("bad Content-Length") from None
        if length > MAX_BODY:
            self.close_connection = True
            raise BadInputError("body too large")
        return self.rfile.read(length) if length > 0 else b""

    def _read_json(self, expect: type | None) -> Any:
        raw = self._read_body()
        try:
            doc = json.loads(raw or b"null")
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise BadInputError(f"body is not valid JSON: {e}") from None
        if expect is not None and not isinstance(doc, expect):
            raise BadInputError(f"body should be a JSON {expect.__name__}")
        return doc

    def _json(self, code: int, doc: Any, headers: dict[str, str] | None = None) -> None:
        self._send(code, json.dumps(doc).encode(), "application/json", headers)

    def _send(self, code: int, body: bytes, ctype: str, headers: dict[str, str] | None = None) -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

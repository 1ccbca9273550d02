"""Routing, authorisation and the few shared things every endpoint needs.

Transport-independent: `StatusApp.handle(Request) -> Response`. The socket handler in
`server.py` turns bytes into a `Request` and the `Response` back into bytes.
"""

from __future__ import annotations

import hmac
import logging
import re
import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from venuecam.config import Config
from venuecam.errors import VenuecamError
from venuecam.logs import redact
from venuecam.status import clock, facts
from venuecam.statusd import api_actions, api_bookings, api_jobs, api_page, api_status, lan
from venuecam.statusd.messages import HttpError, Request, Response, error_body
from venuecam.timeutil import utcnow

log = logging.getLogger("venuecam.statusd")

Handler = Callable[..., Response]
CLOCK_CACHE_S = 30.0  # NTP state changes rarely; `timedatectl` costs a process spawn

# (method, path pattern, handler, writes?) -- first match wins, so fixed paths come first.
ROUTES: list[tuple[str, str, Handler, bool]] = [
    ("GET", r"/", api_page.index, False),
    ("GET", r"/api/cameras/([^/]+)/snapshot\.jpg", api_page.snapshot, False),
    ("GET", r"/api/timeline", api_page.timeline_json, False),
    ("GET", r"/clips/([^/]+)\.(mp4|jpg)", api_page.clip_file, False),
    ("GET", r"/healthz", api_status.healthz, False),
    ("GET", r"/metrics", api_status.metrics, False),
    ("GET", r"/api/queue-status", api_status.queue_status, False),
    ("GET", r"/api/queue/tasks", api_status.list_tasks, False),
    ("POST", r"/api/queue/process", api_actions.process_now, True),
    ("POST", r"/api/queue/retry", api_actions.retry_failed, True),
    ("POST", r"/api/queue/cancel", api_actions.give_up_expired, True),
    ("GET", r"/api/bookings", api_bookings.list_bookings, False),
    ("GET", r"/api/bookings/status/([^/]+)", api_bookings.by_status, False),
    ("GET", r"/api/bookings/date/([^/]+)", api_bookings.by_date, False),
    ("GET", r"/api/bookings/([^/]+)", api_bookings.one, False),
    ("POST", r"/api/sync/([^/]+)", api_jobs.sync, True),
    ("GET", r"/api/jobs", api_jobs.list_all, False),
    ("POST", r"/api/jobs/cleanup", api_jobs.cleanup, True),
    ("GET", r"/api/jobs/([^/]+)/logs", api_jobs.logs, False),
    ("GET", r"/api/jobs/([^/]+)", api_jobs.one, False),
    ("POST", r"/api/request-booking-video", api_actions.request_booking_video, True),
]
_COMPILED = [(m, re.compile(p + r"/?"), h, w) for m, p, h, w in ROUTES]
# What the LAN listener serves (with status.lan_token): the installer's page and its parts.
LAN_HANDLERS = frozenset(
    {api_page.index, api_page.snapshot, api_page.timeline_json, api_page.clip_file, api_status.healthz}
)


class StatusApp:
    def __init__(self, cfg: Config, worker_factory: Callable[[Config], Any] | None = None) -> None:
        self.cfg = cfg
        self._worker_factory = worker_factory
        self._worker: Any = None
        self._lock = threading.Lock()
        self._started = time.monotonic()
        self._clock: tuple[float, dict[str, Any]] | None = None
        # Per answering thread: (database_version(), stored_facts()). The GROUP BY over the
        # whole ledger is the dearest part of a snapshot and unchanged between most calls.
        self._stored = threading.local()
        self.lan_handlers = LAN_HANDLERS
        self._snapshots: Any = None

    @property
    def snapshots(self) -> Any:
        """Camera pictures (statusd/snapshots.py), set up on the first one asked for."""
        with self._lock:
            if self._snapshots is None:
                from venuecam.statusd.snapshots import Snapshots

                self._snapshots = Snapshots(self.cfg)
            return self._snapshots

    def uptime_s(self) -> float:
        return time.monotonic() - self._started

    def worker(self) -> Any:
        """The worker client, made on first use (it imports huey: not at start, for memory)."""
        with self._lock:
            if self._worker is None:
                if self._worker_factory is None:
                    try:
                        from venuecam.worker.client import WorkerClient
                    except ImportError:
                        raise HttpError(503, "the worker client is not available in this build") from None
                    self._worker_factory = WorkerClient
                self._worker = self._worker_factory(self.cfg)
            return self._worker

    def snapshot(self) -> dict[str, Any]:
        now = utcnow()
        version = facts.database_version()
        kept = getattr(self._stored, "value", None)
        if kept is None or kept[0] != version:
            kept = (version, facts.stored_facts())
            self._stored.value = kept
        snap = facts.collect(self.cfg, now, with_clock=False, stored=kept[1])
        cached = self._clock
        if cached is None or time.monotonic() - cached[0] > CLOCK_CACHE_S or not cached[1]["clock_set"]:
            use_timedatectl = cached is None or cached[1]["source"] == "timedatectl"
            cached = (time.monotonic(), clock.read_clock(now, use_timedatectl).as_dict())
            self._clock = cached
        snap["clock"] = {**cached[1], "clock_set": clock.clock_is_set(now), "now": snap["generated_at"]}
        return snap

    def authorize(self, req: Request) -> None:
        """Writes over TCP need the configured token; the Unix socket relies on its permissions.

        A browser's write from another site is refused everywhere: the page is reached through
        `ssh -L` to the socket, and any web page open in that browser could otherwise post to it."""
        origin = req.headers.get("origin")
        if origin is not None and urlsplit(origin).netloc.lower() != req.headers.get("host", "").lower():
            raise HttpError(403, f"write requests from another site are refused (Origin {origin[:80]!r})")
        if not req.via_tcp:
            return
        token = self.cfg.status.token
        if not token:
            raise HttpError(
                403, "write requests over TCP are disabled (no status.token configured); use the Unix socket"
            )
        given = req.headers.get("authorization", "")
        given = (
            given[7:].strip()
            if given.lower().startswith("bearer ")
            else req.headers.get("x-venuecam-token", "")
        )
        if not given or not hmac.compare_digest(given.encode(), token.encode()):
            raise HttpError(401, "missing or wrong token (send Authorization: Bearer <status.token>)")

    def route(self, req: Request) -> tuple[Handler, tuple[str, ...], bool]:
        allowed: list[str] = []
        for method, pattern, handler, writes in _COMPILED:
            m = pattern.fullmatch(req.path)
            if m is None:
                continue
            if method != req.method:
                allowed.append(method)
                continue
            return handler, m.groups(), writes
        if allowed:
            raise HttpError(
                405, f"{req.method} is not allowed on {req.path[:200]}", allowed=sorted(set(allowed))
            )
        raise HttpError(404, f"no such endpoint: {req.method} {req.path[:200]}")

    def handle(self, req: Request) -> Response:
        try:
            handler, groups, writes = self.route(req)
            if req.via_lan and (redirect := lan.gate(self, req, handler, writes)) is not None:
                return redirect
            if writes:
                self.authorize(req)
            return handler(self, req, *groups)
        except HttpError as e:
            resp = Response(e.status, error_body(e.status, redact(e.message), **e.extra))
            if e.status == 405:
                resp.headers["Allow"] = ", ".join(e.extra.get("allowed", []))
            return resp
        except VenuecamError as e:
            log.warning("%s %s failed: %s", req.method, req.path, redact(str(e)))
            return Response(503, error_body(503, redact(str(e))))
        except Exception as e:  # the edge of a request: one bad request never stops the daemon
            log.exception("%s %s failed", req.method, req.path[:200])
            return Response(500, error_body(500, f"internal error: {e.__class__.__name__}"))

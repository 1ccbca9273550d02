"""What the simulator knows (bookings), is told to do (faults) and received (notifications).

One lock guards everything: handler threads share this object. With a state file, the
runtime bookings and every notification survive a restart (written atomically on change).
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
from pathlib import Path
from typing import Any

from venuecam.errors import BadInputError
from venuecam.simulator.schedule import Schedule

FAULT_MODES = ("html", "truncated", "wrong_type", "reset", "timeout", "endless", "redirect")
ENDPOINTS = ("bookings", "videos")
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")


def check_fault(endpoint: str, spec: Any) -> dict[str, Any]:
    """A fault spec: {"mode": html|truncated|...|"<HTTP code>", "count": N, "after": K, ...};
    `"queue": true` puts it after the endpoint's faults still to come instead of replacing them."""
    if endpoint not in ENDPOINTS:
        raise BadInputError(f"faults: unknown endpoint {endpoint!r} (allowed: {', '.join(ENDPOINTS)})")
    if spec is None:
        return {}
    if not isinstance(spec, dict):
        raise BadInputError(f"faults.{endpoint}: expected an object")
    mode = str(spec.get("mode", ""))
    if mode not in FAULT_MODES and not (mode.isdigit() and 100 <= int(mode) <= 599):
        raise BadInputError(f"faults.{endpoint}.mode: {mode!r} is not one of {FAULT_MODES} or an HTTP code")
    out = {
        "mode": mode,
        "count": int(spec.get("count", 1)),
        "after": int(spec.get("after", 0)),  # let this many requests through first
        "retry_after": str(spec.get("retry_after", "7")),
        "delay": float(spec.get("delay", 30.0)),  # for timeout: how long to sit on the request
        "queue": bool(spec.get("queue", False)),
    }
    if out["count"] < 0 or out["after"] < 0:
        raise BadInputError(f"faults.{endpoint}: count and after must be >= 0")
    return out


def check_notification(payload: Any, idempotency_key: str | None) -> tuple[str, int]:
    """The contract's POST /api/v1/videos body (sections 2 and 2b); returns (unique_id,
    revision) or raises BadInputError."""
    if not idempotency_key:
        raise BadInputError("missing Idempotency-Key header")
    if not isinstance(payload, dict):
        raise BadInputError("body should be a JSON object")
    problems: list[str] = []

    def need(name: str, ok: bool, expected: str) -> None:
        if not ok:
            problems.append(f"{name}: expected {expected}, got {payload.get(name)!r}"[:160])

    def is_int(v: Any) -> bool:
        return isinstance(v, int) and not isinstance(v, bool)

    def is_url(v: Any) -> bool:
        return isinstance(v, str) and v.startswith(("http://", "https://"))

    for name in ("unique_id", "booking_id", "camera"):
        need(name, isinstance(payload.get(name), str) and bool(payload.get(name)), "a non-empty string")
    need("order_detail_id", payload.get("order_detail_id") is None or is_int(payload.get("order_detail_id")),
         "an integer or null")  # fmt: skip
    need("field_id", is_int(payload.get("field_id")), "an integer")
    need("video_type", payload.get("video_type") in ("full", "highlight"), "full or highlight")
    for name in ("mp4_url", "preview_url", "thumbnail_url"):
        need(name, is_url(payload.get(name)), "an http(s) URL")
    dur = payload.get("duration_seconds")
    need("duration_seconds", isinstance(dur, int | float) and not isinstance(dur, bool) and dur >= 0,
         "a number >= 0")  # fmt: skip
    size = payload.get("size_bytes")
    need("size_bytes", is_int(size) and size >= 0, "an integer >= 0")
    need("sha256", isinstance(payload.get("sha256"), str) and bool(_SHA256_RE.match(payload["sha256"])),
         "64 lower-case hex digits")  # fmt: skip
    revision = payload.get("revision", 1)
    need("revision", is_int(revision) and revision >= 1, "an integer >= 1")
    if "replaces_sha256" in payload:
        replaces = payload["replaces_sha256"]
        need("replaces_sha256", isinstance(replaces, str) and bool(_SHA256_RE.match(replaces)),
             "64 lower-case hex digits")  # fmt: skip
    if problems:
        raise BadInputError("; ".join(problems))
    uid = str(payload["unique_id"])
    allowed = {uid, f"{uid}#r1"} if revision == 1 else {f"{uid}#r{revision}"}
    if idempotency_key not in allowed:
        raise BadInputError(
            f"Idempotency-Key {idempotency_key!r} differs from unique_id {uid!r} revision {revision} "
            f"(expected {' or '.join(sorted(allowed))})"
        )
    return uid, int(revision)


class SimState:
    def __init__(self, schedule: Schedule | None = None, state_file: str | Path | None = None) -> None:
        self.schedule = schedule
        self.state_file = Path(state_file) if state_file else None
        self.lock = threading.Lock()
        # Runtime bookings: (serving date, raw object) in insertion order, served verbatim.
        self.extra: list[tuple[str | None, Any]] = []
        self.faults: dict[str, dict[str, Any]] = {}
        # Faults set with "queue": each endpoint's, in turn once the one in `faults` is spent.
        self.queued: dict[str, list[dict[str, Any]]] = {}
        self.notifications: list[dict[str, Any]] = []
        # unique_id -> the payload of the highest revision received (booking-api.md 2b)
        self.delivered: dict[str, dict[str, Any]] = {}
        # a replacement whose replaces_sha256 is not the MP4 held for it: (unique_id, revision)
        self.replace_mismatches: list[dict[str, Any]] = []
        self.requests: dict[str, int] = {"bookings": 0, "videos": 0}
        self._load()

    # ------------------------------------------------------------ bookings

    def bookings_on(self, date: str) -> list[Any]:
        with self.lock:
            generated = self.schedule.bookings_on(date) if self.schedule else []
            extra = [obj for d, obj in self.extra if d == date or d is None]
            return generated + extra

    def add_bookings(self, items: list[Any], date: str | None = None, append: bool = False) -> int:
        """Add raw booking objects; one with the same id (and date) replaces the old one unless append."""
        with self.lock:
            for obj in items:
                serve_on = date if date is not None else _date_of(obj)
                if not append:
                    key = _id_of(obj)
                    if key is not None:
                        for i, (d, old) in enumerate(self.extra):
                            if d == serve_on and _id_of(old) == key:
                                self.extra[i] = (serve_on, obj)
                                break
                        else:
                            self.extra.append((serve_on, obj))
                        continue
                self.extra.append((serve_on, obj))
            self._save()
            return len(self.extra)

    def remove_bookings(self, ids: list[Any]) -> int:
        keys = {json.dumps(i) for i in ids}
        with self.lock:
            before = len(self.extra)
            self.extra = [(d, o) for d, o in self.extra if _id_of(o) not in keys]
            self._save()
            return before - len(self.extra)

    # ------------------------------------------------------------ faults

    def set_faults(self, body: dict[str, Any]) -> None:
        """Each endpoint's fault replaces the ones still to come (null clears them), or with
        "queue" waits its turn after them: a fault set while another is unspent is not lost."""
        checked = {ep: check_fault(ep, spec) for ep, spec in body.items()}
        with self.lock:
            for ep, spec in checked.items():
                if spec and spec["count"] > 0 and spec["queue"] and ep in self.faults:
                    self.queued.setdefault(ep, []).append(spec)
                elif spec and spec["count"] > 0:
                    self.faults[ep] = spec
                    self.queued.pop(ep, None)
                else:
                    self.faults.pop(ep, None)
                    self.queued.pop(ep, None)

    def pending_faults(self) -> dict[str, list[dict[str, Any]]]:
        """Each endpoint's faults still to come, the next first."""
        with self.lock:
            return {ep: [dict(self.faults[ep]), *map(dict, self.queued.get(ep, []))] for ep in self.faults}

    def take_fault(self, endpoint: str) -> dict[str, Any] | None:
        """Count a request; the fault that applies to it, if any."""
        with self.lock:
            self.requests[endpoint] += 1
            spec = self.faults.get(endpoint)
            if not spec:
                return None
            if spec["after"] > 0:
                spec["after"] -= 1
                return None
            spec["count"] -= 1
            if spec["count"] <= 0:
                del self.faults[endpoint]
                if self.queued.get(endpoint):
                    self.faults[endpoint] = self.queued[endpoint].pop(0)
            return dict(spec)

    # ------------------------------------------------------------ notifications

    def receive_notification(self, unique_id: str, revision: int, payload: dict[str, Any]) -> int:
        """Keep the highest revision of each unique_id: 201 for a new one (or a higher revision),
        409 for one the platform has already, or has a newer one of. Returns the status."""
        with self.lock:
            held = self.delivered.get(unique_id)
            held_revision = int(held.get("revision", 1)) if held else 0
            status = 201 if revision > held_revision else 409
            if status == 201 and held is not None and payload.get("replaces_sha256") != held.get("sha256"):
                self.replace_mismatches.append(
                    {"unique_id": unique_id, "revision": revision, "held_sha256": held.get("sha256"),
                     "replaces_sha256": payload.get("replaces_sha256")}
                )  # fmt: skip
            self.notifications.append(
                {"unique_id": unique_id, "revision": revision, "status": status, "received_at": time.time(),
                 "payload": payload}
            )  # fmt: skip
            if status == 201:
                self.delivered[unique_id] = payload
            self._save()
            return status

    def notifications_view(self) -> dict[str, Any]:
        with self.lock:
            counts: dict[str, int] = {}
            for n in self.notifications:
                counts[n["unique_id"]] = counts.get(n["unique_id"], 0) + 1
            # The contract: one booking, camera and type never gets two unique_ids.
            per_video: dict[str, set[str]] = {}
            for uid, p in self.delivered.items():
                key = f"{p.get('booking_id')}|{p.get('camera')}|{p.get('video_type')}"
                per_video.setdefault(key, set()).add(uid)
            return {
                "notifications": list(self.notifications),
                "counts": counts,
                "delivered": dict(self.delivered),
                "violations": {k: sorted(v) for k, v in per_video.items() if len(v) > 1},
                "revisions": {uid: int(p.get("revision", 1)) for uid, p in self.delivered.items()},
                "replace_mismatches": list(self.replace_mismatches),
                "requests": dict(self.requests),
            }

    def reset(self) -> None:
        with self.lock:
            self.extra.clear()
            self.faults.clear()
            self.queued.clear()
            self.notifications.clear()
            self.delivered.clear()
            self.replace_mismatches.clear()
            self.requests = {"bookings": 0, "videos": 0}
            self._save()

    # ------------------------------------------------------------ persistence

    def _save(self) -> None:
        """Called with the lock held."""
        if not self.state_file:
            return
        doc = {"extra": self.extra, "notifications": self.notifications, "delivered": self.delivered,
               "replace_mismatches": self.replace_mismatches}  # fmt: skip
        tmp = self.state_file.with_name(self.state_file.name + ".tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(doc, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.state_file)

    def _load(self) -> None:
        if not self.state_file or not self.state_file.exists():
            return
        try:
            doc = json.loads(self.state_file.read_text(encoding="utf-8"))
            self.extra = [(d, o) for d, o in doc.get("extra", [])]
            self.notifications = list(doc.get("notifications", []))
            self.delivered = dict(doc.get("delivered", {}))
            self.replace_mismatches = list(doc.get("replace_mismatches", []))
        except (ValueError, TypeError, AttributeError) as e:
            raise BadInputError(f"{self.state_file}: not a simulator state file ({e})") from None


def _id_of(obj: Any) -> str | None:
    if isinstance(obj, dict) and "booking_id" in obj:
        try:
            return json.dumps(obj["booking_id"])
        except (TypeError, ValueError):
            return None
    return None


def _date_of(obj: Any) -> str | None:
    """The date a runtime booking is served on: its own `date` if that is text, else every date."""
    if isinstance(obj, dict) and isinstance(obj.get("date"), str):
        return obj["date"]
    return None

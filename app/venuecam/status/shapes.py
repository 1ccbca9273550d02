"""The snapshot in the seeds' shapes (`/api/queue-status`) and as Prometheus metrics. Pure."""

from __future__ import annotations

from typing import Any

WAITING = ("pending", "processing")
CONNECTIVITY_LABEL = {"ONLINE": "ONLINE ✅", "OFFLINE": "OFFLINE ❌", "UNKNOWN": "UNKNOWN ❔"}


def _sum(queue: dict[str, dict[str, int]], statuses: tuple[str, ...], task_type: str | None = None) -> int:
    types = [task_type] if task_type else list(queue)
    return sum(queue.get(t, {}).get(s, 0) for t in types for s in statuses)


def program_state(snapshot: dict[str, Any], name: str) -> str | None:
    progs = snapshot.get("programs") or {}
    if not progs.get("available"):
        return None
    for p in progs.get("programs", []):
        if p["name"] == name or p["name"].startswith(f"{name}:"):
            return str(p["state"])
    return "ABSENT"


def queue_status(snapshot: dict[str, Any]) -> dict[str, Any]:
    """Seed 000's response, with seed 004's counts and the rest of the snapshot alongside."""
    q = snapshot["queue"]
    conn = snapshot["connectivity"]
    worker = program_state(snapshot, "worker")
    completed = _sum(q, ("completed",))
    failed = _sum(q, ("failed",))
    data = {
        # seed 000
        "is_online": conn["status"] == "ONLINE",
        "connectivity_status": CONNECTIVITY_LABEL.get(conn["status"], conn["status"]),
        "queue_stats": {
            "total_pending": _sum(q, WAITING),
            "upload_pending": _sum(q, WAITING, "upload_r2"),
            "api_notify_pending": _sum(q, WAITING, "notify_ayo_api"),
            "clip_pending": _sum(q, WAITING, "clip"),
            "failed_tasks": failed,
            "expired_tasks": int((snapshot.get("expired") or {}).get("total", 0)),
        },
        "queue_system_running": None if worker is None else worker == "RUNNING",
        # seed 004
        "queue_size": sum(sum(by_status.values()) for by_status in q.values()),
        "pending": _sum(q, WAITING),
        "completed": completed,
        "failed": failed,
        "recent_uploads_24h": snapshot["recent_uploads_24h"],
        "is_monitoring": conn.get("last_check") is not None,
        "stats": {
            "total_processed": completed + failed,
            "successful_uploads": _sum(q, ("completed",), "upload_r2"),
            "failed_uploads": _sum(q, ("failed",), "upload_r2"),
        },
        # the rest of what the box knows
        **{k: v for k, v in snapshot.items() if k != "queue"},
        "queue": q,
        "needs_attention": needs_attention(snapshot),
    }
    return {"success": True, "message": "Queue status retrieved successfully", "data": data}


def needs_attention(snapshot: dict[str, Any]) -> list[str]:
    """What a human should look at, in plain words (the fault LED's reasons)."""
    out = []
    if snapshot["platform_auth"].get("ok") is False:
        out.append(f"platform rejects the token: {snapshot['platform_auth'].get('message', '')}".rstrip(": "))
    for cam in snapshot["cameras"]:
        if not cam["recording"]:
            age = cam["last_segment_age_s"]
            out.append(
                f"camera {cam['name']} down ({'no segment yet' if age is None else f'last segment {age:.0f}s ago'})"
            )
    d = snapshot["disk"]
    if d.get("nearly_full"):
        out.append(f"disk nearly full ({d['free_percent']}% free)")
    c = snapshot.get("clock")
    if c and not c["clock_set"]:
        why = c.get("reason") or "clock not set"
        out.append(f"{why} ({c['now']}): clips wait; segments are re-timed when it syncs")
    failed = _sum(snapshot["queue"], ("failed",))
    if failed:
        out.append(f"{failed} task(s) failed: `venuecam queue retry` re-drives them")
    exp = snapshot.get("expired") or {}
    if exp.get("total"):
        kinds = ", ".join(f"{n} {t}" for t, n in sorted(exp["by_type"].items()) if n)
        out.append(
            f"{exp['total']} task(s) expired, waiting longer than {exp['after_hours']} h ({kinds}; oldest "
            f"since {exp.get('oldest_created_at')}): still delivered when they can be; "
            "`venuecam queue cancel --expired` gives them up"
        )
    out += (snapshot.get("update") or {}).get("attention", [])
    return out


def _esc(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def metrics(snapshot: dict[str, Any]) -> str:
    """Prometheus text exposition (version 0.0.4)."""
    lines: list[str] = []

    def metric(name: str, kind: str, help_: str, samples: list[tuple[dict[str, str], float]]) -> None:
        lines.append(f"# HELP {name} {help_}")
        lines.append(f"# TYPE {name} {kind}")
        for labels, value in samples:
            lab = ",".join(f'{k}="{_esc(str(v))}"' for k, v in labels.items())
            lines.append(f"{name}{{{lab}}} {value:g}" if lab else f"{name} {value:g}")

    q = snapshot["queue"]
    metric(
        "venuecam_queue_tasks",
        "gauge",
        "Ledger rows by task type and state.",
        [({"type": t, "state": s}, n) for t, by in sorted(q.items()) for s, n in sorted(by.items())],
    )
    exp = snapshot.get("expired") or {}
    metric(
        "venuecam_queue_expired_tasks",
        "gauge",
        "Tasks waiting longer than queue.expiration_hours (also counted as pending/processing).",
        [({"type": t}, n) for t, n in sorted((exp.get("by_type") or {}).items())],
    )
    uploads = snapshot["uploads"]
    metric("venuecam_uploads_in_progress", "gauge", "Uploads running now.", [({}, len(uploads))])
    metric(
        "venuecam_upload_bytes_done",
        "gauge",
        "Bytes sent of the uploads running now.",
        [({}, sum(u["bytes_done"] for u in uploads))],
    )
    metric(
        "venuecam_upload_bytes_total",
        "gauge",
        "Size of the uploads running now.",
        [({}, sum(u["bytes_total"] for u in uploads))],
    )
    metric("venuecam_uploads_completed_24h", "gauge", "Uploads completed in the last 24 h.",
           [({}, snapshot["recent_uploads_24h"])])  # fmt: skip
    cap = snapshot.get("upload_cap") or {}
    metric("venuecam_upload_cap_mbit", "gauge", "The upload cap in force now in Mbit/s (0: no cap).",
           [({}, cap.get("mbit") or 0)])  # fmt: skip
    status = snapshot["connectivity"]["status"]
    metric(
        "venuecam_online", "gauge", "1 when the watchdog says ONLINE.", [({}, 1 if status == "ONLINE" else 0)]
    )
    metric(
        "venuecam_connectivity_status",
        "gauge",
        "Connectivity state (one-hot).",
        [({"status": s}, 1 if s == status else 0) for s in ("ONLINE", "OFFLINE", "UNKNOWN")],
    )
    latency = snapshot["connectivity"].get("latency_ms")
    if latency is not None:
        metric("venuecam_connectivity_latency_ms", "gauge", "Last probe latency.", [({}, float(latency))])
    cams = [c for c in snapshot["cameras"] if c["last_segment_age_s"] is not None]
    metric(
        "venuecam_camera_segment_age_seconds",
        "gauge",
        "Seconds since the camera's last finished segment ended.",
        [({"camera": c["name"]}, c["last_segment_age_s"]) for c in cams],
    )
    metric(
        "venuecam_camera_recording",
        "gauge",
        "1 when the camera produced a segment recently.",
        [({"camera": c["name"]}, 1 if c["recording"] else 0) for c in snapshot["cameras"]],
    )
    d = snapshot["disk"]
    if "free_bytes" in d:
        metric("venuecam_disk_free_bytes", "gauge", "Free bytes on the data disk.", [({}, d["free_bytes"])])
        metric("venuecam_disk_total_bytes", "gauge", "Size of the data disk.", [({}, d["total_bytes"])])
    c = snapshot.get("clock")
    if c:
        metric("venuecam_clock_synchronized", "gauge", "1 when NTP synchronised the clock.",
               [({}, 1 if c["synchronized"] else 0)])  # fmt: skip
    progs = snapshot.get("programs") or {}
    if progs.get("available"):
        metric(
            "venuecam_program_running",
            "gauge",
            "1 when supervisord reports the program RUNNING.",
            [({"program": p["name"]}, 1 if p["state"] == "RUNNING" else 0) for p in progs["programs"]],
        )
    return "\n".join(lines) + "\n"

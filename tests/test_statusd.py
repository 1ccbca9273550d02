"""statusd under supervisord, over a populated database: every endpoint's shape, the socket's
permissions, token rules over TCP, and bad input answered with clear JSON errors."""

from __future__ import annotations

import http.client
import json
import os
import stat
from typing import Any

from fixtures_status import STATUS_TOKEN, StatusBox


def tcp(box: StatusBox, method: str, path: str, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    conn = http.client.HTTPConnection("127.0.0.1", box.tcp_port, timeout=10)
    try:
        conn.request(method, path, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read())
    finally:
        conn.close()


def test_queue_status_has_seed_000_and_004_shape_and_the_box_facts(status_box: StatusBox) -> None:
    status, body = status_box.client.get("/api/queue-status")
    assert status == 200
    assert body["success"] is True and body["message"] == "Queue status retrieved successfully"
    data = body["data"]
    # seed 000
    assert data["is_online"] is True and data["connectivity_status"] == "ONLINE ✅"
    assert data["queue_stats"] == {
        "total_pending": 2,  # the running upload and the waiting notification
        "upload_pending": 1,
        "api_notify_pending": 1,
        "clip_pending": 0,
        "failed_tasks": 1,
        "expired_tasks": 0,
    }
    assert data["queue_system_running"] is False  # supervisord answers, but runs no worker here
    # seed 004
    assert (data["queue_size"], data["pending"], data["completed"], data["failed"]) == (4, 2, 1, 1)
    assert data["recent_uploads_24h"] == 1
    assert data["stats"] == {"total_processed": 2, "successful_uploads": 1, "failed_uploads": 1}
    assert data["is_monitoring"] is True
    # the rest
    assert data["queue"]["upload_r2"]["processing"] == 1
    (upload,) = data["uploads"]
    assert upload["percent"] == 40.0 and upload["video"] == "BK-1-CAMERA_A-0"
    assert data["failed_tasks"][0]["error"] == "HTTP 500 from store"
    (cam,) = data["cameras"]
    assert cam["name"] == "CAMERA_A" and cam["recording"] is True
    assert {"free_bytes", "total_bytes", "free_percent", "nearly_full"} <= set(data["disk"])
    assert set(data["clock"]) == {"synchronized", "source", "clock_set", "now", "reason"}
    assert data["programs"]["available"] is True
    assert [(p["name"], p["state"]) for p in data["programs"]["programs"]] == [("statusd", "RUNNING")]
    assert data["needs_attention"] == ["1 task(s) failed: `venuecam queue retry` re-drives them"]


def test_bookings_endpoints_use_seed_001_shapes(status_box: StatusBox) -> None:
    c = status_box.client
    status, body = c.get("/api/bookings")
    assert status == 200 and body["status"] == "success" and body["count"] == 3
    assert set(body["data"][0]) == {
        "id", "bookingId", "orderDetailId", "fieldId", "date", "startTime", "endTime", "status",
        "fieldName", "userName", "userPhone", "createdAt", "updatedAt", "rawJson", "lastSyncAt",
    }  # fmt: skip
    assert [b["bookingId"] for b in c.get("/api/bookings?status=cancelled")[1]["data"]] == ["BK-2"]
    assert c.get("/api/bookings?limit=1")[1]["count"] == 1
    today = c.get("/api/bookings/BK-1")[1]["data"]["date"]
    assert {b["bookingId"] for b in c.get(f"/api/bookings?date={today}")[1]["data"]} == {"BK-1", "BK-2"}
    assert {b["bookingId"] for b in c.get(f"/api/bookings/date/{today}")[1]["data"]} == {"BK-1", "BK-2"}
    assert {b["bookingId"] for b in c.get("/api/bookings/status/success")[1]["data"]} == {"BK-1", "BK-3"}
    status, one = c.get("/api/bookings/BK-3")
    assert status == 200 and one["data"]["orderDetailId"] == 703 and one["data"]["fieldName"] == "Lapangan 1"


def test_bad_input_gets_a_json_error_naming_what_was_wrong(status_box: StatusBox) -> None:
    c = status_box.client
    cases = [
        ("GET", "/api/bookings?limit=abc", 400, "limit: expected an integer"),
        ("GET", "/api/bookings?limit=0", 400, "limit: expected 1..1000"),
        ("GET", "/api/bookings?date=23-01-2025", 400, "date: expected YYYY-MM-DD"),
        ("GET", "/api/bookings/date/yesterday", 400, "date: expected YYYY-MM-DD"),
        ("GET", "/api/bookings/BK-404", 404, "booking BK-404 not found"),
        ("GET", "/api/nothing-here", 404, "no such endpoint"),
        ("POST", "/api/bookings", 405, "POST is not allowed"),
        ("POST", "/api/sync/bookings?force=maybe", 400, "force: expected true or false"),
        ("POST", "/api/sync/weather", 404, "unknown sync type 'weather'"),
        ("GET", "/api/jobs/no-such-job", 404, "job no-such-job not found"),
        ("POST", "/api/jobs/cleanup?type=weather", 400, "unknown sync type"),
        ("GET", "/api/queue/tasks?status=lost", 400, "status: expected one of"),
    ]
    for method, path, code, text in cases:
        status, body = c.request(method, path)
        assert (status, body["success"], body["status"]) == (code, False, "error"), path
        assert text in body["message"], (path, body)
    for payload, text in [
        ({}, '{"field_id": N}'),
        ({"field_id": "1"}, "field_id: expected a non-negative integer"),
        ({"field_id": True}, "field_id: expected a non-negative integer"),
        ([1], '{"field_id": N}'),
    ]:
        status, body = c.post("/api/request-booking-video", payload)
        assert status == 400 and text in body["message"], payload
    status, body = c.post("/api/queue/retry", {"ids": ["x"]})
    assert status == 400 and "ids: expected a list of integer task ids" in body["message"]
    notify_id = status_box.ids["notify"]  # type: ignore[attr-defined]
    for path, payload, text in [
        ("/api/queue/retry", {"ids": [notify_id]}, f"task(s) [{notify_id}]: not failed or given up"),
        ("/api/queue/retry", {"every": True}, 'expected a JSON object with "ids"'),
        ("/api/queue/cancel", None, '{"expired": true}'),
        ("/api/queue/cancel", {"expired": "yes"}, '{"expired": true}'),
        ("/api/queue/cancel", {"ids": [notify_id]}, f"task(s) [{notify_id}]: not expired and waiting"),
    ]:
        status, body = c.post(path, payload)
        assert status == 400 and text in body["message"], (path, payload, body)
    # nothing changed: the failed task is still failed, no job was created
    assert c.get("/api/queue/tasks?status=failed")[1]["count"] == 1
    assert c.get("/api/queue/tasks?status=pending")[1]["count"] == 1
    assert c.get("/api/jobs")[1]["count"] == 0


def test_queue_tasks_listing_and_retry_of_failed_tasks(status_box: StatusBox) -> None:
    c = status_box.client
    status, body = c.get("/api/queue/tasks?type=upload_r2")
    assert status == 200 and body["count"] == 3
    assert {t["status"] for t in body["data"]} == {"processing", "completed", "failed"}
    failed_id = status_box.ids["upload2"]  # type: ignore[attr-defined]
    status, body = c.post("/api/queue/retry", {"ids": [failed_id]})
    # the worker client answers (huey's queue file); the ledger row is pending again
    assert status == 200, body
    assert body["retried"] == 1
    (row,) = [t for t in c.get("/api/queue/tasks?type=upload_r2")[1]["data"] if t["id"] == failed_id]
    assert row["status"] == "pending" and row["attempts"] == 0


def test_healthz_and_prometheus_metrics(status_box: StatusBox) -> None:
    status, body = status_box.client.get("/healthz")
    assert status == 200 and body["status"] == "ok" and body["database"] == "ok"
    conn = http.client.HTTPConnection("127.0.0.1", status_box.tcp_port, timeout=10)
    conn.request("GET", "/metrics")
    resp = conn.getresponse()
    text = resp.read().decode()
    assert resp.status == 200 and resp.getheader("Content-Type").startswith("text/plain; version=0.0.4")
    lines = text.splitlines()
    assert 'venuecam_queue_tasks{type="upload_r2",state="failed"} 1' in lines
    assert 'venuecam_queue_tasks{type="notify_ayo_api",state="pending"} 1' in lines
    assert "venuecam_upload_bytes_done 4e+07" in lines
    assert "venuecam_online 1" in lines
    assert any(line.startswith('venuecam_camera_segment_age_seconds{camera="CAMERA_A"} ') for line in lines)
    assert any(line.startswith("venuecam_disk_free_bytes ") for line in lines)
    for line in lines:  # every sample line is `name{labels} number`
        if not line.startswith("#"):
            float(line.rsplit(" ", 1)[1])


def test_socket_is_0660_and_owned_by_the_configured_group_when_it_exists(status_box: StatusBox) -> None:
    st = os.stat(status_box.cfg.status_socket)
    assert stat.S_ISSOCK(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == 0o660
    import grp

    try:
        expected = grp.getgrnam(status_box.cfg.status.socket_group).gr_gid
    except KeyError:
        expected = os.getgid()  # no such group here: the socket keeps ours (and says so in the log)
        assert "does not exist" in status_box.log()
    assert st.st_gid == expected


def test_tcp_reads_are_open_and_writes_need_the_token(status_box: StatusBox) -> None:
    status, body = tcp(status_box, "GET", "/api/queue-status")
    assert status == 200 and body["success"] is True
    status, body = tcp(status_box, "POST", "/api/jobs/cleanup")
    assert status == 401 and "token" in body["message"] and STATUS_TOKEN not in json.dumps(body)
    status, body = tcp(status_box, "POST", "/api/jobs/cleanup", {"Authorization": "Bearer wrong-token"})
    assert status == 401
    status, body = tcp(status_box, "POST", "/api/jobs/cleanup", {"Authorization": f"Bearer {STATUS_TOKEN}"})
    assert status == 200 and body == {
        "success": True,
        "message": "Cleaned up 0 stuck job(s)",
        "cleaned": 0,
        "breakdown": {"active": 0, "waiting": 0, "completed": 0, "failed": 0},
    }
    # the Unix socket relies on its file permissions: no token
    assert status_box.client.post("/api/jobs/cleanup")[0] == 200

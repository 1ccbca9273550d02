"""Asking the worker to act: process now, re-drive failed tasks, give up expired ones, a
highlight clip. The ledger and video changes are made here (they are database writes); the
work itself is always the worker's, handed over through its client."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from venuecam import pipeline, redrive
from venuecam.errors import BadInputError
from venuecam.statusd.messages import HttpError, Request, Response

if TYPE_CHECKING:
    from venuecam.statusd.app import StatusApp


def process_now(app: StatusApp, req: Request) -> Response:
    dispatched = app.worker().wake()
    return Response(
        200,
        {
            "success": True,
            "message": f"Queue processing requested: {dispatched} task(s) dispatched",
            "dispatched": dispatched,
        },
    )


def _ids(req: Request, allowed: set[str]) -> tuple[list[int] | None, dict[str, Any]]:
    body = req.json()
    if body is None:
        return None, {}
    if not isinstance(body, dict) or set(body) - allowed:
        keys = ", ".join(f'"{k}"' for k in sorted(allowed))
        raise HttpError(400, f"expected a JSON object with {keys} or no body")
    ids = body.get("ids")
    if ids is not None and (
        not isinstance(ids, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in ids)
    ):
        raise HttpError(400, "ids: expected a list of integer task ids")
    return ids, body


def retry_failed(app: StatusApp, req: Request) -> Response:
    ids, _ = _ids(req, {"ids"})
    try:
        done = redrive.retry(ids)
    except BadInputError as e:
        raise HttpError(400, str(e)) from None
    dispatched = app.worker().wake() if done.rows else 0
    return Response(
        200,
        {
            "success": True,
            "message": f"{len(done.rows)} failed task(s) re-driven, {dispatched} dispatched",
            "retried": len(done.rows),
            "videos_reset": done.videos_reset,
            "dispatched": dispatched,
        },
    )


def give_up_expired(app: StatusApp, req: Request) -> Response:
    ids, body = _ids(req, {"ids", "expired"})
    if ids is None and body.get("expired") is not True:
        raise HttpError(400, 'name the tasks ({"ids": [...]}) or all expired ones ({"expired": true})')
    try:
        cancelled = redrive.give_up_expired(app.cfg, ids)
    except BadInputError as e:
        raise HttpError(400, str(e)) from None
    return Response(
        200,
        {
            "success": True,
            "message": f"{len(cancelled)} expired task(s) given up",
            "cancelled": cancelled,
        },
    )


def request_booking_video(app: StatusApp, req: Request) -> Response:
    body = req.json()
    if not isinstance(body, dict) or "field_id" not in body:
        raise HttpError(400, 'expected a JSON body {"field_id": N}')
    field_id = body["field_id"]
    if not isinstance(field_id, int) or isinstance(field_id, bool) or field_id < 0:
        raise HttpError(400, f"field_id: expected a non-negative integer, got {field_id!r:.40}")
    try:
        result, rows = pipeline.request_highlight(app.cfg, field_id)
    except BadInputError as e:
        raise HttpError(404, str(e)) from None
    app.worker().send(rows)
    return Response(202, {"success": True, "message": "Highlight clip requested", "data": result})

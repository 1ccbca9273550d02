"""Asking the worker to act: process now, re-drive failed tasks, a highlight clip."""

from __future__ import annotations

from typing import TYPE_CHECKING

from venuecam import ledger
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


def retry_failed(app: StatusApp, req: Request) -> Response:
    body = req.json()
    ids = None
    if body is not None:
        if not isinstance(body, dict) or set(body) - {"ids"}:
            raise HttpError(400, 'expected {"ids": [task ids]} or no body')
        ids = body.get("ids")
        if not isinstance(ids, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in ids):
            raise HttpError(400, "ids: expected a list of integer task ids")
    retried = ledger.retry_failed(ids)
    dispatched = app.worker().wake() if retried else 0
    return Response(
        200,
        {
            "success": True,
            "message": f"{retried} failed task(s) re-driven, {dispatched} dispatched",
            "retried": retried,
            "dispatched": dispatched,
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
        from venuecam.pipeline import request_highlight
    except ImportError:
        raise HttpError(503, "highlight clips are not available in this build") from None
    try:
        result = request_highlight(app.cfg, field_id)
    except BadInputError as e:
        raise HttpError(404, str(e)) from None
    return Response(202, {"success": True, "message": "Highlight clip requested", "data": result})

"""Seed 001's booking endpoints, camelCase shapes."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from venuecam.models import Booking
from venuecam.statusd import params
from venuecam.statusd.messages import HttpError, Request, Response
from venuecam.timeutil import iso

if TYPE_CHECKING:
    from venuecam.statusd.app import StatusApp

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000


def booking_dict(b: Booking) -> dict[str, Any]:
    return {
        "id": b.id,
        "bookingId": b.booking_id,
        "orderDetailId": b.order_detail_id,
        "fieldId": b.field_id,
        "date": b.date,
        "startTime": b.start_time,
        "endTime": b.end_time,
        "status": b.status,
        "fieldName": b.field_name,
        "userName": b.user_name,
        "userPhone": b.user_phone,
        "createdAt": iso(b.created_at),
        "updatedAt": iso(b.updated_at),
        "rawJson": b.raw_json,
        "lastSyncAt": iso(b.last_sync_at),
    }


def _listing(status: str | None, date: str | None, limit: int) -> Response:
    q = Booking.select()
    if status:
        q = q.where(Booking.status == status)
    if date:
        q = q.where(Booking.date == date)
    rows = [
        booking_dict(b)
        for b in q.order_by(Booking.date.desc(), Booking.start_time.desc(), Booking.id.desc()).limit(limit)
    ]
    return Response(200, {"status": "success", "count": len(rows), "data": rows})


def list_bookings(app: StatusApp, req: Request) -> Response:
    status = req.query.get("status") or None
    date = req.query.get("date") or None
    return _listing(
        params.word(status, "status") if status else None,
        params.date(date) if date else None,
        params.integer(req.query, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT),
    )


def by_status(app: StatusApp, req: Request, status: str) -> Response:
    return _listing(
        params.word(status, "status"), None, params.integer(req.query, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
    )


def by_date(app: StatusApp, req: Request, date: str) -> Response:
    return _listing(None, params.date(date), params.integer(req.query, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT))


def one(app: StatusApp, req: Request, booking_id: str) -> Response:
    b = Booking.get_or_none(Booking.booking_id == params.word(booking_id, "booking id", 128))
    if b is None:
        raise HttpError(404, f"booking {booking_id} not found")
    return Response(200, {"status": "success", "data": booking_dict(b)})

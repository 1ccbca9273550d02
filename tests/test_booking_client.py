"""The platform client against the real simulator process: paging, faults, notifications."""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from conftest import API_TOKEN, free_port
from fixtures_platform import PlatformSim, booking
from venuecam.booking.client import NotifyResult, PlatformClient, RateLimitedError, parse_retry_after
from venuecam.booking.parse import BadPageError
from venuecam.config import Config
from venuecam.errors import AuthError, BadInputError, OfflineError, TransientError

DATE = "2025-01-23"
SHA = "ab" * 32


@pytest.fixture
def client_for(make_config: Callable[..., Config]) -> Iterator[Callable[..., PlatformClient]]:
    """client_for(url, **booking_api) -> a client with that config; closed at teardown."""
    made: list[PlatformClient] = []

    def make(url: str, max_pages: int = 200, **api: Any) -> PlatformClient:
        cfg = make_config(booking_api={"base_url": url, **api})
        made.append(PlatformClient(cfg.booking_api, max_pages=max_pages))
        return made[-1]

    yield make
    for c in made:
        c.close()


def payload(unique_id: str = "BK-1-CAMERA_A-full", **over: Any) -> dict[str, Any]:
    p = {
        "unique_id": unique_id,
        "booking_id": "BK-1",
        "order_detail_id": 789,
        "field_id": 1,
        "camera": "CAMERA_A",
        "video_type": "full",
        "mp4_url": "https://videos.example/a.mp4",
        "preview_url": "https://videos.example/a_preview.mp4",
        "thumbnail_url": "https://videos.example/a.jpg",
        "duration_seconds": 7200.0,
        "size_bytes": 1843200000,
        "sha256": SHA,
    }
    p.update(over)
    return p


def all_text(exc: BaseException) -> str:
    """Everything an exception would show in a log: message, chain and traceback."""
    return "".join(traceback.format_exception(exc))


def test_pages_through_250_bookings_100_at_a_time(platform: PlatformSim, client_for: Any) -> None:
    platform.add_bookings([booking(f"BK-{i}") for i in range(250)], date=DATE)
    client = client_for(platform.url, page_size=100)
    pages = list(client.iter_bookings(platform.venue_id, DATE))
    assert [len(p.records) for p in pages] == [100, 100, 50]
    assert [p.total for p in pages] == [250, 250, 250]
    ids = [r["booking_id"] for p in pages for r in p.records]
    assert ids == [f"BK-{i}" for i in range(250)]
    assert platform.summary()["requests"]["bookings"] == 3


def test_an_empty_day_is_one_empty_page(platform: PlatformSim, client_for: Any) -> None:
    pages = list(client_for(platform.url).iter_bookings(platform.venue_id, DATE))
    assert len(pages) == 1 and pages[0].records == [] and pages[0].total == 0


def test_a_platform_whose_total_never_ends_is_stopped(platform: PlatformSim, client_for: Any) -> None:
    platform.add_bookings([booking(f"BK-{i}") for i in range(3)], date=DATE)
    platform.set_fault("bookings", "endless", count=1000)
    client = client_for(platform.url, page_size=3, max_pages=5)
    with pytest.raises(BadPageError, match="after 5 pages"):
        list(client.iter_bookings(platform.venue_id, DATE))
    assert platform.summary()["requests"]["bookings"] == 5


@pytest.mark.parametrize(
    ("mode", "words"),
    [("html", "HTML page"), ("truncated", "truncated JSON"), ("wrong_type", "'data' should be a list")],
)
def test_broken_pages_raise_a_clear_bad_page_error(
    platform: PlatformSim, client_for: Any, mode: str, words: str
) -> None:
    platform.add_bookings([booking(f"BK-{i}") for i in range(5)], date=DATE)
    platform.set_fault("bookings", mode)
    with pytest.raises(BadPageError) as err:
        client_for(platform.url).list_bookings(platform.venue_id, DATE)
    assert words in str(err.value) and f"date {DATE}" in str(err.value)
    assert isinstance(err.value, TransientError)  # the next run tries again


def test_a_captive_portal_redirect_is_transient(platform: PlatformSim, client_for: Any) -> None:
    platform.set_fault("bookings", "redirect")
    with pytest.raises(TransientError, match="redirected"):
        client_for(platform.url).list_bookings(platform.venue_id, DATE)


def test_wrong_token_is_an_auth_error(platform: PlatformSim, client_for: Any) -> None:
    client = client_for(platform.url, api_token="wrong-token-0000")
    with pytest.raises(AuthError, match="rejected the API token") as err:
        client.list_bookings(platform.venue_id, DATE)
    assert "wrong-token-0000" not in all_text(err.value)


@pytest.mark.parametrize("code", ["401", "403"])
def test_platform_auth_refusals_are_auth_errors(platform: PlatformSim, client_for: Any, code: str) -> None:
    platform.set_fault("bookings", code)
    with pytest.raises(AuthError, match=f"HTTP {code}"):
        client_for(platform.url).list_bookings(platform.venue_id, DATE)


def test_429_carries_retry_after(platform: PlatformSim, client_for: Any) -> None:
    platform.set_fault("bookings", "429", retry_after="42")
    with pytest.raises(RateLimitedError) as err:
        client_for(platform.url).list_bookings(platform.venue_id, DATE)
    assert err.value.retry_after == 42
    assert isinstance(err.value, TransientError)


def test_retry_after_forms() -> None:
    assert parse_retry_after("17") == 17
    assert parse_retry_after(None) == 60
    assert parse_retry_after("soon") == 60
    assert parse_retry_after("999999") == 3600
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:30 GMT", now=1445412480.0) == 30


@pytest.mark.parametrize("code", ["500", "502", "503"])
def test_5xx_is_transient(platform: PlatformSim, client_for: Any, code: str) -> None:
    platform.set_fault("bookings", code)
    with pytest.raises(TransientError, match=f"HTTP {code}") as err:
        client_for(platform.url).list_bookings(platform.venue_id, DATE)
    assert not isinstance(err.value, OfflineError)


def test_a_slow_platform_times_out_as_transient(platform: PlatformSim, client_for: Any) -> None:
    platform.set_fault("bookings", "timeout", delay=3)
    with pytest.raises(TransientError, match="did not answer within 0.5s") as err:
        client_for(platform.url, timeout_s=0.5).list_bookings(platform.venue_id, DATE)
    assert not isinstance(err.value, OfflineError)


def test_a_dropped_connection_is_transient(platform: PlatformSim, client_for: Any) -> None:
    platform.set_fault("bookings", "reset")
    with pytest.raises(TransientError):
        client_for(platform.url).list_bookings(platform.venue_id, DATE)


def test_nothing_listening_is_offline(client_for: Any) -> None:
    client = client_for(f"http://127.0.0.1:{free_port()}")
    with pytest.raises(OfflineError, match="unreachable: connection refused"):
        client.list_bookings("42", DATE)
    with pytest.raises(OfflineError):
        client.notify_video(payload(), "BK-1-CAMERA_A-full")


def test_an_unknown_host_is_offline(client_for: Any) -> None:
    # .invalid never resolves (RFC 2606); no traffic leaves the machine for it.
    with pytest.raises(OfflineError, match="name resolution"):
        client_for("http://booking-platform.invalid").list_bookings("42", DATE)


def test_notify_201_then_409_both_count_as_delivered(platform: PlatformSim, client_for: Any) -> None:
    client = client_for(platform.url)
    first = client.notify_video(payload(), "BK-1-CAMERA_A-full")
    again = client.notify_video(payload(), "BK-1-CAMERA_A-full")
    assert first == NotifyResult(delivered=True, status_code=201, already_delivered=False)
    assert again == NotifyResult(delivered=True, status_code=409, already_delivered=True)
    assert (first.status, again.status) == ("delivered (HTTP 201)", "already delivered (HTTP 409)")
    seen = platform.summary()
    assert seen["counts"] == {"BK-1-CAMERA_A-full": 2}
    assert seen["delivered"]["BK-1-CAMERA_A-full"] == payload()
    assert seen["violations"] == {}


def test_notify_key_must_match_unique_id(platform: PlatformSim, client_for: Any) -> None:
    with pytest.raises(BadInputError, match="differs from payload unique_id"):
        client_for(platform.url).notify_video(payload(), "OTHER")
    with pytest.raises(BadInputError, match="path separator"):
        client_for(platform.url).notify_video(payload("BK/1"), "BK/1")
    assert platform.summary()["counts"] == {}


def test_notify_errors_map_like_bookings(platform: PlatformSim, client_for: Any) -> None:
    client = client_for(platform.url)
    platform.set_fault("videos", "503")
    with pytest.raises(TransientError, match="HTTP 503"):
        client.notify_video(payload(), "BK-1-CAMERA_A-full")
    platform.set_fault("videos", "401")
    with pytest.raises(AuthError):
        client.notify_video(payload(), "BK-1-CAMERA_A-full")
    platform.set_fault("videos", "429", retry_after="5")
    with pytest.raises(RateLimitedError) as err:
        client.notify_video(payload(), "BK-1-CAMERA_A-full")
    assert err.value.retry_after == 5
    assert platform.summary()["counts"] == {}
    assert client.notify_video(payload(), "BK-1-CAMERA_A-full").status_code == 201


def test_notify_a_payload_the_platform_refuses_is_an_error(platform: PlatformSim, client_for: Any) -> None:
    with pytest.raises(TransientError, match=r"HTTP 400.*sha256"):
        client_for(platform.url).notify_video(payload(sha256="nope"), "BK-1-CAMERA_A-full")


def test_the_token_never_reaches_logs_or_errors(
    platform: PlatformSim, client_for: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    client = client_for(platform.url)
    texts: list[str] = []
    for endpoint, mode in [("bookings", m) for m in ("html", "truncated", "500", "401", "429", "reset")] + [
        ("videos", "500"),
        ("videos", "403"),
    ]:
        platform.set_fault(endpoint, mode)
        with pytest.raises(Exception) as err:  # noqa: B017 - each mode raises its own kind
            if endpoint == "bookings":
                client.list_bookings(platform.venue_id, DATE)
            else:
                client.notify_video(payload(), "BK-1-CAMERA_A-full")
        texts.append(all_text(err.value))
    client.notify_video(payload(), "BK-1-CAMERA_A-full")
    with pytest.raises(OfflineError) as err:
        client_for(f"http://127.0.0.1:{free_port()}").list_bookings("42", DATE)
    texts.append(all_text(err.value))
    assert caplog.records, "urllib3 logs requests at DEBUG: the capture must have seen some"
    for text in [*texts, caplog.text, platform.log_text()]:
        assert API_TOKEN not in text

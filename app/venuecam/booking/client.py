"""HTTP client of the booking platform (booking-api.md). One session, a timeout on every call.

Errors map to the package's tree so callers decide without looking at HTTP:
401/403 -> AuthError (retrying will not help); 429 -> RateLimitedError (a TransientError
with `retry_after`, which the worker waits for); 5xx, timeouts, resets -> TransientError; refused connections, DNS
failures, unreachable networks -> OfflineError; HTML or broken JSON -> BadPageError.
The API token goes into the Authorization header and nowhere else: no log line, no message.
"""

from __future__ import annotations

import email.utils
import errno
import json
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import requests

from venuecam import logs
from venuecam.booking import notify
from venuecam.booking.parse import BadPageError, Page, check_booking_id, parse_page
from venuecam.config import BookingApiConfig
from venuecam.errors import AuthError, BadInputError, OfflineError, RateLimitedError, TransientError

log = logging.getLogger(__name__)

BOOKINGS_PATH = "/api/v1/bookings"
VIDEOS_PATH = "/api/v1/videos"
# A venue with more pages than this in one day is a platform that never stops paging.
DEFAULT_MAX_PAGES = 200
DEFAULT_RETRY_AFTER_S = 60.0
MAX_RETRY_AFTER_S = 3600.0


@dataclass(frozen=True)
class NotifyResult:
    delivered: bool
    status_code: int
    already_delivered: bool  # 409: the platform had it already (counts as delivered)

    @property
    def status(self) -> str:
        """For log lines: "delivered (HTTP 201)" or "already delivered (HTTP 409)"."""
        return f"{'already delivered' if self.already_delivered else 'delivered'} (HTTP {self.status_code})"


class PlatformClient:
    """The booking platform's API as methods. Not thread-safe (one session); cheap to create."""

    def __init__(
        self,
        api: BookingApiConfig,
        session: requests.Session | None = None,
        max_pages: int = DEFAULT_MAX_PAGES,
    ) -> None:
        self.base_url = api.base_url.rstrip("/")
        self.timeout = api.timeout_s
        self.page_size = api.page_size
        self.max_pages = max_pages
        self._token = api.api_token
        self._host = urlsplit(self.base_url).netloc
        logs.register_secrets([api.api_token])
        self._session = session or requests.Session()
        # Proxies from the environment would see our traffic; the appliance talks directly.
        self._session.trust_env = False

    def close(self) -> None:
        self._session.close()

    def __enter__(self) -> PlatformClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------ bookings

    def list_bookings(self, venue_id: str, date: str, offset: int = 0, limit: int | None = None) -> Page:
        """One page of a venue's bookings on a venue-local date."""
        params = {"venue_id": venue_id, "date": date, "offset": offset, "limit": limit or self.page_size}
        what = f"GET bookings (date {date}, offset {offset})"
        resp = self._request("GET", BOOKINGS_PATH, what, params=params)
        self._raise_for_status(resp, what)
        try:
            return parse_page(resp.content, resp.headers.get("Content-Type", ""))
        except BadPageError as e:
            raise BadPageError(self._scrub(f"{what}: {e}")) from None

    def iter_bookings(self, venue_id: str, date: str) -> Iterator[Page]:
        """Every page of a date: `offset += len(data)` until meta.total is reached or a page is empty."""
        offset = 0
        for _ in range(self.max_pages):
            page = self.list_bookings(venue_id, date, offset)
            yield page
            offset += len(page.records)
            if not page.records or (page.total is not None and offset >= page.total):
                return
            if page.total is None and len(page.records) < self.page_size:
                return  # no total given: a short page is the last one
        raise BadPageError(
            f"GET bookings (date {date}): still more after {self.max_pages} pages "
            f"({offset} records); the platform's meta.total never ends"
        )

    # ------------------------------------------------------------ notifications

    def notify_video(self, payload: dict[str, Any], idempotency_key: str) -> NotifyResult:
        """Report a finished video. 201/200 delivered; 409 already delivered, or (booking-api.md
        2b) a revision the platform already has or has a newer one of: also a success."""
        unique_id = payload.get("unique_id")
        revision = payload.get("revision", 1)
        if not isinstance(unique_id, str) or isinstance(revision, bool) or not isinstance(revision, int):
            raise BadInputError("notify: payload needs a unique_id string and an integer revision")
        if idempotency_key != notify.idempotency_key(unique_id, revision):
            raise BadInputError(
                f"notify: Idempotency-Key {idempotency_key!r} differs from payload unique_id "
                f"{unique_id!r} revision {revision}"
            )
        check_booking_id(unique_id)  # same rules: no '/', '..', control characters
        what = f"POST videos ({idempotency_key})"
        resp = self._request(
            "POST",
            VIDEOS_PATH,
            what,
            data=json.dumps(payload, sort_keys=True).encode(),
            headers={"Idempotency-Key": idempotency_key, "Content-Type": "application/json"},
        )
        if resp.status_code == 409:
            return NotifyResult(delivered=True, status_code=409, already_delivered=True)
        self._raise_for_status(resp, what)
        if resp.status_code not in (200, 201):
            raise TransientError(f"{what}: unexpected HTTP {resp.status_code} from the booking platform")
        return NotifyResult(delivered=True, status_code=resp.status_code, already_delivered=False)

    # ------------------------------------------------------------ plumbing

    def _request(self, method: str, path: str, what: str, **kw: Any) -> requests.Response:
        headers = {
            "Authorization": f"Bearer {self._token}",
            "Accept": "application/json",
            **kw.pop("headers", {}),
        }
        try:
            return self._session.request(
                method,
                self.base_url + path,
                headers=headers,
                timeout=self.timeout,
                allow_redirects=False,
                **kw,
            )
        except requests.ConnectTimeout as e:
            # Nothing answered the connect at all: from here the platform is unreachable.
            raise OfflineError(f"{what}: booking platform {self._host} did not accept a connection "
                               f"within {self.timeout:g}s") from e  # fmt: skip
        except requests.Timeout as e:
            raise TransientError(f"{what}: booking platform {self._host} did not answer within "
                                 f"{self.timeout:g}s") from e  # fmt: skip
        except requests.ConnectionError as e:
            reason = _offline_reason(e)
            if reason:
                raise OfflineError(f"{what}: booking platform {self._host} unreachable: {reason}") from e
            raise TransientError(f"{what}: connection to booking platform {self._host} failed: "
                                 f"{self._scrub(_short(e))}") from e  # fmt: skip
        except requests.RequestException as e:
            raise TransientError(f"{what}: request failed: {self._scrub(_short(e))}") from e

    def _raise_for_status(self, resp: requests.Response, what: str) -> None:
        code = resp.status_code
        if code in (401, 403):
            raise AuthError(
                f"{what}: the booking platform rejected the API token (HTTP {code}); "
                "check booking_api.api_token, retrying will not help"
            )
        if code == 429:
            wait = parse_retry_after(resp.headers.get("Retry-After"))
            raise RateLimitedError(f"{what}: rate limited by the booking platform (HTTP 429), "
                                   f"retry after {wait:g}s", wait)  # fmt: skip
        if code >= 500:
            raise TransientError(f"{what}: booking platform error HTTP {code}{self._body_hint(resp)}")
        if 300 <= code < 400:
            raise TransientError(
                f"{what}: booking platform redirected (HTTP {code}) to "
                f"{self._scrub(resp.headers.get('Location', '?'))[:200]}; a captive portal?"
            )
        if code >= 400:
            raise TransientError(f"{what}: booking platform refused the request (HTTP {code})"
                                 f"{self._body_hint(resp)}")  # fmt: skip

    def _body_hint(self, resp: requests.Response) -> str:
        text = resp.text.strip() if resp.content else ""
        if not text or text.lstrip().startswith("<"):
            return ""
        return ": " + self._scrub(" ".join(text.split()))[:200]

    def _scrub(self, text: str) -> str:
        """Nothing that came back from outside may echo our token into a message."""
        if self._token:
            text = text.replace(self._token, "***")
        return logs.redact(text)


def parse_retry_after(value: str | None, now: float | None = None) -> float:
    """Retry-After as seconds: either a number of seconds or an HTTP date; a sane default else."""
    if not value:
        return DEFAULT_RETRY_AFTER_S
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return DEFAULT_RETRY_AFTER_S
        seconds = when.timestamp() - (time.time() if now is None else now)
    if seconds != seconds:  # NaN
        return DEFAULT_RETRY_AFTER_S
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_S)


_OFFLINE_ERRNOS = {errno.ECONNREFUSED, errno.ENETUNREACH, errno.EHOSTUNREACH, errno.ENETDOWN, errno.EHOSTDOWN}


def _offline_reason(exc: BaseException) -> str | None:
    """Why a connection never got established (refused, no route, no DNS), or None."""
    import socket

    seen: set[int] = set()
    stack: list[Any] = [exc]
    while stack:
        e = stack.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, socket.gaierror) or type(e).__name__ == "NameResolutionError":
            return "name resolution failed (no DNS)"
        if isinstance(e, OSError) and e.errno in _OFFLINE_ERRNOS:
            return (e.strerror or errno.errorcode.get(e.errno, "")).lower() or "no connection"
        stack.extend([e.__cause__, e.__context__, getattr(e, "reason", None)])
        stack.extend(a for a in getattr(e, "args", ()) if isinstance(a, BaseException))
    return None


def _short(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:300]

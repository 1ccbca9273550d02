"""Property fuzzing (hypothesis, bounded examples): platform pages, config files, status socket
requests. 0 crashes: every input is either accepted or rejected with the error type the
contract names and a message that says what is wrong.

(tests/test_statusd_fuzz.py sends random bytes, huge and slow requests; here the requests are
well-formed HTTP with random methods, paths, queries and JSON bodies, so they reach the
handlers.)
"""

from __future__ import annotations

import json
import string
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from conftest import base_sections, render_toml
from venuecam import config as config_mod
from venuecam.booking.parse import BadPageError, BookingRecord, Rejection, normalize_page, parse_page
from venuecam.errors import ConfigError

TZ = ZoneInfo("Asia/Jakarta")
FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=40),
)  # fmt: skip
json_values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner, max_size=5),
    max_leaves=25,
)  # fmt: skip
BOOKING_KEYS = ("booking_id", "order_detail_id", "field_id", "field_name", "date", "start_time", "end_time",
                "status", "user_name", "user_phone")  # fmt: skip
likely = {
    "booking_id": st.one_of(st.text(max_size=30), st.integers(), st.just("BK-1")),
    "date": st.one_of(st.just("2026-03-01"), st.text(max_size=12), st.dates().map(str)),
    "start_time": st.one_of(st.just("10:00:00"), st.times().map(str), st.text(max_size=10)),
    "end_time": st.one_of(st.just("00:00:00"), st.times().map(str), st.text(max_size=10)),
    "status": st.one_of(st.sampled_from(["success", "cancelled", "SUCCESS", "", "pending"]), json_values),
}
GOOD = {"booking_id": "BK-1", "order_detail_id": 7, "field_id": 1, "field_name": "A", "date": "2026-03-01",
        "start_time": "10:00:00", "end_time": "11:00:00", "status": "success", "user_name": "Ana",
        "user_phone": "0812"}  # fmt: skip
records = st.one_of(
    st.fixed_dictionaries({}, optional={k: likely.get(k, json_values) for k in BOOKING_KEYS}),
    # a good record with one field spoiled (or none)
    st.tuples(st.sampled_from([None, *BOOKING_KEYS]), json_values).map(
        lambda kv: GOOD if kv[0] is None else {**GOOD, kv[0]: kv[1]}
    ),
    json_values,
)


def _page(data: Any, meta: Any) -> bytes:
    return json.dumps({"data": data, "meta": meta}).encode()


@FAST
@given(body=st.one_of(
    json_values.map(lambda v: json.dumps(v).encode()),
    st.builds(_page, st.lists(records, max_size=6), json_values),
    st.binary(max_size=300),
    st.text(max_size=200).flatmap(lambda t: st.sampled_from(["utf-8", "utf-16", "latin-1"]).map(
        lambda enc: t.encode(enc, errors="replace"))),
), ctype=st.sampled_from(["application/json", "application/json; charset=utf-8", "text/html", "", "text/plain"]))  # fmt: skip
def test_a_platform_page_is_parsed_or_rejected_by_name(body: bytes, ctype: str) -> None:
    try:
        page = parse_page(body, ctype)
    except BadPageError as e:
        assert str(e).startswith("booking page"), e
        event("page rejected")
        return
    result = normalize_page(page.records, TZ)  # never raises: bad records are rejections
    for item in [*result.records, *result.rejections]:
        assert isinstance(item, BookingRecord | Rejection)
    for rejection in result.rejections:
        assert rejection.reason, rejection
    event(f"page parsed, {'some' if result.records else 'no'} record kept")


SECTIONS = (
    "device",
    "booking_api",
    "storage",
    "queue",
    "clips",
    "connectivity",
    "retention",
    "status",
    "leds",
)
toml_scalars = st.one_of(
    st.booleans(), st.integers(-(2**63), 2**63 - 1), st.floats(allow_nan=False, allow_infinity=False),
    st.text(alphabet=string.printable, max_size=30),
)  # fmt: skip
toml_values = toml_scalars | st.lists(toml_scalars, max_size=4)


def like(value: Any) -> st.SearchStrategy[Any]:
    """Values of the same TOML type as `value` (a wrong type is caught at once; these get further)."""
    if isinstance(value, bool):
        return st.booleans()
    if isinstance(value, int):
        return st.integers(-(10**6), 10**6)
    if isinstance(value, float):
        return st.floats(-1e6, 1e6, allow_nan=False)
    if isinstance(value, str):
        return st.text(alphabet=string.printable, max_size=30) | st.just(value)
    if isinstance(value, list):
        return st.lists(like(value[0]) if value else toml_scalars, max_size=6)
    return toml_values


@pytest.fixture(scope="module")
def config_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz-config")


@FAST
@given(data=st.data())
def test_a_config_file_loads_or_is_rejected_naming_the_problem(config_dir: Path, data: st.DataObject) -> None:
    sections = base_sections(config_dir)
    for _ in range(data.draw(st.integers(0, 3), "changes")):
        section = data.draw(st.sampled_from([*SECTIONS, "cameras", "nonsense"]), "section")
        if section == "cameras":
            cam = dict(sections["cameras"][0])
            key = data.draw(st.sampled_from([*cam, "extra"]), "camera key")
            cam[key] = data.draw(like(cam[key]) if key in cam else toml_values, "value")
            sections["cameras"] = [cam]
            continue
        body = sections.setdefault(section, {})
        keys = [*body, "unknown_key"] if body else ["unknown_key", "interval_s", "upload_schedule_s"]
        key = data.draw(st.sampled_from(keys), "key")
        typed = data.draw(st.booleans(), "typed") and key in body
        body[key] = data.draw(like(body[key]) if typed else toml_values, "value")
    text = render_toml(sections)
    if data.draw(st.integers(0, 9), "garble") == 0:
        at = data.draw(st.integers(0, len(text)), "at")
        text = text[:at] + data.draw(st.text(max_size=8), "junk") + text[at:]
    path = config_dir / "venuecam.toml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    try:
        cfg = config_mod.load(path)
    except ConfigError as e:
        assert str(path) in str(e) and len(str(e)) > len(str(path)) + 5, e
        event("config rejected")
        return
    assert cfg.device.venue_id  # accepted: a complete config
    event("config accepted")


REQUESTS = [
    ("GET", "/api/queue-status"), ("GET", "/api/bookings"), ("GET", "/api/bookings/{x}"),
    ("GET", "/api/bookings/status/{x}"), ("GET", "/api/bookings/date/{x}"), ("GET", "/api/jobs"),
    ("GET", "/api/jobs/{x}"), ("GET", "/api/jobs/{x}/logs"), ("GET", "/api/queue/tasks"), ("GET", "/metrics"),
    ("POST", "/api/queue/retry"), ("POST", "/api/queue/cancel"), ("POST", "/api/request-booking-video"),
    ("POST", "/api/jobs/cleanup"), ("PUT", "/api/queue/retry"), ("GET", "/{x}"),
]  # fmt: skip
QUERY_KEYS = ["status", "date", "limit", "type", "force", "x"]


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    req=st.sampled_from(REQUESTS),
    segment=st.text(alphabet=string.ascii_letters + string.digits + "-_.%~", min_size=1, max_size=20),
    query=st.dictionaries(st.sampled_from(QUERY_KEYS), st.text(alphabet=string.printable, max_size=15), max_size=3),
    body=json_values,
)  # fmt: skip
def test_status_requests_get_an_answer_or_a_clear_error(
    status_box: Any, req: tuple[str, str], segment: str, query: dict[str, str], body: Any
) -> None:
    from urllib.parse import urlencode

    from test_statusd_fuzz import raw_exchange

    method, path = req
    target = path.replace("{x}", segment) + (f"?{urlencode(query)}" if query else "")
    payload = json.dumps(body).encode()
    request = (f"{method} {target} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
               f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n").encode() + payload  # fmt: skip
    answer = raw_exchange(str(status_box.cfg.status_socket), request)
    head, _, rest = answer.partition(b"\r\n\r\n")
    code = int(head.split(b"\r\n", 1)[0].split()[1])
    assert code < 500 or code == 503, (request[:200], answer[:300])  # 503: the worker is not running here
    event(f"HTTP {code}")
    if code >= 400:
        parsed = json.loads(rest.split(b"\n", 1)[0])
        assert parsed["success"] is False and parsed["message"], parsed
    assert "Traceback" not in status_box.log()

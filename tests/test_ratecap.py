"""The upload cap's pure parts: `storage.max_upload_mbit` parsed and refused by name, the
schedule, the token bucket and the governor on injected clocks (no sleeps), the request body
that is only held back once it is on the wire, and how status shows the cap."""

from __future__ import annotations

import datetime as dt
import string
import types
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from conftest import base_sections, render_toml
from venuecam import config, config_dump, logs
from venuecam.cap_schedule import CapWindow
from venuecam.errors import ConfigError
from venuecam.status import facts, render, shapes
from venuecam.storage import ratecap
from venuecam.storage.ratecap import TokenBucket, UploadCap

JKT = ZoneInfo("Asia/Jakarta")  # the tests' venue (conftest.base_sections), UTC+7, no DST
EVENING = [{"mbit": 8, "from": "17:00", "to": "23:00"}, {"mbit": 15, "from": "23:00", "to": "06:00"}]


def load(tmp_path: Path, value: Any) -> config.Config:
    path = tmp_path / "venuecam.toml"
    path.write_text(render_toml(base_sections(tmp_path, storage={"max_upload_mbit": value})))
    return config.load(path)


# ---------------------------------------------------------------- config


@pytest.mark.parametrize(
    ("value", "windows"),
    [
        (8, (CapWindow(8.0, 0, 1440),)),
        (7.5, (CapWindow(7.5, 0, 1440),)),
        (0, ()),
        ([], ()),
        (EVENING, (CapWindow(8.0, 17 * 60, 23 * 60), CapWindow(15.0, 23 * 60, 6 * 60))),
        ([{"mbit": 4, "from": "22:00", "to": "00:00"}], (CapWindow(4.0, 22 * 60, 0),)),
    ],
)
def test_cap_forms_are_read_and_dumped_back(
    tmp_path: Path, value: Any, windows: tuple[CapWindow, ...]
) -> None:
    cfg = load(tmp_path, value)
    assert cfg.storage.max_upload_mbit == windows
    assert cfg.storage.venue_timezone == "Asia/Jakarta"  # the windows are venue time
    again = config.loads(config_dump.dump(cfg).replace(logs.MASK, "x"), source="dump")
    assert again.storage.max_upload_mbit == windows


def load_raw(tmp_path: Path, line: str) -> config.Config:
    text = render_toml(base_sections(tmp_path)).replace("[storage]\n", f"[storage]\n{line}\n", 1)
    return config.loads(text, source=str(tmp_path / "venuecam.toml"))


def test_toml_local_times_are_read_too(tmp_path: Path) -> None:
    cfg = load_raw(tmp_path, "max_upload_mbit = [{ mbit = 4, from = 22:00:00, to = 06:30:00 }]")
    assert cfg.storage.max_upload_mbit == (CapWindow(4.0, 22 * 60, 6 * 60 + 30),)
    with pytest.raises(ConfigError, match=r"max_upload_mbit\[0\]\.from: expected a venue-local time"):
        load_raw(tmp_path, "max_upload_mbit = [{ mbit = 4, from = 22:00:30, to = 06:30:00 }]")


def test_no_cap_when_absent(tmp_path: Path) -> None:
    path = tmp_path / "venuecam.toml"
    path.write_text(render_toml(base_sections(tmp_path)))
    assert config.load(path).storage.max_upload_mbit == ()


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (-1, "storage.max_upload_mbit: expected 0.5 to 1000 Mbit/s (or 0: no cap), got -1"),
        (0.1, "storage.max_upload_mbit: expected 0.5 to 1000 Mbit/s (or 0: no cap), got 0.1"),
        (8000, "storage.max_upload_mbit: expected 0.5 to 1000 Mbit/s (or 0: no cap), got 8000"),
        (float("nan"), "storage.max_upload_mbit: expected 0.5 to 1000 Mbit/s (or 0: no cap), got nan"),
        ("8", "storage.max_upload_mbit: expected a number of Mbit/s (0: no cap) or a list of"),
        (True, "storage.max_upload_mbit: expected a number of Mbit/s (0: no cap) or a list of { mbit"),
        ([8], "storage.max_upload_mbit[0]: expected a table { mbit, from, to }, got int 8"),
        ([{"mbit": 0, "from": "17:00", "to": "23:00"}], "storage.max_upload_mbit[0].mbit: expected 0.5 to 1000"),
        ([{"mbit": -8, "from": "17:00", "to": "23:00"}], "storage.max_upload_mbit[0].mbit: expected 0.5 to 1000"),
        ([{"mbit": 5000, "from": "17:00", "to": "23:00"}], "[0].mbit: expected 0.5 to 1000 Mbit/s, got 5000"),
        ([{"mbit": "8", "from": "17:00", "to": "23:00"}], "[0].mbit: expected a number of Mbit/s, got str '8'"),
        ([{"mbit": 8, "from": "25:00", "to": "23:00"}], '[0].from: expected a venue-local time "HH:MM"'),
        ([{"mbit": 8, "from": "17:00", "to": "23:60"}], "[0].to: expected a venue-local time \"HH:MM\" (00:00 to 23:59), got str '23:60'"),
        ([{"mbit": 8, "from": "5pm", "to": "23:00"}], "storage.max_upload_mbit[0].from: expected a venue-local time"),
        ([{"mbit": 8, "from": "7:00", "to": "23:00"}], "got str '7:00'"),
        ([{"mbit": 8, "from": 1700, "to": "23:00"}], "[0].from: expected a venue-local time \"HH:MM\" (00:00 to 23:59), got int 1700"),
        ([{"mbit": 8, "from": "17:00", "to": "17:00"}], "[0]: from and to are both '17:00' (for a cap all day write max_upload_mbit = 8)"),
        ([{"mbit": 8, "from": "17:00"}], "storage.max_upload_mbit[0].to: required"),
        ([{"mbit": 8, "from": "17:00", "to": "23:00", "days": "mon"}], "[0].days: unknown key (allowed: from, mbit, to)"),
        (
            [{"mbit": 8, "from": "17:00", "to": "23:00"}, {"mbit": 15, "from": "22:00", "to": "06:00"}],
            "storage.max_upload_mbit[1]: 22:00-06:00 overlaps storage.max_upload_mbit[0] 17:00-23:00 (at 22:00)",
        ),
        (
            [{"mbit": 15, "from": "23:00", "to": "06:00"}, {"mbit": 8, "from": "05:00", "to": "07:00"}],
            "storage.max_upload_mbit[1]: 05:00-07:00 overlaps storage.max_upload_mbit[0] 23:00-06:00 (at 05:00)",
        ),
        (
            [{"mbit": 15, "from": "20:00", "to": "06:00"}, {"mbit": 8, "from": "21:00", "to": "22:00"}],
            "[1]: 21:00-22:00 overlaps storage.max_upload_mbit[0] 20:00-06:00 (at 21:00)",
        ),
    ],
)  # fmt: skip
def test_each_bad_cap_is_refused_by_name(tmp_path: Path, value: Any, expected: str) -> None:
    with pytest.raises(ConfigError) as err:
        load(tmp_path, value)
    assert str(tmp_path / "venuecam.toml") in str(err.value)
    assert expected in str(err.value)


hhmm = st.builds(lambda h, m: f"{h:02d}:{m:02d}", st.integers(0, 23), st.sampled_from([0, 30]))
times = st.one_of(
    hhmm, st.builds(lambda h, m: f"{h:02d}:{m:02d}", st.integers(0, 26), st.sampled_from([0, 59, 60])),
    st.text(alphabet="0123456789:", max_size=6), st.integers(-5, 2400),
)  # fmt: skip
rates = st.one_of(
    st.integers(-5, 2000), st.floats(-1, 2000, allow_nan=False), st.sampled_from([0.5, 1000, 8])
)
good = st.fixed_dictionaries({"mbit": st.sampled_from([1, 8, 15.5]), "from": hhmm, "to": hhmm})
tables = st.dictionaries(st.sampled_from(["mbit", "from", "to", "days"]), st.one_of(times, rates), max_size=4)


def _disjoint(halves: list[int], wrap: bool, mbits: list[float]) -> list[dict[str, Any]]:
    """Windows between sorted half-hour edges, the last one across midnight when `wrap`."""
    edges = sorted(halves)
    if wrap:
        edges = edges[1:] + edges[:1]
    pairs = [(edges[i], edges[i + 1]) for i in range(0, len(edges) - 1, 2)]
    return [{"mbit": mbits[i % len(mbits)], "from": f"{a // 2:02d}:{a % 2 * 30:02d}",
             "to": f"{b // 2:02d}:{b % 2 * 30:02d}"} for i, (a, b) in enumerate(pairs)]  # fmt: skip


schedules = st.builds(_disjoint, st.lists(st.integers(0, 47), unique=True, min_size=2, max_size=8), st.booleans(),
                      st.lists(st.sampled_from([1, 8, 15.5]), min_size=1, max_size=3))  # fmt: skip
caps = st.one_of(
    schedules,
    rates, st.text(alphabet=string.ascii_letters + string.digits + ":. ", max_size=5),
    st.lists(st.one_of(good, good, tables, rates), max_size=4),
)  # fmt: skip
sample_minutes = st.integers(0, 24 * 60 - 1)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=caps, minute=sample_minutes)
def test_any_cap_is_accepted_and_scheduled_or_refused_by_name(
    tmp_path: Path, value: Any, minute: int
) -> None:
    try:
        cfg = load(tmp_path, value)
    except ConfigError as e:
        assert "storage.max_upload_mbit" in str(e), e
        event("refused")
        return
    windows = cfg.storage.max_upload_mbit
    event(f"accepted, {len(windows)} window(s)")
    for m in range(24 * 60):  # no minute of the day in two windows
        assert sum(w.covers(m) for w in windows) <= 1
    now = at("00:00") + dt.timedelta(minutes=minute)
    cap = ratecap.cap_at(windows, now)
    assert cap.mbit == ratecap.mbit_at(windows, minute)
    if cap.until is not None:  # the first moment ahead with another rate, within a day
        assert now < cap.until <= now + dt.timedelta(days=1)
        ahead = cap.until - now
        assert ratecap.mbit_at(windows, (minute + ahead.total_seconds() / 60) % 1440) == cap.next_mbit
        assert cap.next_mbit != cap.mbit


# ---------------------------------------------------------------- the schedule


def at(hhmm: str, day: int = 10, tz: dt.tzinfo = JKT) -> dt.datetime:
    h, m = map(int, hhmm.split(":"))
    return dt.datetime(2026, 3, day, h, m, tzinfo=tz)


WINDOWS = (CapWindow(8.0, 17 * 60, 23 * 60), CapWindow(15.0, 23 * 60, 6 * 60))


@pytest.mark.parametrize(
    ("now", "mbit", "until", "then"),
    [
        (at("16:59"), None, at("17:00"), 8.0),
        (at("17:00"), 8.0, at("23:00"), 15.0),
        (at("22:59"), 8.0, at("23:00"), 15.0),
        (at("23:30"), 15.0, at("06:00", day=11), None),  # wraps past midnight
        (at("00:00"), 15.0, at("06:00"), None),
        (at("06:00"), None, at("17:00"), 8.0),
    ],
)
def test_the_cap_in_force_and_until_when(now: dt.datetime, mbit: float | None, until: dt.datetime,
                                         then: float | None) -> None:  # fmt: skip
    assert ratecap.cap_at(WINDOWS, now) == ratecap.CapNow(mbit, until, then)


def test_all_day_cap_never_changes_and_no_windows_is_no_cap() -> None:
    assert ratecap.cap_at((CapWindow(8.0, 0, 1440),), at("12:00")) == ratecap.CapNow(8.0, None, None)
    assert ratecap.cap_at((), at("12:00")) == ratecap.CapNow(None, None, None)


def test_adjacent_windows_at_one_rate_are_one_stretch() -> None:
    windows = (CapWindow(8.0, 17 * 60, 20 * 60), CapWindow(8.0, 20 * 60, 23 * 60))
    assert ratecap.cap_at(windows, at("18:00")) == ratecap.CapNow(8.0, at("23:00"), None)


def test_window_edges_are_venue_wall_time_across_a_dst_change() -> None:
    berlin = ZoneInfo("Europe/Berlin")  # clocks go forward on 2026-03-29 at 02:00
    windows = (CapWindow(8.0, 17 * 60, 23 * 60),)
    cap = ratecap.cap_at(windows, dt.datetime(2026, 3, 28, 23, 30, tzinfo=berlin))
    assert cap.until == dt.datetime(2026, 3, 29, 17, 0, tzinfo=berlin)
    assert cap.until.utcoffset() == dt.timedelta(hours=2)


# ---------------------------------------------------------------- the bucket


def test_bucket_holds_senders_to_burst_plus_rate_times_t() -> None:
    bucket = TokenBucket(rate=1000.0, burst=250.0, now=0.0)
    now, sent = 0.0, 0
    while now < 10.0:
        now += bucket.take(100, now)  # each caller waits what it is told, then sends
        sent += 100
        assert sent <= 250 + 1000 * now + 1e-9
    assert sent >= 1000 * 10  # and is not held back more than that


def test_bucket_debt_queues_callers_in_order_and_idle_time_refills_only_to_the_burst() -> None:
    bucket = TokenBucket(rate=1000.0, burst=250.0, now=0.0)
    assert bucket.take(250, 0.0) == 0.0  # the burst
    assert bucket.take(500, 0.0) == pytest.approx(0.5)  # in debt: wait for it
    assert bucket.take(100, 0.0) == pytest.approx(0.6)  # the next caller waits behind it
    assert bucket.take(100, 100.0) == 0.0  # a long pause ...
    assert bucket.tokens == pytest.approx(150.0)  # ... refilled to the burst, not beyond


def test_a_new_rate_counts_from_its_moment_and_keeps_the_debt() -> None:
    bucket = TokenBucket(rate=1000.0, burst=250.0, now=0.0)
    bucket.take(1250, 0.0)  # 1000 in debt: a second at 1000/s
    bucket.set_rate(500.0, 125.0, now=0.5)  # half of it repaid at the old rate
    assert bucket.take(0, 0.5) == pytest.approx(1.0)  # the rest at the new one


def test_bucket_refuses_a_zero_rate() -> None:
    with pytest.raises(ValueError, match="rate and burst must be positive"):
        TokenBucket(rate=0.0, burst=1.0, now=0.0)


# ---------------------------------------------------------------- the governor


class FakeTime:
    """A monotonic and a wall clock that move only when told (or when someone sleeps)."""

    def __init__(self, wall: dt.datetime) -> None:
        self.mono = 1000.0
        self.wall = wall.timestamp()

    def sleep(self, s: float) -> None:
        self.advance(s)

    def advance(self, s: float) -> None:
        self.mono += s
        self.wall += s

    def cap(self, windows: tuple[CapWindow, ...]) -> UploadCap:
        return UploadCap(windows, JKT, clock=lambda: self.mono, wall=lambda: self.wall, sleep=self.sleep)


def send(
    cap: UploadCap, clock: FakeTime, seconds: float, link_bytes_s: float = 100e6
) -> list[tuple[float, int]]:
    """A sender reading 128 KiB at a time, as botocore does, on a link of `link_bytes_s`:
    [(wall time, bytes sent so far)] after each read."""
    out, total, end = [], 0, clock.wall + seconds
    while clock.wall < end:
        n = cap.acquire_some(128 * 1024)
        clock.advance(n / link_bytes_s)
        total += n
        out.append((clock.wall, total))
    return out


def sent_between(trace: list[tuple[float, int]], a: float, b: float) -> int:
    before = max((n for t, n in trace if t <= a), default=0)
    until = max(n for t, n in trace if t <= b)
    return until - before


def test_a_long_upload_slows_down_at_the_window_edge_and_speeds_up_at_the_next() -> None:
    # 8 Mbit/s from 17:00, 15 from 17:01, no cap from 17:02 (short windows: a short simulation).
    windows = (CapWindow(8.0, 17 * 60, 17 * 60 + 1), CapWindow(15.0, 17 * 60 + 1, 17 * 60 + 2))
    clock = FakeTime(at("16:59") + dt.timedelta(seconds=58))
    trace = send(clock.cap(windows), clock, seconds=130.0)
    t17 = at("17:00").timestamp()
    assert sent_between(trace, t17 - 2, t17) > 150e6  # uncapped: the link's 100 MB/s
    for start, mbit in ((t17, 8.0), (t17 + 60, 15.0)):
        rate = ratecap.bytes_per_s(mbit)
        for a in range(0, 60, 10):  # every 10 s of the window: the cap, at most a burst more
            got = sent_between(trace, start + a, start + a + 10)
            assert 0.97 * rate * 10 <= got <= rate * 10 + ratecap.burst_for(rate) + 128 * 1024, (mbit, a, got)
    assert sent_between(trace, t17 + 121, t17 + 122) > 50e6  # the cap is lifted at 17:02


def test_capped_reads_are_small_steps() -> None:
    clock = FakeTime(at("12:00"))
    cap = clock.cap((CapWindow(8.0, 0, 1440),))
    assert cap.acquire_some(128 * 1024) == ratecap.SLICE_BYTES
    fast = clock.cap((CapWindow(400.0, 0, 1440),))
    assert fast.acquire_some(4 * 1024 * 1024) == int(ratecap.bytes_per_s(400) * 0.01)  # 10 ms of it
    assert clock.cap(()).acquire_some(128 * 1024) == 128 * 1024  # no cap: as asked


def test_the_cap_follows_a_wall_clock_that_jumps_within_a_second() -> None:
    clock = FakeTime(at("17:30"))
    cap = clock.cap(WINDOWS)
    cap.acquire(1000)
    assert cap.mbit == 8.0
    clock.wall = at("16:00").timestamp()  # the clock is set back (NTP after a boot on a stale one)
    cap.acquire(1000)
    assert cap.mbit == 8.0  # not looked up again yet
    clock.mono += ratecap.RECHECK_S
    cap.acquire(1000)
    assert cap.mbit is None


def test_concurrent_senders_share_one_budget() -> None:
    clock = FakeTime(at("12:00"))
    cap = clock.cap((CapWindow(4.0, 0, 1440),))
    start, total = clock.wall, 0
    while clock.wall - start < 20:  # four senders take turns; the waits add up on one clock
        for _ in range(4):
            total += cap.acquire_some(64 * 1024)
    rate = ratecap.bytes_per_s(4)
    assert total <= rate * (clock.wall - start) + ratecap.burst_for(rate) + 64 * 1024


def test_a_new_schedule_applies_to_the_next_byte() -> None:
    clock = FakeTime(at("12:00"))
    cap = clock.cap(())
    assert cap.acquire(10**9) == 0.0 and cap.mbit is None
    cap.configure((CapWindow(8.0, 0, 1440),), JKT)
    cap.acquire(1)
    assert cap.mbit == 8.0


def test_shared_cap_is_one_per_process_with_the_latest_schedule(tmp_path: Path) -> None:
    first = ratecap.shared(load(tmp_path, 8).storage)
    second = ratecap.shared(load(tmp_path, EVENING).storage)
    assert first is second and second.windows == WINDOWS and second.tz == JKT
    ratecap.shared(load(tmp_path, 0).storage)  # leave no cap behind for the other tests


# ---------------------------------------------------------------- the body


def request(body: Any) -> Any:
    return types.SimpleNamespace(body=body, headers={"Expect": "100-continue"})


def test_a_body_is_held_back_only_once_it_is_on_the_wire() -> None:
    clock = FakeTime(at("12:00"))
    cap = clock.cap((CapWindow(4.0, 0, 1440),))
    data = bytes(range(256)) * 4096  # 1 MiB
    body = cap.body(data)
    assert body.read() == data and clock.mono == 1000.0  # botocore hashing it: nothing waits
    body.seek(0)
    req = request(body)
    ratecap.mark_on_wire(req)
    assert body.on_wire and "Expect" not in req.headers  # plain bytes went without it
    got = b""
    while chunk := body.read(128 * 1024):
        assert len(chunk) == ratecap.SLICE_BYTES
        got += chunk
    assert got == data
    rate = ratecap.bytes_per_s(4)
    assert clock.mono - 1000.0 == pytest.approx((len(data) - ratecap.burst_for(rate)) / rate, rel=0.02)


def test_a_body_may_keep_expect_continue_and_others_are_left_alone() -> None:
    cap = UploadCap()
    keep = request(cap.body(b"x", expect_continue=True))
    ratecap.mark_on_wire(keep)
    assert keep.headers == {"Expect": "100-continue"}
    other = request(b"plain bytes")
    ratecap.mark_on_wire(other)
    assert other.headers == {"Expect": "100-continue"}


# ---------------------------------------------------------------- status


def test_status_shows_the_cap_in_force_and_the_schedule(tmp_path: Path) -> None:
    cfg = load(tmp_path, EVENING)
    utc = dt.datetime(2026, 3, 10, 11, 0)  # 18:00 in Jakarta
    cap = facts.upload_cap(cfg, utc)
    assert cap == {
        "mbit": 8.0,
        "until": "2026-03-10T16:00:00Z",
        "until_local": "23:00",
        "next_mbit": 15.0,
        "schedule": [
            {"mbit": 8.0, "from": "17:00", "to": "23:00"},
            {"mbit": 15.0, "from": "23:00", "to": "06:00"},
        ],
        "timezone": "Asia/Jakarta",
    }
    assert render.upload_cap_text(cap) == "cap 8 Mbit/s until 23:00, then 15 Mbit/s"
    later = facts.upload_cap(cfg, dt.datetime(2026, 3, 10, 23, 30))  # 06:30 the next morning
    assert render.upload_cap_text(later) == "no cap until 17:00, then 8 Mbit/s"
    assert render.upload_cap_text(facts.upload_cap(load(tmp_path, 8), utc)) == "cap 8 Mbit/s all day"
    assert render.upload_cap_text(facts.upload_cap(load(tmp_path, 0), utc)) == "no cap"
    assert "venuecam_upload_cap_mbit 8\n" in shapes.metrics(minimal_snapshot(cap))
    assert "venuecam_upload_cap_mbit 0\n" in shapes.metrics(minimal_snapshot(later))


def minimal_snapshot(cap: dict[str, Any]) -> dict[str, Any]:
    return {
        "queue": {},
        "uploads": [],
        "recent_uploads_24h": 0,
        "connectivity": {"status": "ONLINE"},
        "cameras": [],
        "disk": {},
        "upload_cap": cap,
    }

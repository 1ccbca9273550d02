"""The installer's page: the whole box on one small HTML page. Pure: data in, string out.

Input: the `data` of `/api/queue-status` (with `needs_attention`), `timeline.collect()`'s
answer, per-camera facts from the config and the newest segment, and the venue's time zone.
Everything the page shows comes from those; every value is escaped; links are relative, so
the same page works through `ssh -L` to the socket and on the LAN listener.
"""

from __future__ import annotations

import datetime as dt
from html import escape
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

from venuecam.status.page_assets import CSS, JS
from venuecam.status.render import duration, size

LED_COLOUR = {"online": "green", "backlog": "amber", "fault": "red"}
TICK_H = 3


def _e(value: Any) -> str:
    return escape("" if value is None else str(value), quote=True)


def _local(ts: float, tz: ZoneInfo, fmt: str = "%H:%M") -> str:
    return dt.datetime.fromtimestamp(ts, tz).strftime(fmt)


def _bar(kind: str, a: float, b: float, lo: float, hi: float, tz: ZoneInfo, title: str = "", tag: str = "span",
         extra: str = "") -> str:  # fmt: skip
    span = hi - lo
    left = max(0.0, (a - lo) / span * 100)
    width = max(0.4, (min(b, hi) - max(a, lo)) / span * 100)
    label = title or f"{kind} {_local(a, tz)}-{_local(b, tz)}"
    return (
        f'<{tag} class="{kind}" style="left:{left:.3f}%;width:{width:.3f}%" data-start="{a:.1f}" '
        f'data-end="{b:.1f}" title="{_e(label)}"{extra}></{tag}>'
    )


def _ticks(lo: float, hi: float, tz: ZoneInfo, every_min: int = 60 * TICK_H) -> str:
    """Labels every `every_min` minutes of venue time: hours on the day track, HH:MM on the hour one."""
    step = every_min * 60
    t = (int(lo) // step + 1) * step  # whole multiples in UTC: venues' offsets are whole quarter hours
    out = []
    while t < hi:
        left = (t - lo) / (hi - lo) * 100
        label = _local(t, tz, "%H" if every_min >= 60 else "%H:%M")
        out.append(f'<span style="left:{left:.3f}%">{label}</span>')
        t += step
    return f'<div class="ticks">{"".join(out)}</div>'


def _video_links(v: dict[str, Any]) -> str:
    uid = quote(v["unique_id"], safe="")
    links = []
    if v["has_clip"]:
        links.append(f'<a class="cut" href="clips/{uid}.mp4">clip</a>')
    if v["has_thumb"]:
        links.append(f'<a class="thumb" href="clips/{uid}.jpg">thumbnail</a>')
    gaps = f", {v['gaps_s']:g} s missing" if v.get("gaps_s") else ""
    rev = f", revision {v['revision']}" if (v.get("revision") or 1) > 1 else ""
    return (
        f'<span class="video state-{_e(v["status"])}" data-video="{_e(v["unique_id"])}">'
        f"{_e(v['video_type'])}: <b>{_e(v['label'])}</b>{_e(gaps + rev)} {' '.join(links)}</span>"
    )


def _state_class(state: str) -> str:
    return "state-" + "".join(c if c.isalnum() else "-" for c in state.split(" ")[0])


def camera_card(cam: dict[str, Any], facts: dict[str, Any], tl: dict[str, Any], lo: float, hi: float,
                tz: ZoneInfo) -> str:  # fmt: skip
    name = cam["name"]
    q = quote(name, safe="")
    rec = cam["recording"]
    age = (
        "no segment yet"
        if cam["last_segment_age_s"] is None
        else f"last segment {duration(cam['last_segment_age_s'])} ago"
    )
    res = f"{facts['width']}x{facts['height']}" if facts.get("width") else "?"
    rate = f"{facts['bitrate_kbps']} kbit/s set"
    if facts.get("measured_kbps"):
        rate += f", {facts['measured_kbps']:.0f} kbit/s recorded"
    hour = hi - 3600

    def track(lo: float) -> str:
        out = []
        if tl.get("before") and tl["before"][1] > lo:
            a, b = tl["before"]
            out.append(_bar("before", a, b, lo, hi, tz, "before this camera's first recording"))
        out += [_bar("rec", a, b, lo, hi, tz) for a, b in tl["stretches"] if b > lo]
        out += [_bar("gap", a, b, lo, hi, tz, f"gap {_local(a, tz, '%H:%M:%S')}-{_local(b, tz, '%H:%M:%S')} "
                     f"({duration(b - a)})") for a, b in tl["gaps"] if b > lo]  # fmt: skip
        return "".join(out)

    marks: list[str] = []
    hour_marks: list[str] = []
    items: list[str] = []
    for bk in tl["bookings"]:
        cls = f"booking {_state_class(bk['state'])}"
        title = f"{bk['booking_id']} {bk['local']}: {bk['state']}"
        if bk["end"] > lo and bk["start"] < hi:
            marks.append(
                _bar(
                    cls,
                    bk["start"],
                    bk["end"],
                    lo,
                    hi,
                    tz,
                    title,
                    "i",
                    f' data-booking="{_e(bk["booking_id"])}"',
                )
            )
        vids = " ".join(_video_links(v) for v in bk["videos"])
        items.append(
            f'<li class="{cls}" data-booking="{_e(bk["booking_id"])}"><span class="when">{_e(bk["date"])} '
            f'{_e(bk["local"])}</span> <span class="id">{_e(bk["booking_id"])}</span> '
            f'<b class="state">{_e(bk["state"])}</b> {vids}</li>'
        )
    listing = (
        f'<ul class="bookings">{"".join(reversed(items))}</ul>'
        if items
        else '<p class="none">no bookings on this field</p>'
    )
    return f"""<article class="cam" id="cam-{_e(name)}" data-camera="{_e(name)}">
<h2>{_e(name)} <span class="badge {"ok" if rec else "bad"}">{"recording" if rec else "DOWN"}</span></h2>
<figure><img class="snap" src="api/cameras/{q}/snapshot.jpg" data-src="api/cameras/{q}/snapshot.jpg" alt="{_e(name)} now"
 width="{facts.get("width") or 320}" height="{facts.get("height") or 180}">
<figcaption><button type="button" class="aim" data-camera="{_e(name)}">aim (live)</button>
<span class="frame-time"></span></figcaption></figure>
<dl><dt>field</dt><dd>{_e(cam["field_id"])}</dd><dt>picture</dt><dd>{_e(res)} {_e(facts.get("codec") or "")}, {_e(facts.get("fps"))} fps</dd>
<dt>bitrate</dt><dd>{_e(rate)}</dd><dt>recording</dt><dd>{_e(age)}{_e(f" ({cam['encoder']})" if cam.get("encoder") else "")}</dd>
<dt>source</dt><dd>{_e(facts.get("source"))}</dd><dt>24 h, last hour</dt><dd>{_e(duration(tl["recorded_s"]))} recorded, {len(tl["gaps"])} gap(s)</dd></dl>
<div class="timeline" aria-label="last 24 hours"><div class="track">{track(lo)}</div><div class="marks">{"".join(marks)}</div>{_ticks(lo, hi, tz)}</div>
<div class="timeline hour" aria-label="last hour"><div class="track">{track(hour)}</div><div class="marks">{"".join(hour_marks)}</div>{_ticks(hour, hi, tz, 15)}</div>
{listing}
</article>"""


def _connectivity(spans: list[dict[str, Any]], lo: float, hi: float, tz: ZoneInfo) -> str:
    bars = "".join(_bar(f"link {s['status'].lower()}", s["start"], s["end"], lo, hi, tz,
                        f"{s['status']} {_local(s['start'], tz)}-{_local(s['end'], tz)}") for s in spans)  # fmt: skip
    offline = sum(s["end"] - s["start"] for s in spans if s["status"] == "OFFLINE")
    return (f'<div class="timeline"><div class="track">{bars}</div>{_ticks(lo, hi, tz)}</div>'
            f"<p>offline for {_e(duration(offline))} in the last 24 h</p>")  # fmt: skip


def _queue(data: dict[str, Any]) -> str:
    types = (
        ("clip", "clips"),
        ("upload_r2", "uploads"),
        ("notify_ayo_api", "notifications"),
        ("sync", "syncs"),
    )
    cols = (("pending", "waiting"), ("processing", "running"), ("expired", "expired"), ("failed", "failed"),
            ("completed", "done"))  # fmt: skip
    q, exp = data.get("queue", {}), (data.get("expired") or {}).get("by_type", {})
    head = "".join(f"<th>{c}</th>" for _, c in cols)
    rows = []
    for key, label in types:
        by = {**q.get(key, {}), "expired": exp.get(key, 0)}
        cells = "".join(
            f'<td class="{"bad" if s in ("failed", "expired") and by.get(s) else ""}">{by.get(s, 0)}</td>'
            for s, _ in cols
        )
        rows.append(f"<tr><th>{label}</th>{cells}</tr>")
    ups = "".join(
        f"<li>{_e(u['video'])}: {_e(_percent(u.get('percent')))} of {_e(size(u['bytes_total']))}</li>"
        for u in data.get("uploads") or []
    )
    live = "".join(
        f"<li>{_e(u.get('booking_id', '?'))} {_e(u.get('camera', '?'))}: {_e(size(u.get('sent_bytes')))} sent of "
        f"{_e(size(u.get('recorded_bytes')))} recorded</li>"
        for u in data.get("live_uploads") or []
    )
    waiting = (data.get("live_waiting") or {}).get("videos") or 0
    if waiting:
        live += f"<li>{_e(waiting)} more wait for a live place (cut after the booking if none frees)</li>"
    return (f'<table class="queue"><tr><th></th>{head}</tr>{"".join(rows)}</table>'
            + (f"<p>uploading now:</p><ul>{ups}</ul>" if ups else "")
            + (f"<p>live now (sent while the booking is played):</p><ul>{live}</ul>" if live else ""))  # fmt: skip


def _percent(value: float | None) -> str:
    return "?" if value is None else f"{value:.0f}%"


def _leds(leds: dict[str, Any] | None) -> str:
    if not leds:
        return "<p>not known yet (the watchdog has not lit them)</p>"
    if leds.get("error"):
        return f'<p class="bad">FAULT: {_e(leds["error"])}</p>'
    out = []
    order = list(LED_COLOUR)
    named = sorted(
        (leds.get("leds") or {}).items(), key=lambda kv: order.index(kv[0]) if kv[0] in order else 9
    )
    for name, led in named:
        mode = led.get("mode", "off")
        style = ""
        if mode == "blink":
            on, off = float(led.get("on_time") or 0.5), float(led.get("off_time") or 0.5)
            style = f' style="animation-duration:{on + off:.2f}s;--on:{100 * on / (on + off):.0f}%"'
            mode = f"blink {on:g}/{off:g} s"
        why = f" ({led['reason']})" if led.get("reason") else ""
        out.append(f'<li class="led {LED_COLOUR.get(name, "")} {_e(led.get("mode", "off"))}" data-led="{_e(name)}">'
                   f"<i{style}></i>{_e(name)}: {_e(mode)}{_e(why)}</li>")  # fmt: skip
    return f'<ul class="leds">{"".join(out)}</ul>'


def _box(data: dict[str, Any]) -> str:
    d = data.get("disk", {})
    disk = (f"{size(d['free_bytes'])} free of {size(d['total_bytes'])} ({d['free_percent']:.0f}%)"
            if "free_bytes" in d else f"unknown ({d.get('error', '?')})")  # fmt: skip
    c = data.get("clock") or {}
    if not c:
        clock = "?"
    elif not c.get("clock_set"):
        clock = f"NOT SET ({c.get('now')})"
    else:
        clock = {True: "synchronized", False: "not synchronized", None: "sync unknown"}[c.get("synchronized")]
        clock += f" ({c.get('source')}), {c.get('now')}"
    progs = data.get("programs") or {}
    programs = ", ".join(f"{p['name']} {p['state']}" for p in progs.get("programs", [])) or progs.get(
        "error", "?"
    )
    return (f'<dl><dt>disk</dt><dd class="{"bad" if d.get("nearly_full") else ""}">{_e(disk)}</dd>'
            f'<dt>clock</dt><dd class="{"" if c.get("clock_set") else "bad"}">{_e(clock)}</dd>'
            f"<dt>programs</dt><dd>{_e(programs)}</dd></dl>")  # fmt: skip


def render(data: dict[str, Any], tl: dict[str, Any], facts: dict[str, dict[str, Any]], tz: ZoneInfo) -> str:
    lo, hi = tl["start"], tl["end"]
    dev = data.get("device", {})
    conn = data.get("connectivity", {})
    status = conn.get("status", "UNKNOWN")
    attention = data.get("needs_attention") or []
    faults = ("".join(f"<li>{_e(a)}</li>" for a in attention) if attention else "") or ""
    by_name = {c["name"]: c for c in tl["cameras"]}
    cards = "".join(
        camera_card(cam, facts.get(cam["name"], {}), by_name[cam["name"]], lo, hi, tz)
        for cam in data.get("cameras", []) if cam["name"] in by_name
    ) or "<p>no cameras configured</p>"  # fmt: skip
    title = f"venuecam {dev.get('device_id', '?')}"
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>{_e(title)}</title><style>{CSS}</style></head>
<body><main id="live" data-generated="{_e(data.get("generated_at"))}">
<header><h1>{_e(title)}</h1><span class="sub">venue {_e(dev.get("venue_id"))} · {_e(_local(hi, tz, "%Y-%m-%d %H:%M"))} {_e(tz.key)}</span>
<span class="badge {"ok" if status == "ONLINE" else "bad"}" id="link">{_e(status)}</span></header>
<section id="attention" class="{"bad" if attention else "ok"}"><h2>needs attention</h2>{f"<ul>{faults}</ul>" if attention else "<p>nothing: all is well</p>"}</section>
<section class="cams">{cards}</section>
<section id="connectivity"><h2>connectivity, last 24 h</h2>{_connectivity(tl["connectivity"], lo, hi, tz)}</section>
<section id="queue"><h2>queue</h2>{_queue(data)}</section>
<section id="box"><h2>box</h2>{_box(data)}<h3>LEDs now</h3>{_leds(data.get("leds"))}</section>
<footer>read-only · page {_e(data.get("generated_at"))} · times in venue time ({_e(tz.key)})</footer>
</main><script>{JS}</script></body></html>
"""

"""`venuecam status` as text a person reads at a glance. Pure: data in, string out.

Input is the `data` of `/api/queue-status`. Stdlib only (the CLI imports this).
"""

from __future__ import annotations

import datetime as dt

TYPE_CHECKING = False  # no `typing` at run time: the CLI imports this and starts without it
if TYPE_CHECKING:
    from typing import Any

TYPES = (("clip", "clips"), ("upload_r2", "uploads"), ("notify_ayo_api", "notifications"), ("sync", "syncs"))
# "expired" is not a state: the waiting or running rows older than queue.expiration_hours.
COLUMNS = (("pending", "waiting"), ("processing", "running"), ("expired", "expired"), ("failed", "failed"),
           ("completed", "done"))  # fmt: skip
_RED, _GREEN, _YELLOW, _BOLD, _RESET = "\033[31m", "\033[32m", "\033[33m", "\033[1m", "\033[0m"


def _parse(value: str | None) -> dt.datetime | None:
    if not value:
        return None
    try:
        return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).replace(tzinfo=None)
    except ValueError:
        return None


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    s = int(max(seconds, 0))
    if s < 90:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m"
    if s < 86400:
        return f"{s // 3600}h {s % 3600 // 60}m"
    return f"{s // 86400}d {s % 86400 // 3600}h"


def size(n: float | None) -> str:
    if n is None:
        return "?"
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"  # pragma: no cover


def _ago(value: str | None, now: dt.datetime | None) -> str:
    t = _parse(value)
    if t is None or now is None:
        return "?"
    return duration((now - t).total_seconds())


def render(data: dict[str, Any], color: bool = False) -> str:
    def paint(text: str, code: str) -> str:
        return f"{code}{text}{_RESET}" if color else text

    now = _parse(data.get("generated_at"))
    dev = data.get("device", {})
    out: list[str] = [paint(f"venuecam {dev.get('device_id', '?')} (venue {dev.get('venue_id', '?')})", _BOLD)
                      + f"   {data.get('generated_at', '')}"]  # fmt: skip

    conn = data["connectivity"]
    state = conn["status"]
    tone = {"ONLINE": _GREEN, "OFFLINE": _RED}.get(state, _YELLOW)
    line = paint(state, tone)
    if conn.get("since"):
        line += f" since {conn['since']} ({_ago(conn['since'], now)})"
    if conn.get("latency_ms") is not None:
        line += f", latency {conn['latency_ms']:.0f} ms"
    if conn.get("detail"):
        line += f" - {conn['detail']}"
    out.append(line)

    attention = data.get("needs_attention") or []
    if attention:
        out.append(paint("NEEDS ATTENTION:", _RED))
        out += [f"  ! {a}" for a in attention]

    out.append("")
    q = data.get("queue", {})
    expired = (data.get("expired") or {}).get("by_type", {})
    out.append(f"{'queue':<15}" + "".join(f"{label:>9}" for _, label in COLUMNS))
    for key, label in TYPES:
        by = {**q.get(key, {}), "expired": expired.get(key, 0)}
        cells = []
        for s, _ in COLUMNS:
            cell = f"{by.get(s, 0):>9}"
            cells.append(paint(cell, _RED) if s in ("expired", "failed") and by.get(s) else cell)
        out.append(f"  {label:<13}" + "".join(cells))
    stats = data.get("queue_stats", {})
    out.append(
        f"  {stats.get('total_pending', 0)} waiting, {data.get('recent_uploads_24h', 0)} uploads in 24 h"
        + (f", limit {data['max_queue_size']}" if data.get("max_queue_size") else "")
    )

    uploads = data.get("uploads") or []
    if uploads:
        out.append("uploading now:")
        for u in uploads:
            pct = "?" if u.get("percent") is None else f"{u['percent']:.0f}%"
            out.append(f"  {u['video']:<32} {pct:>5}  {size(u['bytes_done'])} / {size(u['bytes_total'])}")

    live = data.get("live_uploads") or []
    if live:
        out.append("live now (built and sent while the booking is played):")
        for u in live:
            state = (
                " (worker not answering)" if u.get("stale") else (" finishing" if u.get("finishing") else "")
            )
            err = f"  {paint(str(u['error'])[:60], _RED)}" if u.get("error") else ""
            out.append(f"  {u.get('booking_id', '?')} {u.get('camera', '?'):<10} {size(u.get('sent_bytes'))} sent "
                       f"of {size(u.get('recorded_bytes'))} recorded ({duration(u.get('recorded_s'))}){state}{err}")  # fmt: skip
    waiting = (data.get("live_waiting") or {}).get("videos") or 0
    if waiting:
        cap = (data.get("live_waiting") or {}).get("cap")
        out.append(f"  {waiting} more video(s) wait for a live place (at most {cap} at once); "
                   "cut after the booking if none frees")  # fmt: skip

    failed = data.get("failed_tasks") or []
    if failed:
        out.append(paint(f"failed tasks (latest {len(failed)}):", _RED))
        for f in failed:
            err = (f.get("error") or "").splitlines()[0][:70] if f.get("error") else ""
            out.append(f"  #{f['id']} {f['task_type']} {f.get('booking_id') or '-'} "
                       f"({f['attempts']}/{f['max_attempts']}): {err}")  # fmt: skip

    out.append("")
    out.append("cameras:")
    if not data.get("cameras"):
        out.append("  none configured")
    for c in data.get("cameras", []):
        rec = paint("recording", _GREEN) if c["recording"] else paint("DOWN", _RED)
        age = (
            "no segment yet"
            if c["last_segment_age_s"] is None
            else f"last segment {duration(c['last_segment_age_s'])} ago"
        )
        enc = f"  ({c['encoder']})" if c.get("encoder") else ""
        out.append(f"  {c['name']:<14} field {c['field_id']:<3} {rec}  {age}{enc}")

    d = data.get("disk", {})
    if "free_bytes" in d:
        line = (
            f"disk:      {size(d['free_bytes'])} free of {size(d['total_bytes'])} ({d['free_percent']:.0f}%)"
        )
        out.append(paint(line, _RED) if d.get("nearly_full") else line)
    else:
        out.append(f"disk:      unknown ({d.get('error', '?')})")

    cap = data.get("upload_cap")
    if cap:
        out.append(f"upload:    {upload_cap_text(cap)}")

    c = data.get("clock")
    if c:
        if not c["clock_set"]:
            text = paint(f"NOT SET ({c['now']}; {c.get('reason') or 'year before build'})", _RED)
        elif c["synchronized"] is None:
            text = "sync unknown"
        else:
            text = "synchronized" if c["synchronized"] else paint("not synchronized", _YELLOW)
        out.append(f"clock:     {text} ({c['source']})")

    progs = data.get("programs") or {}
    if progs.get("available"):
        parts = []
        for p in progs.get("programs", []):
            st = p["state"]
            extra = f" {duration(p['uptime_s'])}" if p.get("uptime_s") is not None else ""
            parts.append(f"{p['name']} {paint(st, _GREEN if st == 'RUNNING' else _RED)}{extra}")
        out.append("programs:  " + (", ".join(parts) or "none"))
    elif progs:
        out.append(f"programs:  {progs.get('error', 'unavailable')}")

    leds = data.get("leds")
    if leds and leds.get("error"):
        out.append(
            paint(f"leds:      FAULT: {leds['error']} (pin factory {leds.get('pin_factory', '?')})", _RED)
        )
    elif leds and leds.get("leds"):
        parts = []
        order = ("online", "backlog", "fault")
        named = sorted(leds["leds"].items(), key=lambda kv: order.index(kv[0]) if kv[0] in order else 9)
        for name, led in named:
            mode = led["mode"]
            if mode == "blink":
                mode = f"blink {led['on_time']:g}/{led['off_time']:g}s"
            parts.append(f"{name} {mode}" + (f" ({led['reason']})" if led.get("reason") else ""))
        out.append("leds:      " + ", ".join(parts))

    upd = data.get("update") or {}
    if upd.get("release"):
        line = f"release:   {upd['release']}"
        if upd.get("in_progress"):
            p = upd["in_progress"]
            line += paint(f", updating to {p['to']} ({p['step']})", _YELLOW)
        elif upd.get("pending"):
            p = upd["pending"]
            line += f", {p['version']} waits: {'; '.join(p.get('waiting') or [])}"
        last = upd.get("last") or {}
        if last.get("outcome") == "rolled_back":
            line += paint(f", {last.get('reason')}", _RED)
        out.append(line)

    sync = data.get("sync")
    if sync:
        when = f", finished {_ago(sync['finishedAt'], now)} ago" if sync.get("finishedAt") else ""
        out.append(f"last sync: {sync['jobId']} {sync['state']}{when}")
    return "\n".join(out) + "\n"


def mbit(value: float) -> str:
    return f"{value:g} Mbit/s"


def upload_cap_text(cap: dict[str, Any]) -> str:
    """ "cap 8 Mbit/s until 23:00, then 15 Mbit/s", "no cap until 17:00, then 8 Mbit/s", ..."""
    now = "no cap" if cap.get("mbit") is None else f"cap {mbit(cap['mbit'])}"
    if not cap.get("until_local"):
        return now if cap.get("mbit") is None else f"{now} all day"
    then = "no cap" if cap.get("next_mbit") is None else mbit(cap["next_mbit"])
    return f"{now} until {cap['until_local']}, then {then}"


def table(rows: list[dict[str, Any]], columns: list[tuple[str, str]], max_width: int = 60) -> str:
    """rows as aligned columns; `columns` is [(key, header)]. Long cells are cut."""

    def cell(v: Any) -> str:
        text = "-" if v is None or v == "" else str(v).replace("\n", " ")
        return text if len(text) <= max_width else text[: max_width - 1] + "…"

    cells = [[cell(r.get(k)) for k, _ in columns] for r in rows]
    widths = [max([len(h)] + [len(c[i]) for c in cells]) for i, (_, h) in enumerate(columns)]
    lines = ["  ".join(h.ljust(w) for (_, h), w in zip(columns, widths, strict=True)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells]
    return "\n".join(lines) + "\n"

"""`venuecam update BUNDLE|URL`: install a signed release behind the health gate, roll back
by itself when it is unhealthy, never while a court is booked (unless --force).

    venuecam update venuecam-0.3.0.bundle        # or https://..., s3://bucket/key
    venuecam update URL --wait                    # wait for a free window here (Ansible does)
    venuecam update --status [--json]             # release, what runs or waits, history
    venuecam update --rollback [--force]          # back to the previous release
    venuecam update --apply-config NEW.toml       # validated, applied, health-gated, old kept
    venuecam update --tick                        # the timer: recover, pending work, pull mode
    venuecam update --recover --boot              # boot: finish or undo an interrupted update
    venuecam update --check                       # the health gate now, without switching
    venuecam update --reboot                      # reboot at the next free window
    venuecam update --acknowledge                 # a person saw the rollback: clear the notice

`--self-check` and `--probe-upload` are what the updater asks of a new release (run as the
app user): import every program and read the config; put, read back and delete an object.
Exit status: 0 committed, deferred or nothing to do; 1 refused or failed; 4 rolled back.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

EXIT_ROLLED_BACK = 4
WAIT_POLL_S = 15.0


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("source", nargs="?", help="a bundle file, or an https:// or s3:// URL of one")
    p.add_argument("--force", action="store_true", help="do it now even if a court is booked")
    p.add_argument("--wait", action="store_true", help="when deferred, wait here for the free window")
    p.add_argument("--allow-downgrade", action="store_true", help="accept a release older than the current")
    p.add_argument("--json", action="store_true", help="print the outcome (or --status) as JSON")
    p.add_argument("--status", action="store_true", help="the update state and history")
    p.add_argument("--rollback", action="store_true", help="go back to the previous release")
    p.add_argument("--apply-config", metavar="FILE", help="replace venuecam.toml with FILE behind the gate")
    p.add_argument("--tick", action="store_true", help="what the timer runs")
    p.add_argument("--recover", action="store_true", help="finish or undo an interrupted update")
    p.add_argument("--boot", action="store_true", help="with --recover: at boot, before the programs start")
    p.add_argument("--check", action="store_true", help="run the health gate now")
    p.add_argument("--reboot", action="store_true", help="reboot the box at the next free window")
    p.add_argument("--acknowledge", action="store_true", help="clear the 'rolled back' notice")
    p.add_argument("--self-check", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--probe-upload", action="store_true", help=argparse.SUPPRESS)


def _out(text: str) -> None:
    try:
        print(text, flush=True)
    except (BrokenPipeError, OSError):  # the ssh session went away: the update goes on
        pass


def run(args: argparse.Namespace) -> int:
    from venuecam import config

    path = str(config.resolve_path(args.config).resolve())
    if args.self_check:
        return _self_check(path)
    cfg = config.load(path)
    if args.probe_upload:
        return _probe_upload(cfg)
    if args.status:
        return _status(cfg, args.json)
    import signal

    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # an ssh session ending mid-update must not stop it
    from venuecam.update.engine import Updater

    up = Updater(cfg, path, out=(lambda s: None) if args.json else _out)
    if args.check:
        return _check(up, args.json)
    if args.acknowledge:
        last = up.journal.read().get("last") or {}
        up.journal.update(acknowledged=last.get("id"))
        _out("notice cleared")
        return 0
    if args.recover:
        with up.journal.lock(wait=True):
            up.recover(boot=args.boot)
        return 0
    if args.tick:
        from venuecam.update.tick import tick

        return tick(up)
    if args.reboot:
        return _reboot(up, args.force)
    with up.journal.lock():
        up.recover()
        if args.rollback:
            return _report(up.rollback_by_hand(args.force), args.json)
        if args.apply_config:
            return _apply_config(up, Path(args.apply_config), args)
        if not args.source:
            raise SystemExit(
                "venuecam update: give a bundle or URL, or one of --status, --rollback, --tick (see --help)"
            )
        bundle_path, report = _fetch(up, args.source)
        try:
            v = up.check_bundle(bundle_path, args.allow_downgrade)
            if not args.force and not _wait_for_window(
                up, args, str(bundle_path), v.manifest.version, report
            ):
                return 0
            return _report(up.apply(v, forced=args.force, download=report, origin="manual"), args.json)
        finally:
            up.journal.discard(bundle_path)  # a download, once done with (deferred: kept)


def _fetch(up: Any, source: str) -> tuple[Path, dict[str, Any] | None]:
    if "://" not in source:
        p = Path(source)
        if not p.is_file():
            raise SystemExit(f"venuecam update: {source}: no such file")
        return p.resolve(), None
    from venuecam.update import download

    up.journal.ensure()
    name = source.rsplit("/", 1)[-1].split("?")[0] or "bundle"
    dest = up.journal.dir / "downloads" / name
    up.out(f"downloading {download.redact_url(source)}")
    from venuecam.update import bundle

    bundle.refuse_before_download(up.cfg, source)
    report = download.download(up.cfg, source, dest, out=up.out)
    up.out(f"  {report['bytes_total']} bytes in {report['attempts']} request(s)"
           + (f", resumed at {report['resumed_from']}" if report["resumed_from"] else ""))  # fmt: skip
    return dest, report


def _wait_for_window(up: Any, args: argparse.Namespace, bundle: str, version: str, report: Any) -> bool:
    """True when the update may run now; False when deferred (recorded for the timer)."""
    from venuecam.timeutil import iso, utcnow

    asked = time.time()
    while True:
        reasons, when = up.blockers()
        if not reasons:
            up.journal.update(pending=None)
            return True
        waited_h = (time.time() - asked) / 3600
        pending = {"version": version, "bundle": bundle, "source": args.source, "download": report,
                   "origin": "manual", "forced": False, "requested_at": iso(utcnow()), "waiting": reasons,
                   "next": when, "asked_human": waited_h > up.u.max_wait_hours}  # fmt: skip
        old = up.journal.read().get("pending") or {}
        if old.get("version") == version:
            pending["requested_at"] = old.get("requested_at") or pending["requested_at"]
        up.journal.update(pending=pending)
        if not args.wait:
            _out(
                f"update to {version} deferred: {'; '.join(reasons)}; it runs {when} (`venuecam update --status`)"
            )
            if args.json:
                print(json.dumps({"outcome": "deferred", "to": version, "waiting": reasons, "next": when}))
            return False
        up.out(f"waiting: {'; '.join(reasons)}; next look {when}")
        time.sleep(min(WAIT_POLL_S, max(1.0, _until_s(when, up.cfg.tz))))


def _report(result: dict[str, Any], as_json: bool) -> int:
    if as_json:
        print(json.dumps(result, indent=1))
    else:
        outcome = result["outcome"]
        line = {"committed": f"committed {result['to']}", "rolled_back": result["reason"],
                "failed": f"update to {result['to']} failed: {result['reason']}"}.get(outcome, outcome)  # fmt: skip
        _out(f"{line} ({result['seconds']} s)")
    return {"committed": 0, "rolled_back": EXIT_ROLLED_BACK}.get(result["outcome"], 1)


def _status(cfg: Any, as_json: bool) -> int:
    from venuecam.update.facts import summary

    s = summary(cfg.update.install_dir, cfg.update.state_dir, cfg.update.max_wait_hours)
    if as_json:
        print(json.dumps(s, indent=1))
        return 0
    lines = [f"release {s['release']} (committed {s['committed']}; previous {s['previous'] or '-'})"]
    if s["in_progress"]:
        p = s["in_progress"]
        lines.append(f"in progress: {p['from']} -> {p['to']} at {p['step']} (since {p['started_at']})")
    if s["pending"]:
        p = s["pending"]
        lines.append(f"waiting: {p['version']} ({p['origin']}, asked {p['requested_at']}): "
                     f"{'; '.join(p['waiting'] or [])}; runs {p['next']}")  # fmt: skip
    if s.get("poll"):
        lines.append(f"channel: {s['poll'].get('result')} (looked {s['poll'].get('at')})")
    for a in s["attention"]:
        lines.append(f"! {a}")
    if s["history"]:
        lines.append("history:")
        for h in s["history"]:
            lines.append(f"  {h.get('finished_at')}  {h.get('from')} -> {h.get('to')}  {h.get('outcome')}"
                         f"  {h.get('seconds')} s{'  ' + h['reason'] if h.get('reason') else ''}")  # fmt: skip
    print("\n".join(lines))
    return 0


def _check(up: Any, as_json: bool) -> int:
    from venuecam.update import gate

    base = gate.baseline(up.cfg)
    base["online"] = base["online"]
    since = time.time() - 24 * 3600  # any segment of the last day counts; the rest is live
    cur = up.layout.current()
    result = gate.Gate(up.cfg, up.config_path, up.stack, up.layout.dir(cur) if cur else Path(sys.prefix),
                       {**base, "cameras": [c.name for c in up.cfg.cameras]}, since).run(
        up.u.health_timeout_s, min(up.u.health_stable_s, 5))  # fmt: skip
    if as_json:
        print(json.dumps(result.as_dict(), indent=1))
    else:
        print("healthy" if result.ok else f"unhealthy: {result.reason}")
        for k, v in result.checks.items():
            print(f"  {k}: {v}")
    return 0 if result.ok else 1


def _reboot(up: Any, force: bool) -> int:
    from venuecam.timeutil import iso, utcnow

    with up.journal.lock():
        up.journal.update(reboot={"requested_at": iso(utcnow()), "forced": force, "asked_human": False})
    from venuecam.update.tick import tick

    return tick(up)


def _apply_config(up: Any, new: Path, args: argparse.Namespace) -> int:
    from venuecam import config

    config.load(new)  # a file that does not validate changes nothing
    if not args.force:
        reasons, when = up.blockers()
        while reasons:
            if not args.wait:
                _out(f"config change deferred: {'; '.join(reasons)}; try again {when} or add --wait")
                return 0
            time.sleep(WAIT_POLL_S)
            reasons, when = up.blockers()
    return _report(up.apply_config(new, forced=args.force), args.json)


def _self_check(path: str) -> int:
    """Import every program's module and validate the box's config with this release's code."""
    import importlib

    from venuecam import __version__, config, db
    from venuecam.cli.main import COMMANDS

    config.load(path)
    for module, _ in COMMANDS.values():
        importlib.import_module(module)
    print(
        json.dumps(
            {"version": __version__, "db_schema": db.SCHEMA_VERSION, "config_version": config.CONFIG_VERSION}
        )
    )
    return 0


def _probe_upload(cfg: Any) -> int:
    """Put a small object, read it back, delete it: the bucket works for this release."""
    import hashlib
    import uuid

    from venuecam.storage.client import make_client

    client = make_client(cfg.storage)
    key = f"{cfg.device.venue_id}/_venuecam-probe/{cfg.device.device_id}-{uuid.uuid4().hex[:12]}.txt"
    body = f"venuecam update probe {uuid.uuid4()}\n".encode()
    md5 = hashlib.md5(body).hexdigest()
    client.put_object(Bucket=cfg.storage.bucket, Key=key, Body=body)
    got = client.get_object(Bucket=cfg.storage.bucket, Key=key)["Body"].read()
    client.delete_object(Bucket=cfg.storage.bucket, Key=key)
    if hashlib.md5(got).hexdigest() != md5:
        raise SystemExit(f"probe object {key} read back different bytes")
    print(f"put, read back and deleted {key} ({len(body)} bytes) in {cfg.storage.bucket}")
    return 0


def _until_s(when: str, tz: Any) -> float:
    """Seconds until an "after HH:MM:SS" (venue time) of `why_not_now`: a short wait is not overslept."""
    import datetime as dt

    if not when.startswith("after "):
        return WAIT_POLL_S
    try:
        t = dt.datetime.strptime(when[6:], "%H:%M:%S").time()
    except ValueError:
        return WAIT_POLL_S
    now = dt.datetime.now(tz)
    return max(0.0, (dt.datetime.combine(now.date(), t, tz) - now).total_seconds())

"""The update itself, as a journal of steps so that a power cut at any step is recoverable.

    verified -> installed -> checked -> stopped -> backed_up -> switched -> started -> gating
             -> passed -> committed                                    (all well)
    ... -> rolling_back -> switched_back -> restored -> rolled_back   (the gate failed)

Before `stopped` nothing the box runs has changed: a failure there is "failed", the box goes
on as it was. From `stopped` on, anything short of `passed` ends in a rollback: the previous
release is put back (`current` -> `committed`), the database backup is restored if the new
release migrated the schema, and the programs are started again. `recover()` finishes
whatever an interrupted updater left (power cut, reboot, kill -9): at boot before the
programs start, and at the start of every updater run.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from venuecam import config as config_mod
from venuecam.config import Config
from venuecam.errors import VenuecamError
from venuecam.timeutil import iso, utcnow
from venuecam.update import bundle, gate, window
from venuecam.update import manifest as mf
from venuecam.update.journal import Journal
from venuecam.update.layout import InstallError, Layout
from venuecam.update.manifest import BundleError
from venuecam.update.stack import Stack, dbop, hand_to_owner, run_as_owner

FORWARD = [
    "verified",
    "installed",
    "checked",
    "stopped",
    "backed_up",
    "switched",
    "started",
    "gating",
    "passed",
]
BACKWARD = ["rolling_back", "switched_back", "restored"]
TOUCHED = set(FORWARD[FORWARD.index("stopped") :]) | set(BACKWARD)  # the running box was changed
STOP_AT_ENV = "VENUECAM_UPDATE_STOP_AT"  # tests: freeze (SIGSTOP) right after this step is journaled


class Refused(VenuecamError):
    """The update was not started (bad bundle, wrong target, version rules): nothing changed."""


class Deferred(VenuecamError):
    """Not now: a booking, a live clip or the maintenance window."""


def _now() -> str:
    return iso(utcnow()) or ""


class Updater:
    def __init__(self, cfg: Config, config_path: str, out: Callable[[str], None] = print) -> None:
        self.cfg = cfg
        self.config_path = config_path
        self.u = cfg.update
        self.layout = Layout(self.u.install_dir)
        self.journal = Journal(self.u.state_dir)
        self.stack = Stack(cfg, config_path)
        self.out = out

    # ------------------------------------------------------------ journal helpers

    def _step(self, op: dict[str, Any], step: str, **extra: Any) -> None:
        op["step"] = step
        op.setdefault("steps", []).append([step, _now()])
        op.update(extra)
        self.journal.update(op=op)
        self.out(f"  {step}")
        if os.environ.get(STOP_AT_ENV) == step:
            os.kill(os.getpid(), signal.SIGSTOP)

    def _finish(self, op: dict[str, Any], outcome: str, reason: str = "") -> dict[str, Any]:
        result = {k: op.get(k) for k in ("id", "kind", "from", "to", "origin", "forced", "gate", "download",
                                         "signer", "bundle_sha256", "started_at", "steps")}  # fmt: skip
        result.update(outcome=outcome, reason=reason, finished_at=_now(),
                      seconds=round(time.time() - op.get("t0", time.time()), 1),
                      release=self.layout.current())  # fmt: skip
        state = self.journal.finish(result)
        if outcome == "rolled_back" and op.get("to"):
            failed = state.get("failed") or {}
            failed[op["to"]] = op.get("digest", "")
            self.journal.update(failed=failed)
        return result

    # ------------------------------------------------------------ checks before anything changes

    def check_bundle(self, path: Path, allow_downgrade: bool = False) -> bundle.Verified:
        v = bundle.verify(path, Path(self.u.signers_file))
        m = v.manifest
        py = f"{sys.version_info.major}.{sys.version_info.minor}"
        box_py = self._box_python_version() or py
        machine = os.uname().machine
        if (m.python, m.machine) != (box_py, machine):
            raise Refused(
                f"{path.name} is built for Python {m.python} on {m.machine}; this box has Python {box_py} on {machine}"
            )
        current = self.layout.current()
        if current and not allow_downgrade and not mf.newer(m.version, current):
            raise Refused(
                f"{path.name} is {m.version}, not newer than {current} (--allow-downgrade to go back)"
            )
        needs = m.requires
        if needs.get("update_from") and current and mf.newer(needs["update_from"], current):
            raise Refused(
                f"{m.version} updates only from {needs['update_from']} or later; this box runs {current}"
            )
        if m.delta_from:
            self._check_delta(path.name, m, current)
        if needs["config_version"] > config_mod.CONFIG_VERSION:
            raise Refused(
                f"{m.version} needs config format {needs['config_version']}; this box's is {config_mod.CONFIG_VERSION}"
            )
        schema = int(dbop(self.cfg, "version", str(self.cfg.db_path))["schema"])  # type: ignore[index]
        if schema and schema < needs["db_schema"]:
            raise Refused(f"{m.version} migrates databases from schema {needs['db_schema']}; this box's is {schema}: "
                          "update through an intermediate release")  # fmt: skip
        return v

    def _check_delta(self, name: str, m: mf.Manifest, current: str | None) -> None:
        """A delta bundle installs only over a release that has every wheel it leaves out."""
        have = (self.layout.wheels(current) if current else None) or {}
        lacking = [n for n, sha in m.wheels.items() if f"wheels/{n}" not in m.carried and have.get(n) != sha]
        if lacking:
            raise Refused(f"{name} is a delta bundle cut against {m.delta_from}: this box's release {current} "
                          f"lacks {len(lacking)} of the wheels it leaves out ({', '.join(lacking[:2])}): "
                          "use the full bundle")  # fmt: skip

    def _box_python_version(self) -> str | None:
        import subprocess

        r = subprocess.run([self.u.python, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                           capture_output=True, text=True)  # fmt: skip
        return r.stdout.strip() or None

    def blockers(self) -> tuple[list[str], str]:
        return window.why_not_now(self.cfg)

    # ------------------------------------------------------------ the update

    def apply(self, v: bundle.Verified | None, *, target: str | None = None, origin: str = "manual",
              forced: bool = False, download: dict[str, Any] | None = None, restore: str | None = None) -> dict[str, Any]:  # fmt: skip
        """Install (or, with `target`, reuse) a release and switch to it behind the health gate."""
        self.journal.ensure()
        previous = self.layout.current()
        to = v.manifest.version if v else target
        assert to
        op: dict[str, Any] = {
            "id": f"{to}-{int(time.time())}", "kind": "release" if v else "rollback", "from": previous, "to": to,
            "origin": origin, "forced": forced, "started_at": _now(), "t0": time.time(), "download": download,
            "digest": v.manifest.digest if v else None, "signer": v.signer if v else None,
            "bundle_sha256": v.sha256 if v else None, "restore_first": restore,
        }  # fmt: skip
        self.out(f"updating {previous} -> {to}")
        if previous and not os.path.lexists(self.layout.root / "committed"):
            self.layout.point("committed", previous)  # the boot check runs from it from now on
        self._step(op, "verified")
        try:
            if v:
                self._install(v)
            elif not self.layout.complete(to):
                raise Refused(f"release {to} is not installed")
            self._step(op, "installed")
            self._self_check(to)
            self._step(op, "checked")
            op["baseline"] = gate.baseline(self.cfg)
        except (Refused, InstallError, BundleError) as e:
            return self._failed_before_switch(op, str(e))
        try:
            self.stack.stop()
            self._step(op, "stopped")
            # The backup is written as the database's owner (dbop): root's 0700 directory
            # refused it on the box ("database backup failed: Permission denied").
            hand_to_owner(self.journal.dir / "backups", self.cfg.db_path)
            backup = str(self.journal.dir / "backups" / f"venuecam-{previous}-before-{to}.db")
            taken = dbop(self.cfg, "backup", str(self.cfg.db_path), backup)
            self._step(op, "backed_up", backup=taken["backup"], schema_before=taken["schema"])  # type: ignore[index]
            if restore:
                dbop(self.cfg, "restore", restore, str(self.cfg.db_path))
            self.layout.point("current", to)
            self._step(op, "switched")
            since = time.time()
            self.stack.start()
            self._step(op, "started", since=since)
            self._step(op, "gating")
            result = gate.Gate(self.cfg, self.config_path, self.stack, self.layout.dir(to), op["baseline"], since,
                               self.out).run(self.u.health_timeout_s, self.u.health_stable_s)  # fmt: skip
            op["gate"] = result.as_dict()
            if not result.ok:
                return self.rollback(op, f"{to} failed its health gate: {result.reason}")
            self._step(op, "passed")
            return self._commit(op)
        except Exception as e:  # anything after the stop: the box must end on a working release
            return self.rollback(op, f"{to}: {e.__class__.__name__}: {e}")

    def _install(self, v: bundle.Verified) -> None:
        import tempfile

        with tempfile.TemporaryDirectory(prefix="unpack-", dir=self.journal.dir / "downloads") as tmp:
            files = bundle.extract(v, Path(tmp))
            marker = {
                **v.manifest.summary(),
                "signer": v.signer,
                "bundle_sha256": v.sha256,
                "installed_at": _now(),
            }
            current = self.layout.current()
            base = current if current and self.layout.wheels(current) else None
            fresh = self.layout.install(
                v.manifest.version, sorted(files.values()), self.u.python, marker, base
            )
        self.out(f"  {'installed' if fresh else 'already installed'}: {self.layout.dir(v.manifest.version)}")

    def _self_check(self, version: str) -> None:
        exe = self.layout.dir(version) / "bin" / "venuecam"
        r = run_as_owner(
            [str(exe), "--config", self.config_path, "update", "--self-check"], self.cfg.db_path, timeout=300
        )
        if r.returncode != 0:
            last = (r.stderr or r.stdout).strip().splitlines()[-1:] or [f"exit {r.returncode}"]
            raise Refused(f"{version} does not start: {last[0][:300]}")
        try:
            said = json.loads(r.stdout)
        except ValueError:
            raise Refused(
                f"{version} does not start: its self-check said {r.stdout.strip()[:200]!r}"
            ) from None
        if said.get("version") != version:
            raise Refused(f"{version}: its code says it is {said.get('version')!r}")

    def _failed_before_switch(self, op: dict[str, Any], reason: str) -> dict[str, Any]:
        self.out(f"  failed before the switch: {reason}")
        if op.get("kind") == "release" and op["to"] not in (
            self.layout.current(),
            self.layout._link("committed"),
        ):
            self.layout.remove(op["to"])
        return self._finish(op, "failed", reason)

    def _commit(self, op: dict[str, Any]) -> dict[str, Any]:
        self.layout.point("committed", op["to"])
        keep = {op["to"]} | ({op["from"]} if op.get("from") else set())
        gone = self.layout.prune(keep)
        for old in (self.journal.dir / "backups").glob("*.db"):
            if str(old) != op.get("backup"):
                old.unlink(missing_ok=True)
        result = self._finish(op, "committed")
        failed = self.journal.read().get("failed") or {}
        failed.pop(op["to"], None)
        self.journal.update(
            failed=failed, acknowledged=None, previous=op.get("from"), previous_backup=op.get("backup")
        )
        self.out(
            f"committed {op['to']} (previous {op.get('from')} kept{', removed ' + ', '.join(gone) if gone else ''})"
        )
        return result

    def apply_config(self, new: Path, forced: bool = False) -> dict[str, Any]:
        """Replace venuecam.toml with `new` (validated already), keeping the old one as .prev,
        behind the same health gate; an unhealthy box gets the old file back."""
        import shutil

        live = Path(self.config_path)
        prev = live.with_name(live.name + ".prev")
        op: dict[str, Any] = {"id": f"config-{int(time.time())}", "kind": "config", "from": self.layout.current(),
                              "to": self.layout.current(), "origin": f"config {new.name}", "forced": forced,
                              "started_at": _now(), "t0": time.time(), "config_prev": str(prev)}  # fmt: skip
        self._step(op, "checked")
        op["baseline"] = gate.baseline(self.cfg)
        try:
            shutil.copy2(live, prev)
            self._step(op, "backed_up", config_saved=True)
            self.stack.stop()
            self._step(op, "stopped")
            tmp = live.with_name(live.name + ".new")
            shutil.copyfile(new, tmp)
            st = live.stat()
            os.chmod(tmp, st.st_mode & 0o7777)
            if os.geteuid() == 0:
                os.chown(tmp, st.st_uid, st.st_gid)
            os.replace(tmp, live)
            self._step(op, "switched")
            cfg = config_mod.load(live)
            since = time.time()
            self.stack = Stack(cfg, self.config_path)
            self.stack.start()
            self._step(op, "gating", since=since)
            result = gate.Gate(cfg, self.config_path, self.stack, self.layout.dir(op["to"]), op["baseline"], since,
                               self.out).run(self.u.health_timeout_s, self.u.health_stable_s)  # fmt: skip
            op["gate"] = result.as_dict()
            if not result.ok:
                return self.rollback(op, f"the new config failed the health gate: {result.reason}")
            self._step(op, "passed")
            result_ = self._finish(op, "committed")
            self.out(f"config applied (the old one is {prev})")
            return result_
        except Exception as e:
            return self.rollback(op, f"config change: {e.__class__.__name__}: {e}")

    # ------------------------------------------------------------ going back

    def rollback(self, op: dict[str, Any], reason: str, boot: bool = False) -> dict[str, Any]:
        """Put the release we came from back, with its database, and start it (unless at boot)."""
        self.out(f"  rolling back: {reason}")
        back = op.get("from") or self.layout.committed()
        self._step(op, "rolling_back", reason=reason)
        if op.get("kind") == "config":
            import shutil

            if not boot:
                self.stack.stop()
            prev = Path(op["config_prev"])
            if op.get("config_saved") and prev.exists():
                tmp = Path(self.config_path + ".back")
                shutil.copy2(prev, tmp)
                os.replace(tmp, self.config_path)
            self._step(op, "switched_back")
            self.stack = Stack(config_mod.load(self.config_path), self.config_path)
            if not boot:
                self.stack.start()
            return self._finish(op, "rolled_back", f"config change undone: {reason}")
        if self.layout.current() != back:
            if not boot:
                self.stack.stop()
            self.layout.point("current", back)
            self._step(op, "switched_back")
        else:
            if not boot:
                self.stack.stop()
        before = op.get("schema_before")
        if op.get("backup") and before is not None:
            now = int(dbop(self.cfg, "version", str(self.cfg.db_path))["schema"])  # type: ignore[index]
            if now != before or op.get("restore_first"):
                done = dbop(self.cfg, "restore", op["backup"], str(self.cfg.db_path))
                self._step(op, "restored", restored=done)
        if not boot:
            self.stack.start()
        if op.get("kind") == "release" and op.get("to") not in (back, self.layout._link("committed")):
            self.layout.remove(op["to"])
        result = self._finish(op, "rolled_back", f"rolled back to {back}: {reason}")
        self.out(f"rolled back to {back}")
        return result

    def recover(self, boot: bool = False) -> dict[str, Any] | None:
        """Finish what an interrupted updater left; the caller holds the lock."""
        op = self.journal.read().get("op")
        if not op:
            return None
        step = op.get("step")
        self.out(f"recovering an interrupted update {op.get('from')} -> {op.get('to')} (at {step})")
        if step == "passed":
            return self._commit(op) if op.get("kind") != "config" else self._finish(op, "committed")
        if step in TOUCHED:
            when = "at boot" if boot else "after the updater stopped"
            return self.rollback(
                op, f"interrupted at {step} (power cut, reboot or kill), found {when}", boot=boot
            )
        return self._failed_before_switch(op, f"interrupted at {step}, before the switch: nothing changed")

    def rollback_by_hand(self, force: bool) -> dict[str, Any]:
        state = self.journal.read()
        previous = state.get("previous")
        if not previous or not self.layout.complete(previous):
            raise Refused("there is no previous release to go back to")
        restore = None
        want = (self.layout.marker(previous) or {}).get("provides", {}).get("db_schema")
        schema = int(dbop(self.cfg, "version", str(self.cfg.db_path))["schema"])  # type: ignore[index]
        if want is not None and schema > want:
            restore = state.get("previous_backup")
            if not restore or not Path(restore).exists():
                raise Refused(f"{previous} needs database schema {want} and no backup of it is kept")
            if not force:
                raise Refused(f"going back to {previous} restores the database as it was before the update "
                              f"(schema {want}): work recorded since is lost. Add --force to do it.")  # fmt: skip
        return self.apply(None, target=previous, origin="rollback by hand", forced=force, restore=restore)

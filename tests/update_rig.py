"""Boxes for the update tests: a release layout, a config, a running stack (direct mode), and
release bundles built from this source tree, deliberately broken where a test needs it.

    releases = Releases(tmp)                 # a signing key and the signers file
    good = releases.build("0.2.0", migrate=True)
    box = Box(tmp / "box", releases, s3.endpoint, platform.url); box.install(base); box.start()
    box.update(good)                         # `venuecam update` run by the box's own release
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from conftest import base_sections, render_toml
from resilience_rig import descendants, wait_until
from venuecam import config as config_mod
from venuecam import db as db_mod
from venuecam.update import build as build_mod
from venuecam.update import reuse

APP = Path(__file__).resolve().parent.parent / "app"
CACHE = APP.parent / "build" / "release-cache"
BOX_PYTHON = "/usr/bin/python3"

# The health gate in the tests: every program must run HEALTH_STABLE_S without a restart; the
# worker's startsecs (5 s) is the floor anyway. The time limit is for the good releases on a
# loaded CI machine; a test that waits for it to expire sets a shorter one (Box.configure).
HEALTH_STABLE_S = 5
HEALTH_TIMEOUT_S = 40
# The schema of the release under test (the base release); "migrate" makes one schema newer.
BASE_SCHEMA = db_mod.SCHEMA_VERSION
# name -> (file under app/venuecam, text to add or (old, new)) making a broken release.
BREAKAGES: dict[str, list[tuple[str, Any]]] = {
    "migrate": [
        # At the start of a line: db.py's docstring shows an indented example of the same line.
        ("db.py", (f"\nSCHEMA_VERSION = {BASE_SCHEMA}\n", f"\nSCHEMA_VERSION = {BASE_SCHEMA + 1}\n")),
        (
            "db.py",
            "\n\ndef _m_update_probe(db: SqliteDatabase) -> None:\n"
            "    db.execute_sql('ALTER TABLE bookings ADD COLUMN update_probe TEXT')\n\n\n"
            f"MIGRATIONS[{BASE_SCHEMA + 1}] = _m_update_probe\n",
        ),
    ],
    "import": [
        (
            "worker/main.py",
            "\nraise ImportError('deliberately broken release: this module does not import')\n",
        )
    ],
    "crash": [
        (
            "watchdog/main.py",
            (
                "def run(args: argparse.Namespace) -> int:\n",
                "def run(args: argparse.Namespace) -> int:\n"
                # 2.5 s after the spawn (the process's start time, so a slow import does not
                # move it): after supervisord's startsecs (2 s), so RUNNING first, and inside the
                # gate's stable window (HEALTH_STABLE_S, also counted from the spawn).
                "    import os, threading\n"
                "    started = int(open('/proc/self/stat').read().rsplit(')', 1)[1].split()[19]) / os.sysconf('SC_CLK_TCK')\n"
                "    uptime = float(open('/proc/uptime').read().split()[0])\n"
                "    threading.Timer(max(0.0, 2.5 - (uptime - started)), lambda: os._exit(3)).start()  # deliberately broken\n",
            ),
        )
    ],
    "no_segment": [
        (
            "capture/main.py",
            (
                "def run(args: argparse.Namespace) -> int:\n",
                "def run(args: argparse.Namespace) -> int:\n"
                "    import time\n\n    time.sleep(10**6)  # deliberately broken: never records\n",
            ),
        )
    ],
    "bad_upload": [
        (
            "storage/client.py",
            (
                "endpoint_url=storage.effective_endpoint,",
                "endpoint_url=storage.effective_endpoint + '/deliberately-broken',",
            ),
        )
    ],
}


class Releases:
    """A signing key (made here: the real one lives outside the repo), signers, built bundles."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.key = root / "release-key"
        if not self.key.exists():
            build_mod.main(["key", "--out", str(self.key)])
        pub = self.key.with_name("release-key.pub").read_text().split()
        self.signers = root / "release-signers"
        self.signers.write_text(
            f'release@venuecam namespaces="venuecam-release,venuecam-channel" {pub[0]} {pub[1]}\n'
        )
        self.built: dict[str, Path] = {}
        self.made: dict[Path, tuple[str, Path]] = {}
        self.lock = threading.Lock()  # boxes boot in threads (test_update_powercut, the fleet)

    def build(self, version: str, *breakages: str, key: Path | None = None, target: str = "host",
              delta_from: Path | None = None) -> Path:  # fmt: skip
        """The bundle of this source tree (with `breakages`) as `version`, once per session; for
        this machine, or for another `target` (`3.13-aarch64`: the image's Python on a Pi); a
        delta bundle with `delta_from` (a bundle, manifest or release marker)."""
        suffix = ("-otherkey" if key else "") + ("" if target == "host" else f"-{target}")
        suffix += f"-from-{delta_from.name}" if delta_from else ""
        name = "-".join([version, *breakages]) + suffix
        if name in self.built:
            return self.built[name]
        src = self.root / f"src-{name}"
        shutil.rmtree(src, ignore_errors=True)
        shutil.copytree(APP, src, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
        for b in breakages:
            for rel, change in BREAKAGES[b]:
                f = src / "venuecam" / rel
                text = f.read_text()
                if isinstance(change, tuple):
                    assert change[0] in text, f"{rel}: {change[0]!r} not found (breakage {b} is stale)"
                    text = text.replace(change[0], change[1], 1)
                else:
                    text += change
                f.write_text(text)
        out = self.root / f"out-{name}"
        delta = ["--delta-from", str(delta_from)] if delta_from else []
        build_mod.main(["release", "--key", str(key or self.key), "--out", str(out), "--version", version,
                        "--target", target, "--app", str(src), "--cache", str(CACHE), *delta])  # fmt: skip
        self.built[name] = next(out.glob(f"venuecam-{version}*.bundle"))
        return self.built[name]

    def signer_line(self) -> str:
        """This key's line for a box's release-signers file."""
        return self.signers.read_text().strip()

    def installed(self, bundle_path: Path) -> tuple[str, Path]:
        """(version, a release directory installed from the bundle), made once, as a box's."""
        from venuecam.update import bundle
        from venuecam.update.layout import Layout

        with self.lock:
            if bundle_path in self.made:
                return self.made[bundle_path]
            v = bundle.verify(bundle_path, self.signers)
            layout = Layout(self.root / f"installed-{len(self.made)}")
            # Kept: the image build's marker records the wheels its release came from.
            files = bundle.extract(v, self.wheels_of(layout.root))
            layout.install(v.manifest.version, sorted(files.values()), BOX_PYTHON, {"digest": v.manifest.digest,
                           "version": v.manifest.version, "provides": v.manifest.provides})  # fmt: skip
            self.made[bundle_path] = (v.manifest.version, layout.dir(v.manifest.version))
            return self.made[bundle_path]

    @staticmethod
    def wheels_of(installed_root: Path) -> Path:
        """Where the wheels of a release `installed()` made are kept."""
        return installed_root / "wheels"


def tamper(src: Path, dst: Path) -> str:
    """Copy the bundle, flipping one byte inside its first wheel; manifest and signature kept."""
    with tarfile.open(src) as tin, tarfile.open(dst, "w", format=tarfile.PAX_FORMAT) as tout:
        changed = ""
        for m in tin.getmembers():
            data = tin.extractfile(m).read()  # type: ignore[union-attr]
            if m.name.endswith(".whl") and not changed:
                data = data[:1000] + bytes([data[1000] ^ 1]) + data[1001:]
                changed = m.name
            tout.addfile(m, io.BytesIO(data))
    return changed


class Box:
    def __init__(self, root: Path, releases: Releases, s3_endpoint: str, platform_url: str,
                 **over: dict[str, Any]) -> None:  # fmt: skip
        self.root = root
        self.kit = releases
        self.install_dir = root / "opt" / "venuecam"
        self.state_dir = root / "update-state"
        sections: dict[str, Any] = {
            "device": {"log_dir": str(root / "logs")},
            "booking_api": {"base_url": platform_url, "sync_interval_s": 300, "timeout_s": 3.0},
            "storage": {"endpoint_url": s3_endpoint},
            "clips": {"grace_s": 3},
            "connectivity": {"tcp_targets": [], "dns_names": [], "interval_s": 0.5, "timeout_s": 1.0},
            "update": {"install_dir": str(self.install_dir), "state_dir": str(self.state_dir),
                       "signers_file": str(releases.signers), "python": BOX_PYTHON, "service": "direct",
                       "health_timeout_s": HEALTH_TIMEOUT_S, "health_stable_s": HEALTH_STABLE_S,
                       "booking_margin_s": 5},
        }  # fmt: skip
        root.mkdir(parents=True, exist_ok=True)
        self.config_path = root / "venuecam.toml"
        self.sections = sections
        self.configure(**over)
        self.updater: subprocess.Popen[str] | None = None

    def configure(self, **over: dict[str, Any]) -> None:
        """Rewrite the box's config with these keys changed (the next command reads it)."""
        for k, v in over.items():
            self.sections[k] = v if isinstance(v, list) else {**self.sections.get(k, {}), **v}
        self.config_path.write_text(render_toml(base_sections(self.root, **self.sections)))
        self.cfg = config_mod.load(self.config_path)

    # ------------------------------------------------------------ the layout

    def install(self, bundle_path: Path) -> str:
        """What the image build does: one release, marked complete by its own code
        (`build shipped`), `current` pointing at it. The release is
        installed (a virtualenv, every wheel: seconds of pip) once per bundle and session, then
        copied into each box, its scripts' interpreter lines moved to the box's path; what an
        update installs is never copied: the updater installs it for real."""
        from venuecam.update.layout import MARKER, Layout

        version, made = self.kit.installed(bundle_path)
        layout = Layout(self.install_dir)
        layout.releases.mkdir(parents=True, exist_ok=True)
        target = layout.dir(version)
        reuse.clone(made, target)  # not its marker: the image build's is written by the release
        assert not (target / MARKER).exists()
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        wheels = self.kit.wheels_of(made.parent.parent)
        subprocess.run([str(target / "bin" / "python"), "-m", "venuecam.update.build", "shipped",
                        "--install-dir", str(self.install_dir), "--wheels", str(wheels)],
                       check=True, capture_output=True, env=env)  # fmt: skip
        layout.point("current", version)
        return version

    def link(self, name: str) -> str | None:
        try:
            return Path(os.readlink(self.install_dir / name)).name
        except OSError:
            return None

    def releases(self) -> list[str]:
        d = self.install_dir / "releases"
        return sorted(p.name for p in d.iterdir()) if d.exists() else []

    def state(self) -> dict[str, Any]:
        p = self.state_dir / "state.json"
        return json.loads(p.read_text()) if p.exists() else {}

    def exe(self, link: str = "current") -> str:
        return str(self.install_dir / link / "bin" / "venuecam")

    # ------------------------------------------------------------ the stack

    def pidfile(self) -> Path:
        return self.cfg.run_dir / "supervisord.pid"

    def supervisord_pid(self) -> int | None:
        try:
            pid = int(self.pidfile().read_text())
            os.kill(pid, 0)
            return pid
        except (OSError, ValueError):
            return None

    def start(self, wait: bool = True) -> None:
        from venuecam.update.stack import Stack

        Stack(self.cfg, str(self.config_path)).start()
        if wait:
            self.wait_healthy()

    def wait_healthy(self, timeout: float = 90) -> dict[str, Any]:
        """Every program up and the camera recording (what `update --check` passes on)."""
        r = self.venuecam("update", "--check", "--json", timeout=timeout + 30)
        assert r.returncode == 0, f"box not healthy: {r.stdout}\n{r.stderr}"
        return json.loads(r.stdout)

    def stop(self) -> None:
        from venuecam.update.stack import Stack

        Stack(self.cfg, str(self.config_path)).stop()

    def venuecam(self, *args: str, link: str = "current", timeout: float = 300,
                 env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:  # fmt: skip
        return subprocess.run([self.exe(link), "--config", str(self.config_path), *args], capture_output=True,
                              text=True, timeout=timeout, env={**os.environ, **(env or {})})  # fmt: skip

    def update_bg(self, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
        self.updater = subprocess.Popen([self.exe(), "--config", str(self.config_path), "update", *args],
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                        start_new_session=True, env={**os.environ, **(env or {})})  # fmt: skip
        return self.updater

    def power_cut(self) -> None:
        """SIGKILL of everything: the updater (frozen or not), supervisord, programs, ffmpeg."""
        roots = [p for p in (self.supervisord_pid(), self.updater.pid if self.updater else None) if p]
        pids = [pid for root in roots for pid in (root, *descendants(root))]
        pids += _pids_running(self.install_dir)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGSTOP)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if self.updater:
            self.updater.wait(10)
            self.updater = None
        for pid in pids:
            wait_until(f"pid {pid} gone", lambda p=pid: not _alive(p), 10, 0.05)
        self.pidfile().unlink(missing_ok=True)

    def boot(self) -> subprocess.CompletedProcess[str]:
        """What systemd does at boot: venuecam-update-boot.service, then venuecam.service."""
        unit = (APP.parent / "systemd" / "venuecam-update-boot.service").read_text()
        exec_start = re.search(r"(?m)^ExecStart=(.*)$", unit)
        assert exec_start, "venuecam-update-boot.service has no ExecStart"
        argv = exec_start.group(1).split()
        argv = [a.replace("/opt/venuecam", str(self.install_dir)).replace("/etc/venuecam/venuecam.toml",
                str(self.config_path)) for a in argv]  # fmt: skip
        committed = self.install_dir / "committed"
        r = None
        if committed.exists():  # ConditionPathExists in the unit
            r = subprocess.run(argv, capture_output=True, text=True, timeout=300)
        self.start(wait=False)
        return r or subprocess.CompletedProcess(argv, 0, "", "")

    def kill_all(self) -> None:
        with contextlib.suppress(Exception):
            self.power_cut()


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.split(") ")[-1][0] != "Z"


def _pids_running(prefix: Path) -> list[int]:
    """Every process whose command line names this box's install dir (a detached supervise too)."""
    out = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit() and int(p.name) != os.getpid():
            try:
                cmd = (p / "cmdline").read_bytes().decode(errors="replace")
            except OSError:
                continue
            if str(prefix) in cmd:
                out.append(int(p.name))
    return out


def wait_for(what: str, fn: Callable[[], Any], timeout: float, interval: float = 0.5) -> Any:
    return wait_until(what, fn, timeout, interval)


PY = sys.executable

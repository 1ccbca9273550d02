#!/opt/venuecam/current/bin/python
"""venuecam first boot: apply venuecam.toml from the boot partition to the box.

Runs on every boot (venuecam-firstboot.service) and converges; re-running is safe:
1. If the boot partition has venuecam.toml (or venuecam.toml.txt: Windows hides the
   extension it added), validate it with `venuecam config --check` and the start-up
   check of `venuecam supervise --print` (e.g. a Pi camera on a base without libcamera).
   A UTF-8 byte order mark or CRLF line ends (Notepad) are fine. A bad file changes
   nothing: one clear line in the journal, an error state file, exit 1 (the unit's
   OnFailure= blinks the fault LED, and venuecam.service does not start).
2. Install it to /etc/venuecam/venuecam.toml (0600, owned by the app user), atomically,
   as plain UTF-8 with LF line ends.
3. Apply the installed config to the system: hostname, time zone, root's ssh authorized
   keys, Wi-Fi (a NetworkManager keyfile and the regulatory domain).
4. Take the secrets off the FAT partition: the file's bytes are overwritten in place
   (FAT rewrites a file's own clusters) and flushed, then the file is removed; a masked
   copy (venuecam.toml.applied) says what was applied.
5. Grow the data partition (/var/lib/venuecam) and its file system to fill the card.

`--root DIR --no-system` runs steps 1-4 against a directory tree (tests, image checks).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from venuecam import config, config_checks, config_dump
from venuecam.errors import ConfigError

CONFIG_NAME = "venuecam.toml"
# What Windows saves when "file name extensions" are hidden and the file was made as text.
CONFIG_NAMES = (CONFIG_NAME, CONFIG_NAME + ".txt")
INSTALLED = Path("etc/venuecam") / CONFIG_NAME
ERROR_STATE = Path("run/venuecam-provision.error")
WIFI_KEYFILE = Path("etc/NetworkManager/system-connections/venuecam-wifi.nmconnection")
WIFI_REGDOM = Path("etc/modprobe.d/venuecam-wifi.conf")
APP_USER = "venuecam"
DATA_MOUNT = "/var/lib/venuecam"


def log(msg: str) -> None:
    # stderr goes to the journal under the unit's name; never a secret in here.
    print(f"venuecam-firstboot: {msg}", file=sys.stderr, flush=True)


def write_atomic(path: Path, text: str, mode: int, owner: tuple[int, int] | None = None) -> bool:
    """Write text to path with mode (and owner); True when the content changed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    old = path.read_text() if path.exists() else None
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        if owner:
            os.chown(tmp, *owner)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return old != text


def run_optional(argv: list[str]) -> None:
    """A best-effort system command: skipped (and said so) where the tool is not installed."""
    if not shutil.which(argv[0]):
        log(f"{argv[0]} is not installed; skipped: {' '.join(argv)}")
        return
    subprocess.run(argv, check=False, capture_output=True)


def check_with_cli(path: Path) -> str | None:
    """The app's own validation: `venuecam config --check` (the file), then `venuecam
    supervise --print` (what the stack checks at start on this system). None if valid."""
    exe = Path(sys.executable).parent / "venuecam"
    argv = [str(exe)] if exe.exists() else [sys.executable, "-m", "venuecam"]
    for command in (["config", "--check", str(path)], ["--config", str(path), "supervise", "--print"]):
        proc = subprocess.run([*argv, *command], capture_output=True, text=True)
        if proc.returncode != 0:
            lines = (proc.stderr or proc.stdout).strip().splitlines()
            return lines[-1] if lines else f"venuecam {command[0]} exited {proc.returncode}"
    return None


def find_incoming(boot_dir: Path) -> Path | None:
    """The venuecam.toml on the boot partition, under either name it may have."""
    for name in CONFIG_NAMES:
        path = boot_dir / name
        if path.is_file():
            if name != CONFIG_NAME:
                log(f"found {path} (the .txt was added by the editor that saved it); using it")
            return path
    return None


def normalized(raw: bytes) -> str:
    """The file as plain UTF-8 with LF line ends: no byte order mark, no CR."""
    text = raw.decode("utf-8", errors="replace").removeprefix("\ufeff")
    return text.replace("\r\n", "\n").replace("\r", "\n")


def scrub(path: Path) -> None:
    """Overwrite a file's bytes in place and flush them, then remove it. On FAT (no copy on
    write, no journal) this overwrites the very clusters the secrets were written to."""
    size = path.stat().st_size
    with open(path, "r+b") as f:
        f.write(b"\0" * size)
        f.flush()
        os.fsync(f.fileno())
    path.unlink()
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def app_owner(root: Path) -> tuple[int, int] | None:
    """uid/gid of the app user inside root (None when it does not exist there)."""
    passwd = root / "etc/passwd"
    if not passwd.exists():
        return None
    for line in passwd.read_text().splitlines():
        parts = line.split(":")
        if len(parts) > 3 and parts[0] == APP_USER:
            return int(parts[2]), int(parts[3])
    return None


# ---------------------------------------------------------------- applying to the system


def hostname_for(cfg: config.Config) -> str:
    if cfg.provision.hostname:
        return cfg.provision.hostname
    candidate = cfg.device.device_id.lower().replace("_", "-")
    return candidate if config_checks.is_hostname(candidate) else ""


def apply_hostname(root: Path, name: str, system: bool) -> None:
    if not name:
        return
    write_atomic(root / "etc/hostname", name + "\n", 0o644)
    hosts = root / "etc/hosts"
    lines = hosts.read_text().splitlines() if hosts.exists() else ["127.0.0.1\tlocalhost"]
    lines = [ln for ln in lines if not ln.startswith("127.0.1.1")] + [f"127.0.1.1\t{name}"]
    write_atomic(hosts, "\n".join(lines) + "\n", 0o644)
    if system:
        run_optional(["hostname", name])


def apply_timezone(root: Path, tz: str) -> None:
    localtime = root / "etc/localtime"
    target = Path("/usr/share/zoneinfo") / tz
    if localtime.is_symlink() and Path(os.readlink(localtime)) == target:
        return
    tmp = localtime.with_name(".localtime.new")
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(target)
    os.replace(tmp, localtime)
    write_atomic(root / "etc/timezone", tz + "\n", 0o644)


def apply_ssh_keys(root: Path, keys: list[str]) -> None:
    # No keys in the file: leave whatever is there (an earlier provisioning's keys).
    if not keys:
        return
    ssh_dir = root / "root/.ssh"
    ssh_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(ssh_dir, 0o700)
    text = "# managed by venuecam-firstboot from venuecam.toml [provision]\n" + "\n".join(keys) + "\n"
    write_atomic(ssh_dir / "authorized_keys", text, 0o600)


def wifi_keyfile(ssid: str, psk: str) -> str:
    lines = [
        "# managed by venuecam-firstboot from venuecam.toml [provision]",
        "[connection]",
        "id=venuecam-wifi",
        "type=wifi",
        "autoconnect=true",
        "",
        "[wifi]",
        "mode=infrastructure",
        f"ssid={ssid}",
        "",
    ]
    if psk:
        lines += ["[wifi-security]", "key-mgmt=wpa-psk", f"psk={psk}", ""]
    lines += ["[ipv4]", "method=auto", "", "[ipv6]", "method=auto", ""]
    return "\n".join(lines)


def apply_wifi(root: Path, p: config.ProvisionConfig, system: bool) -> None:
    keyfile = root / WIFI_KEYFILE
    if p.wifi_ssid:
        changed = write_atomic(keyfile, wifi_keyfile(p.wifi_ssid, p.wifi_psk), 0o600)
    else:
        changed = keyfile.exists()
        keyfile.unlink(missing_ok=True)
    if p.wifi_country:
        write_atomic(root / WIFI_REGDOM, f"options cfg80211 ieee80211_regdom={p.wifi_country}\n", 0o644)
    if system and p.wifi_ssid:
        run_optional(["rfkill", "unblock", "wifi"])
        if p.wifi_country:
            run_optional(["iw", "reg", "set", p.wifi_country])
    if system and changed:
        # Harmless when NetworkManager is not up yet: it reads the keyfile when it starts.
        run_optional(["nmcli", "connection", "reload"])


def apply_system(root: Path, cfg: config.Config, system: bool) -> None:
    apply_hostname(root, hostname_for(cfg), system)
    apply_timezone(root, cfg.device.timezone)
    apply_ssh_keys(root, cfg.provision.ssh_authorized_keys)
    apply_wifi(root, cfg.provision, system)


# ---------------------------------------------------------------- the data partition


def _sysfs_int(path: Path) -> int:
    return int(path.read_text().strip())


def grow_data_partition(mount: str = DATA_MOUNT) -> None:
    """Grow the partition mounted at `mount` to the end of its disk, then its ext4 online."""
    proc = subprocess.run(["findmnt", "-no", "SOURCE", mount], capture_output=True, text=True)
    dev = proc.stdout.strip()
    if proc.returncode != 0 or not dev.startswith("/dev/"):
        log(f"{mount} is not a mounted partition; not growing it")
        return
    part = Path("/sys/class/block") / Path(os.path.realpath(dev)).name
    disk = part.resolve().parent
    number = _sysfs_int(part / "partition")
    end = _sysfs_int(part / "start") + _sysfs_int(part / "size")
    free = _sysfs_int(disk / "size") - end
    if free > 2048:  # more than 1 MiB after the partition
        disk_dev = f"/dev/{disk.name}"
        log(f"growing {dev} by {free // 2048} MiB to the end of {disk_dev}")
        subprocess.run(
            ["sfdisk", "--no-reread", "--no-tell-kernel", "-N", str(number), disk_dev],
            input=", +\n", text=True, check=True, capture_output=True,
        )  # fmt: skip
        subprocess.run(["partx", "-u", "--nr", str(number), disk_dev], check=True)
    # Also finishes a grow cut short by a power cut between the two steps.
    subprocess.run(["resize2fs", dev], check=True, capture_output=True)


# ---------------------------------------------------------------- the whole run


def provision(root: Path, boot_dir: Path, system: bool) -> int:
    error_state = root / ERROR_STATE
    incoming = find_incoming(boot_dir)
    installed = root / INSTALLED
    if incoming is not None:
        problem = check_with_cli(incoming)
        if problem:
            log(f"{incoming} is not valid, nothing was changed: {problem}")
            log("fix the file on the boot partition and reboot")
            write_atomic(error_state, problem + "\n", 0o644)
            return 1
        text = normalized(incoming.read_bytes())
        cfg = config.loads(text, source=str(incoming))
        owner = app_owner(root) if os.geteuid() == 0 else None
        write_atomic(installed, text, 0o600, owner)
        log(f"installed {incoming} as {installed}")
    elif installed.exists():
        cfg = config.load(installed)
    else:
        msg = f"no {CONFIG_NAME} on the boot partition ({boot_dir}) and none installed"
        log(msg + ": copy one there (see venuecam.example.toml) and reboot")
        write_atomic(error_state, msg + "\n", 0o644)
        return 1
    apply_system(root, cfg, system)
    if incoming is not None:
        # The masked copy tells whoever looks at the card what was applied, without secrets.
        write_atomic(boot_dir / (CONFIG_NAME + ".applied"), config_dump.dump(cfg), 0o644)
        scrub(incoming)
        os.sync()
        log(f"overwrote and removed {incoming} (secrets) on the boot partition")
    error_state.unlink(missing_ok=True)
    if system:
        grow_data_partition()
    log(f"done: {cfg.device.device_id}, {len(cfg.cameras)} cameras")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--root", type=Path, default=Path("/"), help="the system to provision")
    p.add_argument("--boot-dir", type=Path, help="the boot partition (default ROOT/boot/firmware)")
    p.add_argument("--no-system", action="store_true", help="files only: no hostname, rfkill, resize")
    args = p.parse_args(argv)
    boot_dir = args.boot_dir or args.root / "boot/firmware"
    try:
        return provision(args.root, boot_dir, system=not args.no_system)
    except (ConfigError, OSError, subprocess.CalledProcessError) as e:
        log(f"failed: {e}")
        return 1


if __name__ == "__main__":
    sys.exit(main())

"""The image on an emulated Raspberry Pi 3 and 4: what an installer expects after first boot.

One boot per machine serves every check here (see fixtures_image.py). The Pi 3 is reached
over ssh (QEMU's USB network device on the emulated DWC2 host), the Pi 4 over its serial
console (QEMU emulates neither its Ethernet nor its USB). On each: the image's own kernel,
initramfs and device tree found the SD card's root, first boot applied the venuecam.toml
put on the card, every supervisord program is RUNNING, the test-pattern camera records
segments, the LEDs are driven on the SoC's real GPIO lines, the hardware watchdog is fed.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import re
import shlex
import time
from pathlib import Path
from zoneinfo import ZoneInfo

import boto3
import pytest
import requests

import qemu_pi
from conftest import API_TOKEN, S3_KEY_ID, S3_SECRET
from fixtures_image import ALL_RUNNING, HOSTNAME, S3_GUEST, SEGMENTS, WIFI_PSK, record

pytestmark = [pytest.mark.slow, pytest.mark.root]

# The LED lines as the kernel sees them (debugfs): "gpio-529 (GPIO17 |venuecam ) out hi".
DEBUG_GPIO = (
    "mountpoint -q /sys/kernel/debug || mount -t debugfs none /sys/kernel/debug; cat /sys/kernel/debug/gpio"
)
LED_PINS = {"online": 17, "backlog": 27, "fault": 22}
VENUE_TZ = ZoneInfo("Asia/Jakarta")  # the box's timezone in fixtures_image.box_toml


def local(ts: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(ts, VENUE_TZ)


def led_lines(box: qemu_pi.PiBox) -> dict[int, str]:
    """{BCM number: "hi"/"lo"} for the GPIO lines venuecam holds as outputs."""
    out = {}
    for m in re.finditer(r"\(GPIO(\d+)\s*\|venuecam\s*\)\s+out\s+(hi|lo)", box.out(DEBUG_GPIO)):
        out[int(m.group(1))] = m.group(2)
    return out


@pytest.fixture(params=["raspi3b", "raspi4b"])
def box(request: pytest.FixtureRequest) -> qemu_pi.PiBox:
    return request.getfixturevalue("pi3_box" if request.param == "raspi3b" else "pi4_box")


def test_booted_from_its_own_boot_files(box: qemu_pi.PiBox) -> None:
    assert box.files is not None
    kernel, initrd, dtb = box.files.names
    model = box.out("tr -d '\\0' < /proc/device-tree/model")
    root = box.out("findmnt -no SOURCE,OPTIONS /").split()
    cmdline = box.out("cat /proc/cmdline")
    print(f"\n{box.machine}: {model.strip()} from {kernel}, {initrd}, {dtb}; root {root[0]}")
    assert "Raspberry Pi" in model
    assert "root=PARTUUID=7e5ca3a0-02" in cmdline
    assert re.fullmatch(r"/dev/mmcblk\dp2", root[0]), root  # the SD card, partition 2 (slot A)
    assert "rw" in root[1].split(",")
    # No virtio anywhere: the SD card is on the Pi's own host controller, the one a real
    # board wires its slot to: the SD host (sdhost, bcm2835) on a Pi 3, EMMC2 on a Pi 4.
    assert box.out("ls /sys/bus/virtio/devices 2>/dev/null | wc -l").strip() == "0"
    host = box.out(f"readlink -f /sys/block/{root[0].split('/')[-1][:-2]}/device")
    assert ("fe340000.mmc" if box.machine == "raspi4b" else "3f202000.mmc") in host, host
    # Boot finished: no job left (a unit still starting minutes in is a fault of its own).
    state = box.wait_until(
        "boot to finish",
        's=$(systemctl is-system-running); echo "$s"; test "$s" != starting && test "$s" != initializing',
        timeout=600,
    )
    assert state.strip() in ("running", "degraded"), box.out("systemctl list-jobs --no-pager")
    failed = box.out("systemctl --failed --no-legend --plain | awk '{print $1}'").split()
    assert not failed, f"failed units on {box.machine}: {failed}"


def test_first_boot_applied_the_config_and_scrubbed_the_card(box: qemu_pi.PiBox) -> None:
    facts = box.out(
        "hostname; stat -c '%a %U' /etc/venuecam/venuecam.toml; cat /etc/timezone; "
        "grep -c psk= /etc/NetworkManager/system-connections/venuecam-wifi.nmconnection; "
        "cat /etc/modprobe.d/venuecam-wifi.conf; systemctl is-active venuecam-firstboot.service"
    ).splitlines()
    assert facts[0] == HOSTNAME
    assert facts[1] == "600 venuecam"
    assert facts[2] == "Asia/Jakarta"
    assert facts[3] == "1" and "ieee80211_regdom=ID" in facts[4]
    assert facts[-1] == "active"
    boot = box.out("ls /boot/firmware").split()
    assert "venuecam.toml" not in boot and "venuecam.toml.applied" in boot
    applied = box.out("cat /boot/firmware/venuecam.toml.applied")
    journal = box.out("journalctl -b -u venuecam-firstboot --no-pager")
    assert "overwrote and removed /boot/firmware/venuecam.toml" in journal
    for secret in (API_TOKEN, S3_SECRET, WIFI_PSK):
        assert secret not in applied and secret not in journal
    # Not a byte of the secrets left anywhere on the FAT partition: the card's own bytes, read
    # here once the guest synced them (reading 256 MiB inside the emulated Pi takes minutes).
    box.out("sync")
    part = qemu_pi.partitions(box.disk)[0]
    with box.disk.open("rb") as f:
        f.seek(int(part["start"]) * 512)  # type: ignore[call-overload]
        fat = f.read(int(part["size"]) * 512)  # type: ignore[call-overload]
    for secret in (API_TOKEN, S3_SECRET, WIFI_PSK):
        assert secret.encode() not in fat, f"{secret[:4]}... still in the card's FAT partition"


def test_data_partition_grew_and_root_b_was_kept(box: qemu_pi.PiBox) -> None:
    disk = "/dev/" + box.out("lsblk -no PKNAME $(findmnt -no SOURCE /)").strip()
    parts = box.out(f"lsblk -bnro NAME,SIZE,PARTN,LABEL {disk}").splitlines()
    by_number = {
        int(p.split()[2]): p.split() for p in parts if len(p.split()) >= 3 and p.split()[2].isdigit()
    }
    assert sorted(by_number) == [1, 2, 3, 4]
    assert by_number[2][1] == by_number[3][1], "root slots A and B differ in size"
    data_bytes = int(box.out("findmnt -bno SIZE /var/lib/venuecam"))
    card = box.card_bytes  # type: ignore[attr-defined]
    assert data_bytes > card - 2 * int(by_number[2][1]) - 512 * 2**20 - 300 * 2**20, "data did not grow"
    assert box.out(f"blkid -s LABEL -o value {disk}p3").strip() == "rootfs-b"


def test_every_program_runs_and_the_camera_records(box: qemu_pi.PiBox) -> None:
    status = box.wait_until("all programs RUNNING", ALL_RUNNING, timeout=900)
    for program in ("capture:CAM_A", "worker", "watchdog", "statusd"):
        assert program in status
    box.wait_until("a recorded segment", f'test "$({SEGMENTS})" -ge 1', timeout=900)
    box.mark("boot_to_first_segment_s")
    first = int(box.out(SEGMENTS))
    box.wait_until("more segments", f'test "$({SEGMENTS})" -gt {first}', timeout=300)
    answer = box.out("venuecam status")
    assert "CAM_A" in answer and "recording" in answer
    # Debian's kernel has no Pi H.264 encoder device: software x264, and status says so.
    assert "(libx264)" in answer
    record(**{f"{box.machine}_status_sample": answer.splitlines()[:3]})


def test_leds_are_driven_on_the_real_gpio_lines(box: qemu_pi.PiBox) -> None:
    box.wait_until("the LED lines taken", f"{DEBUG_GPIO} | grep -c venuecam | grep -q 3", timeout=600)
    lines = led_lines(box)
    assert set(lines) == set(LED_PINS.values()), lines
    info = box.out("gpioinfo")
    for pin in LED_PINS.values():
        assert re.search(rf'"GPIO{pin}"\s+output\s+consumer="venuecam"', info) or re.search(
            rf"GPIO{pin}.*venuecam", info
        ), info
    # The watchdog reaches its probe target (the box's own sshd): the online LED is on.
    box.wait_until(
        "the online LED on", DEBUG_GPIO + " | grep -E 'GPIO17 +[|]venuecam +[)] out hi'", timeout=300
    )


def test_watchdogs_are_set_and_the_stack_pings_systemd(box: qemu_pi.PiBox) -> None:
    # The hardware watchdog's driver is kept out under QEMU (its model resets at once when
    # armed): here the settings are checked; `venuecam-hw-check` checks it armed on a Pi.
    conf = box.out("systemd-analyze cat-config systemd/system.conf")
    assert "RuntimeWatchdogSec=15s" in conf
    assert box.out("cat /etc/modules-load.d/venuecam-watchdog.conf").strip().endswith("bcm2835_wdt")
    assert box.out("modinfo -n bcm2835_wdt").strip().endswith(("bcm2835_wdt.ko", "bcm2835_wdt.ko.xz"))
    show = box.out("systemctl show venuecam.service -p WatchdogUSec -p Type -p StatusText")
    assert "Type=notify" in show and "WatchdogUSec=3min" in show
    assert "StatusText=all core programs running" in show


def test_installer_hardware_check_runs_on_the_pi3(pi3_box: qemu_pi.PiBox) -> None:
    box = pi3_box  # once: on the emulated Pi 4 it would check the same emulated parts again
    # QEMU's SD card writes ~1.4 MB/s: the floor a real card must beat (2 MB/s) is lowered.
    status, out = box.run("VENUECAM_HW_MIN_SD_MB_S=0.5 venuecam-hw-check", timeout=600)
    print(f"\n{box.machine} venuecam-hw-check:\n{out[-1500:]}")
    assert status == 0, out[-3000:]
    assert "passed" in out


def test_a_booking_is_recorded_cut_uploaded_and_notified_on_the_pi3(
    pi3_box: qemu_pi.PiBox, services: dict[str, object]
) -> None:
    """The product's flow on the Pi: a booking on the platform, synced over the box's network,
    recorded, cut by stream copy, uploaded to S3 and notified, the object's bytes checked."""
    box, sim_url, s3 = pi3_box, str(services["sim_url"]), services["s3"]
    # A minute ahead: the box must have it before it starts to build it live (its sync runs
    # every 30 s and takes seconds under emulation; one is asked for below as well).
    start = int(time.time()) + 60
    end = start + 16
    date = local(start).date().isoformat()
    booking = {
        "booking_id": "BK-PI-1", "order_detail_id": 789, "field_id": 1, "field_name": "Lapangan A",
        "date": date, "start_time": local(start).strftime("%H:%M:%S"),
        "end_time": local(end).strftime("%H:%M:%S"), "status": "success",
        "user_name": "John Doe", "user_phone": "081234567890",
    }  # fmt: skip
    requests.post(
        f"{sim_url}/_sim/bookings", json={"bookings": [booking], "date": date}, timeout=10
    ).raise_for_status()
    uid = "BK-PI-1-CAM_A-full"
    status, out = box.run("venuecam sync bookings --wait", timeout=240)
    assert status == 0, out
    synced_before_start_s = start - time.time()
    record(raspi3b_booking_synced_before_start_s=round(synced_before_start_s, 1))
    # Not a speed check: a booking the box learns of after it began is cut after it (by
    # design), and the live path below would not be what this run tested.
    assert synced_before_start_s > 2, f"the sync ended {-synced_before_start_s:.0f} s after the start:\n{out}"

    def delivered() -> list[dict[str, object]]:
        notes = requests.get(f"{sim_url}/_sim/notifications", timeout=10).json()["notifications"]
        return [n["payload"] for n in notes if n["payload"].get("unique_id") == uid]

    deadline = time.monotonic() + 900
    while not delivered():
        assert time.monotonic() < deadline, box.out("venuecam status; tail -20 /var/log/venuecam/worker.log")
        time.sleep(5)
    record(raspi3b_booking_end_to_notified_s=round(time.time() - end, 1))
    note = delivered()[0]
    client = s3.client()  # type: ignore[attr-defined]
    key = f"42/1/{date}/BK-PI-1/CAM_A/{uid}.mp4"
    body = client.get_object(Bucket="venue-videos", Key=key)["Body"].read()
    assert hashlib.sha256(body).hexdigest() == note["sha256"] and len(body) == note["size_bytes"]
    assert abs(float(note["duration_seconds"]) - (end - start)) <= 4.5  # a segment of slack
    # Built and sent while the booking was played (clips.live), on the Pi's own ffmpeg and Python.
    worker_log = box.out("cat /var/log/venuecam/worker.log")
    assert f"Upload completed live for {uid}" in worker_log, worker_log[-3000:]


def test_where_a_download_spends_its_time_on_the_pi3(
    pi3_box: qemu_pi.PiBox, services: dict[str, object]
) -> None:
    """The emulated Pi 3's network and CPU, each measured alone (an update's download and
    verify of 22.9 MB took 212 s here: which one is it?). The bytes must arrive whole."""
    box, s3 = pi3_box, services["s3"]
    blob = os.urandom(2 * 2**20)
    s3.client().put_object(Bucket="venue-videos", Key="probe/download.bin", Body=blob)  # type: ignore[attr-defined]
    # Signed for the address the box reaches the store at (the relay passes the Host header on).
    guest = boto3.client("s3", endpoint_url=f"http://{S3_GUEST[0]}:{S3_GUEST[1]}", aws_access_key_id=S3_KEY_ID,
                         aws_secret_access_key=S3_SECRET, region_name="us-east-1")  # fmt: skip
    url = guest.generate_presigned_url(
        "get_object", Params={"Bucket": "venue-videos", "Key": "probe/download.bin"}, ExpiresIn=3600
    )
    script = (
        "import hashlib, time, urllib.request\n"
        f"t = time.monotonic(); data = urllib.request.urlopen({url!r}, timeout=600).read()\n"
        "fetch = time.monotonic() - t\n"
        "t = time.monotonic(); h = hashlib.sha256()\n"
        "for _ in range(8): h.update(data)\n"
        "print(len(data), hashlib.sha256(data).hexdigest(), fetch, time.monotonic() - t)\n"
    )
    status, out = box.run(f"python3 -c {shlex.quote(script)}", timeout=900)
    assert status == 0, out
    size, digest, fetch_s, hash_s = out.split()[-4:]
    assert int(size) == len(blob) and digest == hashlib.sha256(blob).hexdigest()
    record(
        raspi3b_download_kib_per_s=round(len(blob) / 1024 / float(fetch_s), 1),
        raspi3b_sha256_mib_per_s=round(8 * len(blob) / 2**20 / float(hash_s), 1),
    )


def test_online_led_follows_the_network_cable_on_the_pi3(pi3_box: qemu_pi.PiBox) -> None:
    """The watchdog probes the simulator through the box's network: QEMU's monitor pulls the
    cable (`set_link n0 off`), the online LED's GPIO line must go off, then on again with it."""
    box = pi3_box
    on = DEBUG_GPIO + " | grep -E 'GPIO17 +[|]venuecam +[)] out hi'"
    off = DEBUG_GPIO + " | grep -E 'GPIO17 +[|]venuecam +[)] out lo'"
    box.wait_until("ONLINE (online LED on)", on, timeout=300)
    t0 = time.monotonic()
    box.monitor("set_link n0 off")
    try:
        box.wait_until("the online LED off", off, timeout=300, via="serial")
        record(raspi3b_cable_pulled_to_led_off_s=round(time.monotonic() - t0, 1))
        assert "OFFLINE" in box.run("venuecam status", via="serial")[1]
    finally:
        box.monitor("set_link n0 on")
    t1 = time.monotonic()
    box.wait_until("the online LED back on", on, timeout=300, via="serial")
    record(raspi3b_cable_back_to_led_on_s=round(time.monotonic() - t1, 1))
    box.wait_until("ssh back", "true", timeout=300, via="ssh")
    assert "ONLINE" in box.out("venuecam status")


def test_mdns_and_wifi_regulatory_database_are_there(pi3_box: qemu_pi.PiBox) -> None:
    box = pi3_box
    assert box.out("systemctl is-active avahi-daemon").strip() == "active"
    assert "mdns" in box.out("grep ^hosts: /etc/nsswitch.conf")
    assert box.out("ls /lib/firmware/regulatory.db*").strip()
    # The Zero 2 W's and Pi 3's radio firmware (CYW43430 / 43455).
    fw = box.out("ls /lib/firmware/brcm/")
    assert "brcmfmac43430-sdio.raspberrypi,model-zero-2-w.txt" in fw and "brcmfmac43455-sdio.bin" in fw
    # Debian 13's fake-hwclock saves the clock from a timer (bookworm's only from cron).
    assert box.out("systemctl is-enabled fake-hwclock-save.timer fake-hwclock-load.service").split() == [
        "enabled",
        "enabled",
    ]


def test_boot_figures(pi3_box: qemu_pi.PiBox) -> None:
    """Not a check: the boot's timings, recorded for the report (build/image-test-figures.json)."""
    record(raspi3b_argv=" ".join(Path(a).name if a.startswith("/") else a for a in pi3_box.argv[:4]))
    assert pi3_box.timings

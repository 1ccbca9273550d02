#!/opt/venuecam/current/bin/python
"""Show "first boot failed" on the box, in a pattern no healthy box shows.

Run by venuecam-provision-failed.service when first boot rejects (or cannot find)
venuecam.toml. Two signals, so that it shows with or without the venuecam LEDs fitted:

- the Pi's own green ACT LED blinks three times, then pauses (0.15 s on/off, 1.2 s dark),
  through the kernel's `pattern` LED trigger. A healthy box's ACT LED shows the kernel's
  default (a heartbeat: two beats, or SD card activity), never three;
- the venuecam fault LED (the default pin, or --pin: the file may be the broken part)
  blinks fast (0.15 s / 0.15 s).

The reason is in the journal (`journalctl -u venuecam-firstboot`). Without GPIO or an ACT
LED (a QEMU machine) it says so and keeps whatever it could light.
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
from pathlib import Path

from venuecam.config import LedsConfig

LEDS = Path("/sys/class/leds")
# brightness, duration (ms) pairs; each level held (a square wave), three blinks and a pause.
ACT_PATTERN = "1 150 1 0 0 150 0 0 " * 2 + "1 150 1 0 0 1200 0 0"


def log(msg: str) -> None:
    print(f"venuecam-fault-led: {msg}", file=sys.stderr, flush=True)


def activity_leds(leds: Path = LEDS) -> list[Path]:
    """The ACT LED under its names: "ACT" / "led0" (Raspberry Pi kernel), "led-act" or
    "<color>:activity"-style names (mainline device trees)."""
    if not leds.is_dir():
        return []
    out = []
    for led in sorted(leds.iterdir()):
        name = led.name.lower()
        if name in ("act", "led0") or name.endswith(("-act", ":act", ":activity", "_act")):
            out.append(led)
    return out


def show_on_act(led: Path) -> str:
    """Set the three-blink pattern on `led`; fall back to a 5 Hz blink. Returns what was set."""
    for module in ("ledtrig-pattern", "ledtrig-timer"):
        subprocess.run(["modprobe", "-q", module], check=False, capture_output=True)
    try:
        (led / "trigger").write_text("pattern")
        (led / "pattern").write_text(ACT_PATTERN)
        return "pattern"
    except OSError:
        pass
    (led / "trigger").write_text("timer")
    (led / "delay_on").write_text("100")
    (led / "delay_off").write_text("100")
    return "timer"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pin", type=int, default=LedsConfig().fault_pin)
    args = p.parse_args(argv)
    shown = []
    for led in activity_leds():
        try:
            shown.append(f"{led.name} ({show_on_act(led)})")
        except OSError as e:
            log(f"cannot drive {led.name}: {e}")
    try:
        from gpiozero import LED

        from venuecam.leds.service import make_pin_factory

        fault = LED(args.pin, pin_factory=make_pin_factory(""))
        fault.blink(on_time=0.15, off_time=0.15)
        shown.append(f"GPIO{args.pin}")
    except Exception as e:  # no GPIO chip here (a QEMU virt machine): the ACT LED may still show
        log(f"no GPIO for the fault LED ({type(e).__name__}: {e})")
    if not shown:
        log("no LED to show the failure on; see the journal")
        return 0
    log(f"first boot failed, showing it on {', '.join(shown)}; see journalctl -u venuecam-firstboot")
    signal.pause()
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/opt/venuecam/current/bin/python
"""Show "provisioning failed" on the box: the fault LED blinks fast, the Pi's ACT LED beats.

Run by venuecam-provision-failed.service when first boot rejects venuecam.toml. The file
may be the broken part, so the pin is the default fault pin (or --pin). Without GPIO (a
QEMU machine) it says so and exits 0: the journal already carries the reason.
"""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

from venuecam.config import LedsConfig


def heartbeat_activity_led() -> None:
    for name in ("ACT", "led0"):
        trigger = Path("/sys/class/leds") / name / "trigger"
        try:
            trigger.write_text("heartbeat")
            return
        except OSError:
            continue


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pin", type=int, default=LedsConfig().fault_pin)
    args = p.parse_args(argv)
    heartbeat_activity_led()
    try:
        from gpiozero import LED

        led = LED(args.pin)
    except Exception as e:  # no GPIO chip here: nothing to blink
        print(
            f"venuecam-fault-led: no GPIO for the fault LED ({type(e).__name__}); see the journal",
            file=sys.stderr,
        )
        return 0
    led.blink(on_time=0.15, off_time=0.15)
    print(
        f"venuecam-fault-led: blinking GPIO{args.pin}: provisioning failed, see the journal", file=sys.stderr
    )
    signal.pause()
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""A gpiozero pin factory on libgpiod's Python bindings (the `gpiod` module, version 2).

Why our own: the LEDs must light on every base the image ships. The GPIO character device
(/dev/gpiochip*) exists under any kernel, Debian's included, and Debian ships libgpiod's
bindings (python3-libgpiod), while lgpio, RPi.GPIO and pigpio are Raspberry Pi OS packages
or need /dev/gpiomem (a Raspberry Pi kernel driver). No FIFO or working directory is needed.

Pins are named as gpiozero names them (17, "GPIO17", "BOARD11"); the BCM number is the line
offset on the Pi's main GPIO chip, found by its line names (the Pi device trees name each
line "GPIO<n>") or its label. Only what LEDs (and buttons) need: output, input with pull,
state. Board facts come from the firmware's revision code when there is one; without it (a
mainline kernel booted without the Pi firmware, as under QEMU) a 40-pin header is assumed,
which every supported model has.
"""

from __future__ import annotations

import glob
from typing import Any

from gpiozero.exc import PinInvalidFunction, PinInvalidPull, PinSetInput, PinUnknownPi
from gpiozero.pins.local import LocalPiFactory, LocalPiPin, get_pi_revision

CONSUMER = "venuecam"
# The Pi's own GPIO controllers, by the label their kernel driver gives the chip.
PI_CHIP_LABELS = ("pinctrl-bcm2835", "pinctrl-bcm2711", "pinctrl-bcm2712", "pinctrl-rp1")
# A 40-pin board (Pi 3B rev 1.2): the header layout every model we support shares.
FALLBACK_REVISION = 0xA02082


def find_chip(gpiod: Any, paths: list[str] | None = None) -> tuple[str, dict[int, int]]:
    """(chip path, {BCM number: line offset}) of the Pi's GPIO header chip.

    Raises OSError naming what was looked at when there is none (no GPIO on this machine,
    or the device nodes are not allowed)."""
    paths = sorted(glob.glob("/dev/gpiochip*")) if paths is None else paths
    if not paths:
        raise OSError("no /dev/gpiochip* on this machine")
    seen = []
    for path in paths:
        try:
            with gpiod.Chip(path) as chip:
                info = chip.get_info()
                named = _named_lines(chip, info.num_lines)
        except OSError as e:
            seen.append(f"{path}: {e.strerror or e}")
            continue
        if "GPIO17" in named:
            return path, {int(n[4:]): off for n, off in named.items() if n[4:].isdigit()}
        if info.label in PI_CHIP_LABELS:
            return path, {n: n for n in range(info.num_lines)}
        seen.append(f"{path}: {info.label}")
    raise OSError("no Raspberry Pi GPIO chip among " + "; ".join(seen))


def _named_lines(chip: Any, count: int) -> dict[str, int]:
    out = {}
    for offset in range(count):
        name = chip.get_line_info(offset).name or ""
        if name.startswith("GPIO"):
            out[name] = offset
    return out


class GpiodFactory(LocalPiFactory):
    """gpiozero's pin factory over /dev/gpiochip* (`pin_factory = "gpiod"`)."""

    def __init__(self, chip: str | None = None) -> None:
        super().__init__()
        import gpiod  # python3-libgpiod; imported here so the module loads without it

        self._gpiod = gpiod
        paths = [chip] if chip else None
        self.chip_path, self.offsets = find_chip(gpiod, paths)
        self.pin_class = GpiodPin

    def _get_revision(self) -> int:
        try:
            return get_pi_revision()
        except (PinUnknownPi, OSError, ValueError):
            return FALLBACK_REVISION


class GpiodPin(LocalPiPin):
    """One GPIO line, requested from the kernel for as long as the pin is open."""

    def __init__(self, factory: GpiodFactory, info: Any) -> None:
        super().__init__(factory, info)
        bcm = int(info.name[4:])
        if bcm not in factory.offsets:
            raise PinInvalidFunction(f"{info.name} is not a line of {factory.chip_path}")
        self._offset = factory.offsets[bcm]
        self._gpiod = factory._gpiod
        self._function = "input"
        self._pull = "floating"
        self._state = False
        self._request = self._gpiod.request_lines(
            factory.chip_path, consumer=CONSUMER, config={self._offset: self._settings()}
        )

    def _settings(self) -> Any:
        line = self._gpiod.line
        if self._function == "output":
            value = line.Value.ACTIVE if self._state else line.Value.INACTIVE
            return self._gpiod.LineSettings(direction=line.Direction.OUTPUT, output_value=value)
        bias = {"up": line.Bias.PULL_UP, "down": line.Bias.PULL_DOWN}.get(self._pull, line.Bias.DISABLED)
        return self._gpiod.LineSettings(direction=line.Direction.INPUT, bias=bias)

    def close(self) -> None:
        request, self._request = getattr(self, "_request", None), None
        if request is not None:
            request.release()

    def output_with_state(self, state: bool) -> None:
        self._function, self._state = "output", bool(state)
        self._request.reconfigure_lines(config={self._offset: self._settings()})

    def _get_function(self) -> str:
        return self._function

    def _set_function(self, value: str) -> None:
        if value not in ("input", "output"):
            raise PinInvalidFunction(f"invalid function {value!r} for pin {self!r}")
        self._function = value
        self._request.reconfigure_lines(config={self._offset: self._settings()})

    def _get_state(self) -> bool:
        return self._request.get_value(self._offset) == self._gpiod.line.Value.ACTIVE

    def _set_state(self, value: bool) -> None:
        if self._function != "output":
            raise PinSetInput(f"cannot set state of pin {self!r}: it is an input")
        self._state = bool(value)
        line = self._gpiod.line
        self._request.set_value(self._offset, line.Value.ACTIVE if value else line.Value.INACTIVE)

    def _get_pull(self) -> str:
        return self._pull

    def _set_pull(self, value: str) -> None:
        if value not in ("up", "down", "floating"):
            raise PinInvalidPull(f"invalid pull {value!r} for pin {self!r}")
        self._pull = value
        if self._function == "input":
            self._request.reconfigure_lines(config={self._offset: self._settings()})

    def _enable_event_detect(self) -> None:
        raise PinInvalidFunction("edge events are not used by venuecam's gpiod factory")

    def _disable_event_detect(self) -> None:
        pass


def available() -> str | None:
    """None when the GPIO chip can be opened, else why not (for status and the journal)."""
    try:
        import gpiod
    except ImportError:
        return "libgpiod's Python bindings (python3-libgpiod) are not installed"
    try:
        find_chip(gpiod)
    except OSError as e:
        return str(e)
    return None

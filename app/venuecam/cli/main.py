"""The `venuecam` command. Subcommands load lazily so `venuecam status` starts fast.

Each subcommand module has `add_arguments(parser)` and `run(args) -> int`. A module whose
options are all on/off switches may also list them in `SWITCHES` ("--json", ...): a command
line made only of those is read without argparse (which, with the gettext, locale and shutil
it pulls in, is a tenth of `venuecam status`'s start-up); anything else, `--help` and mistakes
included, goes through argparse as usual.
"""

from __future__ import annotations

import importlib
import sys
from types import SimpleNamespace

TYPE_CHECKING = False  # no `typing` at run time: `venuecam status` starts without it
if TYPE_CHECKING:
    from typing import Any

# name -> (module, one-line help). Programs supervisord runs are marked (program).
COMMANDS: dict[str, tuple[str, str]] = {
    "status": ("venuecam.cli.status_cmd", "what the box is doing, at a glance (--json for scripts)"),
    "queue": ("venuecam.cli.queue_cmd", "list, retry or process the task queue"),
    "bookings": ("venuecam.cli.bookings_cmd", "bookings known to the box"),
    "sync": ("venuecam.cli.sync_cmd", "start a booking sync now"),
    "snapshot": ("venuecam.cli.snapshot_cmd", "a JPEG of what a camera sees now (-o FILE)"),
    "jobs": ("venuecam.cli.jobs_cmd", "sync jobs and their logs"),
    "config": ("venuecam.cli.config_cmd", "validate the config, or --dump it with secrets masked"),
    "update": (
        "venuecam.cli.update_cmd",
        "install a signed release behind the health gate (--status, --rollback)",
    ),
    "capture": ("venuecam.capture.main", "(program) record one camera into segments"),
    "worker": ("venuecam.worker.main", "(program) the huey consumer: sync, clips, uploads, notifications"),
    "watchdog": (
        "venuecam.watchdog.main",
        "(program) connectivity probes, wake the queue on reconnect, LEDs",
    ),
    "statusd": ("venuecam.statusd.main", "(program) the status socket"),
    "supervise": ("venuecam.supervise", "write supervisord's config from venuecam.toml and run supervisord"),
    "simulator": ("venuecam.simulator.main", "run the booking platform simulator (demo and tests)"),
    "demo": ("venuecam.demo", "run the whole appliance locally with a simulator and a local S3"),
}


def _usage() -> str:
    lines = ["usage: venuecam [--config PATH] COMMAND [...]", "", "commands:"]
    lines += [f"  {name:<10} {help_}" for name, (_, help_) in COMMANDS.items()]
    lines += ["", "The config is --config, else $VENUECAM_CONFIG, else /etc/venuecam/venuecam.toml."]
    return "\n".join(lines)


def _switches_only(module: Any, rest: list[str], config_path: str | None) -> SimpleNamespace | None:
    """The parsed arguments if `rest` is only the module's SWITCHES (each at most once), else None."""
    switches = getattr(module, "SWITCHES", None)  # only modules that opt in
    if switches is None or not set(rest) <= set(switches) or len(set(rest)) != len(rest):
        return None
    values = {flag.lstrip("-").replace("-", "_"): flag in rest for flag in switches}
    return SimpleNamespace(config=config_path, **values)


def _parse(module: Any, name: str, rest: list[str], config_path: str | None) -> Any:
    import argparse

    parser = argparse.ArgumentParser(prog=f"venuecam {name}", description=COMMANDS[name][1])
    parser.add_argument("--config", default=config_path, help="path of venuecam.toml")
    module.add_arguments(parser)
    return parser.parse_args(rest)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    config_path: str | None = None
    while argv and argv[0].startswith("--config"):
        opt = argv.pop(0)
        if "=" in opt:
            config_path = opt.split("=", 1)[1]
        elif argv:
            config_path = argv.pop(0)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0
    if argv[0] in ("-V", "--version"):
        from venuecam import __version__

        print(__version__)
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"venuecam: unknown command {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[name][0])
    # A program's LEAVE_OUT (see `lean`) before argparse, which imports shutil and so bz2/lzma.
    leave_out = getattr(module, "LEAVE_OUT", ())
    if leave_out:
        from venuecam import lean

        lean.leave_out(leave_out)
    args = _switches_only(module, rest, config_path) or _parse(module, name, rest, config_path)
    try:
        return int(module.run(args) or 0)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `venuecam bookings | head`: the reader left; not an error
        sys.stderr.close()
        return 0
    except Exception as e:  # the edge of the program: one clear line, not a traceback
        from venuecam.errors import VenuecamError
        from venuecam.logs import redact

        if isinstance(e, VenuecamError):
            print(f"venuecam {name}: {redact(str(e))}", file=sys.stderr)
            return 1
        raise

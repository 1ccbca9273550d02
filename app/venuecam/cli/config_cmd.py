"""`venuecam config [--dump] [--check FILE]`: validate the config; show it, secrets masked."""

from __future__ import annotations

import argparse

from venuecam import config, config_dump


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dump", action="store_true", help="print the effective config (secrets masked)")
    p.add_argument("--check", metavar="FILE", help="validate FILE instead of the configured path")


def run(args: argparse.Namespace) -> int:
    cfg = config.load(args.check or args.config)
    if args.dump:
        print(config_dump.dump(cfg), end="")
    else:
        print(f"{cfg.source_path}: ok ({len(cfg.cameras)} cameras)")
    return 0

"""`venuecam statusd`: the status socket program (supervisord runs it)."""

from __future__ import annotations

import argparse
import signal
import threading
from typing import Any

from venuecam import lean

# Modules statusd never needs whose import maps OpenSSL (libssl + libcrypto: ~4-5 MB of RSS):
# http.client, xmlrpc and peewee import them only opportunistically and work without them
# (hashlib falls back to its built-in digests). Left out only inside this program.
LEAVE_OUT = lean.OPENSSL + lean.ARCHIVE_COMPRESSION  # `venuecam` applies it before argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--tcp-port", type=int, default=None, help="also listen on 127.0.0.1:PORT (overrides the config)"
    )


def run(args: argparse.Namespace) -> int:
    from venuecam import config, db, logs
    from venuecam.statusd.app import StatusApp
    from venuecam.statusd.server import bind_lan, bind_tcp, bind_unix, make_executor

    cfg = config.load(args.config)
    log = logs.setup("statusd", cfg.secrets())
    database = db.open_db(cfg.db_path)
    database.close()  # each answering thread opens its own connection
    app = StatusApp(cfg)
    executor = make_executor()
    servers: list[Any] = [bind_unix(app, cfg.status_socket, cfg.status.socket_group, executor)]
    log.info("%s listening on %s", logs.STATUS, cfg.status_socket)
    port = (
        args.tcp_port
        if args.tcp_port is not None
        else (cfg.status.tcp_port if cfg.status.tcp_enabled else None)
    )
    if port is not None:
        servers.append(bind_tcp(app, port, executor))
        log.info("%s listening on 127.0.0.1:%d", logs.STATUS, port)
    if cfg.status.lan_enabled:
        try:
            servers.append(bind_lan(app, cfg.status.lan_address, cfg.status.lan_port, executor))
        except OSError as e:
            # The socket still serves (and `venuecam status` says what is wrong in the log).
            log.error("%s LAN listener on %s:%d failed: %s", logs.STATUS, cfg.status.lan_address,
                      cfg.status.lan_port, e.strerror or e)  # fmt: skip
        else:
            log.info("%s installer's page on the LAN at %s:%d (token required, read-only)", logs.STATUS,
                     cfg.status.lan_address, cfg.status.lan_port)  # fmt: skip

    stop = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        stop.set()  # only record; the main thread acts

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    threads = [
        threading.Thread(target=s.serve_forever, kwargs={"poll_interval": 0.5}, daemon=True) for s in servers
    ]
    for t in threads:
        t.start()
    stop.wait()
    log.info("%s stopping", logs.STATUS)
    for s in servers:
        s.shutdown()
        s.server_close()
    executor.shutdown(wait=False, cancel_futures=True)
    try:
        cfg.status_socket.unlink()
    except FileNotFoundError:
        pass
    return 0

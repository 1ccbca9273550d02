"""Programs that leave modules out (see `venuecam.lean`) still do their job without them.

Each case runs in a fresh interpreter: leaving a module out is for a whole process.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

from venuecam import demo

JSON_WITHOUT_CHARSET = textwrap.dedent(
    """
    import http.server, json, sys, threading
    from venuecam import lean
    from venuecam.worker import main as worker_main

    lean.leave_out(worker_main.LEAVE_OUT)  # as `venuecam worker` does
    import requests

    BODIES = {
        "/booking": ("application/json", json.dumps({"court": "Quadra São João"}, ensure_ascii=False)),
        # An error body in a type `requests` has no default charset for: decoded as UTF-8.
        "/problem": ("application/problem+json", '{"detail": "Lapangan 2 — penuh"}'),
    }

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            kind, text = BODIES[self.path]
            body = text.encode()
            self.send_response(200)
            self.send_header("Content-Type", kind)  # no charset on purpose
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_port}"
    assert requests.get(base + "/booking", timeout=5).json() == {"court": "Quadra São João"}
    assert requests.get(base + "/problem", timeout=5).text == '{"detail": "Lapangan 2 — penuh"}'
    assert sys.modules.get("charset_normalizer") is None and sys.modules.get("chardet") is None
    server.shutdown()
    print("ok")
    """
)


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)


def test_worker_reads_platform_json_and_text_without_a_charset_guesser() -> None:
    done = run_python(JSON_WITHOUT_CHARSET)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"
    assert done.stderr == ""  # no RequestsDependencyWarning either


def test_the_command_leaves_modules_out_before_argparse_imports_them(tmp_path: Path) -> None:
    cfg = tmp_path / "venuecam.toml"
    cfg.write_text(demo.demo_config(tmp_path, 9, 9))
    code = textwrap.dedent(
        f"""
        import sys
        from venuecam.cli.main import main
        # A camera the config does not have: the command parses its arguments, then stops.
        code = main(["--config", {str(cfg)!r}, "capture", "--camera", "no_such_camera"])
        assert code == 1, code
        assert "shutil" in sys.modules  # argparse did run
        left_out = [m for m in ("bz2", "lzma", "_hashlib") if m in sys.modules and sys.modules[m] is not None]
        assert not left_out, left_out
        print("ok")
        """
    )
    done = run_python(code)
    assert done.returncode == 0, done.stderr
    assert "no_such_camera" in done.stderr
    assert done.stdout.strip() == "ok"


def test_supervisord_runs_without_openssl_or_archive_compression(tmp_path: Path) -> None:
    from venuecam.supervise import LEAN_SUPERVISORD

    conf = tmp_path / "supervisord.conf"
    conf.write_text(
        textwrap.dedent(
            f"""
            [supervisord]
            logfile={tmp_path / "supervisord.log"}
            pidfile={tmp_path / "supervisord.pid"}
            nodaemon=true
            [unix_http_server]
            file={tmp_path / "sock"}
            [rpcinterface:supervisor]
            supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface
            [program:sleeper]
            command=sleep 30
            startsecs=0
            """
        )
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", LEAN_SUPERVISORD, "-n", "-c", str(conf)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        ctl = [
            sys.executable,
            "-m",
            "supervisor.supervisorctl",
            "-s",
            f"unix://{tmp_path / 'sock'}",
            "status",
        ]
        for _ in range(100):
            status = subprocess.run(ctl, capture_output=True, text=True, timeout=10)
            if "RUNNING" in status.stdout:
                break
            time.sleep(0.1)
        assert "sleeper" in status.stdout and "RUNNING" in status.stdout, status.stdout + status.stderr
        maps = Path(f"/proc/{proc.pid}/maps").read_text()
        assert "libssl" not in maps and "libbz2" not in maps and "liblzma" not in maps
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out

"""The status client's own parts: the config peek (agrees with tomllib or steps aside) and
the small HTTP reader. The client against a real statusd is in test_cli.py/test_statusd.py."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from venuecam.errors import ConfigError
from venuecam.statusd.client import SOCKET_SETTINGS, BadResponse, parse_response, socket_path
from venuecam.statusd.config_peek import peek

PLAIN = """# venuecam
[device]
device_id = "box"   # a comment
run_dir = "/srv/run"

[[cameras]]
name = "CAMERA_A"

[status]
socket_path = '/tmp/literal.sock' # literal string
"""


def _tomllib_answer(text: str) -> dict[tuple[str, str], object]:
    data = tomllib.loads(text)
    return {(t, k): data[t][k] for t, k in SOCKET_SETTINGS if k in data.get(t, {})}


def test_peek_reads_plain_headers_and_strings_like_tomllib() -> None:
    assert (
        peek(PLAIN, SOCKET_SETTINGS)
        == _tomllib_answer(PLAIN)
        == {
            ("device", "run_dir"): "/srv/run",
            ("status", "socket_path"): "/tmp/literal.sock",
        }
    )
    without = PLAIN.replace('run_dir = "/srv/run"\n', "").replace("socket_path", "# socket_path")
    assert peek(without, SOCKET_SETTINGS) == {} == _tomllib_answer(without)


@pytest.mark.parametrize(
    "text",
    [
        'device.run_dir = "/a"\n',  # dotted key
        'device = { run_dir = "/a" }\n',  # inline table
        '[device]\nrun_dir = "/a\\tb"\n',  # an escape
        '[device]\nrun_dir = """/a"""\n',  # multi-line string
        '[device]\nnote = """\n[status]\nsocket_path = "/fake"\n"""\nrun_dir = "/a"\n',
        '[device]\nrun_dir = "/a"\nrun_dir = "/b"\n',  # twice (invalid TOML)
        '["device"]\nrun_dir = "/a"\n',  # quoted header
        '[device.sub]\nrun_dir = "/a"\n',  # dotted header
        "[device]\nrun_dir = 5\n",  # not a string
        '[device]\nrun_dir = "/a" trailing\n',  # garbage after the value
        '[device]\ndata_dir = "/x/run_dir"\n',  # the name inside another value
    ],
)
def test_peek_steps_aside_for_anything_but_the_plain_shape(text: str) -> None:
    assert peek(text, SOCKET_SETTINGS) is None


def test_socket_path_falls_back_to_tomllib_and_reports_bad_toml(tmp_path: Path) -> None:
    dotted = tmp_path / "dotted.toml"
    dotted.write_text('device.run_dir = "/srv/x"\nstatus = { socket_path = "" }\n')
    assert socket_path(str(dotted)) == "/srv/x/status.sock"
    plain = tmp_path / "plain.toml"
    plain.write_text(PLAIN)
    assert socket_path(str(plain)) == "/tmp/literal.sock"
    broken = tmp_path / "broken.toml"
    broken.write_text('[device]\nrun_dir = "/a"\nrun_dir = "/b"\n')
    with pytest.raises(ConfigError, match="not valid TOML"):
        socket_path(str(broken))
    with pytest.raises(ConfigError, match="config file not found"):
        socket_path(str(tmp_path / "missing.toml"))


def test_parse_response_takes_the_declared_body_and_rejects_cut_answers() -> None:
    raw = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}extra"
    assert parse_response(raw) == (200, {"content-type": "application/json", "content-length": "2"}, b"{}")
    assert parse_response(b"HTTP/1.0 404 Not Found\r\n\r\nno length")[2] == b"no length"
    for bad in (
        b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",
        b"HTTP/1.1 200 OK\r\nContent-Len",
        b"SSH-2.0-OpenSSH\r\n\r\n",
        b"HTTP/1.1 abc\r\n\r\n",
    ):
        with pytest.raises(BadResponse):
            parse_response(bad)


def test_status_switches_read_without_argparse_match_argparse() -> None:
    from venuecam.cli import main, status_cmd

    for rest in ([], ["--json"], ["--no-color", "--json"]):
        quick = main._switches_only(status_cmd, rest, "/x.toml")
        assert quick is not None
        assert vars(quick) == vars(main._parse(status_cmd, "status", rest, "/x.toml"))
    for rest in (["--json", "--json"], ["-h"], ["--config", "/y.toml"], ["--jso"]):
        assert main._switches_only(status_cmd, rest, "/x.toml") is None  # argparse decides
    from venuecam.cli import queue_cmd

    assert main._switches_only(queue_cmd, [], None) is None  # only modules with SWITCHES opt in

"""What the uploader puts on the wire, seen by a recording TCP proxy in front of a real moto server."""

from __future__ import annotations

import contextlib
import os
import re
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import S3Server
from venuecam.config import Config
from venuecam.storage.client import make_client
from venuecam.storage.multipart import MIB, upload_file

BUCKET = "venue-videos"
KEY = "42/1/2025-01-23/BK-1/CAMERA_A/BK-1-CAMERA_A-full.mp4"
# A request line and its header block. Part bodies are random bytes: a false match would need
# them to contain a whole request line followed by a blank line.
REQUEST_HEAD = re.compile(rb"(PUT|POST|GET|HEAD|DELETE) (/\S*) HTTP/1\.1\r\n(.*?)\r\n\r\n", re.DOTALL)


class RecordingProxy:
    """Forwards TCP from a local port to the store and keeps every byte the client sent,
    per connection, in the order connections were accepted."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.sent: list[bytearray] = []
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._sockets: list[socket.socket] = []
        self._accepting = threading.Thread(target=self._accept, daemon=True)
        self._accepting.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return  # closed
            up = socket.create_connection(self.upstream)
            record = bytearray()
            with self._lock:
                self.sent.append(record)
                self._sockets += [conn, up]
            for src, dst, rec in ((conn, up, record), (up, conn, None)):
                t = threading.Thread(target=self._pipe, args=(src, dst, rec), daemon=True)
                t.start()
                self._threads.append(t)

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket, record: bytearray | None) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(1 << 16):
                if record is not None:
                    record += data
                dst.sendall(data)
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)

    def requests(self) -> list[tuple[str, str, dict[str, str]]]:
        """(method, path, headers with lower-case names) of every request, connection by connection."""
        out = []
        with self._lock:
            streams = [bytes(r) for r in self.sent]
        for stream in streams:
            for m in REQUEST_HEAD.finditer(stream):
                headers = {}
                for line in m.group(3).split(b"\r\n"):
                    name, _, value = line.partition(b":")
                    headers[name.decode().strip().lower()] = value.decode().strip()
                out.append((m.group(1).decode(), m.group(2).decode(), headers))
        return out

    def close(self) -> None:
        self.listener.close()
        for s in self._sockets:
            with contextlib.suppress(OSError):
                s.close()
        for t in self._threads:
            t.join(5)


@pytest.fixture
def proxy(s3: S3Server) -> Iterator[RecordingProxy]:
    host, port = s3.endpoint.removeprefix("http://").rsplit(":", 1)
    p = RecordingProxy((host, int(port)))
    yield p
    p.close()


@pytest.fixture
def proxied_client(make_config: Callable[..., Config], proxy: RecordingProxy) -> Any:
    cfg = make_config(storage={"endpoint_url": f"http://127.0.0.1:{proxy.port}"})
    return make_client(cfg.storage)


def part_requests(proxy: RecordingProxy) -> dict[int, dict[str, str]]:
    """The headers of each UploadPart request, by part number."""
    out = {}
    for method, path, headers in proxy.requests():
        m = re.search(r"partNumber=(\d+)", path)
        if method == "PUT" and m:
            out[int(m.group(1))] = headers
    return out


def upload(client: Any, path: Path, **kw: Any) -> Any:
    return upload_file(client, BUCKET, KEY, path, part_size=5 * MIB, threshold=8 * MIB, state={},
                       save_state=lambda s: None, **kw)  # fmt: skip


@pytest.mark.parametrize("parallel_parts", [1, 4])
def test_only_the_first_part_waits_for_100_continue(
    tmp_path: Path, s3: S3Server, proxy: RecordingProxy, proxied_client: Any, parallel_parts: int
) -> None:
    data = os.urandom(17 * MIB)
    (tmp_path / "v.mp4").write_bytes(data)
    result = upload(proxied_client, tmp_path / "v.mp4", parallel_parts=parallel_parts)
    assert result.parts == 4
    parts = part_requests(proxy)
    assert sorted(parts) == [1, 2, 3, 4]
    # The first part asks the store for a go-ahead (a refusal comes before the body); the
    # rest go straight out rather than idling a round trip each.
    waiting = [n for n, h in parts.items() if h.get("expect", "").lower() == "100-continue"]
    assert waiting == [1]
    assert s3.client().get_object(Bucket=BUCKET, Key=KEY)["Body"].read() == data


def test_parts_carry_content_md5_and_are_not_hashed_for_the_signature(
    tmp_path: Path, proxy: RecordingProxy, proxied_client: Any
) -> None:
    (tmp_path / "v.mp4").write_bytes(os.urandom(11 * MIB))
    upload(proxied_client, tmp_path / "v.mp4")
    parts = part_requests(proxy)
    assert sorted(parts) == [1, 2, 3]
    for h in parts.values():
        assert re.fullmatch(r"[A-Za-z0-9+/]{22}==", h["content-md5"])
        assert h["x-amz-content-sha256"] == "UNSIGNED-PAYLOAD"
        assert "content-md5" in h["authorization"]  # the MD5 is signed: the body cannot be swapped


@pytest.mark.skipif(not hasattr(socket, "TCP_NOTSENT_LOWAT"), reason="needs TCP_NOTSENT_LOWAT (Linux)")
def test_upload_sockets_keep_little_unsent_data_in_the_kernel(make_config: Callable[..., Config]) -> None:
    """The next part starts once the previous one is in its socket: how much may wait there
    unsent decides how long two parts share the link (client.NOTSENT_LOWAT_BYTES). The options
    the client's connection pools get, applied to a real socket, set it."""
    from venuecam.storage.client import NOTSENT_LOWAT_BYTES

    client = make_client(make_config().storage)
    # moto closes every connection after its answer, so none is left to look at after an
    # upload; the pool's options are what each new connection gets (storage.botocore_patch.install_socket_options).
    opts = client._endpoint.http_session._manager.connection_pool_kw["socket_options"]
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        for level, name, value in opts:
            s.setsockopt(level, name, value)
        assert s.getsockopt(socket.IPPROTO_TCP, socket.TCP_NOTSENT_LOWAT) == NOTSENT_LOWAT_BYTES

"""Malformed, huge and slow requests get JSON errors (or a closed connection) and never stall
a normal client, who keeps getting answers throughout."""

from __future__ import annotations

import json
import random
import socket
import threading
import time

from fixtures_status import StatusBox

MALFORMED = [
    b"\x00\x01\x02garbage\r\n\r\n",
    b"GET\r\n\r\n",
    b"BREW /coffee HTCPCP/1.0\r\n\r\n",
    b"GET /api/queue-status HTTP/9.9\r\n\r\n",
    b"GET /" + b"a" * 70_000 + b" HTTP/1.1\r\n\r\n",  # request line too long
    b"GET / HTTP/1.1\r\n" + b"".join(b"X-H%d: v\r\n" % i for i in range(200)) + b"\r\n",  # too many headers
    b"GET / HTTP/1.1\r\nX-Big: " + b"v" * 70_000 + b"\r\n\r\n",  # header line too long
    b"POST /api/queue/retry HTTP/1.1\r\nContent-Length: 999999999\r\n\r\n",
    b"POST /api/queue/retry HTTP/1.1\r\nContent-Length: -5\r\n\r\n",
    b"POST /api/queue/retry HTTP/1.1\r\nContent-Length: abc\r\n\r\n",
    b"POST /api/queue/retry HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    b"POST /api/queue/retry HTTP/1.1\r\nContent-Length: 9\r\nContent-Type: application/json\r\n\r\n{not json",
    b"POST /api/request-booking-video HTTP/1.1\r\nContent-Length: 4\r\n\r\n\xff\xfe\xfd\xfc",
    b"POST /api/request-booking-video HTTP/1.1\r\nContent-Type: text/xml\r\nContent-Length: 4\r\n\r\n<a/>",
    b"GET /api/bookings/%ff%fe HTTP/1.1\r\n\r\n",
    b"GET /api/bookings?" + b"&".join(b"k%d=v" % i for i in range(100)) + b" HTTP/1.1\r\n\r\n",
    b"DELETE /api/jobs HTTP/1.1\r\n\r\n",
    b"GET /../../etc/passwd HTTP/1.1\r\n\r\n",
]


def raw_exchange(path: str, payload: bytes, timeout: float = 15.0) -> bytes:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(path)
        try:
            s.sendall(payload)
            s.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # the server may hang up before reading everything (that is an answer too)
        chunks = []
        try:
            while chunk := s.recv(65536):
                chunks.append(chunk)
        except ConnectionResetError:
            pass
        return b"".join(chunks)


def assert_json_error(answer: bytes, payload: bytes) -> None:
    if not answer:
        return  # closed without an answer: allowed for input that is not HTTP at all
    head, _, body = answer.partition(b"\r\n\r\n")
    status_line = head.split(b"\r\n", 1)[0]
    assert status_line.startswith(b"HTTP/1."), (payload[:60], answer[:200])
    code = int(status_line.split()[1])
    assert 400 <= code < 600, (payload[:60], status_line)
    parsed = json.loads(body.split(b"\n", 1)[0])
    assert parsed["success"] is False and parsed["message"], parsed


def test_fuzzed_and_slow_requests_never_stall_a_normal_client(status_box: StatusBox) -> None:
    path = str(status_box.cfg.status_socket)
    answers: list[int] = []
    stop = threading.Event()

    def normal_client() -> None:
        while not stop.is_set():
            status, body = status_box.client.get("/api/queue-status")
            answers.append(status)
            assert body["success"] is True

    # slow clients: connect and say (almost) nothing; each holds only its own thread
    slow = []
    for i in range(20):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(path)
        if i % 2:
            s.sendall(b"GET /api/queue-status HTTP/1.1\r\nHost: x\r\n")  # headers never finish
        slow.append(s)
    worker = threading.Thread(target=normal_client)
    worker.start()
    try:
        for payload in MALFORMED:
            assert_json_error(raw_exchange(path, payload), payload)
        rng = random.Random(1234)
        for _ in range(100):
            payload = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 400))) + b"\r\n\r\n"
            assert_json_error(raw_exchange(path, payload), payload)
        before = len(answers)
        time.sleep(0.5)  # normal answers keep coming while the slow clients sit there
    finally:
        stop.set()
        worker.join(30)
        for s in slow:
            s.close()
    assert not worker.is_alive()
    assert len(answers) > before > 0 and set(answers) == {200}
    # and the daemon is the same process, still healthy
    assert status_box.client.get("/healthz")[0] == 200
    assert "Traceback" not in status_box.log()

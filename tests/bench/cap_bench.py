"""The upload cap (`storage.max_upload_mbit`), measured against the moto S3 server on loopback,
where the link itself is far faster than the cap, so the cap is all that holds uploads back.

- `upload_cap_8mbit_ratio`: one 12 MiB multipart upload (5 MiB parts) with an 8 Mbit/s cap:
  object bytes / elapsed (create to verified) / the cap. Bodies are held to the cap / 1.05
  (`ratecap.WIRE_OVERHEAD`: the TCP/IP, Ethernet and HTTP headers fit under the cap), so
  0.952 is the most; near it, the cap is not wasted.
- `upload_cap_8mbit_3x_ratio`: three 6 MiB uploads at once (three clients, as three worker
  threads), together, against the same cap: the cap is the box's, not each upload's.
- `upload_cap_peak_1s_ratio`: the most bytes (HTTP headers and bodies) the store received in
  any 1 s (a counting TCP proxy in front of it, sampled every 50 ms) over both capped runs /
  one second of the cap: how far above the cap a burst goes (the bucket's burst is a quarter
  second of its rate, so about 1.25 / 1.05).
- `upload_uncapped_mbit`: the same 12 MiB upload without a cap, in the same run: what the
  cap held back from.

Run alone: .venv/bin/python tests/bench/run.py --only cap_bench
"""

from __future__ import annotations

import os
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any

TESTS = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(TESTS))

from conftest import S3_KEY_ID, S3_SECRET, start_moto  # noqa: E402

CAP_MBIT = 8.0
BUCKET = "venue-videos"
MIB = 1024 * 1024


class CountingProxy:
    """TCP from a local port to the store; counts the bytes going to the store as they arrive."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.arrivals: list[tuple[float, int]] = []  # (monotonic time, bytes)
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            up = socket.create_connection(self.upstream)
            threading.Thread(target=self._pipe, args=(conn, up, True), daemon=True).start()
            threading.Thread(target=self._pipe, args=(up, conn, False), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket, count: bool) -> None:
        try:
            while chunk := src.recv(65536):
                if count:
                    with self._lock:
                        self.arrivals.append((time.monotonic(), len(chunk)))
                dst.sendall(chunk)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def peak(self, window_s: float, since: float, step_s: float = 0.05) -> int:
        """The most bytes that arrived in any `window_s` after `since`."""
        with self._lock:
            arrivals = [(t, n) for t, n in self.arrivals if t >= since]
        if not arrivals:
            return 0
        best, t = 0, arrivals[0][0]
        while t <= arrivals[-1][0]:
            best = max(best, sum(n for at, n in arrivals if t <= at < t + window_s))
            t += step_s
        return best

    def close(self) -> None:
        self.listener.close()


def _upload(storage: Any, path: Path, key: str) -> None:
    from venuecam.storage.client import make_client
    from venuecam.storage.multipart import upload_file

    result = upload_file(make_client(storage), BUCKET, key, path, part_size=5 * MIB, threshold=5 * MIB,
                         state={}, save_state=lambda _s: None)  # fmt: skip
    if result.size != path.stat().st_size:
        raise RuntimeError(f"{key}: stored {result.size} bytes of {path.stat().st_size}")


def _timed(storage: Any, files: dict[str, Path]) -> float:
    """Upload `files` ({key: path}) at once, one thread and client each; seconds taken."""
    errors: list[BaseException] = []

    def one(key: str, path: Path) -> None:
        try:
            _upload(storage, path, key)
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=one, args=kv) for kv in files.items()]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(600)
    if errors:
        raise errors[0]
    return time.monotonic() - started


def run(workdir: Path) -> dict[str, float]:
    from venuecam.cap_schedule import CapWindow
    from venuecam.config import StorageConfig

    big = workdir / "big.bin"
    big.write_bytes(os.urandom(12 * MIB))
    smalls = {}
    for n in range(3):
        smalls[f"bench/3x-{n}.bin"] = workdir / f"small-{n}.bin"
        smalls[f"bench/3x-{n}.bin"].write_bytes(os.urandom(6 * MIB))
    s3 = start_moto()
    proxy = CountingProxy(("127.0.0.1", int(s3.endpoint.rsplit(":", 1)[1])))
    try:
        s3.client().create_bucket(Bucket=BUCKET)
        base = {"bucket": BUCKET, "access_key_id": S3_KEY_ID, "secret_access_key": S3_SECRET,
                "endpoint_url": f"http://127.0.0.1:{proxy.port}", "region": "us-east-1"}  # fmt: skip
        free = StorageConfig(**base)
        capped = StorageConfig(**base, max_upload_mbit=(CapWindow(CAP_MBIT, 0, 24 * 60),))
        cap_bytes_s = CAP_MBIT * 1e6 / 8

        uncapped_s = _timed(free, {"bench/free.bin": big})
        print(f"   no cap: 12 MiB in {uncapped_s:.2f} s", flush=True)
        since = time.monotonic()
        one_s = _timed(capped, {"bench/capped.bin": big})
        print(f"   cap {CAP_MBIT:g} Mbit/s: 12 MiB in {one_s:.2f} s", flush=True)
        three_s = _timed(capped, smalls)
        print(f"   cap {CAP_MBIT:g} Mbit/s: 3 x 6 MiB at once in {three_s:.2f} s", flush=True)
        peak = proxy.peak(1.0, since)
        for key in ("bench/free.bin", "bench/capped.bin", *smalls):
            want = (big if key in ("bench/free.bin", "bench/capped.bin") else smalls[key]).read_bytes()
            if s3.client().get_object(Bucket=BUCKET, Key=key)["Body"].read() != want:
                raise RuntimeError(f"{key}: the stored bytes differ")
    finally:
        proxy.close()
        s3.proc.terminate()
        s3.proc.wait(10)
    return {
        "upload_cap_8mbit_ratio": big.stat().st_size / one_s / cap_bytes_s,
        "upload_cap_8mbit_3x_ratio": 3 * 6 * MIB / three_s / cap_bytes_s,
        "upload_cap_peak_1s_ratio": peak / cap_bytes_s,
        "upload_uncapped_mbit": big.stat().st_size * 8 / 1e6 / uncapped_s,
    }


if __name__ == "__main__":
    import json
    import tempfile

    with tempfile.TemporaryDirectory(prefix="venuecam-cap-bench-") as d:
        print(json.dumps(run(Path(d)), indent=2))

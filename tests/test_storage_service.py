"""upload_video: three objects, keys per the contract, URLs that work, resume across objects."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from conftest import S3Server
from venuecam.config import Config
from venuecam.errors import BadInputError
from venuecam.models import Video
from venuecam.storage.client import make_client
from venuecam.storage.multipart import MIB, UploadStopped
from venuecam.storage.service import upload_video

BUCKET = "venue-videos"
# 2025-01-23 10:00 in Asia/Jakarta (UTC+7), the test config's time zone.
START_TS = 1737601200.0
BASE = "42/1/2025-01-23/BK-123456/CAMERA_A/BK-123456-CAMERA_A-full"


def make_video(
    tmp_path: Path, mp4_size: int = 12 * MIB, booking_id: str = "BK-123456"
) -> tuple[Video, dict[str, bytes]]:
    files = {"mp4": os.urandom(mp4_size), "preview": os.urandom(300_000), "thumb": os.urandom(20_000)}
    for name, data in files.items():
        (tmp_path / f"{name}.bin").write_bytes(data)
    video = Video(
        unique_id=f"{booking_id}-CAMERA_A-full", booking_id=booking_id, camera="CAMERA_A", field_id=1,
        start_ts=START_TS, end_ts=START_TS + 7200, mp4_path=str(tmp_path / "mp4.bin"),
        preview_path=str(tmp_path / "preview.bin"), thumb_path=str(tmp_path / "thumb.bin"),
    )  # fmt: skip
    return video, files


class Ledger:
    def __init__(self) -> None:
        self.text = "{}"

    def save(self, state: dict[str, Any]) -> None:
        self.text = json.dumps(state)

    def load(self) -> dict[str, Any]:
        return json.loads(self.text)


def count_requests(client: Any) -> list[str]:
    sent: list[str] = []
    for op in ("PutObject", "UploadPart"):
        client.meta.events.register(f"before-call.s3.{op}", lambda model, **_: sent.append(model.name))
    return sent


@pytest.fixture
def cfg(make_config: Callable[..., Config], s3: S3Server) -> Config:
    return make_config(storage={"endpoint_url": s3.endpoint})


def test_uploads_three_objects_with_presigned_urls(
    tmp_path: Path, cfg: Config, s3: S3Server, caplog: pytest.LogCaptureFixture
) -> None:
    video, files = make_video(tmp_path)
    ledger = Ledger()
    progress: list[tuple[int, int]] = []
    with caplog.at_level(logging.INFO):
        out = upload_video(
            cfg, video, ledger.load(), ledger.save, on_progress=lambda d, t: progress.append((d, t))
        )
    assert out["mp4_key"] == f"{BASE}.mp4"
    assert out["preview_key"] == f"{BASE}_preview.mp4"
    assert out["thumbnail_key"] == f"{BASE}.jpg"
    assert out["size_bytes"] == str(12 * MIB)
    for url_name, name in (("mp4_url", "mp4"), ("preview_url", "preview"), ("thumbnail_url", "thumb")):
        query = parse_qs(urlsplit(out[url_name]).query)
        assert query["X-Amz-Expires"] == ["604800"]
        assert cfg.storage.secret_access_key not in out[url_name]
        got = requests.get(out[url_name], timeout=10)
        assert got.status_code == 200 and got.content == files[name]
    total = sum(len(d) for d in files.values())
    assert progress[-1] == (total, total)
    assert f"📤 UPLOAD: Uploading MP4: {tmp_path / 'mp4.bin'}" in caplog.text
    assert "MB/s" in caplog.text
    assert cfg.storage.secret_access_key not in caplog.text
    assert all(p.exists() for p in tmp_path.glob("*.bin"))  # local files are kept


def test_public_base_url_gives_plain_urls(
    make_config: Callable[..., Config], s3: S3Server, tmp_path: Path
) -> None:
    cfg = make_config(storage={"endpoint_url": s3.endpoint, "public_base_url": "https://videos.example.com"})
    video, _ = make_video(tmp_path, mp4_size=1 * MIB)
    out = upload_video(cfg, video, {}, lambda s: None)
    assert out["mp4_url"] == f"https://videos.example.com/{BASE}.mp4"
    assert out["thumbnail_url"] == f"https://videos.example.com/{BASE}.jpg"


def test_resume_skips_verified_objects_and_parts(tmp_path: Path, cfg: Config, s3: S3Server) -> None:
    video, files = make_video(tmp_path)
    ledger = Ledger()
    calls = {"n": 0}

    def stop_after_two_parts() -> bool:
        calls["n"] += 1
        return calls["n"] > 2

    with pytest.raises(UploadStopped):
        upload_video(cfg, video, ledger.load(), ledger.save, should_stop=stop_after_two_parts)
    client = make_client(cfg.storage)
    sent = count_requests(client)
    out = upload_video(cfg, video, ledger.load(), ledger.save, client=client)
    assert sent == ["UploadPart", "PutObject", "PutObject"]  # part 3, preview, thumbnail
    got = s3.client().get_object(Bucket=BUCKET, Key=out["mp4_key"])["Body"].read()
    assert got == files["mp4"]

    # Everything verified: a further call sends nothing and answers the same keys.
    again = count_requests(client)
    assert upload_video(cfg, video, ledger.load(), ledger.save, client=client)["mp4_key"] == out["mp4_key"]
    assert again == []


def test_a_missing_file_is_bad_input_and_sends_nothing(tmp_path: Path, cfg: Config, s3: S3Server) -> None:
    video, _ = make_video(tmp_path, mp4_size=1 * MIB)
    (tmp_path / "preview.bin").unlink()
    state: dict[str, Any] = {}
    with pytest.raises(BadInputError, match="preview file not found"):
        upload_video(cfg, video, state, lambda s: None)
    assert state == {}
    assert s3.client().list_objects_v2(Bucket=BUCKET)["KeyCount"] == 0


def test_an_unsafe_booking_id_is_bad_input(tmp_path: Path, cfg: Config, s3: S3Server) -> None:
    video, _ = make_video(tmp_path, mp4_size=1 * MIB, booking_id="BK-1")
    video.booking_id = "../BK-1"
    with pytest.raises(BadInputError, match="booking_id"):
        upload_video(cfg, video, {}, lambda s: None)
    assert s3.client().list_objects_v2(Bucket=BUCKET)["KeyCount"] == 0

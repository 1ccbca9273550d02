"""The resumable uploader against a real moto S3 server process."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from conftest import S3Server, free_port
from venuecam.config import Config
from venuecam.errors import BadInputError, OfflineError
from venuecam.storage.client import make_client
from venuecam.storage.multipart import MIB, UploadStopped, file_etag, upload_file

BUCKET = "venue-videos"
KEY = "42/1/2025-01-23/BK-1/CAMERA_A/BK-1-CAMERA_A-full.mp4"


class Ledger:
    """Stands in for the ledger row: keeps what save_state wrote, as JSON text."""

    def __init__(self) -> None:
        self.saved: list[str] = []

    def save(self, state: dict[str, Any]) -> None:
        self.saved.append(json.dumps(state, sort_keys=True))

    def load(self) -> dict[str, Any]:
        return json.loads(self.saved[-1]) if self.saved else {}


def count_parts(client: Any) -> list[int]:
    """Part numbers sent by `client`, in order."""
    sent: list[int] = []

    def hook(params: dict[str, Any], **_: Any) -> None:
        sent.append(int(params["PartNumber"]))

    client.meta.events.register("before-parameter-build.s3.UploadPart", hook)
    return sent


@pytest.fixture
def storage_cfg(make_config: Callable[..., Config], s3: S3Server) -> Config:
    return make_config(storage={"endpoint_url": s3.endpoint})


@pytest.fixture
def client(storage_cfg: Config) -> Any:
    return make_client(storage_cfg.storage)


def write_file(path: Path, size: int) -> bytes:
    data = os.urandom(size)
    path.write_bytes(data)
    return data


def stored_bytes(s3: S3Server, key: str = KEY) -> bytes:
    return s3.client().get_object(Bucket=BUCKET, Key=key)["Body"].read()


def upload(client: Any, path: Path, ledger: Ledger, state: dict[str, Any] | None = None, **kw: Any) -> Any:
    return upload_file(
        client, BUCKET, KEY, path, part_size=5 * MIB, threshold=8 * MIB,
        state=state if state is not None else ledger.load(), save_state=ledger.save, **kw,
    )  # fmt: skip


def test_small_file_is_one_verified_put(tmp_path: Path, s3: S3Server, client: Any) -> None:
    data = write_file(tmp_path / "thumb.jpg", 300_000)
    ledger = Ledger()
    sent = count_parts(client)
    result = upload(client, tmp_path / "thumb.jpg", ledger)
    assert stored_bytes(s3) == data
    assert result.parts == 0 and result.size == len(data) and result.etag == result.md5
    assert not sent
    assert ledger.load()["done"]["md5"] == result.md5
    assert s3.client().head_object(Bucket=BUCKET, Key=KEY)["ContentType"] == "image/jpeg"


def test_multipart_upload_is_whole_and_verified(tmp_path: Path, s3: S3Server, client: Any) -> None:
    data = write_file(tmp_path / "v.mp4", 12 * MIB + 123)
    ledger = Ledger()
    sent = count_parts(client)
    progress: list[tuple[int, int]] = []
    result = upload(client, tmp_path / "v.mp4", ledger, on_progress=lambda d, t: progress.append((d, t)))
    assert stored_bytes(s3) == data
    assert sent == [1, 2, 3]
    assert result.parts == 3 and result.etag.endswith("-3")
    assert result.etag == file_etag(tmp_path / "v.mp4", 5 * MIB)[0]
    assert progress[-1] == (len(data), len(data)) and len(progress) == 3
    # The intent was saved before the request, the id before any part (storage/orphans.py).
    intent, with_id, started = (json.loads(s) for s in ledger.saved[:3])
    assert intent["creating"] and "upload_id" not in intent
    assert with_id["upload_id"] and with_id["parts"] == [] and with_id["creating"]
    assert "creating" not in started and started["upload_id"] == with_id["upload_id"]
    assert [len(json.loads(s)["parts"]) for s in ledger.saved[3:6]] == [1, 2, 3]
    assert s3.client().list_multipart_uploads(Bucket=BUCKET).get("Uploads", []) == []


def test_a_finished_upload_is_not_sent_again(tmp_path: Path, s3: S3Server, client: Any) -> None:
    write_file(tmp_path / "v.mp4", 12 * MIB)
    ledger = Ledger()
    first = upload(client, tmp_path / "v.mp4", ledger)
    sent = count_parts(client)
    again = upload(client, tmp_path / "v.mp4", ledger)
    assert again == first and sent == []


def stop_after_parts(n: int) -> Callable[[], bool]:
    calls = {"n": 0}

    def should_stop() -> bool:
        calls["n"] += 1
        return calls["n"] > n

    return should_stop


def test_resume_sends_only_the_missing_parts(tmp_path: Path, s3: S3Server, storage_cfg: Config) -> None:
    data = write_file(tmp_path / "v.mp4", 12 * MIB)
    ledger = Ledger()
    first_client = make_client(storage_cfg.storage)
    with pytest.raises(UploadStopped, match="before part 2/3"):
        upload(first_client, tmp_path / "v.mp4", ledger, should_stop=stop_after_parts(1))
    saved = ledger.load()
    assert len(saved["parts"]) == 1
    listed = s3.client().list_parts(Bucket=BUCKET, Key=KEY, UploadId=saved["upload_id"])["Parts"]
    assert [p["PartNumber"] for p in listed] == [1]

    # A new process: a new client, the state read back from the ledger.
    second_client = make_client(storage_cfg.storage)
    sent = count_parts(second_client)
    result = upload(second_client, tmp_path / "v.mp4", ledger)
    assert sent == [2, 3]
    assert result.skipped_parts == 1 and result.sent_bytes == len(data) - 5 * MIB
    assert stored_bytes(s3) == data


def test_resume_trusts_the_store_not_the_saved_list(tmp_path: Path, s3: S3Server, client: Any) -> None:
    """A crash between the store's ack and save_state: the part is in the store, not in the state."""
    data = write_file(tmp_path / "v.mp4", 12 * MIB)
    ledger = Ledger()
    with pytest.raises(UploadStopped):
        upload(client, tmp_path / "v.mp4", ledger, should_stop=stop_after_parts(2))
    state = ledger.load()
    state["parts"] = []
    sent = count_parts(client)
    upload(client, tmp_path / "v.mp4", ledger, state=state)
    assert sent == [3]
    assert stored_bytes(s3) == data


def test_a_stored_part_with_other_bytes_is_sent_again(tmp_path: Path, s3: S3Server, client: Any) -> None:
    data = write_file(tmp_path / "v.mp4", 12 * MIB)
    ledger = Ledger()
    with pytest.raises(UploadStopped):
        upload(client, tmp_path / "v.mp4", ledger, should_stop=stop_after_parts(2))
    state = ledger.load()
    # Someone (a bug, a second writer) replaced part 2 with different bytes of the same size.
    s3.client().upload_part(Bucket=BUCKET, Key=KEY, UploadId=state["upload_id"], PartNumber=2,
                            Body=os.urandom(5 * MIB))  # fmt: skip
    sent = count_parts(client)
    upload(client, tmp_path / "v.mp4", ledger)
    assert sent == [2, 3]
    assert stored_bytes(s3) == data


def test_an_aborted_upload_starts_over(tmp_path: Path, s3: S3Server, client: Any) -> None:
    data = write_file(tmp_path / "v.mp4", 12 * MIB)
    ledger = Ledger()
    with pytest.raises(UploadStopped):
        upload(client, tmp_path / "v.mp4", ledger, should_stop=stop_after_parts(1))
    old_id = ledger.load()["upload_id"]
    s3.client().abort_multipart_upload(Bucket=BUCKET, Key=KEY, UploadId=old_id)
    sent = count_parts(client)
    result = upload(client, tmp_path / "v.mp4", ledger)
    assert sent == [1, 2, 3] and result.skipped_parts == 0
    assert stored_bytes(s3) == data
    assert all(json.loads(s).get("upload_id") != old_id for s in ledger.saved[-4:])


def test_a_completion_whose_answer_was_lost_is_recognised(tmp_path: Path, s3: S3Server, client: Any) -> None:
    data = write_file(tmp_path / "v.mp4", 12 * MIB)
    ledger = Ledger()
    upload(client, tmp_path / "v.mp4", ledger)
    # The state as saved after the last part, before the completion was recorded.
    before_done = next(json.loads(s) for s in reversed(ledger.saved) if "done" not in json.loads(s))
    assert len(before_done["parts"]) == 3
    sent = count_parts(client)
    result = upload(client, tmp_path / "v.mp4", ledger, state=before_done)
    assert sent == [] and result.parts == 3
    assert stored_bytes(s3) == data


def test_a_changed_file_starts_a_new_upload(tmp_path: Path, s3: S3Server, client: Any) -> None:
    write_file(tmp_path / "v.mp4", 12 * MIB)
    ledger = Ledger()
    with pytest.raises(UploadStopped):
        upload(client, tmp_path / "v.mp4", ledger, should_stop=stop_after_parts(1))
    data = write_file(tmp_path / "v.mp4", 11 * MIB)  # re-cut clip: other size, other bytes
    sent = count_parts(client)
    upload(client, tmp_path / "v.mp4", ledger)
    assert sent == [1, 2, 3]
    assert stored_bytes(s3) == data
    # The old upload was aborted rather than left to rot.
    assert s3.client().list_multipart_uploads(Bucket=BUCKET).get("Uploads", []) == []


def test_parts_one_at_a_time_when_asked(tmp_path: Path, s3: S3Server, client: Any) -> None:
    data = write_file(tmp_path / "v.mp4", 12 * MIB)
    ledger = Ledger()
    sent = count_parts(client)
    result = upload(client, tmp_path / "v.mp4", ledger, parallel_parts=1)
    assert sent == [1, 2, 3] and result.parts == 3
    assert [[p["n"] for p in json.loads(s)["parts"]] for s in ledger.saved[3:6]] == [[1], [1, 2], [1, 2, 3]]
    assert stored_bytes(s3) == data


def test_a_failed_part_keeps_the_parts_that_finished_after_it(
    tmp_path: Path, s3: S3Server, storage_cfg: Config
) -> None:
    """Part 2's answer is lost while part 3 is on the wire: part 3 is still saved when it is
    acknowledged (out of order), the error comes out once nothing is in flight, and the resume
    finds part 2 in the store (only its answer was lost) and sends nothing again."""
    data = write_file(tmp_path / "v.mp4", 15 * MIB)
    ledger = Ledger()
    first_client = make_client(storage_cfg.storage)
    part3_sending = threading.Event()

    def before_send(request: Any, **_: Any) -> None:
        if "partNumber=3" in request.url:
            part3_sending.set()

    def after_call(context: dict[str, Any], **_: Any) -> None:
        if context.get("venuecam_part") == 2:
            assert part3_sending.wait(30), "part 3 never started while part 2 waited for its answer"
            raise ConnectionResetError("the answer to part 2 was lost")

    def tag_part(params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        context["venuecam_part"] = int(params["PartNumber"])

    first_client.meta.events.register("before-parameter-build.s3.UploadPart", tag_part)
    first_client.meta.events.register("before-send.s3.UploadPart", before_send)
    first_client.meta.events.register("after-call.s3.UploadPart", after_call)
    with pytest.raises(OfflineError, match="upload_part 2/3"):
        upload(first_client, tmp_path / "v.mp4", ledger)
    saved = ledger.load()
    assert [p["n"] for p in saved["parts"]] == [1, 3]
    assert "done" not in saved

    second_client = make_client(storage_cfg.storage)
    sent = count_parts(second_client)
    result = upload(second_client, tmp_path / "v.mp4", ledger)
    assert sent == []
    assert result.skipped_parts == 3 and result.sent_bytes == 0
    assert stored_bytes(s3) == data


def test_parallel_parts_below_one_is_bad_input(tmp_path: Path, s3: S3Server, client: Any) -> None:
    write_file(tmp_path / "v.mp4", 12 * MIB)
    state: dict[str, Any] = {}
    with pytest.raises(BadInputError, match="parallel_parts must be at least 1, got 0"):
        upload(client, tmp_path / "v.mp4", Ledger(), state=state, parallel_parts=0)
    assert state == {}
    assert s3.client().list_multipart_uploads(Bucket=BUCKET).get("Uploads", []) == []


def test_a_missing_local_file_is_bad_input(tmp_path: Path, s3: S3Server, client: Any) -> None:
    state: dict[str, Any] = {}
    with pytest.raises(BadInputError, match="local file not found: .*nope.mp4"):
        upload(client, tmp_path / "nope.mp4", Ledger(), state=state)
    assert state == {}
    assert s3.client().list_objects_v2(Bucket=BUCKET).get("KeyCount") == 0


def test_unreachable_endpoint_is_offline(tmp_path: Path, make_config: Callable[..., Config]) -> None:
    write_file(tmp_path / "v.mp4", 1000)
    cfg = make_config(storage={"endpoint_url": f"http://127.0.0.1:{free_port()}"})
    state: dict[str, Any] = {}
    with pytest.raises(OfflineError, match="EndpointConnectionError") as exc:
        upload(make_client(cfg.storage), tmp_path / "v.mp4", Ledger(), state=state)
    assert cfg.storage.secret_access_key not in str(exc.value)
    assert "done" not in state

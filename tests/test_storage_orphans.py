"""No multipart upload left behind (storage/orphans.py), against moto in its own process,
behind the fault proxy where the store's answer must be lost."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from conftest import S3Server
from faultproxy import FaultProxy
from test_storage_upload import BUCKET, KEY, Ledger, stored_bytes, upload, write_file
from venuecam.config import Config
from venuecam.live import state as live_state
from venuecam.models import PendingTask, TaskStatus, TaskType
from venuecam.storage import orphans
from venuecam.storage.client import make_client
from venuecam.storage.multipart import MIB
from venuecam.worker import upload_sweep


class PowerCut(BaseException):
    """The box lost power: nothing after this point ran (not an Exception: no handler sees it)."""


def in_progress(s3: S3Server, prefix: str = "") -> list[dict[str, Any]]:
    return list(s3.client().list_multipart_uploads(Bucket=BUCKET, Prefix=prefix).get("Uploads", []))


def creates(proxy: FaultProxy) -> list[dict[str, Any]]:
    """The CreateMultipartUpload requests the store received (POST ?uploads)."""
    return [r for r in proxy.stats()["records"] if r["method"] == "POST" and not r["upload_id"]]


def test_a_create_whose_answer_was_lost_leaves_no_upload_behind(
    tmp_path: Path, s3: S3Server, proxy: FaultProxy, make_config: Callable[..., Config]
) -> None:
    data = write_file(tmp_path / "v.mp4", 12 * MIB)
    client = make_client(make_config(storage={"endpoint_url": proxy.endpoint}).storage)
    proxy.lose_reply(methods=("POST",), query_contains="uploads")
    ledger = Ledger()
    upload(client, tmp_path / "v.mp4", ledger, state={})
    # botocore asked again: the store started two uploads, the first unknown to the box.
    assert len(creates(proxy)) == 2 and creates(proxy)[0]["injected"] == "reply lost"
    assert stored_bytes(s3) == data
    assert in_progress(s3) == []
    assert "creating" not in ledger.load()["done"] and "creating" not in ledger.load()


def test_a_power_cut_between_the_stores_answer_and_the_save_leaves_no_upload_behind(
    tmp_path: Path, s3: S3Server, make_config: Callable[..., Config]
) -> None:
    data = write_file(tmp_path / "v.mp4", 12 * MIB)
    client = make_client(make_config(storage={"endpoint_url": s3.endpoint}).storage)
    ledger = Ledger()

    def cut_before_the_id_is_saved(state: dict[str, Any]) -> None:
        if state.get("upload_id"):
            raise PowerCut
        ledger.save(state)

    with pytest.raises(PowerCut):
        upload_file_with(client, tmp_path / "v.mp4", {}, cut_before_the_id_is_saved)
    assert ledger.load().get("creating") is True and "upload_id" not in ledger.load()
    assert len(in_progress(s3)) == 1  # the store started it; the box never learnt its id
    upload(client, tmp_path / "v.mp4", ledger)  # after the reboot, from what was saved
    assert stored_bytes(s3) == data
    assert in_progress(s3) == []


def test_a_power_cut_before_the_others_are_aborted_is_finished_on_resume(
    tmp_path: Path, s3: S3Server, make_config: Callable[..., Config]
) -> None:
    data = write_file(tmp_path / "v.mp4", 12 * MIB)
    client = make_client(make_config(storage={"endpoint_url": s3.endpoint}).storage)
    stale = s3.client().create_multipart_upload(Bucket=BUCKET, Key=KEY)["UploadId"]
    ledger = Ledger()
    saves = []

    def cut_after_the_id_is_saved(state: dict[str, Any]) -> None:
        ledger.save(state)
        saves.append(dict(state))
        if state.get("upload_id"):
            raise PowerCut

    with pytest.raises(PowerCut):
        upload_file_with(client, tmp_path / "v.mp4", {}, cut_after_the_id_is_saved)
    assert {u["UploadId"] for u in in_progress(s3)} == {stale, ledger.load()["upload_id"]}
    upload(client, tmp_path / "v.mp4", ledger)
    assert stored_bytes(s3) == data and in_progress(s3) == []


def upload_file_with(
    client: Any, path: Path, state: dict[str, Any], save: Callable[[dict[str, Any]], None]
) -> Any:
    from venuecam.storage.multipart import upload_file

    return upload_file(client, BUCKET, KEY, path, part_size=5 * MIB, threshold=8 * MIB, state=state,
                       save_state=save)  # fmt: skip


def test_abort_untracked_keeps_what_the_box_holds_and_asks_after_listing(s3: S3Server) -> None:
    c = s3.client()
    ids = {k: c.create_multipart_upload(Bucket=BUCKET, Key=k)["UploadId"]
           for k in ("42/1/a.mp4", "42/1/b.mp4", "42/1/c.mp4", "42/1/d.mp4", "43/1/e.mp4")}  # fmt: skip
    asked = []

    def tracked() -> orphans.Tracked:
        # Started while the sweep listed: known by then, by its id.
        late = c.create_multipart_upload(Bucket=BUCKET, Key="42/1/late.mp4")["UploadId"]
        asked.append(late)
        found = orphans.Tracked()
        found.add_state({"mp4": {"key": "42/1/a.mp4", "upload_id": ids["42/1/a.mp4"]}})
        found.add_state({"upload": {"key": "42/1/b.mp4", "creating": True}})
        found.add_state({"key": "42/1/late.mp4", "upload_id": late})
        return found

    gone = orphans.abort_untracked(c, BUCKET, ["42/"], tracked)
    assert sorted(gone) == [("42/1/c.mp4", ids["42/1/c.mp4"]), ("42/1/d.mp4", ids["42/1/d.mp4"])]
    left = {u["Key"] for u in in_progress(s3)}
    assert left == {"42/1/a.mp4", "42/1/b.mp4", "42/1/late.mp4", "43/1/e.mp4"} and len(asked) == 1


def test_the_worker_sweep_keeps_rows_that_may_run_live_states_and_other_boxes_uploads(
    s3: S3Server, make_config: Callable[..., Config], database: Any
) -> None:
    cfg = make_config(storage={"endpoint_url": s3.endpoint})
    c = s3.client()
    venue = cfg.device.venue_id
    mine = f"{venue}/1/2026-12-03/BK-1/CAMERA_A/"
    up = {name: c.create_multipart_upload(Bucket=BUCKET, Key=mine + name)["UploadId"]
          for name in ("pending.mp4", "failed.mp4", "cancelled.mp4", "live.mp4", "nobody.mp4")}  # fmt: skip
    # The venue's other box: another camera on this field, this camera's name on another field.
    theirs = [f"{venue}/1/2026-12-03/BK-1/CAMERA_Z/x.mp4", f"{venue}/2/2026-12-03/BK-2/CAMERA_A/y.mp4"]
    for key in theirs:
        c.create_multipart_upload(Bucket=BUCKET, Key=key)
    for name, status in (("pending", TaskStatus.PENDING), ("failed", TaskStatus.FAILED),
                         ("cancelled", TaskStatus.CANCELLED)):  # fmt: skip
        progress = {"mp4": {"key": mine + name + ".mp4", "upload_id": up[name + ".mp4"], "parts": []}}
        PendingTask.create(task_type=TaskType.UPLOAD, unique_key=f"upload_r2:{name}",
                           status=status, progress_json=json.dumps(progress))  # fmt: skip
    live = cfg.clips_dir / "BK-1" / "CAMERA_A" / "BK-1-CAMERA_A-full.mp4"
    live.parent.mkdir(parents=True)
    live_state.save(
        live_state.path_for(live), {"upload": {"key": mine + "live.mp4", "upload_id": up["live.mp4"]}}
    )

    gone = upload_sweep.sweep(cfg)
    assert sorted(k.rsplit("/", 1)[1] for k, _ in gone) == ["cancelled.mp4", "nobody.mp4"]
    left = {u["Key"] for u in in_progress(s3)}
    assert left == {mine + n for n in ("pending.mp4", "failed.mp4", "live.mp4")} | set(theirs)


def test_the_worker_sweep_aborts_nothing_when_a_state_cannot_be_read(
    s3: S3Server, make_config: Callable[..., Config], database: Any
) -> None:
    cfg = make_config(storage={"endpoint_url": s3.endpoint})
    key = f"{cfg.device.venue_id}/1/2026-12-03/BK-1/CAMERA_A/x.mp4"
    s3.client().create_multipart_upload(Bucket=BUCKET, Key=key)
    broken = cfg.clips_dir / "BK-1" / "CAMERA_A" / ("BK-1-CAMERA_A-full" + live_state.SUFFIX)
    broken.parent.mkdir(parents=True)
    broken.write_text("{not json")
    assert upload_sweep.sweep(cfg) == []
    assert [u["Key"] for u in in_progress(s3)] == [key]
    broken.unlink()
    assert [k for k, _ in upload_sweep.sweep(cfg)] == [key]

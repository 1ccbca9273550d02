"""A database made by an earlier release opens with the columns this one added, its rows kept."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from venuecam import db as db_mod
from venuecam.models import Video

# `videos` as the release before booking-api.md 2b created it.
OLD_VIDEOS = """CREATE TABLE "videos" ("id" INTEGER NOT NULL PRIMARY KEY, "unique_id" VARCHAR(255) NOT NULL,
 "booking_id" VARCHAR(255) NOT NULL, "camera" VARCHAR(255) NOT NULL, "field_id" INTEGER,
 "video_type" VARCHAR(255) NOT NULL, "status" VARCHAR(255) NOT NULL, "status_msg" TEXT,
 "start_ts" REAL NOT NULL, "end_ts" REAL NOT NULL, "mp4_path" VARCHAR(255), "preview_path" VARCHAR(255),
 "thumb_path" VARCHAR(255), "duration_s" REAL, "size_bytes" INTEGER, "sha256" VARCHAR(255),
 "gaps_json" TEXT NOT NULL, "mp4_key" VARCHAR(255), "preview_key" VARCHAR(255), "thumb_key" VARCHAR(255),
 "mp4_url" TEXT, "preview_url" TEXT, "thumb_url" TEXT, "created_at" DATETIME NOT NULL,
 "updated_at" DATETIME NOT NULL)"""


def test_an_older_database_gets_the_new_columns_and_keeps_its_rows(tmp_path: Path) -> None:
    path = tmp_path / "venuecam.db"
    con = sqlite3.connect(path)
    with con:
        con.execute(OLD_VIDEOS)
        con.execute(
            "INSERT INTO videos (unique_id, booking_id, camera, video_type, status, start_ts, end_ts, gaps_json,"
            " created_at, updated_at) VALUES ('BK-1-CAMERA_A-full', 'BK-1', 'CAMERA_A', 'full', 'notified',"
            " 0, 60, '[]', '2025-01-23 10:00:00', '2025-01-23 10:00:00')"
        )
    con.close()
    database = db_mod.open_db(path)
    try:
        video = Video.get(Video.unique_id == "BK-1-CAMERA_A-full")
        assert (video.status, video.revision, video.replaces_sha256) == ("notified", 1, None)
        assert db_mod.schema_version(database) == db_mod.SCHEMA_VERSION >= 2
        assert db_mod.integrity_ok(database)
    finally:
        database.close()
    database = db_mod.open_db(path)  # and opens again without trying to add them twice
    database.close()

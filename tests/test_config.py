"""Config validation: one clear error naming file, key and expectation; secrets masked."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import API_TOKEN, S3_SECRET, base_sections, render_toml
from venuecam import config
from venuecam.cli.main import main as cli_main
from venuecam.errors import ConfigError


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "venuecam.toml"
    p.write_text(text)
    return p


def test_example_config_is_valid() -> None:
    example = Path(__file__).parent.parent / "provisioning" / "venuecam.example.toml"
    cfg = config.load(example)
    assert [c.name for c in cfg.cameras] == ["CAMERA_A", "CAMERA_B"]
    assert cfg.queue.upload_schedule_s == [300, 1200, 2700, 7200, 18000]
    assert cfg.queue.notify_schedule_s == [300, 1200, 2700]


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda s: s["device"].update(colour="red"), "device.colour: unknown key"),
        (lambda s: s["storage"].update(bucket=12), "storage.bucket: expected a string, got int"),
        (lambda s: s["device"].pop("venue_id"), "device.venue_id: required"),
        (lambda s: s["cameras"][0].update(fps="fast"), "cameras[0].fps: expected an integer, got str"),
        (lambda s: s["cameras"][0].update(source="ftp://x"), "cameras[0].source: expected rtsp://"),
        (
            lambda s: s["cameras"][0].update(segment_seconds=7),
            "cameras[0].segment_seconds: camera CAMERA_A: expected a divisor of 3600",
        ),
        (lambda s: s["cameras"][0].update(segment_seconds=7200), "got 7200"),
        (
            lambda s: s["cameras"][0].update(segment_seconds=0),
            "cameras[0].segment_seconds: expected a positive",
        ),
        (lambda s: s["device"].update(timezone="Mars/Olympus"), "device.timezone: unknown time zone"),
        (lambda s: s["queue"].update(upload_schedule_s=[]), "queue.upload_schedule_s"),
        (lambda s: s["queue"].update(sync_schedule_s=[5, -1]), "queue.sync_schedule_s: expected a non-empty"),
        (lambda s: s["queue"].update(expiration_hours=0), "queue.expiration_hours: expected at least 1"),
        (lambda s: s.update(clips={"live_max_videos": -1}), "clips.live_max_videos: expected 0 (twice"),
        (lambda s: s.update(retention={"booking_days": 0}), "retention.booking_days: expected at least 1"),
        (lambda s: s.update(connectivity={"log_retention_days": 0}), "connectivity.log_retention_days"),
        (lambda s: s["cameras"].append(dict(s["cameras"][0])), "duplicate camera name"),
        (lambda s: s["booking_api"].update(base_url="ftp://x"), "booking_api.base_url"),
        (lambda s: s["leds"].update(online_pin=True), "leds.online_pin: expected an integer, got bool"),
    ],
)
def test_bad_config_names_file_key_and_expectation(tmp_path: Path, mutate, expected: str) -> None:  # type: ignore[no-untyped-def]
    sections = base_sections(tmp_path, queue={})
    mutate(sections)
    path = write(tmp_path, render_toml(sections))
    with pytest.raises(ConfigError) as err:
        config.load(path)
    assert str(path) in str(err.value)
    assert expected in str(err.value)


def test_the_live_cap_is_twice_the_cameras_unless_set(tmp_path: Path) -> None:
    sections = base_sections(tmp_path)
    cameras = len(sections["cameras"])
    assert config.load(write(tmp_path, render_toml(sections))).live_video_cap() == max(2, 2 * cameras)
    sections["clips"] = {"live_max_videos": 1}
    assert config.load(write(tmp_path, render_toml(sections))).live_video_cap() == 1


@pytest.mark.parametrize("seconds", [1, 2, 5, 10, 15, 45, 60, 300, 3600])
def test_segment_seconds_dividing_an_hour_are_accepted(tmp_path: Path, seconds: int) -> None:
    sections = base_sections(tmp_path)
    sections["cameras"][0]["segment_seconds"] = seconds
    assert config.load(write(tmp_path, render_toml(sections))).cameras[0].segment_seconds == seconds


def test_not_toml_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not valid TOML"):
        config.load(write(tmp_path, "[device\nx="))
    with pytest.raises(ConfigError, match="config file not found"):
        config.load(tmp_path / "absent.toml")


def test_dump_masks_secrets_and_camera_passwords(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sections = base_sections(tmp_path)
    sections["cameras"][0]["source"] = "rtsp://admin:hunter2secret@192.0.2.1/s"
    path = write(tmp_path, render_toml(sections))
    assert cli_main(["--config", str(path), "config", "--dump"]) == 0
    out = capsys.readouterr().out
    assert API_TOKEN not in out and S3_SECRET not in out and "hunter2secret" not in out
    assert "********" in out and "rtsp://admin:********@192.0.2.1/s" in out
    # The dump is itself a valid config with the same non-secret values.
    reloaded = config.loads(out.replace("********", "x"), source="dump")
    assert reloaded.device.venue_id == "42"
    assert "hunter2secret" in config.load(path).secrets()


def test_cli_reports_bad_config_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, render_toml(base_sections(tmp_path, storage={"bucket": 5})))
    assert cli_main(["config", "--check", str(path)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "storage.bucket" in err


@pytest.mark.parametrize("key,value", [("venue_id", ""), ("venue_id", "4/2"), ("device_id", "  ")])
def test_empty_or_slashed_ids_are_refused(tmp_path: Path, key: str, value: str) -> None:
    """Found by the fuzz test: an empty venue_id was accepted (every object key starts with it)."""
    path = tmp_path / "venuecam.toml"
    path.write_text(render_toml(base_sections(tmp_path, device={key: value})))
    with pytest.raises(ConfigError, match=rf"device\.{key}: expected a non-empty id"):
        config.load(path)

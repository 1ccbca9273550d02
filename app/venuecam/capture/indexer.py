"""Finished segments: validate, file under their start time, index in the `segments` table.

A segment is first written by ffmpeg into a per-run directory
(`<segments_dir>/<camera>/.runs/<run id>/000042.ts`). Once the segment list says it is
closed, it is validated, fsynced, renamed to `<segments_dir>/<camera>/<YYYY-MM-DD>/<start>Z.ts`
and then indexed. Rename before insert: a crash in between leaves a named, unindexed file,
which `recover()` indexes at the next start; the reverse order could leave a row whose file
does not exist. What a crash or power cut leaves in a run directory (closed segments not yet
filed, the one being written) is recovered the same way, or deleted if unusable.

Validation: the first segment of a run is ffprobed; the rest of that run are checked
against it cheaply (`validate_like`): one ffmpeg process writes one stream, so codec and
size cannot change within a run, and ffmpeg's own segment list says how long each one is.
An ffprobe costs ~0.1 s of a PC's CPU and whole seconds of a Pi's; per segment, on a slow
box, it was slower than recording (the backlog of unfiled segments grew without end).
"""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import dataclass, replace
from pathlib import Path

from venuecam import logs, wallclock
from venuecam.errors import BadInputError
from venuecam.media import tsinfo
from venuecam.media.probe import Probe, probe

from .command import LIST_NAME
from .segment_index import SegmentIndex, Timing
from .segments import SUFFIX, ListEntry, duration_is_sane, parse_list, parse_segment_name, segment_path

RUNS_DIR = ".runs"
ANCHOR_NAME = "anchor"

log = logging.getLogger("capture")


@dataclass(frozen=True)
class Filed:
    path: Path
    start_ts: float
    end_ts: float
    bytes: int
    info: Probe


def validate(path: Path, segment_seconds: int) -> Probe:
    """ffprobe the segment; BadInputError (naming the file and why) unless it is usable."""
    info = probe(path)
    if not duration_is_sane(info.duration, segment_seconds):
        raise BadInputError(
            f"{path}: duration {info.duration:.3f}s is outside (0, {2 * segment_seconds + 2})s"
        )
    return info


def validate_like(path: Path, like: Probe, duration: float, segment_seconds: int) -> Probe:
    """A later segment of the run whose first segment probed as `like`: BadInputError unless
    it is a TS file with a readable video timestamp and a sane listed duration. No ffprobe."""
    try:
        size = path.stat().st_size
    except OSError as e:
        raise BadInputError(f"{path}: cannot read: {e.strerror}") from None
    pts = tsinfo.first_video_pts(path) if size else None
    if pts is None:
        raise BadInputError(f"{path}: no video timestamp in its first packets (not a whole TS segment)")
    if not duration_is_sane(duration, segment_seconds):
        raise BadInputError(f"{path}: duration {duration:.3f}s is outside (0, {2 * segment_seconds + 2})s")
    return replace(like, duration=duration, start_time=pts / tsinfo.PTS_HZ, bytes=size)


def _fsync_path(path: Path, directory: bool = False) -> None:
    fd = os.open(path, os.O_RDONLY | (os.O_DIRECTORY if directory else 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _free_path(path: Path) -> Path:
    """`path`, or `path` with -1, -2... if a segment with the same start exists (clock stepped back)."""
    candidate, n = path, 0
    while candidate.exists():
        n += 1
        candidate = path.with_name(f"{path.name.removesuffix(SUFFIX)}-{n}{SUFFIX}")
    return candidate


def file_segment(
    index: SegmentIndex,
    segments_dir: Path,
    camera: str,
    src: Path,
    start_ts: float,
    end_ts: float,
    segment_seconds: int,
    like: Probe | None = None,
    timing: Timing | None = None,
) -> Filed | None:
    """Validate `src` (against `like`, the run's first segment, when given), move it to its
    place in the layout, index it. None (and a log line) if the segment is unusable; it is
    then deleted so it is never picked up again."""
    try:
        if like is None:
            info = validate(src, segment_seconds)
        else:
            info = validate_like(src, like, end_ts - start_ts, segment_seconds)
    except BadInputError as e:
        log.warning("%s camera %s: skipping unusable segment: %s", logs.CAPTURE, camera, e)
        src.unlink(missing_ok=True)
        return None
    dest = _free_path(segment_path(segments_dir, camera, start_ts))
    dest.parent.mkdir(parents=True, exist_ok=True)
    _fsync_path(src)  # the data is on the card before the name says the segment is done
    os.replace(src, dest)
    _fsync_path(dest.parent, directory=True)
    index.insert(camera, dest, start_ts, end_ts, info, timing)
    return Filed(dest, start_ts, end_ts, info.bytes, info)


def _recovered_timing() -> Timing:
    """Leftovers are timed by a saved wall-clock anchor, not a monotonic one: trusted as far
    as the clock is now (clock_ok 0 leaves them out of clips; they cannot be re-timed)."""
    return Timing(None, None, wallclock.trust().trusted)


# ---------------------------------------------------------------- recovery after a crash


def runs_root(segments_dir: Path, camera: str) -> Path:
    return segments_dir / camera / RUNS_DIR


def read_anchor(run_dir: Path) -> float | None:
    """The wall-clock epoch of media time zero the recorder last saved for a run."""
    try:
        return float((run_dir / ANCHOR_NAME).read_text().strip())
    except (OSError, ValueError):
        return None


def write_anchor(run_dir: Path, wall: float) -> None:
    """Saved atomically so recovery after a crash can still name the run's leftovers."""
    tmp = run_dir / f".{ANCHOR_NAME}.tmp"
    tmp.write_text(f"{wall:.6f}\n")
    os.replace(tmp, run_dir / ANCHOR_NAME)


def run_anchor_fallback(run_dir: Path) -> float | None:
    """A run directory is named by the wall-clock millisecond ffmpeg was started."""
    try:
        return int(run_dir.name) / 1000.0
    except ValueError:
        return None


def leftover_starts(files: list[str], entries: list[ListEntry]) -> dict[str, float]:
    """Media-time start of each segment file in a run directory.

    Closed segments are in the list; a segment still being written when the run died is not,
    and starts where the last listed one ended (0 if none was closed). Pure.
    """
    listed = {e.filename: e.start for e in entries}
    last_end = max((e.end for e in entries), default=0.0)
    return {name: listed.get(name, last_end) for name in files}


def recover_run(
    index: SegmentIndex, segments_dir: Path, camera: str, run_dir: Path, segment_seconds: int
) -> int:
    """File and index what a dead run left behind; remove its directory. Returns segments indexed."""
    try:
        entries = parse_list((run_dir / LIST_NAME).read_text(errors="replace"))
    except OSError:
        entries = []
    anchor = read_anchor(run_dir) or run_anchor_fallback(run_dir)
    files = sorted(p.name for p in run_dir.glob(f"*{SUFFIX}"))
    if anchor is None:
        log.warning(
            "%s camera %s: %s has no start time; deleting %d segments",
            logs.CAPTURE,
            camera,
            run_dir,
            len(files),
        )
        shutil.rmtree(run_dir, ignore_errors=True)
        return 0
    by_name = {e.filename: e for e in entries}
    count = 0
    for name, start in leftover_starts(files, entries).items():
        src = run_dir / name
        entry = by_name.get(name)
        start_ts = anchor + start
        if entry is not None:
            end_ts = anchor + entry.end
        else:
            # Cut short: its end is wherever the data stops.
            try:
                end_ts = start_ts + probe(src).duration
            except BadInputError as e:
                log.warning("%s camera %s: deleting unusable leftover segment: %s", logs.CAPTURE, camera, e)
                src.unlink(missing_ok=True)
                continue
        if file_segment(
            index, segments_dir, camera, src, start_ts, end_ts, segment_seconds, timing=_recovered_timing()
        ):
            count += 1
            log.info("%s camera %s: recovered segment %s from an interrupted run", logs.CAPTURE, camera, name)
    shutil.rmtree(run_dir, ignore_errors=True)
    return count


def recover_unindexed(index: SegmentIndex, segments_dir: Path, camera: str, segment_seconds: int) -> int:
    """Index filed segments that have no row (crash between rename and insert, or copied in);
    delete unusable ones with a log line. Returns segments indexed."""
    cam_dir = segments_dir / camera
    indexed = index.indexed_paths(camera)
    count = 0
    for path in sorted(cam_dir.glob(f"*/*{SUFFIX}")):
        if path.parent.name == RUNS_DIR or str(path) in indexed:
            continue
        start_ts = parse_segment_name(path.name)
        if start_ts is None:
            log.warning("%s camera %s: ignoring %s (not a segment name of ours)", logs.CAPTURE, camera, path)
            continue
        try:
            info = validate(path, segment_seconds)
        except BadInputError as e:
            log.warning("%s camera %s: deleting unusable segment: %s", logs.CAPTURE, camera, e)
            path.unlink(missing_ok=True)
            continue
        index.insert(camera, path, start_ts, start_ts + info.duration, info, _recovered_timing())
        log.info("%s camera %s: indexed leftover segment %s", logs.CAPTURE, camera, path.name)
        count += 1
    return count


def recover(index: SegmentIndex, segments_dir: Path, camera: str, segment_seconds: int) -> int:
    """Everything a crash or power cut may have left for this camera. Run before recording."""
    count = 0
    root = runs_root(segments_dir, camera)
    if root.is_dir():
        for run_dir in sorted(p for p in root.iterdir() if p.is_dir()):
            count += recover_run(index, segments_dir, camera, run_dir, segment_seconds)
    count += recover_unindexed(index, segments_dir, camera, segment_seconds)
    return count

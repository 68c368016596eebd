"""The output folder: where each file the engine writes goes, and how it gets there safely.

`<id>.mp4` videos; `.partial/` for downloads not yet verified; `.replaced/` for videos set aside
when an item is made again; atomic writes (temp file, fsync, rename) for everything else.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)
PARTIAL_DIR = ".partial"
REPLACED_DIR = ".replaced"


def video_name(item_id: str) -> str:
    return f"{item_id}.mp4"


def part_path(out_dir: Path, item_id: str, task_id: str) -> Path:
    """Where the download of one task's video is kept until it is verified."""
    return out_dir / PARTIAL_DIR / f"{item_id}.{task_id}.part"


def file_sizes(out_dir: Path) -> dict[str, int]:
    """Name -> size of the regular files directly in `out_dir` (one directory scan, not a stat per
    item); empty when the folder does not exist yet."""
    sizes: dict[str, int] = {}
    try:
        with os.scandir(out_dir) as entries:
            for entry in entries:
                try:
                    if entry.is_file(follow_symlinks=False):
                        sizes[entry.name] = entry.stat(follow_symlinks=False).st_size
                except OSError:
                    continue
    except FileNotFoundError:
        pass
    return sizes


def set_aside(out_dir: Path, item_id: str, task_id: str | None, sha256: str | None) -> None:
    """Make way for an item made again: its old video to .replaced/, a download of its old task
    left half-done (it will never be finished) removed."""
    if task_id:
        part_path(out_dir, item_id, task_id).unlink(missing_ok=True)
    video = out_dir / video_name(item_id)
    if video.exists():
        target = out_dir / REPLACED_DIR / f"{item_id}.{(sha256 or 'old')[:12]}.mp4"
        target.parent.mkdir(exist_ok=True)
        video.replace(target)
        log.warning("item %s: its old video was moved to %s", item_id, target)


def publish(part: Path, final: Path) -> None:
    """Give a verified file its final name, durably."""
    os.replace(part, final)
    fsync_dir(final.parent)


def write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)

"""The output folder: where each file the engine writes goes, and how it gets there safely.

`<id>.mp4` videos; `.partial/` for downloads not yet verified; `.replaced/` for videos set aside
when an item is made again (or for a file the engine did not write that stood in a video's way);
atomic writes (a fresh temp file, fsync, rename) for everything else. The folder may be shared,
and anything may have been put in it: the engine never writes through a symbolic link (files are
opened with O_NOFOLLOW, temp files created fresh, a linked sub-folder replaced by a real one).
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import stat
import time
from typing import Iterable
from pathlib import Path

log = logging.getLogger(__name__)
PARTIAL_DIR = ".partial"
REPLACED_DIR = ".replaced"


def video_name(item_id: str) -> str:
    return f"{item_id}.mp4"


def part_path(out_dir: Path, item_id: str, task_id: str) -> Path:
    """Where the download of one task's video is kept until it is verified. The task id is the
    provider's text: it is hashed, never put in a file name."""
    return out_dir / PARTIAL_DIR / f"{item_id}.{hashlib.sha256(task_id.encode()).hexdigest()[:16]}.part"


def file_sizes(out_dir: Path) -> dict[str, int]:
    """Name -> size of the regular files directly in `out_dir` (one directory scan, then a stat
    by name relative to the open folder: no path walked again); empty when the folder does not
    exist yet."""
    try:
        folder = os.open(out_dir, os.O_RDONLY | os.O_DIRECTORY)
    except (FileNotFoundError, NotADirectoryError):
        return {}
    sizes: dict[str, int] = {}
    try:
        with os.scandir(folder) as entries:
            names = [entry.name for entry in entries if entry.is_file(follow_symlinks=False)]
        for name in names:
            try:
                sizes[name] = os.stat(name, dir_fd=folder, follow_symlinks=False).st_size
            except OSError:
                continue
    finally:
        os.close(folder)
    return sizes


def real_dir(path: Path) -> Path:
    """`path` as a real directory of ours: a symbolic link (or a file) planted there is removed."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        mode = None
    if mode is not None and not stat.S_ISDIR(mode):
        os.unlink(path)
        log.warning("%s was not a folder (a link or a file someone put there); it was removed", path)
        mode = None
    if mode is None:
        path.mkdir(parents=True, exist_ok=True)
    return path


def set_aside(out_dir: Path, item_id: str, task_id: str | None, sha256: str | None) -> None:
    """Make way for an item made again: its old video to .replaced/, a download of its old task
    left half-done (it will never be finished) removed."""
    if task_id:
        part_path(out_dir, item_id, task_id).unlink(missing_ok=True)
    target = move_aside(out_dir, item_id, (sha256 or "old")[:12])
    if target is not None:
        log.warning("item %s: its old video was moved to %s", item_id, target)


def move_aside(out_dir: Path, item_id: str, tag: str | None = None) -> Path | None:
    """Move whatever stands at `<id>.mp4` into .replaced/ (a link is moved, not followed)."""
    video = out_dir / video_name(item_id)
    if not os.path.lexists(video):
        return None
    stamp = tag or time.strftime("%Y%m%dT%H%M%S")
    target = real_dir(out_dir / REPLACED_DIR) / f"{item_id}.{stamp}.mp4"
    os.replace(video, target)
    return target


def publish(part: Path, final: Path) -> None:
    """Give a verified file its final name, durably."""
    os.replace(part, final)
    fsync_dir(final.parent)


def open_file(path: Path, flags: int, mode: int = 0o644) -> int:
    """A descriptor of the regular file at `path` (os.open's `flags`), never through a link.
    Anything else that may stand there (a FIFO that would hang the open or every read, a device,
    a folder) is refused with OSError: opened without blocking, checked, then made blocking."""
    fd = os.open(path, flags | os.O_NOFOLLOW | os.O_NONBLOCK, mode)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "not a regular file")
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def append(path: Path, data: bytes) -> None:
    """Append `data` to the regular file at `path` (created if missing) in one write, not synced:
    for the folder's small logs of their own (uploads, durations)."""
    fd = open_file(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def open_new(path: Path) -> int:
    """A descriptor of a fresh file at `path`: whatever stood there (a leftover, a planted link)
    is removed first, and the file is created exclusively, never through a link."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)


def write_atomic(path: Path, data: bytes | Iterable[bytes]) -> None:
    """Replace `path` with `data` (bytes, or pieces of them) whole, or leave it as it was (and
    no temp file behind)."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(open_new(tmp), "wb") as f:
            if isinstance(data, bytes):
                f.write(data)
            else:
                f.writelines(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)

"""The output folder: where each file the engine writes goes, and how it gets there safely.

`<id>.mp4` videos; `.partial/` for downloads not yet verified; `.replaced/` for videos set aside
when an item is made again (or for a file the engine did not write that stood in a video's way);
atomic writes (a fresh temp file, fsync, rename) for everything else. The folder may be shared,
and anything may have been put in it: the engine never writes through a symbolic link (files are
opened with O_NOFOLLOW, temp files created fresh, a linked sub-folder replaced by a real one).
"""

from __future__ import annotations

import logging
import os
import stat
import time
from collections.abc import Iterable
from pathlib import Path

from batch_engine.inputs import open_regular
from batch_engine.store.item import video_name

log = logging.getLogger(__name__)
REPLACED_DIR = ".replaced"


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


def append(path: Path, data: bytes) -> None:
    """Append `data` to the regular file at `path` (created if missing) in one write, not synced:
    for the folder's small logs of their own (uploads, durations)."""
    fd = open_regular(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
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

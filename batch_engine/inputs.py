"""The one way to read a file this run did not write: a manifest, a catalog, a job file, an image,
the folder's own records. Only a regular file is read (a FIFO, a device or a folder is refused at
once, never waited on), never more than a bound, and a folder's own record never through a link.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path
from typing import TypeVar

import msgspec

T = TypeVar("T")


class Unreadable(OSError):
    """The file cannot be read as input; `str()` says why, for a person."""

    def __str__(self) -> str:
        return str(self.strerror)


def open_regular(path: Path | str, flags: int = os.O_RDONLY, mode: int = 0o644, *, follow: bool = False) -> int:
    """A blocking descriptor of the regular file at `path` (os.open's `flags`). It is opened
    without blocking (a FIFO would hang the open), checked, then made blocking. OSError (ELOOP for
    a link when not `follow`, EINVAL for anything but a regular file, ENOENT for a name with a NUL,
    which no file has: os.open would raise ValueError, which no caller expects of a path)."""
    if "\x00" in str(path):
        raise FileNotFoundError(errno.ENOENT, "no file's name holds a NUL character", str(path))
    fd = os.open(path, flags | os.O_NONBLOCK | (0 if follow else os.O_NOFOLLOW), mode)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "not a regular file")
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_input(path: Path, limit: int, *, follow: bool = True, what: str = "the file") -> bytes:
    """The bytes of the regular file at `path`, at most `limit` of them; Unreadable says why not
    (missing, not a regular file, a link where none is allowed, too large, unreadable)."""
    try:
        fd = open_regular(path, follow=follow)
    except FileNotFoundError:
        raise Unreadable(errno.ENOENT, f"{what} {path}: no such file") from None
    except OSError as e:
        reason = {errno.ELOOP: "is a symbolic link", errno.EINVAL: "is not a regular file (a FIFO, device or folder)",
                  errno.EISDIR: "is a folder, not a file"}.get(e.errno or 0, f"cannot be read ({e.strerror or e})")
        raise Unreadable(e.errno or errno.EIO, f"{what} {path} {reason}") from None
    try:
        with open(fd, "rb") as file:
            data = file.read(limit + 1)
    except OSError as e:
        raise Unreadable(e.errno or errno.EIO, f"{what} {path} cannot be read ({e.strerror or e})") from None
    if len(data) > limit:
        raise Unreadable(errno.EFBIG, f"{what} {path} is larger than {limit:,} bytes")
    return data


def read_records(path: Path, kind: type[T], limit: int) -> tuple[list[T], int]:
    """The records of a folder's own JSON-lines file (its last `limit` bytes: a cut first line is
    passed over), each line decoded into `kind`, a msgspec Struct whose schema is the check; and
    how many lines did not fit it. A missing or unreadable file has none."""
    data = read_tail(path, limit)
    if data is None:
        return [], 0
    lines = data.split(b"\n")
    if len(data) == limit:
        lines = lines[1:]
    decode = msgspec.json.Decoder(kind).decode
    records, dropped = [], 0
    for line in lines:
        if not line.strip():
            continue
        try:
            records.append(decode(line))
        except (msgspec.DecodeError, RecursionError):  # ValidationError is a DecodeError
            dropped += 1
    return records, dropped


def read_tail(path: Path, limit: int) -> bytes | None:
    """The last `limit` bytes of a folder's own record at `path` (never through a link); None
    when there is none or it cannot be read (a record is only a hint)."""
    try:
        fd = open_regular(path)
    except OSError:
        return None
    try:
        size = os.fstat(fd).st_size
        return os.pread(fd, min(size, limit), max(0, size - limit))
    except OSError:
        return None
    finally:
        os.close(fd)

"""The compaction mark: `.batch-engine.compact`, written beside the ledger when it holds exactly
one whole line per item (after a compaction, or a load that found it so), saying how long that
part of the file is. Lines appended later (a run going on, a run killed) come after it.

`status` reads it to stream a 100,000-item ledger in one pass instead of two: an item of the
marked part whose id appears in no later line is shown at once (the first pass, counting each
item's lines, was a sixth of `status --json`'s time). The mark names the file it was written for
(device, inode) and the hash of the last bytes of the marked part, so a ledger rewritten since
(by compaction, another tool or an editor) no longer matches it and is read in two passes as
before. It is a hint: a forged one can only make status drop a repeated line, never crash it
(see `store.briefs`); runs never read it.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from batch_engine.store.folder import open_file, write_atomic

MARK_NAME = ".batch-engine.compact"
CHECKED = 64 * 1024  # bytes before the end of the marked part whose hash the mark holds


def write_mark(out_dir: Path, fd: int, length: int) -> None:
    """Mark the first `length` bytes of the ledger `fd` is open on as one whole line per item
    (its caller knows they are)."""
    if length <= 0:
        return
    info = os.fstat(fd)
    mark = {"device": info.st_dev, "inode": info.st_ino, "length": length, "tail": _tail_hash(fd, length)}
    write_atomic(out_dir / MARK_NAME, json.dumps(mark).encode())


def compact_length(out_dir: Path, fd: int, size: int) -> int:
    """How many bytes from the start of the ledger `fd` is open on (read up to `size`) hold one
    whole line per item, by the mark; 0 when there is no mark for this file."""
    try:
        mark_fd = open_file(out_dir / MARK_NAME, os.O_RDONLY)
        with open(mark_fd, "rb") as f:
            mark = json.loads(f.read(4096))
        info = os.fstat(fd)
        device, inode, length, tail = mark["device"], mark["inode"], mark["length"], mark["tail"]
    except (OSError, ValueError, TypeError, KeyError, RecursionError):
        return 0
    if not all(type(x) is int for x in (device, inode, length)) or not isinstance(tail, str):
        return 0
    if (device, inode) != (info.st_dev, info.st_ino) or not 0 < length <= size:
        return 0
    try:
        if os.pread(fd, 1, length - 1) != b"\n" or _tail_hash(fd, length) != tail:
            return 0
    except OSError:
        return 0
    return length


def _tail_hash(fd: int, length: int) -> str:
    start = max(0, length - CHECKED)
    return hashlib.sha256(os.pread(fd, length - start, start)).hexdigest()

"""Downloads in progress: bytes streamed into a part file under `.partial/`, hashed on the way.

At most WRITE_BLOCK bytes are held in memory; a resumed download hashes what the part already
holds, then appends. The stage (`pipeline.download`) decides what the bytes are; this only
writes them.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import stat
from collections.abc import AsyncIterator
from pathlib import Path

import aiofiles

from batch_engine.store.folder import real_dir

PARTIAL_DIR = ".partial"
HEAD = 64  # bytes kept from the start of a file, to check what it is
WRITE_BLOCK = 1024 * 1024  # bytes held before a write: the most a download keeps in memory


def part_path(out_dir: Path, item_id: str, task_id: str) -> Path:
    """Where the download of one task's video is kept until it is verified."""
    return part_file(out_dir / PARTIAL_DIR, item_id, task_id)


def part_file(partial_dir: Path, item_id: str, task_id: str) -> Path:
    """The part file of one task's video in `partial_dir`. The task id is the provider's text: it
    is hashed, never put in a file name."""
    return partial_dir / f"{item_id}.{hashlib.sha256(task_id.encode()).hexdigest()[:16]}.part"


def part_size(part: Path) -> int:
    """Bytes a download may resume after: only a plain file of this process's user with no other
    name (one the engine made); anything else at that name is removed and the download starts over."""
    try:
        info = os.lstat(part)
    except OSError:
        return 0
    if stat.S_ISREG(info.st_mode) and info.st_nlink == 1 and info.st_uid == os.geteuid():
        return info.st_size
    part.unlink(missing_ok=True)
    return 0


def _no_follow(path: str, flags: int) -> int:
    return os.open(path, flags | os.O_NOFOLLOW, 0o644)


async def write_part(part: Path, start: int, chunks: AsyncIterator[bytes]) -> tuple[int, hashlib._Hash, bytes, bytes | None]:
    """Write what the host sends to the part file (after what it holds, when resuming),
    hashing it and keeping the file's first bytes; synced before returning. Bytes are written
    in blocks of WRITE_BLOCK through aiofiles. A whole file smaller than one block is not
    written here but returned (the last value; None otherwise): the caller checks it, then
    writes it and gives it its name in one thread job (`write_whole`): each trip to a thread
    costs about half a millisecond of CPU, and a catalog has many small files. If the stream
    breaks first, what came is written to the part, for a Range resume."""
    real_dir(part.parent)  # a link or a file planted in place of the folder is removed
    digest = hashlib.sha256()
    head = await hash_file(part, digest) if start else b""
    size = start
    pending = bytearray()
    file = None
    try:
        async for chunk in chunks:
            pending += chunk
            digest.update(chunk)
            if len(head) < HEAD:
                head += chunk[: HEAD - len(head)]
            size += len(chunk)
            if len(pending) >= WRITE_BLOCK:
                if file is None:
                    file = await aiofiles.open(part, "r+b" if start else "wb", buffering=0, opener=_no_follow)
                    await file.seek(start)
                    await file.truncate()
                await file.write(bytes(pending))
                pending.clear()
        if file is None:
            if not start:
                whole, pending = bytes(pending), bytearray()
                return size, digest, head, whole
            data, pending = bytes(pending), bytearray()
            await asyncio.to_thread(write_whole, part, start, data)
        else:
            await file.write(bytes(pending))
            await asyncio.to_thread(os.fsync, file.fileno())
    finally:
        if file is not None:
            await file.close()
        elif pending:  # cut off before the first block: keep what came, for a Range resume
            await asyncio.to_thread(write_whole, part, start, bytes(pending))
    return size, digest, head, None


def write_whole(part: Path, start: int, data: bytes) -> None:
    """Write `data` into the part file from `start` (truncating there) and fsync it."""
    with open(part, "r+b" if start else "wb", opener=_no_follow) as f:
        f.seek(start)
        f.truncate()
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


async def hash_file(path: Path, digest: hashlib._Hash) -> bytes:
    """Feed a file to `digest`; return its first bytes."""
    head = b""
    async with aiofiles.open(path, "rb") as f:
        while chunk := await f.read(1024 * 1024):
            digest.update(chunk)
            head = head or chunk[:HEAD]
    return head

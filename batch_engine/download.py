"""Stage 3: stream each result into `<id>.mp4`: temp file, verify, atomic rename.

The bytes go to `.partial/<id>.<task>.part` through aiofiles as they arrive, hashed on the way;
an interrupted download resumes with Range where the host allows it. Only a file whose length
matches and that starts like an MP4 (an `ftyp` box) is renamed to its final name, so `<id>.mp4`
is always whole. An expired link (403/404/410) is refreshed through download-url; the task is
never created again for a download problem.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

import aiofiles
import aiofiles.os

from batch_engine.client import FileStream
from batch_engine.errors import AccountRefused, BadVideo, FileUnavailable, KieError, RangeNotSatisfiable
from batch_engine.ledger import Item, fsync_dir, now_iso
from batch_engine.ratelimit import backoff_delay
from batch_engine.states import State

if TYPE_CHECKING:
    from batch_engine.engine import Run

log = logging.getLogger(__name__)
PARTIAL_DIR = ".partial"
HEAD = 64  # bytes kept from the start of a file, to check what it is
WRITE_BLOCK = 1024 * 1024  # bytes held before a write: the most a download keeps in memory


def video_name(item_id: str) -> str:
    return f"{item_id}.mp4"


def part_path(out_dir: Path, item: Item) -> Path:
    """Where the download of `item`'s current task is kept until it is verified."""
    return out_dir / PARTIAL_DIR / f"{item.id}.{item.task_id}.part"


def looks_like_mp4(head: bytes) -> bool:
    """ISO base media files open with a box whose type is `ftyp`."""
    return len(head) >= 8 and head[4:8] == b"ftyp"


def looks_like_error_page(head: bytes, content_type: str) -> bool:
    """Text (an HTML, JSON or plain error message) where a video should be: what a host sends
    when it fails while still saying 200. A binary body without an ftyp box is kept, with a
    warning: refusing every such file would fail whole runs for a host that wraps MP4s otherwise."""
    if any(word in content_type.lower() for word in ("html", "json", "xml")):
        return True
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return all(c.isprintable() or c.isspace() for c in text)


class Downloader:
    def __init__(self, run: "Run") -> None:
        self.run = run
        self.queue: asyncio.Queue[Item] = asyncio.Queue()
        self.partial_dir = run.config.out_dir / PARTIAL_DIR

    def enqueue(self, item: Item) -> None:
        self.queue.put_nowait(item)

    async def worker(self) -> None:
        while True:
            item = await self.queue.get()
            await self.download(item)

    async def download(self, item: Item) -> None:
        """Fetch until the video is verified. A try that got further than the last one (resumed
        with Range) does not count against `download_attempts`; the total is bounded all the same."""
        run = self.run
        url = item.result_url or ""
        last, failures, tries = "no attempt", 0, 0
        limit = run.config.download_attempts
        while failures < limit and tries < 4 * limit:
            tries += 1
            had = self._partial_size(item)
            try:
                size, digest = await self._fetch(item, url)
            except FileUnavailable as e:
                failures += 1
                last = e.message
                try:
                    url = await run.client.fresh_download_url(item.result_url or url)
                    log.info("item %s: result link refused (%s); using a fresh link", item.id, e.message)
                except AccountRefused as refused:
                    run.refuse(refused, stop_all=True)
                    return
                except KieError as e2:
                    last = f"{e.message}; refreshing the link failed: {e2.message}"
                    await asyncio.sleep(backoff_delay(failures, base=run.config.poll.scale, cap=30.0))
                continue
            except KieError as e:
                last = e.message
                if self._partial_size(item) <= had:
                    failures += 1
                log.info("item %s: download try %d failed: %s", item.id, tries, e.message)
                await asyncio.sleep(backoff_delay(max(failures, 1), base=run.config.poll.scale, cap=30.0))
                continue
            run.ledger.advance(item, State.SUCCEEDED, video=video_name(item.id), bytes=size,
                               sha256=digest, fail_code=None, fail_msg=None, finished_at=now_iso())
            run.stats.bytes_downloaded += size
            run.finished(item)
            return
        run.ledger.advance(item, State.FAILED, fail_code="download_failed",
                           fail_msg=f"download failed {tries} times: {last}; "
                                    "`batch-engine retry` downloads it again without a new task",
                           finished_at=now_iso())
        run.finished(item)

    def _partial_size(self, item: Item) -> int:
        try:
            return self._part_path(item).stat().st_size
        except OSError:
            return 0

    def _part_path(self, item: Item) -> Path:
        return part_path(self.run.config.out_dir, item)

    async def _fetch(self, item: Item, url: str) -> tuple[int, str]:
        if not self.partial_dir.is_dir():
            self.partial_dir.mkdir(parents=True, exist_ok=True)
        part = self._part_path(item)
        have = self._partial_size(item)
        try:
            async with self.run.client.open_file(url, offset=have) as stream:
                size, digest, head, total, content_type = await self._write(part, stream)
        except RangeNotSatisfiable as e:
            if e.total != have:  # the part is not the whole file: start over
                await aiofiles.os.remove(part)
                raise
            digest = hashlib.sha256()  # killed after the last byte, before the rename
            head = await _hash_file(part, digest)
            size, total, content_type = have, e.total, ""
        try:
            self._verify(item, head, size, total, content_type)
        except BadVideo:
            await aiofiles.os.remove(part)
            raise
        await asyncio.to_thread(_publish, part, self.run.config.out_dir / video_name(item.id))
        return size, digest.hexdigest()

    @staticmethod
    async def _write(part: Path, stream: FileStream) -> tuple[int, "hashlib._Hash", bytes, int | None, str]:
        """Write what the host sends to the part file (after what it holds, when resuming),
        hashing it and keeping the file's first bytes; fsync before returning. Bytes are written
        in blocks of WRITE_BLOCK through aiofiles; a file smaller than one block is written by a
        single thread job (each aiofiles call is a trip to a thread, and a catalog has many)."""
        digest = hashlib.sha256()
        head = await _hash_file(part, digest) if stream.start else b""
        size = stream.start
        pending = bytearray()
        file = None
        try:
            async for chunk in stream.chunks:
                pending += chunk
                digest.update(chunk)
                if len(head) < HEAD:
                    head += chunk[: HEAD - len(head)]
                size += len(chunk)
                if len(pending) >= WRITE_BLOCK:
                    if file is None:
                        file = await aiofiles.open(part, "r+b" if stream.start else "wb", buffering=0)
                        await file.seek(stream.start)
                        await file.truncate()
                    await file.write(bytes(pending))
                    pending.clear()
            if file is None:
                data, pending = bytes(pending), bytearray()
                await asyncio.to_thread(_write_all, part, stream.start, data)
            else:
                await file.write(bytes(pending))
                await asyncio.to_thread(os.fsync, file.fileno())
        finally:
            if file is not None:
                await file.close()
            elif pending:  # cut off before the first block: keep what came, for a Range resume
                await asyncio.to_thread(_write_all, part, stream.start, bytes(pending))
        return size, digest, head, stream.total, stream.content_type

    @staticmethod
    def _verify(item: Item, head: bytes, size: int, total: int | None, content_type: str) -> None:
        if total is not None and size != total:
            raise BadVideo(f"got {size} of {total} bytes", code="short")
        if size == 0:
            raise BadVideo("the file is empty", code="empty")
        if looks_like_mp4(head):
            return
        if looks_like_error_page(head, content_type):
            raise BadVideo(f"the host sent a page ({content_type or 'no type'}), not a video",
                           code="not_mp4")
        log.warning("item %s: the video has no MP4 signature (ftyp box); kept as sent", item.id)


def _write_all(part: Path, start: int, data: bytes) -> None:
    with open(part, "r+b" if start else "wb") as f:
        f.seek(start)
        f.truncate()
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _publish(part: Path, final: Path) -> None:
    """Give a verified file its final name, durably."""
    os.replace(part, final)
    fsync_dir(final.parent)


async def _hash_file(path: Path, digest: "hashlib._Hash") -> bytes:
    """Feed a file to `digest`; return its first bytes."""
    head = b""
    async with aiofiles.open(path, "rb") as f:
        while chunk := await f.read(1024 * 1024):
            digest.update(chunk)
            head = head or chunk[:HEAD]
    return head

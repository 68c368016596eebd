"""Stage 3: stream each result into a part file, verify it, hand it to the video store.

The bytes go to `.partial/` (see `store.partial`) as they arrive, hashed on the way; an
interrupted download resumes with Range where the host allows it. Only a file whose length
matches and that starts like an MP4 (an `ftyp` box) goes to the `VideoStore`, which makes it
visible whole. An expired link is refreshed through the provider; the task is never created
again for a download problem. What follows a failed try is `outcomes.after_download_error`.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from pathlib import Path

import aiofiles.os

from batch_engine.errors import AccountRefused, BadVideo, KieError, RangeNotSatisfiable
from batch_engine.media.probe import Probe, Undecodable, mismatches, probe
from batch_engine.pacing.policy import DOWNLOAD
from batch_engine.pipeline.context import Control, Progress
from batch_engine.pipeline.outcomes import AfterDownload, after_download_error, download_exhausted
from batch_engine.provider.base import Provider
from batch_engine.store import changes
from batch_engine.store.item import Media, video_name
from batch_engine.store.ledger import Item, Ledger
from batch_engine.store.metadata import encode_metadata, metadata_name, poster_name, video_metadata
from batch_engine.store.partial import hash_file, part_file, part_size, write_part, write_whole
from batch_engine.store.videos import StoreError, VideoStore

log = logging.getLogger(__name__)


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


def verify(item_id: str, head: bytes, size: int, total: int | None, content_type: str, *,
           decoded: bool = False) -> None:
    """Raise BadVideo unless the bytes are whole and may be a video (a body the host compressed
    must be an MP4 once decoded: a compressed blob of anything else is no video)."""
    if total is not None and size != total:
        raise BadVideo(f"got {size} of {total} bytes", code="short")
    if size == 0:
        raise BadVideo("the file is empty", code="empty")
    if looks_like_mp4(head):
        return
    if decoded:
        raise BadVideo("the host's gzip-encoded body is not an MP4 once decoded", code="not_mp4")
    if looks_like_error_page(head, content_type):
        raise BadVideo(f"the host sent a page ({content_type or 'no type'}), not a video", code="not_mp4")
    log.warning("item %s: the video has no MP4 signature (ftyp box); kept as sent", item_id)


class Downloader:
    def __init__(self, ledger: Ledger, provider: Provider, videos: VideoStore, control: Control,
                 progress: Progress, partial_dir: Path, *, attempts: int = 8, scale: float = 1.0) -> None:
        self.ledger = ledger
        self.provider = provider
        self.videos = videos
        self.control = control
        self.progress = progress
        self.partial_dir = partial_dir   # where downloads are kept until they are verified
        self.attempts = attempts         # tries without progress before an item's download fails
        self.scale = scale               # multiplies every back-off (tests, the demo)
        self.queue: asyncio.Queue[Item] = asyncio.Queue()
        self._active: set[str] = set()  # ids of items being downloaded now

    def __repr__(self) -> str:
        return f"<Downloader queued={self.queue.qsize()} active={sorted(self._active)[:8]}>"

    def enqueue(self, item: Item) -> None:
        self.queue.put_nowait(item)

    async def worker(self) -> None:
        while True:
            item = await self.queue.get()
            self._active.add(item.id)
            try:
                await self.download(item)
            finally:
                self._active.discard(item.id)

    async def download(self, item: Item) -> None:
        """Fetch until the video is verified, or the tries run out (`outcomes.download_exhausted`)."""
        url = item.result_url or ""
        last, failures, tries, undecodable = "no attempt", 0, 0, 0
        while not download_exhausted(failures, tries, self.attempts):
            tries += 1
            had = part_size(self._part(item))
            try:
                size, digest, found = await self._fetch(item, url)
            except StoreError as e:  # the part stays: `retry` puts it again without a download
                self.ledger.apply(item, changes.failed("store_failed", f"{e}; `batch-engine retry` puts it again "
                                                       "from the local copy", retryable=True))
                self.control.item_done()
                return
            except KieError as e:
                if isinstance(e, BadVideo) and e.code == "bad_video":
                    undecodable += 1
                    if undecodable > 1:  # fetched again once: the task's video is bad, not the transfer
                        self.ledger.apply(item, changes.failed("bad_video", f"{e.message}, fetched twice; "
                                                               "`batch-engine retry` makes it again (a new, paid task)",
                                                               retryable=False))
                        self.control.item_done()
                        return
                    log.warning("item %s: %s; fetching it again", item.id, e.message)
                    continue
                step, failures = after_download_error(e, progressed=part_size(self._part(item)) > had,
                                                      failures=failures)
                last = e.message
                if step is AfterDownload.REFRESH:
                    try:
                        url = await self.provider.fresh_link(item.result_url or url)
                        log.info("item %s: result link refused (%s); using a fresh link", item.id, e.message)
                        continue
                    except AccountRefused as refused:
                        self.control.refuse(refused, stop_all=True)
                        return
                    except KieError as e2:
                        last = f"{e.message}; refreshing the link failed: {e2.message}"
                else:
                    log.info("item %s: download try %d failed: %s", item.id, tries, e.message)
                await asyncio.sleep(DOWNLOAD.delay(failures, self.scale))
                continue
            media = Media(found.duration, found.width, found.height, found.codec, found.fps)
            self.ledger.apply(item, changes.succeeded(size, digest, video_name(item.id), media,
                                                      mismatches(item.request, found)))
            self.progress.stats.bytes_downloaded += size
            await asyncio.to_thread(self._describe, item, size, digest, found.poster)
            self.control.item_done()
            return
        self.ledger.apply(item, changes.failed("download_failed", f"download failed {tries} times: {last}; "
                                               "`batch-engine retry` downloads it again without a new task",
                                               retryable=True))
        self.control.item_done()

    def _publish(self, item: Item, part: Path, whole: bytes | None, sha256: str) -> Probe:
        """Decode the video's first second, then hand it to the store (`whole`: its bytes, not
        yet written: written to the part first, in the same thread job). One that does not decode
        is removed (BadVideo "bad_video")."""
        if whole is not None:
            write_whole(part, 0, whole)
        try:
            found = probe(part)
        except Undecodable as e:
            part.unlink(missing_ok=True)
            raise BadVideo(f"the video {e}", code="bad_video") from None
        self.videos.put(item.id, part, sha256)
        return found

    def _describe(self, item: Item, size: int, sha256: str, poster: bytes) -> None:
        """`<id>.json` and the poster beside the video; a failure is only logged (the index still
        has its row)."""
        card = video_metadata(item, self.videos.where(item.id), size, sha256)
        try:
            self.videos.write(poster_name(item.id), poster)
            self.videos.write(metadata_name(item.id), encode_metadata(card))
        except StoreError as e:
            log.warning("item %s: could not write its metadata: %s", item.id, e)

    def _part(self, item: Item) -> Path:
        return part_file(self.partial_dir, item.id, item.task_id or "")

    async def _fetch(self, item: Item, url: str) -> tuple[int, str, Probe]:
        part = self._part(item)
        have = part_size(part)
        try:
            async with self.provider.open_file(url, offset=have) as stream:
                size, digest, head, whole = await write_part(part, stream.start, stream.chunks)
                total, content_type, decoded = stream.total, stream.content_type, stream.decoded
        except RangeNotSatisfiable as e:
            if e.total != have:  # the part is not the whole file: start over
                await aiofiles.os.remove(part)
                raise
            digest = hashlib.sha256()  # killed after the last byte, before the rename
            head = await hash_file(part, digest)
            size, total, content_type, whole, decoded = have, e.total, "", None, False
        try:
            verify(item.id, head, size, total, content_type, decoded=decoded)
        except BadVideo:
            if whole is None:
                await aiofiles.os.remove(part)
            raise
        found = await asyncio.to_thread(self._publish, item, part, whole, digest.hexdigest())
        return size, digest.hexdigest(), found

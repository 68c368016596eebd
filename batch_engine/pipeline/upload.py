"""Stage 0: give an item's request its image URLs. A local image appears in the request as
`upload:<sha256>` (see `catalog.images`); it is uploaded once per content through the provider,
recorded in `uploads.jsonl` (`store.uploads`), and re-used by later items and runs while the
upload is young enough. The file is read once for an upload: the bytes checked and hashed are
the bytes sent. Concurrent items with the same image wait for one upload. The request kept in
the ledger keeps the placeholder: an upload's URL expires, the item's identity does not.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from batch_engine.catalog.bucket_images import IMAGE_FIELDS, is_bucket_url
from batch_engine.catalog.images import MAX_IMAGE_BYTES, UPLOAD_PREFIX, LocalImage, image_kind, read_image, upload_name
from batch_engine.errors import Transient, UploadProblem
from batch_engine.pacing.policy import UPLOAD
from batch_engine.provider.base import Provider
from batch_engine.store.bucket import BucketError, BucketURL, object_bucket
from batch_engine.store.ledger import Item
from batch_engine.store.uploads import Upload, UploadBook

log = logging.getLogger(__name__)


class Uploader:
    def __init__(self, provider: Provider, book: UploadBook, images: Mapping[str, LocalImage], *,
                 scale: float = 1.0) -> None:
        self.provider = provider
        self.book = book
        self.scale = scale                           # multiplies every back-off (tests, the demo)
        self._images = dict(images)                  # sha256 -> the file the manifest named
        self._locks: dict[str, asyncio.Lock] = {}    # one upload at a time per content
        self._objects: dict[str, str] = {}           # bucket URL -> the sha256 of what it held, this run

    def __repr__(self) -> str:
        busy = [sha[:8] for sha, lock in self._locks.items() if lock.locked()]
        return f"<Uploader {self.book!r} uploading={busy}>"

    async def body_for(self, item: Item) -> dict[str, Any]:
        """The create body of `item` with every upload placeholder replaced by a URL."""
        inp = item.request.get("input", {})
        if not any(isinstance(v, str) and (v.startswith(UPLOAD_PREFIX) or is_bucket_url(v)) for v in inp.values()):
            return item.request
        resolved = {}
        for key, value in inp.items():
            if isinstance(value, str) and value.startswith(UPLOAD_PREFIX):
                resolved[key] = await self.url_for(value[len(UPLOAD_PREFIX):])
            elif key in IMAGE_FIELDS and is_bucket_url(value):
                resolved[key] = await self.url_for_object(value)
            else:
                resolved[key] = value
        return {**item.request, "input": resolved}

    async def url_for_object(self, url: str) -> str:
        """An image in a bucket: read (whole, checked), then uploaded like a local file, once per
        content. kie gets the upload's URL, never the bucket's or a presigned one."""
        async with self._locks.setdefault(url, asyncio.Lock()):
            known = self._objects.get(url)  # items sharing an object read it once a run
            fresh = self.book.fresh(known) if known is not None else None
            if fresh is not None:
                return fresh.url
            data = await asyncio.to_thread(_read_object, url)
            sha256 = self._objects[url] = hashlib.sha256(data).hexdigest()
            fresh = self.book.fresh(sha256)
            if fresh is not None:
                return fresh.url
            uploaded = await self._send(data, upload_name(sha256, image_kind(data) or "jpeg"), url)
            self.book.record(Upload(sha256, url, uploaded, time.time()))
            log.info("uploaded %s (%d bytes)", url, len(data))
            return uploaded

    async def url_for(self, sha256: str) -> str:
        async with self._locks.setdefault(sha256, asyncio.Lock()):
            fresh = self.book.fresh(sha256)
            if fresh is not None:
                return fresh.url
            data, image = await asyncio.to_thread(self._read, sha256)
            url = await self._send(data, image.upload_name, image.path.name)
            self.book.record(Upload(sha256, str(image.path), url, time.time()))
            log.info("uploaded %s (%d bytes)", image.path.name, image.size)
            return url

    async def _send(self, data: bytes, name: str, label: str) -> str:
        """Upload with retries (`pacing.policy.UPLOAD`); the upload's URL."""
        failures = 0
        while True:
            try:
                return await self.provider.upload(data, name)
            except Transient as e:
                failures += 1
                if UPLOAD.exhausted(failures):
                    raise UploadProblem(f"uploading {label} failed {failures} times: {e.message} "
                                        "(KIE_UPLOAD_BASE_URL sets the upload host)", code="upload_failed") from None
                await asyncio.sleep(UPLOAD.delay(failures, self.scale))

    def _read(self, sha256: str) -> tuple[bytes, LocalImage]:
        """The bytes of the file with this content: as the manifest named it, or (for `retry`)
        where an earlier upload read it from. Read now, checked and hashed again: a file replaced
        since it was planned is not uploaded under the old hash."""
        image = self._images.get(sha256)
        known = self.book.latest.get(sha256)
        path = image.path if image is not None else Path(known.path) if known is not None else None
        found = read_image(path) if path is not None else "no file known"
        if isinstance(found, str) or found[1].sha256 != sha256:
            raise UploadProblem("its local image is missing or was changed since the item was "
                                "planned: run the manifest again (an edited image makes the item anew)",
                                code="image_changed")
        return found


def _read_object(text: str) -> bytes:
    """The whole image at a bucket URL, checked by its structure (it may have changed since the
    catalog was checked)."""
    try:
        url = BucketURL.parse(text)
        assert url is not None
        bucket, key = object_bucket(url)
        data = bucket.read(key, MAX_IMAGE_BYTES)
    except (BucketError, ValueError) as e:
        raise UploadProblem(f"its image cannot be read: {e}", code="image_unreadable") from None
    if data is None or image_kind(data) is None:
        raise UploadProblem(f"its image {text} is gone or is not a whole JPEG, PNG or WebP image",
                            code="image_changed")
    return data

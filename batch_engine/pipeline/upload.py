"""Stage 0: give an item's request its image URLs. A local image appears in the request as
`upload:<sha256>` (see `catalog.images`); it is uploaded once per content through kie.ai's file
upload API, recorded in `uploads.jsonl` (`store.uploads`), and re-used by later items and runs
while the upload is younger than 24 hours. Concurrent items with the same image wait for one
upload. The request kept in the ledger keeps the placeholder: an upload's URL expires, the
item's identity does not.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Any, Mapping

from batch_engine.catalog.images import UPLOAD_PREFIX, LocalImage, check_image
from batch_engine.errors import Transient, UploadProblem
from batch_engine.pacing.policy import UPLOAD
from batch_engine.pipeline.context import Context
from batch_engine.store.ledger import Item
from batch_engine.store.uploads import Upload, UploadBook

log = logging.getLogger(__name__)


class Uploader:
    def __init__(self, ctx: Context, book: UploadBook, images: Mapping[str, LocalImage]) -> None:
        self.ctx = ctx
        self.book = book
        self._images = dict(images)                  # sha256 -> the file the manifest named
        self._locks: dict[str, asyncio.Lock] = {}    # one upload at a time per content

    def __repr__(self) -> str:
        busy = [sha[:8] for sha, lock in self._locks.items() if lock.locked()]
        return f"<Uploader {self.book!r} uploading={busy}>"

    async def body_for(self, item: Item) -> dict[str, Any]:
        """The createTask body of `item` with every upload placeholder replaced by a URL."""
        inp = item.request.get("input", {})
        if not any(isinstance(v, str) and v.startswith(UPLOAD_PREFIX) for v in inp.values()):
            return item.request
        resolved = {}
        for key, value in inp.items():
            if isinstance(value, str) and value.startswith(UPLOAD_PREFIX):
                value = await self.url_for(value[len(UPLOAD_PREFIX):])
            resolved[key] = value
        return {**item.request, "input": resolved}

    async def url_for(self, sha256: str) -> str:
        async with self._locks.setdefault(sha256, asyncio.Lock()):
            fresh = self.book.fresh(sha256)
            if fresh is not None:
                return fresh.url
            image = self._image(sha256)
            failures = 0
            while True:
                try:
                    url = await self.ctx.client.upload(image.path, image.upload_name)
                    break
                except Transient as e:
                    failures += 1
                    if UPLOAD.exhausted(failures):
                        raise UploadProblem(f"uploading {image.path.name} to {self.ctx.config.upload_url} "
                                            f"failed {failures} times: {e.message} (KIE_UPLOAD_BASE_URL "
                                            "sets the upload host)", code="upload_failed") from None
                    await asyncio.sleep(UPLOAD.delay(failures, self.ctx.config.poll.scale))
            self.book.record(Upload(sha256, str(image.path), url, time.time()))
            log.info("uploaded %s (%d bytes)", image.path.name, image.size)
            return url

    def _image(self, sha256: str) -> LocalImage:
        """The file with this content: as the manifest named it, or (for `retry`) where an
        earlier upload read it from, if it still holds the same bytes."""
        image = self._images.get(sha256)
        if image is None and (known := self.book.latest.get(sha256)) is not None:
            found = check_image(Path(known.path))
            image = found if isinstance(found, LocalImage) else None
        if image is None or image.sha256 != sha256:
            raise UploadProblem("its local image is missing or was changed since the item was "
                                "planned: run the manifest again (an edited image makes the item anew)",
                                code="image_changed")
        return image

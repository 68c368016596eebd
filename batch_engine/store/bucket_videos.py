"""Videos in a bucket: `PREFIX/<id>.mp4`, streamed up from the verified part file (multipart
when large, so visible whole or not at all), its size checked after the put and its SHA-256 kept
as the object's metadata (`sha256`). The part is removed only once the bucket has the video, so
a put that fails is made again from the local copy by `retry`, never by paying again."""

from __future__ import annotations

import logging
import mimetypes
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from batch_engine.store.bucket import Bucket, BucketError
from batch_engine.store.folder import REPLACED_DIR
from batch_engine.store.item import video_name
from batch_engine.store.videos import StoreError

log = logging.getLogger(__name__)


class BucketVideos:
    def __init__(self, bucket: Bucket) -> None:
        self.bucket = bucket

    def __repr__(self) -> str:
        return f"<BucketVideos {self.bucket.url}>"

    def sizes(self) -> dict[str, int]:
        try:
            return {entry.name: entry.size for entry in self.bucket.entries("")}
        except BucketError as e:
            raise StoreError(str(e)) from None

    def put(self, item_id: str, part: Path, sha256: str) -> None:
        name = video_name(item_id)
        size = part.stat().st_size
        try:
            self.bucket.put_file(name, part, {"sha256": sha256}, "video/mp4")
            found = self.bucket.head(name)
        except BucketError as e:
            raise StoreError(f"could not put the video in the bucket: {e}") from None
        if found is None or found.size != size:
            raise StoreError(f"{self.where(item_id)} holds {found.size if found else 'no'} bytes after the "
                             f"put, not {size}")
        part.unlink(missing_ok=True)

    def write(self, name: str, data: bytes) -> None:
        kind = mimetypes.guess_type(name)[0] or "application/octet-stream"
        try:
            self.bucket.put(name, data, content_type=kind)
        except BucketError as e:
            raise StoreError(str(e)) from None

    def set_aside(self, item_id: str, tag: str) -> str | None:
        name = video_name(item_id)
        target = f"{REPLACED_DIR}/{item_id}.{tag}.mp4"
        try:
            if self.bucket.head(name) is None:
                return None
            self.bucket.copy(name, target)
            self.bucket.delete(name)
        except BucketError as e:
            raise StoreError(str(e)) from None
        return self.bucket.url.url(target)

    def where(self, item_id: str) -> str:
        return self.bucket.url.url(video_name(item_id))

    def names(self) -> Iterator[str]:
        for name in self.sizes():
            if name.endswith(".mp4"):
                yield name[:-4]

    def open(self, item_id: str) -> BinaryIO:
        file = tempfile.TemporaryFile()  # noqa: SIM115  # handed to the caller, who closes it
        try:
            self.bucket.read_into(video_name(item_id), file)
        except BucketError as e:
            file.close()
            raise StoreError(str(e)) from None
        file.seek(0)
        return file

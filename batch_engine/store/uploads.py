"""The uploads of an output folder: `uploads.jsonl`, one line per upload of a local image to
kie.ai's file host, appended as it happens: the file's SHA-256, where it was read from, the URL it
got and when. A resumed or repeated run re-uses an upload while it is young enough (kie deletes
uploads after about three days, some report one: MAX_AGE is 24 hours) and the file is unchanged
(its hash is the key). It sits beside ledger.jsonl rather than in it, so the ledger keeps one
record shape (items); a line that cannot be read is skipped (the upload is simply made again).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Annotated

import msgspec

from batch_engine.inputs import read_records
from batch_engine.store.folder import append
from batch_engine.text import outside_url

UPLOADS_NAME = "uploads.jsonl"
MAX_AGE = 24 * 3600.0  # seconds an upload is re-used
MAX_READ = 4 * 1024 * 1024  # bytes read from the end of the record (about 20,000 uploads)
log = logging.getLogger(__name__)


class Upload(msgspec.Struct, frozen=True):
    """One line of the record: its schema is the check of every line read back."""

    sha256: Annotated[str, msgspec.Meta(pattern="^[0-9a-f]{64}$")]
    path: Annotated[str, msgspec.Meta(max_length=4096)]   # where the file was read from
    url: Annotated[str, msgspec.Meta(max_length=8192)]    # the upload's URL (checked on reading)
    uploaded_at: Annotated[float, msgspec.Meta(ge=0)]     # Unix time


class UploadBook:
    def __init__(self, out_dir: Path) -> None:
        self.path = out_dir / UPLOADS_NAME
        self.latest: dict[str, Upload] = {}  # sha256 -> its latest upload
        self.count = 0                        # uploads made by this process

    def __repr__(self) -> str:
        return f"<UploadBook {self.path} known={len(self.latest)} uploaded_now={self.count}>"

    def load(self) -> UploadBook:
        """The latest usable upload of each content; a record that cannot be used (not a hash, a
        URL that is not http(s), a time that is not a finite time in the past) is dropped with a
        note, and only the last MAX_READ bytes are read. A missing or unreadable file: none."""
        records, dropped = read_records(self.path, Upload, MAX_READ)
        now = time.time()
        for upload in records:
            if upload.uploaded_at <= now + 60 and outside_url(upload.url) is not None:
                self.latest[upload.sha256] = upload
            else:
                dropped += 1
        if dropped:
            log.warning("%s: %d record(s) that cannot be used were passed over (those images are "
                        "uploaded again)", self.path, dropped)
        return self

    def fresh(self, sha256: str, now: float | None = None) -> Upload | None:
        """The upload of this content still young enough to use, if any."""
        upload = self.latest.get(sha256)
        if upload is None or (time.time() if now is None else now) - upload.uploaded_at > MAX_AGE:
            return None
        return upload

    def record(self, upload: Upload) -> None:
        append(self.path, msgspec.json.encode(upload) + b"\n")
        self.latest[upload.sha256] = upload
        self.count += 1

"""The uploads of an output folder: `uploads.jsonl`, one line per upload of a local image to
kie.ai's file host, appended as it happens: the file's SHA-256, where it was read from, the URL it
got and when. A resumed or repeated run re-uses an upload while it is young enough (kie deletes
uploads after about three days, some report one: MAX_AGE is 24 hours) and the file is unchanged
(its hash is the key). It sits beside ledger.jsonl rather than in it, so the ledger keeps one
record shape (items); a line that cannot be read is skipped (the upload is simply made again).
"""

from __future__ import annotations

import json
import logging
import math
import re
import time
from dataclasses import dataclass
from pathlib import Path

from batch_engine.inputs import read_tail
from batch_engine.store.folder import append
from batch_engine.text import outside_url

UPLOADS_NAME = "uploads.jsonl"
MAX_AGE = 24 * 3600.0  # seconds an upload is re-used
MAX_READ = 4 * 1024 * 1024  # bytes read from the end of the record (about 20,000 uploads)
_SHA256 = re.compile(r"[0-9a-f]{64}")
log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Upload:
    sha256: str
    path: str          # where the file was read from
    url: str           # kie's downloadUrl for it
    uploaded_at: float  # Unix time


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
        data = read_tail(self.path, MAX_READ)
        if data is None:
            return self
        lines = data.split(b"\n")
        if len(data) == MAX_READ:
            lines = lines[1:]  # the first is likely cut
        dropped, now = 0, time.time()
        for line in lines:
            if not line.strip():
                continue
            upload = _upload(line, now)
            if upload is None:
                dropped += 1
            else:
                self.latest[upload.sha256] = upload
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
        line = (json.dumps({"sha256": upload.sha256, "path": upload.path, "url": upload.url,
                            "uploaded_at": upload.uploaded_at}) + "\n").encode()
        append(self.path, line)
        self.latest[upload.sha256] = upload
        self.count += 1


def _upload(line: bytes, now: float) -> Upload | None:
    """The upload a line records, if every field is what this engine writes."""
    try:
        record = json.loads(line)
    except (ValueError, RecursionError):
        return None
    if not isinstance(record, dict):
        return None
    sha256, path, url, at = (record.get(k) for k in ("sha256", "path", "url", "uploaded_at"))
    if not (isinstance(sha256, str) and _SHA256.fullmatch(sha256) and isinstance(path, str) and len(path) < 4096):
        return None
    if not isinstance(at, (int, float)) or isinstance(at, bool) or not math.isfinite(at) or not 0 <= at <= now + 60:
        return None
    url = outside_url(url)
    return None if url is None else Upload(sha256, path, url, float(at))

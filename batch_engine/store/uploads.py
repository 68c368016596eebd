"""The uploads of an output folder: `uploads.jsonl`, one line per upload of a local image to
kie.ai's file host, appended as it happens: the file's SHA-256, where it was read from, the URL it
got and when. A resumed or repeated run re-uses an upload while it is young enough (kie deletes
uploads after about three days, some report one: MAX_AGE is 24 hours) and the file is unchanged
(its hash is the key). It sits beside ledger.jsonl rather than in it, so the ledger keeps one
record shape (items); a line that cannot be read is skipped (the upload is simply made again).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

from batch_engine.store.folder import append, open_file

UPLOADS_NAME = "uploads.jsonl"
MAX_AGE = 24 * 3600.0  # seconds an upload is re-used


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

    def load(self) -> "UploadBook":
        try:
            with open(open_file(self.path, os.O_RDONLY), "rb") as f:
                data = f.read()
        except OSError:  # none yet, or not a file: every upload is made again
            return self
        for line in data.splitlines():
            try:
                record = json.loads(line)
                upload = Upload(str(record["sha256"]), str(record["path"]), str(record["url"]),
                                float(record["uploaded_at"]))
            except (ValueError, KeyError, TypeError, RecursionError):
                continue
            self.latest[upload.sha256] = upload
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

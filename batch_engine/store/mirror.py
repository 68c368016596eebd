"""The ledger of a bucket output, kept in the bucket: the local ledger is only its cache.

An object cannot be appended to, so the bucket holds the ledger as a snapshot and segments under
`PREFIX/.batch-engine/ledger/`: `snapshot-G.jsonl` (every line of the runs before generation G) and
`G-S.jsonl` (the lines generation G appended, in order). A run pulls the newest snapshot and the
segments of its generation and later into the cache, opens the ledger there as for a local folder,
writes the result as the snapshot of a new generation (older objects go), then sends the lines it
appends as a segment about every second: a worker killed with `kill -9` loses at most the last
second's lines. At the end a snapshot of the compacted ledger replaces the segments. A reader
that finds a snapshot ignores the segments older than it, so a crash between any two steps leaves a
ledger that reads whole. Lines that could not be sent at the end are kept in the cache
(`ledger.unsent.jsonl`) and sent by the next run that uses the same cache.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

from batch_engine.inputs import Unreadable, read_input
from batch_engine.store.bucket import Bucket, BucketError
from batch_engine.store.durations import DURATIONS_NAME
from batch_engine.store.folder import write_atomic
from batch_engine.store.uploads import UPLOADS_NAME

STATE_DIR = ".batch-engine/"
LEDGER_DIR = STATE_DIR + "ledger/"
UNSENT_NAME = "ledger.unsent.jsonl"
SIDE_FILES = (UPLOADS_NAME, DURATIONS_NAME)   # the folder's hints, kept whole beside the ledger
MAX_LEDGER = 1024**3                          # bytes an object of the ledger may hold (read whole)
MAX_SIDE = 64 * 1024 * 1024
_SNAPSHOT = re.compile(r"snapshot-([0-9]{8})\.jsonl")  # ASCII: \d takes any script's digits
_SEGMENT = re.compile(r"([0-9]{8})-([0-9]{8})\.jsonl")
log = logging.getLogger(__name__)


def ledger_parts(bucket: Bucket) -> tuple[list[str], int]:
    """The names of the ledger's objects to read, in order, and the newest generation seen (0: none).
    Names that are not the engine's own are passed over."""
    snapshots, segments = [], []
    for entry in bucket.entries(LEDGER_DIR):
        if m := _SNAPSHOT.fullmatch(entry.name):
            snapshots.append(int(m[1]))
        elif m := _SEGMENT.fullmatch(entry.name):
            segments.append((int(m[1]), int(m[2])))
    base = max(snapshots, default=0)
    names = [f"snapshot-{base:08d}.jsonl"] if snapshots else []
    names += [f"{g:08d}-{s:08d}.jsonl" for g, s in sorted(segments) if g >= base]
    newest = max([base, *(g for g, _ in segments)])
    return names, newest


def ledger_bytes(bucket: Bucket) -> bytes | None:
    """The ledger's lines as the bucket holds them (None: no ledger there)."""
    names, _ = ledger_parts(bucket)
    if not names:
        return None
    pieces = []
    for name in names:
        data = bucket.read(LEDGER_DIR + name, MAX_LEDGER)
        if data is None:  # removed by a run that wrote a newer snapshot meanwhile: read again
            return ledger_bytes(bucket)
        pieces.append(data if not data or data.endswith(b"\n") else data + b"\n")
    return b"".join(pieces)


class Mirror:
    def __init__(self, bucket: Bucket, cache: Path, ledger_name: str) -> None:
        self.bucket = bucket
        self.cache = cache
        self.path = cache / ledger_name
        self.gen = 0         # this run's generation
        self._offset = 0     # bytes of the local ledger the bucket has
        self._seq = 0
        self.unsent = 0      # bytes appended locally and not yet in the bucket

    def __repr__(self) -> str:
        return f"<Mirror {self.bucket.url} gen={self.gen} seq={self._seq} unsent={self.unsent}>"

    def pull(self) -> bool:
        """The bucket's ledger and hints into the cache (plus lines an earlier run here could not
        send); whether the bucket had a ledger."""
        self.cache.mkdir(parents=True, exist_ok=True)
        names, newest = ledger_parts(self.bucket)
        self.gen = newest + 1
        data = ledger_bytes(self.bucket) if names else b""
        unsent = _read_local(self.cache / UNSENT_NAME)
        if unsent:
            log.warning("sending %d byte(s) of ledger lines an earlier run could not send", len(unsent))
        write_atomic(self.path, (data or b"") + unsent)
        for name in SIDE_FILES:
            side = self.bucket.read(STATE_DIR + name, MAX_SIDE)
            if side is not None:
                write_atomic(self.cache / name, side)
        return data is not None

    def begin(self) -> None:
        """After the ledger was opened in the cache: its content becomes this generation's snapshot."""
        data = _read_local(self.path)
        self._put_snapshot(self.gen, data)
        (self.cache / UNSENT_NAME).unlink(missing_ok=True)
        self._offset = len(data)

    def sync(self) -> int:
        """Send the lines appended since the last call as one segment; how many bytes."""
        with open(self.path, "rb") as f:
            f.seek(self._offset)
            data = f.read()
        data = data[: data.rfind(b"\n") + 1]
        self.unsent = len(data)
        if not data:
            return 0
        self.bucket.put(f"{LEDGER_DIR}{self.gen:08d}-{self._seq:08d}.jsonl", data, content_type="application/x-ndjson")
        self._seq += 1
        self._offset += len(data)
        self.unsent = 0
        return len(data)

    def keep_unsent(self) -> None:
        """The lines the bucket does not have, kept in the cache for the next run (before the
        ledger compacts its file)."""
        with open(self.path, "rb") as f:
            f.seek(self._offset)
            data = f.read()
        if data:
            with open(self.cache / UNSENT_NAME, "ab") as f:
                f.write(data if data.endswith(b"\n") else data + b"\n")
                f.flush()
                os.fsync(f.fileno())

    def end(self) -> None:
        """After the ledger was closed (compacted): one snapshot for the next run, and the hints."""
        self._put_snapshot(self.gen + 1, _read_local(self.path))
        for name in SIDE_FILES:
            side = _read_local(self.cache / name)
            if side:
                self.bucket.put(STATE_DIR + name, side, content_type="application/x-ndjson")

    def _put_snapshot(self, gen: int, data: bytes) -> None:
        self.bucket.put(f"{LEDGER_DIR}snapshot-{gen:08d}.jsonl", data, content_type="application/x-ndjson")
        for entry in list(self.bucket.entries(LEDGER_DIR)):
            m = _SNAPSHOT.fullmatch(entry.name) or _SEGMENT.fullmatch(entry.name)
            if m and int(m[1]) < gen:
                self.bucket.delete(LEDGER_DIR + entry.name)


def _read_local(path: Path) -> bytes:
    try:
        return read_input(path, MAX_LEDGER, what="the cache's file")
    except Unreadable as e:
        if e.errno == 2:  # none yet
            return b""
        raise BucketError(str(e)) from None


__all__ = ["LEDGER_DIR", "STATE_DIR", "Mirror", "ledger_bytes"]

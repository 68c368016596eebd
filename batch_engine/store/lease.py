"""The lease on a bucket prefix: one run at a time, without a lock server.

`PREFIX/.batch-engine.lease` says who holds the prefix and until when. It is taken with a put that
succeeds only if there is none (or, for a lease that has run out, only if it is still the version
that was read), renewed the same way every third of its length while the run lives, and deleted
at the end. A worker killed with its lease blocks the prefix only until the lease runs out: a
scheduler's retry after that takes it over and resumes. A run whose renewal finds someone else's
lease has lost the prefix and stops sending.
"""

from __future__ import annotations

import json
import os
import socket
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from batch_engine.store.bucket import Bucket, BucketError
from batch_engine.text import clean

LEASE_NAME = ".batch-engine.lease"
LEASE_SECONDS = 30.0
LATEST = 253402300799.0  # Unix time of 9999-12-31 23:59:59 UTC, the last a date can show


class LeaseHeld(Exception):
    """Someone else holds the prefix: a user-facing message (exit 2, nothing sent)."""


class LeaseLost(Exception):
    """The run's lease was taken over (it was not renewed in time)."""


@dataclass(frozen=True, slots=True)
class Holder:
    """What a lease says: parsed from the bucket, so every field is checked and cleaned."""

    who: str
    until: float  # Unix time

    @classmethod
    def parse(cls, data: bytes) -> Holder | None:
        try:
            body = json.loads(data)
            until = float(body["until"])
            who = clean(str(body.get("who", "unknown")), limit=120)
        except (ValueError, KeyError, TypeError, RecursionError, OverflowError):
            return None
        return cls(who, until) if 0 <= until <= LATEST else None  # NaN fails both; a date can say it


def held_message(url: str, holder: Holder) -> str:
    until = datetime.fromtimestamp(holder.until, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return (f"{url} is in use by {holder.who} until {until} (a lease, renewed while that run lives); "
            "wait for it to finish, or, if it was killed, run again after that time")


class Lease:
    def __init__(self, bucket: Bucket, *, seconds: float = LEASE_SECONDS) -> None:
        self.bucket = bucket
        self.seconds = seconds
        self.who = f"batch-engine pid {os.getpid()} on {socket.gethostname()[:60]} (run {uuid.uuid4().hex[:8]})"
        self._etag: str | None = None

    def __repr__(self) -> str:
        return f"<Lease {self.bucket.url} held={self._etag is not None}>"

    def _body(self) -> bytes:
        return json.dumps({"who": self.who, "until": time.time() + self.seconds,
                           "taken": datetime.now(UTC).isoformat(timespec="seconds")}).encode()

    def take(self) -> None:
        """Take the prefix, or raise LeaseHeld naming who holds it and until when."""
        try:
            self._etag = self.bucket.put(LEASE_NAME, self._body(), create=True, content_type="application/json")
            return
        except BucketError as e:
            if e.kind not in ("exists", "changed"):
                raise
        found = self.bucket.head(LEASE_NAME)
        data = self.bucket.read(LEASE_NAME, 64 * 1024) if found is not None else None
        holder = Holder.parse(data) if data is not None else None
        if holder is not None and holder.until > time.time():
            raise LeaseHeld(held_message(str(self.bucket.url), holder))
        try:  # run out (or unreadable): take it over, only if it is still the version read
            if found is None:
                self._etag = self.bucket.put(LEASE_NAME, self._body(), create=True, content_type="application/json")
            else:
                self._etag = self.bucket.put(LEASE_NAME, self._body(), etag=found.etag, content_type="application/json")
        except BucketError as e:
            if e.kind in ("exists", "changed"):  # another run took it first
                raise LeaseHeld(f"{self.bucket.url} was just taken by another run; try again later") from None
            raise

    def renew(self) -> None:
        """Extend the lease; LeaseLost when it is no longer ours."""
        try:
            self._etag = self.bucket.put(LEASE_NAME, self._body(), etag=self._etag, content_type="application/json")
        except BucketError as e:
            if e.kind in ("changed", "missing", "exists"):
                self._etag = None
                raise LeaseLost(f"the lease on {self.bucket.url} was taken by another run") from None
            raise

    def release(self) -> None:
        """Give the prefix back (only our own lease is deleted)."""
        if self._etag is None:
            return
        found = self.bucket.head(LEASE_NAME)
        if found is not None and found.etag == self._etag:
            self.bucket.delete(LEASE_NAME)
        self._etag = None

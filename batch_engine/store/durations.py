"""How long generations took in this folder: `durations.jsonl`, one line per task that succeeded
(its generation profile: model, duration, resolution; the seconds it took; when), appended as it
happens. A later run here reads the recent lines of the profiles it is about to poll and gives
them to the poll schedule as a prior. The file is a hint: only its end is read, a line out of
range or too old is skipped, and the schedule caps what a prior can delay.
"""

from __future__ import annotations

import json
import time
from collections import defaultdict, deque
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Annotated, Any

import msgspec

from batch_engine.inputs import read_records
from batch_engine.store.folder import append

DURATIONS_NAME = "durations.jsonl"
MAX_READ = 256 * 1024      # bytes read from the end of the file (about 2,600 lines of 100 bytes)
MAX_AGE = 14 * 24 * 3600.0  # seconds a line stays worth reading (the provider's speed drifts)
RECENT = 64                # durations kept a profile (the latest)
LONGEST = 24 * 3600.0      # seconds: a figure above this (or not above zero) is not a duration


def profile_of(request: Mapping[str, Any]) -> str:
    """What sets a generation's length, as one text: the model and its duration and resolution
    (absent for a model with fixed ones)."""
    options = request.get("input")
    options = options if isinstance(options, Mapping) else {}
    return json.dumps([request.get("model"), options.get("duration"), options.get("resolution")])


class DurationBook:
    def __init__(self, out_dir: Path) -> None:
        self.path = out_dir / DURATIONS_NAME
        # profile -> its latest durations in seconds, oldest first
        self.recent: defaultdict[str, deque[float]] = defaultdict(lambda: deque(maxlen=RECENT))

    def __repr__(self) -> str:
        return f"<DurationBook {self.path} profiles={len(self.recent)}>"

    def load(self) -> DurationBook:
        """The latest durations of each profile (a missing or unreadable file: none)."""
        now = time.time()
        records, _ = read_records(self.path, _Line, MAX_READ)
        for line in records:
            if now - MAX_AGE <= line.at <= now + 3600:
                self.recent[line.profile].append(line.seconds)
        return self

    def prior(self, profiles: Iterable[str], least: int) -> list[float]:
        """The recent durations of every profile named, or none at all if one has fewer than
        `least` (a prior for part of a run would delay the looks at the rest)."""
        found: list[float] = []
        for profile in set(profiles):
            seconds = self.recent.get(profile, ())
            if len(seconds) < least:
                return []
            found.extend(seconds)
        return found

    def record(self, profile: str, seconds: float) -> None:
        """Append one duration (not synced: a lost line costs a few polls, nothing else)."""
        line = _Line(profile, round(seconds, 2), round(time.time(), 1))
        append(self.path, msgspec.json.encode(line) + b"\n")
        self.recent[profile].append(seconds)


class _Line(msgspec.Struct):
    """One line of the record: its schema is the check of every line read back."""

    profile: Annotated[str, msgspec.Meta(max_length=500)]
    seconds: Annotated[float, msgspec.Meta(gt=0, le=LONGEST)]
    at: float

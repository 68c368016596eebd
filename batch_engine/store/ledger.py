"""The crash-safe ledger: one JSON line per state change, appended as it happens.

`DIR/ledger.jsonl` holds the whole record of an item when it is first added, then one line per
change with the fields that changed (always `state`); replaying the lines in order rebuilds every
item. A `kill -9` can cut at most the line being written: loading drops a torn
last line and compacts the file (write a snapshot to a temp file, fsync, rename). Each change
reaches the operating system before the engine goes on (so a killed process loses nothing);
fsync to the disk happens at most every `fsync_every` seconds and at close (a power cut may lose
that last second). A lock file keeps two runs off one folder.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import time
from dataclasses import dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from batch_engine.states import State, check_transition
from batch_engine.store.folder import write_atomic

LEDGER_NAME = "ledger.jsonl"
LOCK_NAME = ".batch-engine.lock"
CHUNK = 10_000  # ledger lines parsed at once on load
log = logging.getLogger(__name__)


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


@dataclass(slots=True)
class Item:
    """What the ledger knows of one item. Only `Ledger.advance` changes `state`."""

    id: str
    request: dict[str, Any]     # the createTask body (model + input), enough to re-run the item
    fingerprint: str            # digest of `request`: tells an edited manifest item apart
    state: State = State.PENDING
    task_id: str | None = None
    attempts: int = 0           # create requests that made, or may have made, a task
    fail_code: str | None = None
    fail_msg: str | None = None
    provider_state: str | None = None
    result_url: str | None = None
    video: str | None = None    # file name inside the output folder
    bytes: int | None = None
    sha256: str | None = None
    unanswered_creates: int = 0  # creates sent whose answer never came (possibly paid twice)
    created_at: str = field(default_factory=now_iso)
    submitted_at: str | None = None  # when the last create went out
    finished_at: str | None = None
    updated_at: str = field(default_factory=now_iso)

    def to_json(self) -> str:
        """The whole record; fields that are None are left out (they read back as None)."""
        record = {name: value for name in _FIELD_NAMES if (value := getattr(self, name)) is not None}
        return json.dumps(record, ensure_ascii=False, separators=(",", ":"))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Item":
        try:
            item = cls(**data)
        except TypeError:  # a field this version does not know: leave it out
            item = cls(**{k: v for k, v in data.items() if k in _FIELDS})
        item.state = State(item.state)
        return item

    def apply(self, change: dict[str, Any]) -> None:
        """Replay one change line; a line naming an unknown state is damage (ValueError)."""
        state = State(change["state"])
        for name, value in change.items():
            if name in _FIELDS:
                setattr(self, name, value)
        self.state = state


_FIELD_NAMES = tuple(f.name for f in fields(Item))
_FIELDS = frozenset(_FIELD_NAMES)


class LedgerError(Exception):
    """The ledger cannot be used or written: a user-facing message."""


class LedgerLocked(LedgerError):
    pass


def read_items(out_dir: Path) -> dict[str, Item]:
    """Replay the ledger in `out_dir` (read-only, no lock). A torn or damaged line is skipped."""
    return _load(out_dir)[0]


def _load(out_dir: Path) -> tuple[dict[str, Item], bool]:
    """The items, and whether the file already holds exactly one whole line per item."""
    path = out_dir / LEDGER_NAME
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return {}, False
    except OSError as e:
        raise LedgerError(f"cannot read {path}: {e.strerror or e}") from None
    torn = not data.endswith(b"\n")
    lines = [line for line in data.split(b"\n") if line.strip()]
    del data
    items: dict[str, Item] = {}
    records = 0
    for start in range(0, len(lines), CHUNK):
        chunk = lines[start:start + CHUNK]
        try:  # fast path: one parse per chunk (a torn line fails it: then line by line)
            parsed = json.loads(b"[" + b",".join(chunk) + b"]")
        except ValueError:
            parsed = []
            for number, line in enumerate(chunk, start=start + 1):
                try:
                    parsed.append(json.loads(line))
                except ValueError:
                    if number < len(lines):  # not the last line: damage from outside, say so
                        log.warning("ledger %s line %d is damaged and was skipped", path, number)
        records += len(parsed)
        _replay(parsed, items, path)
    return items, len(lines) == records == len(items) and not torn


def _replay(records: list[Any], items: dict[str, Item], path: Path) -> None:
    for record in records:
        try:
            known = items.get(record["id"])
            if known is None:
                items[record["id"]] = Item.from_dict(record)
            else:
                known.apply(record)
        except (ValueError, TypeError, KeyError, AttributeError):
            log.warning("ledger %s: a record of %r is damaged and was skipped", path, record.get("id")
                        if isinstance(record, dict) else None)


class Ledger:
    """The open, locked ledger of one output folder."""

    __slots__ = ("out_dir", "path", "items", "_fd", "_lock_fd", "_fsync_every", "_last_fsync",
                 "_appended")

    def __init__(self, out_dir: Path, *, fsync_every: float = 1.0) -> None:
        self.out_dir = out_dir
        self.path = out_dir / LEDGER_NAME
        self.items: dict[str, Item] = {}
        self._fd: int | None = None        # append-only descriptor of ledger.jsonl
        self._lock_fd: int | None = None   # holds the flock on the lock file
        self._fsync_every = fsync_every    # seconds between fsyncs of the ledger
        self._last_fsync = 0.0             # monotonic time of the last fsync
        self._appended = 0                 # lines appended since the file was last compacted

    def __repr__(self) -> str:
        return f"<Ledger {self.path} items={len(self.items)} open={self._fd is not None}>"

    def open(self) -> "Ledger":
        try:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            self._lock()
            self.items, compact = _load(self.out_dir)
            if not compact:
                self._compact()
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        except OSError as e:
            self.close()
            raise LedgerError(f"cannot use the output folder {self.out_dir}: {e.strerror or e}") from None
        except LedgerError:
            self.close()
            raise
        return self

    def __enter__(self) -> "Ledger":
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def add(self, item: Item) -> Item:
        self.items[item.id] = item
        self._append(item.to_json())
        return item

    def advance(self, item: Item, state: State, **changes: Any) -> None:
        """Move `item` to `state`, set the given fields, and record the change before returning."""
        check_transition(item.id, item.state, state)
        item.state = state
        for name, value in changes.items():
            setattr(item, name, value)
        item.updated_at = now_iso()
        self._append(json.dumps({"id": item.id, "state": state, **changes,
                                 "updated_at": item.updated_at},
                                ensure_ascii=False, separators=(",", ":")))

    def close(self) -> None:
        """Compact (so the next run loads one line per item) and release the folder."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
            try:
                if self._appended:
                    self._compact()
            except OSError as e:  # the appended lines are all there: compaction can wait
                log.warning("could not compact the ledger (%s); it is complete as it is", e.strerror or e)
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing releases the flock
            self._lock_fd = None

    def _append(self, record: str) -> None:
        if self._fd is None:
            raise LedgerError("the ledger is closed")
        line = (record + "\n").encode()
        try:
            written = os.write(self._fd, line)
            self._appended += 1
            if written != len(line):  # only a full disk does this; do not leave half a line
                raise OSError(28, "short write (is the disk full?)")
            now = time.monotonic()
            if now - self._last_fsync >= self._fsync_every:
                os.fsync(self._fd)
                self._last_fsync = now
        except OSError as e:
            raise LedgerError(f"cannot write the ledger {self.path}: {e.strerror or e}; "
                              "the ledger holds everything up to this change") from None

    def _lock(self) -> None:
        fd = os.open(self.out_dir / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise LedgerLocked(f"another batch-engine (pid {holder}) is using {self.out_dir}; "
                               "wait for it to finish, or stop it, then run again") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self._lock_fd = fd

    def _compact(self) -> None:
        """Rewrite the ledger as one line per item, atomically; drops torn lines."""
        write_atomic(self.path, "".join(item.to_json() + "\n" for item in self.items.values()).encode())

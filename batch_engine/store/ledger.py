"""The crash-safe ledger: one JSON line per change of an item, appended as it happens.

`DIR/ledger.jsonl` holds an item's whole record when it is first added, then one line per named
change (`store.changes`) with the fields it set. Replaying the lines in order rebuilds every item
(`store.replay`). A `kill -9` can cut at most the line being written: loading drops a torn last
line and compacts the file (a temp file, fsync, rename). Each change reaches the operating system
before the engine goes on; fsync to the disk happens at most every `fsync_every` seconds and at
close. A lock file keeps two runs off one folder.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import time
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

import msgspec

from batch_engine.inputs import open_regular
from batch_engine.states import State, check_transition
from batch_engine.store.changes import Change
from batch_engine.store.folder import write_atomic
from batch_engine.store.item import Item, now_iso
from batch_engine.store.replay import Replayed, replay

__all__ = ["LEDGER_NAME", "FolderUnusable", "Item", "Ledger", "LedgerError", "LedgerLocked", "read_ledger"]

LEDGER_NAME = "ledger.jsonl"
LOCK_NAME = ".batch-engine.lock"
log = logging.getLogger(__name__)
_encode = msgspec.json.Encoder().encode


class LedgerError(Exception):
    """The ledger cannot be used or written: a user-facing message."""


class LedgerLocked(LedgerError):
    pass


class FolderUnusable(LedgerError):
    """The output folder or its ledger cannot be opened (nothing was sent)."""


def read_ledger(out_dir: Path, *, missing_ok: bool = True) -> Replayed:
    """The ledger in `out_dir` as it stands (read-only, no lock: a run may be going on)."""
    path = out_dir / LEDGER_NAME
    fd = _open_to_read(path)
    if fd is None:
        if missing_ok:
            return Replayed()
        raise LedgerError(f"no ledger in {out_dir} (looked for {path})")
    return _read(fd, path)


def _open_to_read(path: Path) -> int | None:
    """A descriptor of the ledger to read (None: there is none yet); never through a link."""
    try:
        return open_regular(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise LedgerError(f"{path} is a symbolic link; the ledger must be a file of its own") from None
        raise LedgerError(f"cannot read {path}: {e.strerror or e}") from None


def _read(fd: int, path: Path) -> Replayed:
    try:
        with open(fd, "rb") as file:
            loaded = replay(file)
    except OSError as e:
        raise LedgerError(f"cannot read {path}: {e.strerror or e}") from None
    for problem in loaded.problems[:20]:
        log.warning("ledger %s %s; the line is kept as it is and its item left alone", path, problem)
    if len(loaded.problems) > 20:
        log.warning("ledger %s: %d more unreadable lines kept", path, len(loaded.problems) - 20)
    return loaded


class Ledger:
    """The open, locked ledger of one output folder, and the counts of its items' states."""

    __slots__ = (
        "_appended",
        "_fd",
        "_fsync_every",
        "_kept",
        "_last_fsync",
        "_lock_fd",
        "_tracked",
        "counts",
        "damaged",
        "items",
        "out_dir",
        "path",
    )

    def __init__(self, out_dir: Path, *, fsync_every: float = 1.0) -> None:
        self.out_dir = out_dir
        self.path = out_dir / LEDGER_NAME
        self.items: dict[str, Item] = {}
        self.damaged: dict[str, str] = {}  # ids whose records cannot be read -> why (left alone)
        self.counts: Counter[State] = Counter()  # states of the tracked items, kept as they move
        self._tracked: set[str] = set()    # the ids `counts` is about (a run's items)
        self._kept: list[bytes] = []       # lines that cannot be read, written back on compaction
        self._fd: int | None = None        # append-only descriptor of ledger.jsonl
        self._lock_fd: int | None = None   # holds the flock on the lock file
        self._fsync_every = fsync_every    # seconds between fsyncs of the ledger
        self._last_fsync = 0.0             # monotonic time of the last fsync
        self._appended = 0                 # lines appended since the file was last compacted

    def __repr__(self) -> str:
        return f"<Ledger {self.path} items={len(self.items)} open={self._fd is not None}>"

    def open(self) -> Ledger:
        try:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            self._lock()
            fd = _open_to_read(self.path)
            loaded = _read(fd, self.path) if fd is not None else Replayed()
            self.items, self.damaged, self._kept = loaded.items, loaded.damaged, loaded.kept
            if not loaded.compact:
                self._compact()
            self._fd = open_regular(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        except OSError as e:
            self.close()
            raise FolderUnusable(f"cannot use the output folder {self.out_dir}: {e.strerror or e}") from None
        except LedgerLocked:
            self.close()
            raise
        except LedgerError as e:
            self.close()
            raise FolderUnusable(str(e)) from None
        return self

    def __enter__(self) -> Ledger:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def track(self, items: Iterable[Item]) -> None:
        """Count these items' states in `counts` from now on (the items of a run)."""
        for item in items:
            if item.id not in self._tracked:
                self._tracked.add(item.id)
                self.counts[item.state] += 1

    def add(self, item: Item) -> Item:
        self.items[item.id] = item
        self._append(item.to_line())
        return item

    def apply(self, item: Item, change: Change) -> None:
        """Make `change` to `item` and record it before returning."""
        check_transition(item.id, item.state, change.state)
        old = item.state
        item.state = change.state
        for name, value in change.fields.items():
            setattr(item, name, value)
        item.updated_at = now_iso()
        line = {"id": item.id, "state": change.state, **{_LEDGER_NAMES.get(k, k): v for k, v in change.fields.items()},
                "updated_at": item.updated_at}
        self._append(_encode(line))
        if item.id in self._tracked and old is not change.state:
            self.counts[old] -= 1
            self.counts[change.state] += 1

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

    def _append(self, record: bytes) -> None:
        if self._fd is None:
            raise LedgerError("the ledger is closed")
        line = record + b"\n"
        try:
            written = os.write(self._fd, line)
            self._appended += 1
            if written != len(line):  # only a full disk does this; do not leave half a line
                raise OSError(errno.ENOSPC, "short write (is the disk full?)")
            now = time.monotonic()
            if now - self._last_fsync >= self._fsync_every:
                os.fsync(self._fd)
                self._last_fsync = now
        except OSError as e:
            raise LedgerError(f"cannot write the ledger {self.path}: {e.strerror or e}; "
                              "the ledger holds everything up to this change") from None

    def _lock(self) -> None:
        try:
            fd = open_regular(self.out_dir / LOCK_NAME, os.O_RDWR | os.O_CREAT)
        except OSError as e:
            raise LedgerError(f"cannot use the lock file {self.out_dir / LOCK_NAME}: {e.strerror or e}"
                              " (a symbolic link, or anything but a file, there is refused: remove it)") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise LedgerLocked(f"another batch-engine (pid {holder[:20]}) is using {self.out_dir}; "
                               "wait for it to finish, or stop it, then run again") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self._lock_fd = fd

    def _compact(self) -> None:
        """Rewrite the ledger as one line per item (then the lines kept as they are), atomically."""
        lines = [item.to_line() + b"\n" for item in self.items.values()]
        write_atomic(self.path, lines + [line + b"\n" for line in self._kept])
        self._appended = 0


# attributes whose name in the ledger differs (the record's schema renames them)
_LEDGER_NAMES = {f.name: f.encode_name for f in msgspec.structs.fields(Item) if f.name != f.encode_name}

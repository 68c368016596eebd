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

import errno
import fcntl
import logging
import os
import time
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterable, Iterator

import orjson

from batch_engine.states import State, check_transition
from batch_engine.store.folder import open_file, write_atomic
from batch_engine.store.item import Item, now_iso
from batch_engine.store.mark import compact_length, write_mark
from batch_engine.store.replay import Replayed, replay, thaw
from batch_engine.store.resting import Resting
from batch_engine.store.sizes import HELPER_FROM, FolderSizes

__all__ = ["LEDGER_NAME", "FolderUnusable", "Item", "Ledger", "LedgerError", "LedgerLocked", "Resting",
           "now_iso", "open_to_read", "read_items", "read_ledger"]

LEDGER_NAME = "ledger.jsonl"
LOCK_NAME = ".batch-engine.lock"
log = logging.getLogger(__name__)


class LedgerError(Exception):
    """The ledger cannot be used or written: a user-facing message."""


class LedgerLocked(LedgerError):
    pass


class FolderUnusable(LedgerError):
    """The output folder or its ledger cannot be opened (nothing was sent)."""


def read_items(out_dir: Path) -> dict[str, Item]:
    """Replay the ledger in `out_dir` (read-only, no lock); unreadable records are left out."""
    return _load(out_dir).items  # type: ignore[return-value]  (no item at rest without rest=True)


def read_ledger(out_dir: Path) -> Replayed:
    """The ledger as it stands (read-only, no lock) for planning: items (succeeded ones at rest),
    damaged ids, kept lines."""
    return _load(out_dir, rest=True)


def _load(out_dir: Path, *, rest: bool = False) -> Replayed:
    fd = open_to_read(out_dir / LEDGER_NAME)
    if fd is None:
        return Replayed()
    try:
        return _read(fd, out_dir / LEDGER_NAME, rest)
    finally:
        os.close(fd)


def open_to_read(path: Path) -> int | None:
    """A descriptor of the ledger to read (None: there is none yet); never through a link."""
    try:
        return open_file(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise LedgerError(f"{path} is a symbolic link; the ledger must be a file of its own") from None
        raise LedgerError(f"cannot read {path}: {e.strerror or e}") from None


def _read(fd: int, path: Path, rest: bool) -> Replayed:
    """Replay the file `fd` is open on, from its start (each pass reads through a copy of it)."""
    def from_start() -> BinaryIO:
        os.lseek(fd, 0, os.SEEK_SET)
        return open(os.dup(fd), "rb", buffering=0)
    try:
        loaded = replay(from_start, rest=rest)
    except OSError as e:
        raise LedgerError(f"cannot read {path}: {e.strerror or e}") from None
    for problem in loaded.problems[:20]:
        log.warning("ledger %s %s; the line is kept as it is and its item left alone", path, problem)
    if len(loaded.problems) > 20:
        log.warning("ledger %s: %d more unreadable lines kept", path, len(loaded.problems) - 20)
    return loaded


class Ledger:
    """The open, locked ledger of one output folder."""

    __slots__ = ("out_dir", "path", "items", "damaged", "on_change", "_kept", "_fd", "_read_fd", "_lock_fd",
                 "_fsync_every", "_last_fsync", "_appended", "_sizes")

    def __init__(self, out_dir: Path, *, fsync_every: float = 1.0) -> None:
        self.out_dir = out_dir
        self.path = out_dir / LEDGER_NAME
        self.items: dict[str, Item | Resting] = {}  # succeeded items untouched so far: at rest
        self.damaged: dict[str, str] = {}  # ids whose records cannot be read -> why (left alone)
        self._kept: list[bytes] = []       # lines that cannot be read, written back on compaction
        self.on_change: Callable[[Item, State, State], None] | None = None  # told of every move
        self._fd: int | None = None        # append-only descriptor of ledger.jsonl
        self._read_fd: int | None = None   # the same file as loaded, to read lines held at rest
        self._lock_fd: int | None = None   # holds the flock on the lock file
        self._fsync_every = fsync_every    # seconds between fsyncs of the ledger
        self._last_fsync = 0.0             # monotonic time of the last fsync
        self._appended = 0                 # lines appended since the file was last compacted
        self._sizes: FolderSizes | None = None  # the folder's file sizes, read while loading

    def __repr__(self) -> str:
        return f"<Ledger {self.path} items={len(self.items)} open={self._fd is not None}>"

    def open(self) -> "Ledger":
        try:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            self._lock()
            # kept open: the lines of items at rest are read from the very file that was loaded
            self._read_fd = open_to_read(self.path)
            big = self._read_fd is not None and os.fstat(self._read_fd).st_size >= HELPER_FROM
            self._sizes = FolderSizes(self.out_dir, meanwhile=big)
            loaded = _read(self._read_fd, self.path, rest=True) if self._read_fd is not None else Replayed()
            self.items, self.damaged, self._kept = loaded.items, loaded.damaged, loaded.kept
            if not loaded.compact:
                self._compact()
            elif self._read_fd is not None:
                self._mark(self._read_fd, os.fstat(self._read_fd).st_size)
            self._fd = open_file(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
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

    def __enter__(self) -> "Ledger":
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def file_sizes(self) -> dict[str, int]:
        """Name -> size of the regular files in the folder, read once: by a helper while a big
        ledger loaded, else when first asked (the engine writes no video before it plans; see
        `sizes`)."""
        if self._sizes is None:
            raise LedgerError("the ledger is not open")
        return self._sizes.result()

    def thaw(self, item_id: str) -> Item | None:
        """The full Item of `item_id`, read back from its line if it was at rest; None (and the
        item marked damaged, its line kept) when that line turns out unusable."""
        item = self.items[item_id]
        if not isinstance(item, Resting):
            return item
        assert self._read_fd is not None, "an item at rest comes from a ledger read through _read_fd"
        line = os.pread(self._read_fd, item.length, item.offset)
        full = thaw(line)
        if isinstance(full, str):
            log.warning("ledger %s: the record of %s cannot be used (%s); it is kept as it is and the "
                        "item left alone", self.path, item_id, full)
            del self.items[item_id]
            self.damaged[item_id] = full
            self._kept.append(line)
            return None
        self.items[item_id] = full
        return full

    def thawed(self, ids: Iterable[str]) -> dict[str, Item]:
        """The full Items of those of `ids` the ledger has (usable ones)."""
        found = {i: self.thaw(i) for i in dict.fromkeys(ids) if i in self.items}
        return {i: item for i, item in found.items() if item is not None}

    def add(self, item: Item) -> Item:
        self.items[item.id] = item
        self._append(item.to_line())
        return item

    def advance(self, item: Item, state: State, **changes: Any) -> None:
        """Move `item` to `state`, set the given fields, and record the change before returning."""
        check_transition(item.id, item.state, state)
        old, item.state = item.state, state
        for name, value in changes.items():
            setattr(item, name, value)
        item.updated_at = now_iso()
        self._append(orjson.dumps({"id": item.id, "state": state, **changes, "updated_at": item.updated_at}))
        if self.on_change is not None:
            self.on_change(item, old, state)

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
        if self._read_fd is not None:
            os.close(self._read_fd)
            self._read_fd = None
        if self._sizes is not None:
            self._sizes.cancel()
            self._sizes = None
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
                raise OSError(28, "short write (is the disk full?)")
            now = time.monotonic()
            if now - self._last_fsync >= self._fsync_every:
                os.fsync(self._fd)
                self._last_fsync = now
        except OSError as e:
            raise LedgerError(f"cannot write the ledger {self.path}: {e.strerror or e}; "
                              "the ledger holds everything up to this change") from None

    def _lock(self) -> None:
        try:
            fd = open_file(self.out_dir / LOCK_NAME, os.O_RDWR | os.O_CREAT)
        except OSError as e:
            raise LedgerError(f"cannot use the lock file {self.out_dir / LOCK_NAME}: {e.strerror or e}"
                              " (a symbolic link, or anything but a file, there is refused: remove it)") from None
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
        """Rewrite the ledger as one line per item, atomically; drops torn lines. The line of an
        item at rest is copied as it is, and where it now lies noted once the new file is in place."""
        moved: list[tuple[Resting, int]] = []
        head = 0  # bytes of the items' lines (the lines kept as they are come after them)

        def lines() -> Iterator[bytes]:
            nonlocal head
            for item in self.items.values():
                if isinstance(item, Resting):
                    line = os.pread(self._read_fd, item.length, item.offset)  # type: ignore[arg-type]
                    moved.append((item, head))
                else:
                    line = item.to_line()
                head += len(line) + 1
                yield line + b"\n"
            for line in self._kept:
                yield line + b"\n"
        write_atomic(self.path, lines())
        for item, offset in moved:
            item.offset = offset
        if self._read_fd is not None:  # that file is replaced: lines at rest are read from the new one
            os.close(self._read_fd)
            self._read_fd = None
        if moved:
            self._read_fd = open_to_read(self.path)
        self._mark(self._read_fd, head)

    def _mark(self, fd: int | None, length: int) -> None:
        """Note that the first `length` bytes of the ledger (`fd`, or the file at its path) are
        one line per item (`store.mark`)."""
        try:
            own = fd is None
            fd = open_file(self.path, os.O_RDONLY) if fd is None else fd
            try:
                if compact_length(self.out_dir, fd, length) != length:
                    write_mark(self.out_dir, fd, length)
            finally:
                if own:
                    os.close(fd)
        except OSError as e:  # only status reads it, and reads the ledger without it
            log.debug("could not write the compaction mark: %s", e)

"""Rebuild the items from the ledger's lines, keeping what cannot be read.

A torn last line (a `kill -9` mid-write: it does not parse) is dropped. Any other line that is
not JSON, or a record that fails `item.record_problem` (a hand edit, another tool, a newer
version), is never thrown away: its line is kept verbatim, so compaction writes it back, and its
item is *damaged*: left out of the run (never paid for again as if new) and named in the log
until someone fixes it.

With `rest=True` (a run's load), an item that succeeded and whose whole record is one line is
held as a `Resting` (its line stays on disk; see `resting`); every other line is replayed into
full `Item`s. Lines are decoded a block at a time (`lines`), so memory holds the items and one
block, not the file; the lines of damaged items are collected by a second read, only when there
are any. The collector is paused meanwhile: every record read is kept, so its passes over them
would find nothing, at a cost growing with the ledger (a third of the time at 100,000 items).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Any, BinaryIO, Callable

import orjson

from batch_engine.collector import paused
from batch_engine.config import MAX_WINDOW
from batch_engine.store.item import Item, iso_at, record_problem
from batch_engine.store.lines import Decoded, parses
from batch_engine.store.resting import Head, Resting, may_rest


@dataclass(slots=True)
class Replayed:
    items: dict[str, Item | Resting] = field(default_factory=dict)  # Items only, unless rest=True
    damaged: dict[str, str] = field(default_factory=dict)   # item id -> why it cannot be used
    kept: list[bytes] = field(default_factory=list)         # lines kept as they are
    problems: list[str] = field(default_factory=list)       # one line each, for the log
    compact: bool = False   # the file already holds exactly one whole line per item


def replay(open_file: Callable[[], BinaryIO], *, rest: bool = False) -> Replayed:
    """Replay the ledger `open_file()` opens (a file without buffering: lines are re-read by
    offset)."""
    with paused():  # see collector.py
        return _replay(open_file, rest)


def _replay(open_file: Callable[[], BinaryIO], rest: bool) -> Replayed:
    result = Replayed()
    items, damaged = result.items, result.damaged
    no_id: set[int] = set()  # numbers of unreadable lines that name no item
    lines = 0
    long_ago = iso_at(time.time() - MAX_WINDOW)
    with open_file() as file:
        decoded = Decoded(file, Head)
        for number, offset, head, line in decoded:
            lines += 1
            if rest and type(head) is Head and may_rest(head) and head.id not in items and head.id not in damaged:
                items[head.id] = Resting.of(head, offset, len(line), long_ago)  # its line stays on disk
                continue
            record = _parse(line)
            item_id = record.get("id") if isinstance(record, dict) else None
            known = items.get(item_id) if isinstance(item_id, str) else None
            if isinstance(known, Resting):  # a change to an item loaded at rest: read it whole first
                whole = thaw(os.pread(file.fileno(), known.length, known.offset))
                if isinstance(whole, Item):
                    items[known.id] = whole  # in its place: the ledger's order is kept
                else:
                    del items[known.id]
                    result.problems.append(f"the first line of {known.id[:60]!r}: {whole}")
                    damaged.setdefault(known.id, whole)
            _apply(result, no_id, number, record)
    for item_id in damaged:
        items.pop(item_id, None)
    if damaged or no_id:
        result.kept = _lines_to_keep(open_file, set(damaged), no_id)
    result.compact = not decoded.torn and not result.kept and lines == len(items)
    return result


def _apply(result: Replayed, no_id: set[int], number: int, record: Any) -> None:
    item_id = record.get("id") if isinstance(record, dict) and isinstance(record.get("id"), str) else None
    known = result.items.get(item_id) if item_id is not None else None
    problem = "not JSON" if record is _NOT_JSON else record_problem(record, first=known is None)
    if problem is None:
        if item_id in result.damaged:
            return  # a good line of an item already damaged: kept with it
        if known is None:
            result.items[item_id] = Item.from_dict(record)  # type: ignore[index]
        else:
            known.apply(record)  # type: ignore[union-attr]
        return
    result.problems.append(f"line {number}: {problem}")
    if item_id is None:
        no_id.add(number)
    else:
        result.damaged.setdefault(item_id, f"line {number}: {problem}")


def _lines_to_keep(open_file: Callable[[], BinaryIO], damaged: set[str], numbers: set[int]) -> list[bytes]:
    """The lines of damaged items and the unreadable lines, verbatim, in file order."""
    kept = []
    with open_file() as file:
        for number, raw in enumerate(file, start=1):
            line = raw.rstrip(b"\n")
            if not line.strip() or not raw.endswith(b"\n") and not parses(line):
                continue
            if number in numbers:
                kept.append(line)
                continue
            record = _parse(line)
            if isinstance(record, dict) and record.get("id") in damaged:
                kept.append(line)
    return kept


def thaw(line: bytes) -> Item | str:
    """The full Item of a line held at rest, or why it cannot be used."""
    record = _parse(line)
    why = "not JSON" if record is _NOT_JSON else record_problem(record, first=True)
    return why if why is not None else Item.from_dict(record)


_NOT_JSON = object()


def _parse(line: bytes) -> Any:
    try:
        return orjson.loads(line)
    except (ValueError, RecursionError):
        return _NOT_JSON

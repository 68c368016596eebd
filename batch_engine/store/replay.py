"""Rebuild the items from the ledger's lines, keeping what cannot be read.

A torn last line (a `kill -9` mid-write: it does not parse) is dropped. Any other line that is
not JSON, or a record that fails `item.record_problem` (a hand edit, another tool, a newer
version), is never thrown away: its line is kept verbatim, so compaction writes it back, and its
item is *damaged*: left out of the run (never paid for again as if new) and named in the log
until someone fixes it.

The file is read in blocks of BLOCK bytes (one orjson.loads a block's lines), so memory holds the items
and one chunk, not the file; the lines of damaged items are collected by a second read, only
when there are any. The collector is paused while a ledger is read: the records are all kept,
so its passes over them (each triggered by more allocations) would find nothing, at a cost that
grows with the ledger (a third of the time at 100,000 items).
"""

from __future__ import annotations

import gc
from dataclasses import dataclass, field
from typing import Any, BinaryIO, Callable, Iterable, Iterator

import orjson

from batch_engine.store.item import Item, record_problem

BLOCK = 512 * 1024  # bytes of the ledger parsed at once (about 1,000 lines)


@dataclass(slots=True)
class Replayed:
    items: dict[str, Item] = field(default_factory=dict)
    damaged: dict[str, str] = field(default_factory=dict)   # item id -> why it cannot be used
    kept: list[bytes] = field(default_factory=list)         # lines kept as they are
    problems: list[str] = field(default_factory=list)       # one line each, for the log
    compact: bool = False   # the file already holds exactly one whole line per item


def replay(open_file: Callable[[], BinaryIO]) -> Replayed:
    """Replay the ledger `open_file()` opens."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        return _replay(open_file)
    finally:
        if was_enabled:
            gc.enable()


def _replay(open_file: Callable[[], BinaryIO]) -> Replayed:
    result = Replayed()
    no_id: set[int] = set()  # numbers of unreadable lines that name no item
    lines = torn = 0
    with open_file() as file:
        for start, chunk, last_torn in lines_in_blocks(file):
            torn = torn or last_torn
            try:  # fast path: one parse per chunk (blank lines, or a line of two values, fail it)
                parsed: list[Any] = orjson.loads(b"[" + b",".join(chunk) + b"]")
                if len(parsed) != len(chunk):
                    raise ValueError("not one value a line")
                numbered: Iterable[tuple[int, Any]] = enumerate(parsed, start=start)
            except (ValueError, RecursionError):
                numbered = [(number, _parse(line)) for number, line in enumerate(chunk, start=start) if line.strip()]
            for number, record in numbered:
                lines += 1
                _apply(result, no_id, number, record)
    for item_id in result.damaged:
        result.items.pop(item_id, None)
    if result.damaged or no_id:
        result.kept = _lines_to_keep(open_file, set(result.damaged), no_id)
    result.compact = not torn and not result.kept and lines == len(result.items)
    return result


def lines_in_blocks(file: BinaryIO) -> Iterator[tuple[int, list[bytes], bool]]:
    """(number of the first line, the whole lines of the next block read, blank ones included;
    whether the last line is torn). A torn last line (the file does not end with a newline) is
    dropped when it does not parse and kept when it does; either way the file must be rewritten
    before anything is appended to it."""
    start, rest = 1, b""
    while block := file.read(BLOCK):
        lines = (rest + block).split(b"\n")
        rest = lines.pop()  # what follows the last newline: the start of a line, or b""
        yield start, lines, False
        start += len(lines)
    if rest.strip():
        yield start, [rest] if _parse(rest) is not _NOT_JSON else [], True


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
            known.apply(record)
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
            if not line.strip() or not raw.endswith(b"\n") and _parse(line) is _NOT_JSON:
                continue
            if number in numbers:
                kept.append(line)
                continue
            record = _parse(line)
            if isinstance(record, dict) and record.get("id") in damaged:
                kept.append(line)
    return kept


_NOT_JSON = object()


def _parse(line: bytes) -> Any:
    try:
        return orjson.loads(line)
    except (ValueError, RecursionError):
        return _NOT_JSON

"""Rebuild the items from the ledger's lines, keeping what cannot be read.

The first line of an item is its whole record; each later line holds the fields a change set
(always `state`). A line becomes part of an item only through the record's schema
(`item.from_builtins`). A torn last line (a `kill -9` mid-write: it does not parse) is dropped.
Any other line that is not JSON, or a record that fails the schema (a hand edit, another tool),
is never thrown away: it is kept verbatim, so compaction writes it back, and its item is
*damaged*: left out of the run (never paid for again as if new) and named in the log.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, BinaryIO

import msgspec

from batch_engine.store.item import Item, from_builtins

_decode = msgspec.json.Decoder().decode


@dataclass(slots=True)
class Replayed:
    items: dict[str, Item] = field(default_factory=dict)
    damaged: dict[str, str] = field(default_factory=dict)   # item id -> why it cannot be used
    kept: list[bytes] = field(default_factory=list)         # lines kept as they are, in file order
    problems: list[str] = field(default_factory=list)       # one line each, for the log
    compact: bool = False   # the file holds exactly one whole line per item, nothing else


def replay(file: BinaryIO) -> Replayed:
    """Replay the ledger `file` holds, from its start to its end."""
    result = Replayed()
    lines, torn, unnamed = 0, False, False
    for number, raw in enumerate(file, start=1):
        line = raw.rstrip(b"\n")
        if not line.strip():
            continue
        record = _parse(line)
        if not raw.endswith(b"\n"):  # a write cut short: the file is rewritten before any append
            torn = True
            if record is _NOT_JSON:
                continue  # dropped; a whole record that only lost its newline is kept
        lines += 1
        why = _apply(result, record)
        if why is not None:
            result.problems.append(f"line {number}: {why}")
            item_id = _id_of(record)
            if item_id is None:
                unnamed = True
            else:
                result.damaged.setdefault(item_id, f"line {number}: {why}")
                result.items.pop(item_id, None)
    if result.damaged or unnamed:
        result.kept = _lines_to_keep(file, set(result.damaged))
    result.compact = not torn and not result.kept and lines == len(result.items)
    return result


def _lines_to_keep(file: BinaryIO, damaged: set[str]) -> list[bytes]:
    """The lines of damaged items and the lines that name no item, verbatim, in file order (a
    second read: only a ledger with such lines pays for it)."""
    file.seek(0)
    kept = []
    for raw in file:
        line = raw.rstrip(b"\n")
        if not line.strip() or (not raw.endswith(b"\n") and _parse(line) is _NOT_JSON):
            continue
        item_id = _id_of(_parse(line))
        if item_id is None or item_id in damaged:
            kept.append(line)
    return kept


def _id_of(record: Any) -> str | None:
    item_id = record.get("id") if isinstance(record, dict) else None
    return item_id if isinstance(item_id, str) else None


def _apply(result: Replayed, record: Any) -> str | None:
    """Fold one decoded line into the items; why it cannot be used, or None."""
    if record is _NOT_JSON:
        return "not JSON"
    item_id = _id_of(record)
    if item_id is None:
        return "not a JSON object with a text id"
    if item_id in result.damaged:
        return None  # a later line of an item already damaged: kept with it
    known = result.items.get(item_id)
    if known is not None:
        if "state" not in record:
            return "a change without a state"
        record = {**known.to_builtins(), **record}
    item = from_builtins(record)
    if isinstance(item, str):
        return item
    result.items[item_id] = item
    return None


_NOT_JSON = object()


def _parse(line: bytes) -> Any:
    try:
        return _decode(line)
    except (msgspec.DecodeError, RecursionError):
        return _NOT_JSON

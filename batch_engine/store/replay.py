"""Rebuild the items from the ledger's lines, keeping what cannot be read.

A torn last line (a `kill -9` mid-write: it does not parse) is dropped. Any other line that is not JSON, or a record
that fails `item.record_problem` (a hand edit, another tool, a newer version), is never thrown
away: its line is kept verbatim, so compaction writes it back, and its item is *damaged*: left
out of the run (never paid for again as if new) and named in the log until someone fixes it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from batch_engine.store.item import Item, record_problem

CHUNK = 10_000  # ledger lines parsed at once


@dataclass(slots=True)
class Replayed:
    items: dict[str, Item] = field(default_factory=dict)
    damaged: dict[str, str] = field(default_factory=dict)   # item id -> why it cannot be used
    kept: list[bytes] = field(default_factory=list)         # lines kept as they are
    problems: list[str] = field(default_factory=list)       # one line each, for the log
    compact: bool = False   # the file already holds exactly one whole line per item


def replay(data: bytes) -> Replayed:
    torn = bool(data) and not data.endswith(b"\n")
    lines = [line for line in data.split(b"\n") if line.strip()]
    if torn and _parse(lines[-1]) is _NOT_JSON:  # cut mid-write; a last line that parses is whole
        lines.pop()
    result = Replayed()
    raw_by_id: dict[str, list[bytes]] = {}
    for start in range(0, len(lines), CHUNK):
        chunk = lines[start:start + CHUNK]
        try:  # fast path: one parse per chunk
            parsed: list[Any] = json.loads(b"[" + b",".join(chunk) + b"]")
        except (ValueError, RecursionError):
            parsed = [_parse(line) for line in chunk]
        for number, (line, record) in enumerate(zip(chunk, parsed), start=start + 1):
            _apply(result, raw_by_id, number, line, record)
    for item_id in result.damaged:
        result.items.pop(item_id, None)
        result.kept.extend(raw_by_id.pop(item_id, []))
    result.compact = not torn and not result.kept and len(lines) == len(result.items)
    return result


def _apply(result: Replayed, raw_by_id: dict[str, list[bytes]], number: int, line: bytes,
           record: Any) -> None:
    item_id = record.get("id") if isinstance(record, dict) and isinstance(record.get("id"), str) else None
    if item_id is not None:
        raw_by_id.setdefault(item_id, []).append(line)
    known = result.items.get(item_id) if item_id is not None else None
    problem = "not JSON" if record is _NOT_JSON else record_problem(record, first=known is None)
    if problem is None and item_id not in result.damaged:
        if known is None:
            result.items[item_id] = Item.from_dict(record)  # type: ignore[index]
        else:
            known.apply(record)
        return
    if problem is None:
        return  # a good line of an item already damaged: kept with it
    result.problems.append(f"line {number}: {problem}")
    if item_id is None:
        result.kept.append(line)
    else:
        result.damaged.setdefault(item_id, f"line {number}: {problem}")


_NOT_JSON = object()


def _parse(line: bytes) -> Any:
    try:
        return json.loads(line)
    except (ValueError, RecursionError):
        return _NOT_JSON

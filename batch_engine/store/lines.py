"""Reading the ledger's lines fast: in blocks, decoded a block at a time straight into typed
records (msgspec: the fields a reader does not name are skipped, the types of those it names
are checked as they are decoded), and the checks a record needs beyond its types.

Used by `replay` (a run's load: items at rest need a few fields) and `briefs` (status). A block
that does not decode whole (blank lines, a line that is not JSON, a wrong type) is decoded line by
line, so a bad line is named and the others are read.
"""

from __future__ import annotations

import math
from typing import Any, BinaryIO, Iterator

import msgspec
import orjson

from batch_engine.store.item import id_problem, state_and_video_problem

BLOCK = 512 * 1024  # bytes of the ledger decoded at once (about 1,000 lines)
_ERRORS = (msgspec.DecodeError, msgspec.ValidationError, RecursionError)


def lines_in_blocks(file: BinaryIO, limit: int | None = None) -> Iterator[tuple[int, int, list[bytes], bool]]:
    """(number of the first line, its offset in the file, the whole lines of the next block
    read, blank ones included; whether the last line is torn), reading at most `limit` bytes. A
    torn last line (the file does not end with a newline) is dropped when it does not parse and
    kept when it does; either way the file must be rewritten before anything is appended to it."""
    start, offset, rest = 1, 0, b""
    remaining = math.inf if limit is None else limit
    while remaining > 0 and (block := file.read(min(BLOCK, remaining))):
        remaining -= len(block)
        data = rest + block
        lines = data.split(b"\n")
        rest = lines.pop()  # what follows the last newline: the start of a line, or b""
        yield start, offset, lines, False
        start += len(lines)
        offset += len(data) - len(rest)
    if rest.strip():
        yield start, offset, [rest] if parses(rest) else [], True


class Decoded:
    """Iterate: (line number, offset, the line decoded as a `kind` or why it cannot be, the line)
    for every line that is not blank. Afterwards, `torn` says whether the last line had no
    newline (a torn write)."""

    def __init__(self, file: BinaryIO, kind: type, limit: int | None = None) -> None:
        self.file, self.kind, self.limit, self.torn = file, kind, limit, False

    def __iter__(self) -> Iterator[tuple[int, int, Any, bytes]]:
        decode_block = msgspec.json.Decoder(list[self.kind]).decode  # type: ignore[name-defined]
        decode_one = msgspec.json.Decoder(self.kind).decode
        for start, offset, lines, torn in lines_in_blocks(self.file, self.limit):
            self.torn = self.torn or torn
            try:
                values = decode_block(b"[" + b",".join(lines) + b"]")
                if len(values) != len(lines):  # a line holding two values
                    raise msgspec.DecodeError("not one value a line")
            except _ERRORS:
                values = None
            for number, line in enumerate(lines, start=start):
                if values is not None:
                    yield number, offset, values[number - start], line
                elif line.strip():
                    try:
                        yield number, offset, decode_one(line), line
                    except _ERRORS as e:
                        yield number, offset, str(e)[:200], line
                offset += len(line) + 1


def problem(record: Any, first: bool) -> str | None:
    """What `item.record_problem` checks beyond the types (msgspec checked those), on a decoded
    record (`request` and `fingerprint` left UNSET when absent)."""
    if why := id_problem(record.id):
        return why
    if first:
        if record.request is msgspec.UNSET or record.fingerprint is msgspec.UNSET:
            return "request missing" if record.request is msgspec.UNSET else "fingerprint missing"
        if memoryview(record.request)[:1] != b"{":
            return "request is not an object"
    return state_and_video_problem(record.id, record.state, record.video)


def id_of(line: bytes) -> str | None:
    """The item a line names, if it is a JSON object with a text id."""
    try:
        record = orjson.loads(line)
    except (ValueError, RecursionError):
        return None
    item_id = record.get("id") if isinstance(record, dict) else None
    return item_id if isinstance(item_id, str) else None


def parses(line: bytes) -> bool:
    try:
        orjson.loads(line)
    except (ValueError, RecursionError):
        return False
    return True

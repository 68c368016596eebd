"""What status reads of the ledger: each item's latest fields, streamed.

Status must not hold a 100,000-item ledger in memory to show it. Two passes over the file: the
first counts each item's lines (decoding nothing but `id`); the second decodes the fields status
shows straight into a `Brief` (msgspec: the other fields skipped, every type checked as it is
decoded), checks what `item.record_problem` checks beyond types, and hands each item on at its
last line. Only items whose record is spread over several lines (a run going on, or a ledger not
compacted yet) are held until then, so a compacted ledger streams in its own order. The part of
the file the compaction mark (`store.mark`) says holds one line per item is left out of the
first pass: only the lines after it are counted. An item with an unusable line is left out, as a
run leaves it, and named in the log; so is a repeated line in the marked part (a stale or forged
mark), after the item's first.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from pathlib import Path
from typing import BinaryIO, Iterator

import msgspec
import orjson
from msgspec import UNSET, UnsetType

from batch_engine.collector import paused
from batch_engine.store.ledger import LEDGER_NAME, LedgerError, open_to_read
from batch_engine.store.lines import Decoded, id_of, problem
from batch_engine.store.mark import compact_length

log = logging.getLogger(__name__)


class Brief(msgspec.Struct, gc=False):
    """An item as status shows it. `state` is the record's text (one of `State`)."""

    id: str
    state: str
    task_id: str | None = None
    attempts: int | None = None
    fail_code: str | None = None
    fail_msg: str | None = None
    provider_state: str | None = None
    video: str | None = None
    bytes: int | None = None
    sha256: str | None = None
    retryable: bool | None = None
    credits: int | float | None = None
    submitted_at: str | None = None
    finished_at: str | None = None
    updated_at: str | None = None
    # checked, not shown (dropped once checked)
    request: msgspec.Raw | UnsetType = UNSET   # an object, required on an item's first line
    fingerprint: str | None | UnsetType = UNSET  # required on an item's first line
    result_url: str | None = None
    unanswered_creates: int | None = None
    history: list | None = None
    created_at: str | None = None


SHOWN = tuple(name for name in Brief.__struct_fields__
              if name not in ("request", "fingerprint", "result_url", "unanswered_creates", "history",
                              "created_at"))  # the fields checked, not shown


class _Id(msgspec.Struct):
    id: str


def read_briefs(out_dir: Path) -> Iterator[Brief]:
    """Every usable item of the ledger in `out_dir`, each once, with its latest fields (read-only,
    no lock: a run may be going on). Both passes read the same file (one descriptor, never
    through a link) up to the length it had when the first began, so lines a run appends
    meanwhile are left for the next look. The first pass is made before this returns:
    LedgerError (or OSError) here when the ledger cannot be read."""
    fd = open_to_read(out_dir / LEDGER_NAME)
    if fd is None:
        raise LedgerError(f"no ledger in {out_dir} (looked for {out_dir / LEDGER_NAME})")
    try:
        size = os.fstat(fd).st_size
        head = compact_length(out_dir, fd, size)  # bytes holding one line per item (0: not known)
        os.lseek(fd, head, os.SEEK_SET)
        with open(os.dup(fd), "rb", buffering=0) as file:  # the lines after them
            left = Counter(record.id for _, _, record, _ in Decoded(file, _Id, size - head) if isinstance(record, _Id))
        os.lseek(fd, 0, os.SEEK_SET)
    except BaseException:
        os.close(fd)
        raise
    return _second_pass(open(fd, "rb", buffering=0), size, left, head)


def _second_pass(file: BinaryIO, size: int, left: Counter[str], head: int) -> Iterator[Brief]:
    with paused(), file:  # see collector.py
        yield from _fold(iter(Decoded(file, Brief, size)), left, head)


def _fold(lines: Iterator[tuple[int, int, Brief | str, bytes]], left: Counter[str], head: int) -> Iterator[Brief]:
    """`left`: each item's lines from byte `head` on; before it, one line an item."""
    held: dict[str, Brief] = {}   # items with lines still to come
    damaged: set[str] = set()
    in_head: set[str] = set()     # items seen in the part marked one line an item
    problems = 0
    for number, offset, brief, line in lines:
        if isinstance(brief, str):  # cannot be decoded: why
            item_id = id_of(line)
            if item_id is not None:
                damaged.add(item_id)
                held.pop(item_id, None)
            problems = _report(problems, number, brief)
            continue
        item_id = brief.id
        if offset < head:
            if item_id in in_head:  # the mark is stale or forged: this item's first line came
                problems = _report(problems, number, f"item {item_id[:60]!r} repeats in the part of the "
                                   "ledger marked compact", "the line is left out")
                continue
            in_head.add(item_id)
        else:
            left[item_id] -= 1
        if item_id in damaged:
            continue
        known = held.get(item_id)
        if why := problem(brief, first=known is None):
            damaged.add(item_id)
            held.pop(item_id, None)
            problems = _report(problems, number, why)
            continue
        if known is None:
            brief.request = UNSET  # checked: not held
            brief.history = brief.result_url = None
            known = brief
        else:
            for name in orjson.loads(line).keys() & SHOWN:  # the fields this change line sets
                setattr(known, name, getattr(brief, name))
        if left[item_id] > 0:
            held[item_id] = known
        else:
            held.pop(item_id, None)
            yield known
    for item_id in held:  # a line of it counted, then not decoded: left out, like a damaged one
        problems = _report(problems, 0, f"item {item_id[:60]!r} has a line that cannot be read")
    if problems > 20:
        log.warning("ledger: %d more unreadable lines; their items are left out", problems - 20)


def _report(problems: int, number: int, why: str, outcome: str = "the item is left out") -> int:
    if problems < 20:
        where = f"line {number}: " if number else ""
        log.warning("ledger: %s%s; %s", where, why, outcome)
    return problems + 1

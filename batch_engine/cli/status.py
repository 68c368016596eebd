"""`status`: the ledger of an output folder, read without the lock (a run may be going on)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from typing import Any

import msgspec
from rich.console import Console

from batch_engine.cli.common import OK, UsageError, open_output
from batch_engine.cli.settings import secrets_from_env
from batch_engine.report.live import read_progress
from batch_engine.report.status import status_rows, status_view
from batch_engine.states import state_counts
from batch_engine.store.decisions import DecisionBook
from batch_engine.store.ledger import LedgerError


def cmd_status(args: argparse.Namespace, console: Console) -> int:
    output = open_output(args.out)
    secrets = secrets_from_env()
    try:
        loaded = output.read_ledger()
        videos = output.videos()
    except LedgerError as e:  # a link, unreadable, a bucket that refuses
        raise UsageError(str(e)) from None
    if loaded is None:
        raise UsageError(f"no ledger in {output} (run a manifest there first)")
    items = list(loaded.items.values())
    book = DecisionBook(output.folder).load() if output.url is None else DecisionBook(output.folder)
    decided = {i: d.decision for i, d in book.latest.items()}
    going = read_progress(output.folder)
    if args.json:
        _write_json(status_rows(videos, items, secrets, decided), state_counts(item.state for item in items),
                    book.counts(), going)
    else:
        if going is not None:
            done, total = ("?" if going[k] is None else going[k] for k in ("done", "total"))
            Console().print(f"a run is going on here: {done}/{total} done, {going['left']}",
                            highlight=False, markup=False)
        status_view(output.out, items, Console(), secrets=secrets, decisions=book.counts())
    return OK


def _write_json(rows: Iterator[dict[str, Any]], counts: dict[str, int], decisions: dict[str, int],
                progress: dict[str, Any] | None) -> None:
    """`{"items": [...], "counts": {...}, "decisions": {...}}`, one item a line, a thousand rows a write."""
    write, encode = sys.stdout.buffer.write, msgspec.json.encode
    write(b'{"items": [')
    batch = []
    for n, row in enumerate(rows):
        batch.append((b"\n  " if n == 0 else b",\n  ") + encode(row))
        if len(batch) >= 1000:
            write(b"".join(batch))
            batch.clear()
    write(b"".join(batch) + b'\n],\n "counts": ' + encode(counts) + b',\n "decisions": ' + encode(decisions)
          + b',\n "progress": ' + encode(progress) + b"}\n")
    sys.stdout.flush()

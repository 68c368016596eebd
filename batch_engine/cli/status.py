"""`status`: the ledger of an output folder, read without the lock (a run may be going on)."""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import orjson
from rich.console import Console

from batch_engine.cli.common import OK, UsageError
from batch_engine.cli.settings import secrets_from_env
from batch_engine.report.status import status_rows, status_view
from batch_engine.states import state_counts
from batch_engine.store.briefs import Brief, read_briefs
from batch_engine.store.ledger import LEDGER_NAME, LedgerError


def cmd_status(args: argparse.Namespace, console: Console) -> int:
    out = Path(args.out)
    secrets = secrets_from_env()
    try:
        briefs = read_briefs(out)  # streamed: what status shows, each item at its last line
    except LedgerError as e:  # none there, a link, unreadable
        raise UsageError(str(e)) from None
    except OSError as e:
        raise UsageError(f"cannot read {out / LEDGER_NAME}: {e.strerror or e}") from None
    if args.json:
        found: Counter[str] = Counter()
        _write_json(status_rows(out, _counting(briefs, found), secrets), lambda: state_counts(found))
    else:
        status_view(out, briefs, Console(), secrets=secrets)
    return OK


def _counting(briefs: Iterable[Brief], found: Counter[str]) -> Iterator[Brief]:
    for brief in briefs:
        found[brief.state] += 1
        yield brief


def _write_json(rows: Iterator[dict[str, Any]], counts: Callable[[], dict[str, int]]) -> None:
    """`{"items": [...], "counts": {...}}`, one item a line, written as the rows come (a
    thousand a write); the counts are asked for after the last row."""
    write, dumps = sys.stdout.buffer.write, orjson.dumps
    write(b'{"items": [')
    batch = []
    for n, row in enumerate(rows):
        batch.append((b"\n  " if n == 0 else b",\n  ") + dumps(row))
        if len(batch) >= 1000:  # a thousand rows a write, not one
            write(b"".join(batch))
            batch.clear()
    write(b"".join(batch) + b'\n],\n "counts": ' + dumps(counts()) + b"}\n")
    sys.stdout.flush()

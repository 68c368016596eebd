"""`status`: the ledger of an output folder, read without the lock (a run may be going on)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import orjson
from rich.console import Console

from batch_engine.cli.common import OK, UsageError
from batch_engine.cli.settings import secrets_from_env
from batch_engine.report.status import counts, status_rows, status_view
from batch_engine.store.ledger import LEDGER_NAME, LedgerError, read_items


def cmd_status(args: argparse.Namespace, console: Console) -> int:
    out = Path(args.out)
    if not (out / LEDGER_NAME).exists():
        raise UsageError(f"no ledger in {out} (looked for {out / LEDGER_NAME})")
    try:
        items = read_items(out, keep_request=False).values()  # status needs no createTask body
    except LedgerError as e:
        raise UsageError(str(e)) from None
    secrets = secrets_from_env()
    if args.json:  # streamed, one item a line: readable, and light for 100,000 items
        write = sys.stdout.buffer.write
        write(b'{"items": [')
        for n, row in enumerate(status_rows(out, items, secrets)):
            write((b"\n  " if n == 0 else b",\n  ") + orjson.dumps(row))
        write(b'\n],\n "counts": ' + orjson.dumps(counts(items)) + b"}\n")
        sys.stdout.flush()
    else:
        status_view(out, items, Console(), secrets=secrets)
    return OK

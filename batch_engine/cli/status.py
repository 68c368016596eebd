"""`status`: the ledger of an output folder, read without the lock (a run may be going on)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from rich.console import Console

from batch_engine.cli.common import OK, UsageError
from batch_engine.cli.settings import secrets_from_env
from batch_engine.report.status import status_json, status_view
from batch_engine.store.ledger import LEDGER_NAME, LedgerError, read_items


def cmd_status(args: argparse.Namespace, console: Console) -> int:
    out = Path(args.out)
    if not (out / LEDGER_NAME).exists():
        raise UsageError(f"no ledger in {out} (looked for {out / LEDGER_NAME})")
    try:
        items = read_items(out).values()
    except LedgerError as e:
        raise UsageError(str(e)) from None
    secrets = secrets_from_env()
    if args.json:  # one item a line: readable, and quick to write for 100,000 items
        report = status_json(out, items, secrets)
        rows = ",\n  ".join(json.dumps(row, ensure_ascii=False) for row in report["items"])
        sys.stdout.write(f'{{"items": [\n  {rows}\n],\n "counts": {json.dumps(report["counts"])}}}\n')
    else:
        status_view(out, items, Console(), secrets=secrets)
    return OK

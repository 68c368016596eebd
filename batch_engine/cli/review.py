"""The morning review: `report` (DIR/report.html) and `redo` (make chosen videos again, paying
again on purpose, after saying how many tasks that is and asking)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from rich.console import Console

from batch_engine.cli.common import BAD_INPUT, OK, UsageError, open_output
from batch_engine.cli.settings import config_from_args
from batch_engine.config import Rate
from batch_engine.ids import unsafe_id_reason
from batch_engine.inputs import Unreadable, read_input
from batch_engine.pipeline.plan import plan_redo
from batch_engine.report.console import estimate
from batch_engine.report.html import REPORT_NAME, render_report, write_report
from batch_engine.store.ledger import LedgerError
from batch_engine.store.output import Output
from batch_engine.store.uploads import UploadBook
from batch_engine.store.videos import StoreError


def cmd_report(args: argparse.Namespace, console: Console) -> int:
    output = open_output(args.out)
    items = list(_items(output).values())
    if output.url is None:
        out = output.folder
        uploads = {sha: os.path.relpath(upload.path, out) for sha, upload in UploadBook(out).load().latest.items()}
        path = write_report(out, items, uploads, _rate(out))
        console.print(f"report: {path} ({len(items)} items); open it in a browser", highlight=False)
        return OK
    page = render_report(items, str(output), {}, None)
    try:
        output.videos().write(REPORT_NAME, page)
    except (StoreError, LedgerError) as e:
        raise UsageError(str(e)) from None
    console.print(f"report: {output.out}/{REPORT_NAME} ({len(items)} items), beside the videos", highlight=False)
    return OK


def redo_ids(args: argparse.Namespace) -> list[str]:
    ids = list(args.ids)
    if args.from_file:
        try:
            text = read_input(Path(args.from_file), 64 * 1024 * 1024, what="--from").decode("utf-8-sig")
        except Unreadable as e:
            raise UsageError(str(e)) from None
        except UnicodeDecodeError:
            raise UsageError(f"--from {args.from_file}: not UTF-8 text") from None
        ids += [line.strip() for line in text.splitlines() if line.strip()]
    if not ids:
        raise UsageError("name the items to make again (IDs, or --from FILE with one id a line)")
    bad = [i for i in ids if unsafe_id_reason(i)]
    if bad:
        raise UsageError(f"not item ids: {', '.join(repr(i[:40]) for i in bad[:5])}")
    return ids


def check_redo(args: argparse.Namespace, console: Console) -> tuple[list[str], int | None]:
    """The ids to make again, or an exit code: refused input, or no confirmation."""
    output = open_output(args.out, getattr(args, "cache", None))
    ids = redo_ids(args)
    known = _items(output)
    try:  # names the ids that are not succeeded items, and those the new prompt does not fit
        plan = plan_redo(known, ids, args.prompt)
    except ValueError as e:
        raise UsageError(str(e)) from None
    n = plan.creates
    console.print(f"redo: {n} item(s) will be made again: {n} new task(s), paid again; their "
                  f"current videos move to {output.out}/.replaced", highlight=False, markup=False)
    if args.dry_run:
        try:
            config_from_args(args, terminal=False)  # every option is checked, as the redo would
        except ValueError as e:
            raise UsageError(str(e)) from None
        if args.credits_per_task is not None:
            console.print(estimate(n, args.credits_per_task), highlight=False)
        console.print("dry run: nothing was created or moved", highlight=False)
        return ids, OK
    if args.yes:
        return ids, None
    if not sys.stdin.isatty():
        console.print("[red]not confirmed:[/] no terminal to ask on; add --yes to confirm. Nothing was created.")
        return ids, BAD_INPUT
    answer = console.input("make them again? [y/N] ").strip().lower()
    if answer not in ("y", "yes"):
        console.print("nothing was created")
        return ids, OK
    return ids, None


def _items(output: Output) -> dict:
    try:
        loaded = output.read_ledger()
    except LedgerError as e:
        raise UsageError(str(e)) from None
    if loaded is None:
        raise UsageError(f"no ledger in {output} (run a manifest there first)")
    return loaded.items


def _rate(out: Path) -> Rate | None:
    try:
        return Rate.parse(json.loads(read_input(out / "summary.json", 1024 * 1024, follow=False))["rate"])
    except (OSError, ValueError, KeyError, TypeError, RecursionError):
        return None

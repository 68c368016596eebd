"""`review` (the desk in the browser) and `export` (the approved videos, copied out)."""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import sys
import webbrowser
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rich.console import Console

from batch_engine.api import execute
from batch_engine.cli.common import OK, UsageError
from batch_engine.cli.settings import config_from_args
from batch_engine.desk.server import Desk, MakeAgain
from batch_engine.inputs import Unreadable
from batch_engine.pipeline.plan import plan_redo
from batch_engine.states import State
from batch_engine.store.decisions import DecisionBook
from batch_engine.store.folder import write_atomic
from batch_engine.store.item import video_name
from batch_engine.store.ledger import LEDGER_NAME, LedgerError, read_ledger
from batch_engine.store.metadata import INDEX_CSV, INDEX_JSONL, index_csv, index_jsonl, index_rows, metadata_name, poster_name


def cmd_review(args: argparse.Namespace, console: Console) -> int:
    folder = _folder(args.out)
    make_again = _make_again(args, folder, console)
    return asyncio.run(_serve(folder, args, console, make_again))


async def _serve(folder: Path, args: argparse.Namespace, console: Console, make_again: MakeAgain | None) -> int:
    desk = Desk(folder, make_again=make_again)
    try:
        url = await desk.start(args.host, args.port)
    except OSError as e:
        raise UsageError(f"cannot listen on {args.host}:{args.port}: {e.strerror or e}") from None
    stopped = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stopped.set)
    console.print(f"review desk: {url}", highlight=False, markup=False)
    console.print("keep this running while you review; Ctrl-C stops it (every decision is saved as it is made)",
                  highlight=False)
    if not args.no_open and (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY") or sys.platform == "darwin"):
        await asyncio.to_thread(webbrowser.open, url)
    try:
        await stopped.wait()
    finally:
        await desk.stop()
    console.print("review desk stopped", highlight=False)
    return OK


def _make_again(args: argparse.Namespace, folder: Path, console: Console) -> MakeAgain | None:
    """What the desk's confirm button runs: the same path as `redo` (None without an API key)."""
    try:
        config = config_from_args(args, terminal=False)
    except ValueError as e:
        raise UsageError(str(e)) from None
    if args.sandbox:
        console.print("no KIE_API_KEY: the desk shows the redo command for what you queue, and creates nothing",
                      highlight=False)
        return None

    async def make_again(queue: Mapping[str, str | None]) -> dict[str, Any]:
        prompts = {i: p for i, p in queue.items() if p}
        result = await execute(config, lambda ledger, videos: plan_redo(ledger.items, list(queue), prompts=prompts))
        return {"created": result.stats.creates_sent, "counts": result.counts}
    return make_again


def cmd_export(args: argparse.Namespace, console: Console) -> int:
    """Copy the approved videos (with their metadata and posters) to DEST, with an index."""
    folder = _folder(args.out)
    if not args.approved:
        raise UsageError("name where the approved videos go: export DIR --approved DEST")
    dest = Path(args.approved)
    if dest.resolve() == folder.resolve():
        raise UsageError("--approved must be another folder than the output folder")
    try:
        items = read_ledger(folder).items
    except LedgerError as e:
        raise UsageError(str(e)) from None
    approved = [items[i] for i, d in DecisionBook(folder).load().latest.items()
                if d.decision == "approved" and i in items and items[i].state is State.SUCCEEDED]
    try:
        dest.mkdir(parents=True, exist_ok=True)
        for item in approved:
            for name in (video_name(item.id), metadata_name(item.id), poster_name(item.id)):
                source = folder / name
                if source.is_file() and not source.is_symlink():
                    shutil.copyfile(source, dest / name)
        rows = index_rows(approved, video_name)
        write_atomic(dest / INDEX_CSV, index_csv(rows))
        write_atomic(dest / INDEX_JSONL, index_jsonl(rows))
    except (OSError, Unreadable) as e:
        raise UsageError(f"cannot export to {dest}: {getattr(e, 'strerror', None) or e}") from None
    console.print(f"exported {len(approved)} approved video(s) to {dest} (with {INDEX_CSV} and {INDEX_JSONL})",
                  highlight=False, markup=False)
    return OK


def _folder(text: str) -> Path:
    folder = Path(text)
    if "://" in text:
        raise UsageError("the desk and export work on a local folder; a bucket output is not served yet "
                         "(copy the prefix to a folder, e.g. with `aws s3 sync`, and review it there)")
    if not (folder / LEDGER_NAME).is_file():
        raise UsageError(f"no ledger in {folder} (run a manifest there first)")
    return folder

"""`batch-engine status DIR`: what a folder holds, for people (counts, failures grouped by reason,
timings, credits, where the videos are, the items needing attention) and for scripts (`--json`,
one item a line, the contract's fields plus a few). It reads the ledger without the lock, so it
works while a run is going on in another process."""

from __future__ import annotations

import os
import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any, Iterable, Iterator

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from batch_engine.report.console import counts, failure_text
from batch_engine.report.html import generation_seconds, parse_time
from batch_engine.states import State
from batch_engine.store.briefs import SHOWN, Brief
from batch_engine.store.item import Item
from batch_engine.text import clean


def status_rows(out_dir: Path, briefs: Iterable[Brief], secrets: tuple[str, ...] = ()) -> Iterator[dict[str, Any]]:
    """One row an item, made as it is written (status --json streams them). A video is named
    only when the item succeeded (a record's video is checked on reading: always `<id>.mp4`)."""
    folder = os.path.join(os.path.abspath(out_dir), "")
    for b in briefs:
        yield {"id": b.id, "state": b.state, "task_id": b.task_id, "fail_code": b.fail_code,
               "fail_msg": clean(b.fail_msg, secrets) if b.fail_msg is not None else None,
               "video": folder + b.video if b.video and b.state == State.SUCCEEDED else None,
               "bytes": b.bytes, "sha256": b.sha256, "attempts": b.attempts or 0, "retryable": b.retryable,
               "credits": b.credits, "provider_state": b.provider_state, "updated_at": b.updated_at}


def as_items(briefs: Iterable[Brief]) -> list[Item]:
    """Items for the view (its helpers take Items), without their createTask bodies."""
    return [Item.from_dict({**{name: getattr(brief, name) for name in SHOWN}, "attempts": brief.attempts or 0,
                            "request": {}, "fingerprint": ""}) for brief in briefs]


def status_view(out_dir: Path, items: Iterable[Item], console: Console, *, limit: int = 100,
                secrets: tuple[str, ...] = ()) -> None:
    items = list(items)
    found = counts(items)
    console.print(f"[bold]{len(items)} items[/]: " + "  ".join(f"{n} {s}" for s, n in found.items() if n))
    _failures(items, console, secrets)
    _timings(items, console)
    spent = [item.credits for item in items if item.credits is not None]
    if spent:
        console.print(f"credits: {sum(spent):g} spent on {len(spent)} task(s) (as the provider reports)")
    videos = [item for item in items if item.state is State.SUCCEEDED]
    size = sum(item.bytes or 0 for item in videos)
    console.print(f"videos in {escape(os.path.abspath(out_dir))}: {len(videos)} file(s), {size / 1e6:.1f} MB",
                  highlight=False)
    waiting = [item for item in items if item.state is not State.SUCCEEDED]
    if waiting:
        table = Table(title=f"{len(waiting)} item(s) not done", show_lines=False)
        for column in ("id", "state", "task", "tries", "detail"):
            table.add_column(column, overflow="fold")
        for item in waiting[:limit]:
            detail = failure_text(item, secrets) if item.fail_code or item.fail_msg else clean(item.provider_state or "")
            style = "red" if item.state is State.FAILED else "yellow"
            table.add_row(escape(clean(item.id)), f"[{style}]{item.state}[/]", escape(clean(item.task_id or "")),
                          str(item.attempts), escape(detail))
        console.print(table)
        if len(waiting) > limit:
            console.print(f"... and {len(waiting) - limit} more (use --json for all)")


def _failures(items: list[Item], console: Console, secrets: tuple[str, ...]) -> None:
    groups: dict[str, list[str]] = defaultdict(list)
    for item in items:
        if item.state is State.FAILED:
            groups[failure_text(item, secrets)[:160]].append(item.id)
    if not groups:
        return
    console.print("failures by reason:")
    for reason, ids in sorted(groups.items(), key=lambda kv: -len(kv[1])):
        shown = ", ".join(clean(i) for i in ids[:8]) + (f" and {len(ids) - 8} more" if len(ids) > 8 else "")
        console.print(f"  {len(ids)} x {escape(reason)}: {escape(shown)}", highlight=False)


def _timings(items: list[Item], console: Console) -> None:
    timed = [(seconds, item) for item in items if (seconds := generation_seconds(item)) is not None]
    if not timed:
        return
    seconds = [s for s, _ in timed]
    slowest, slow_item = max(timed, key=lambda pair: pair[0])
    done = sum(1 for item in items if item.state is State.SUCCEEDED)
    span = _span(items)
    rate = f", {done / span * 3600:.0f} videos an hour" if span and done else ""
    console.print(f"generation: median {statistics.median(seconds):.0f} s, slowest {slowest:.0f} s "
                  f"({escape(clean(slow_item.id))}){rate}", highlight=False)


def _span(items: list[Item]) -> float | None:
    starts = [t for item in items if (t := parse_time(item.submitted_at)) is not None]
    ends = [t for item in items if (t := parse_time(item.finished_at)) is not None]
    return max(ends) - min(starts) if starts and ends and max(ends) > min(starts) else None

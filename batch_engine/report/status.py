"""`batch-engine status DIR`: what a folder holds, for people (counts, failures grouped by reason,
timings, credits, where the videos are, the items needing attention) and for scripts (`--json`,
one item a line, the contract's fields plus a few). It reads the ledger without the lock, so it
works while a run is going on in another process."""

from __future__ import annotations

import os
import statistics
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import msgspec
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from batch_engine.states import State
from batch_engine.store.item import parse_time
from batch_engine.store.ledger import Item
from batch_engine.store.videos import VideoStore
from batch_engine.text import clean, failure_text


def status_rows(videos: VideoStore, items: Iterable[Item], secrets: tuple[str, ...] = (),
                decisions: Mapping[str, str] | None = None) -> Iterator[dict[str, Any]]:
    """One row an item, made as it is written (status --json streams them). A video is named
    only when the item succeeded; `decisions`: the reviewer's, by id."""
    decided = decisions or {}
    for b in items:
        yield {"id": b.id, "state": b.state, "task_id": b.task_id, "fail_code": b.fail_code,
               "fail_msg": clean(b.fail_msg, secrets) if b.fail_msg is not None else None,
               "video": videos.where(b.id) if b.video and b.state == State.SUCCEEDED else None,
               "bytes": b.size, "sha256": b.sha256, "attempts": b.attempts or 0, "retryable": b.retryable,
               "credits": b.credits, "provider_state": b.provider_state, "updated_at": b.updated_at,
               "media": msgspec.to_builtins(b.media) if b.media is not None else None, "flags": b.flags or [],
               "decision": decided.get(b.id)}


@dataclass
class Overview:
    """What the view shows, gathered in one pass over the items: counts, failures by reason,
    generation times, credits, videos, the first items not done."""

    limit: int
    secrets: tuple[str, ...] = ()
    total: int = 0
    states: Counter[str] = field(default_factory=Counter)
    failures: dict[str, list] = field(default_factory=dict)  # reason -> [count, first ids]
    seconds: list[float] = field(default_factory=list)
    slowest: tuple[float, str] | None = None
    first_start: float | None = None
    last_end: float | None = None
    credits: list[float] = field(default_factory=list)
    video_bytes: int = 0
    waiting: list[Item] = field(default_factory=list)

    def add(self, b: Item) -> None:
        self.total += 1
        self.states[b.state] += 1
        if b.state == State.FAILED:
            group = self.failures.setdefault(failure_text(b, self.secrets)[:160], [0, []])
            group[0] += 1
            if len(group[1]) < 8:
                group[1].append(b.id)
        if b.state == State.SUCCEEDED:
            self.video_bytes += b.size or 0
        elif len(self.waiting) < self.limit:
            self.waiting.append(b)
        if b.credits is not None:
            self.credits.append(b.credits)
        began, ended = parse_time(b.submitted_at), parse_time(b.finished_at)
        if began is not None:
            self.first_start = began if self.first_start is None else min(self.first_start, began)
        if ended is not None:
            self.last_end = ended if self.last_end is None else max(self.last_end, ended)
        if began is not None and ended is not None and ended >= began:
            self.seconds.append(ended - began)
            if self.slowest is None or ended - began > self.slowest[0]:
                self.slowest = (ended - began, b.id)


def status_view(out: str | os.PathLike[str], items: Iterable[Item], console: Console, *, limit: int = 100,
                secrets: tuple[str, ...] = (), decisions: Mapping[str, int] | None = None) -> None:
    g = Overview(limit, secrets)
    for item in items:
        g.add(item)
    console.print(f"[bold]{g.total} items[/]: " + "  ".join(
        f"{g.states[str(s)]} {s}" for s in State if g.states[str(s)]))
    if g.failures:
        console.print("failures by reason:")
        for reason, (n, ids) in sorted(g.failures.items(), key=lambda kv: -kv[1][0]):
            shown = ", ".join(clean(i) for i in ids) + (f" and {n - len(ids)} more" if n > len(ids) else "")
            console.print(f"  {n} x {escape(reason)}: {escape(shown)}", highlight=False)
    if g.slowest is not None:
        done = g.states[State.SUCCEEDED]
        span = g.last_end - g.first_start if g.first_start is not None and g.last_end is not None else None
        rate = f", {done / span * 3600:.0f} videos an hour" if span and span > 0 and done else ""
        console.print(f"create to saved video: median {statistics.median(g.seconds):.0f} s, slowest {g.slowest[0]:.0f} s "
                      f"({escape(clean(g.slowest[1]))}){rate}", highlight=False)
    if g.credits:
        console.print(f"credits: {sum(g.credits):g} spent on {len(g.credits)} task(s) (as the provider reports)")
    where = str(out) if "://" in str(out) else os.path.abspath(out)
    console.print(f"videos in {escape(clean(where))}: {g.states[State.SUCCEEDED]} file(s), "
                  f"{g.video_bytes / 1e6:.1f} MB", highlight=False)
    if decisions:
        console.print("reviewed: " + ", ".join(f"{n} {'to make again' if k == 'remake' else k}"
                                               for k, n in sorted(decisions.items())), highlight=False)
    not_done = g.total - g.states[State.SUCCEEDED]
    if not_done:
        table = Table(title=f"{not_done} item(s) not done", show_lines=False)
        for column in ("id", "state", "task", "tries", "detail"):
            table.add_column(column, overflow="fold")
        for b in g.waiting:
            detail = failure_text(b, secrets) if b.fail_code or b.fail_msg else clean(b.provider_state or "")
            style = "red" if b.state == State.FAILED else "yellow"
            table.add_row(escape(clean(b.id)), f"[{style}]{b.state}[/]", escape(clean(b.task_id or "")),
                          str(b.attempts or 0), escape(detail))
        console.print(table)
        if not_done > limit:
            console.print(f"... and {not_done - limit} more (use --json for all)")

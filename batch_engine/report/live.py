"""What a running batch shows: a live panel in a terminal, a plain line a minute without one.

Both read a `Snapshot` of the run's published `Progress` (the ledger's counts, the create
times, the generation times seen) and the cap the create gate believes, never by scanning every item, so a redraw costs the
same for ten items and for a hundred thousand.
"""

from __future__ import annotations

import asyncio
import logging
import statistics
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from batch_engine.states import State

if TYPE_CHECKING:
    from batch_engine.pipeline.engine import Run

log = logging.getLogger("batch_engine.progress")


@dataclass(frozen=True, slots=True)
class Snapshot:
    counts: dict[State, int]
    total: int
    creates_per_minute: float   # over the last minute
    cap_per_minute: float       # what the create gate believes the account allows now
    elapsed: float
    eta: float | None           # seconds, when it can be told
    credits_spent: float
    rate_limited: int

    @property
    def done(self) -> int:
        return self.counts.get(State.SUCCEEDED, 0) + self.counts.get(State.FAILED, 0)


def snapshot(run: Run, now: float | None = None) -> Snapshot:
    progress = run.progress
    now = time.monotonic() if now is None else now
    recent = sum(1 for t in reversed(progress.create_times) if now - t <= 60.0)
    cap = run.gate.cap_per_minute()
    counts = {state: n for state, n in progress.counts.items() if n}
    to_create, in_flight = progress.to_create(), progress.in_flight()
    eta = None
    if progress.durations and (to_create or in_flight):
        generation = statistics.median(progress.durations)
        eta = to_create / (cap / 60.0) + generation if to_create else generation / 2
    elif not (to_create or in_flight):
        eta = 0.0
    return Snapshot(counts, progress.total, recent, cap, now - progress.started, eta,
                    float(progress.stats.credits_spent), progress.stats.rate_limited)


def render(s: Snapshot) -> Group:
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold")
    table.add_column()
    states = "  ".join(f"{state} {s.counts.get(state, 0)}" for state in State if s.counts.get(state))
    table.add_row("items", f"{s.done}/{s.total} at rest   {states or '-'}")
    table.add_row("creates", f"{s.creates_per_minute:.0f}/min (cap {s.cap_per_minute:.0f}/min), "
                             f"{s.rate_limited} answered 429")
    table.add_row("in flight", f"{s.counts.get(State.RUNNING, 0)} generating, "
                               f"{s.counts.get(State.DOWNLOADING, 0)} downloading")
    table.add_row("videos", f"{s.counts.get(State.SUCCEEDED, 0)} saved, [red]{s.counts.get(State.FAILED, 0)} failed[/]")
    if s.credits_spent:
        table.add_row("credits", f"{s.credits_spent:g} spent")
    eta = "-" if s.eta is None else _duration(s.eta)
    table.add_row("time", f"{_duration(s.elapsed)} elapsed, about {eta} to go")
    return Group(Text("batch-engine", style="bold cyan"), table)


def line(s: Snapshot) -> str:
    states = ", ".join(f"{n} {state}" for state, n in s.counts.items())
    eta = "" if s.eta is None else f", about {_duration(s.eta)} to go"
    return (f"progress: {s.done}/{s.total} at rest ({states}); {s.creates_per_minute:.0f} creates/min "
            f"(cap {s.cap_per_minute:.0f}), {s.rate_limited} answered 429{eta}")


async def live_display(run: Run, console: Console, every: float = 0.25) -> None:
    """A live panel for a terminal. Cancellation (the end, Ctrl-C) leaves the terminal clean:
    rich's Live restores the cursor on the way out."""
    with Live(render(snapshot(run)), console=console, transient=True, auto_refresh=False) as live:
        while True:
            live.update(render(snapshot(run)), refresh=True)
            await asyncio.sleep(every)


async def progress_lines(run: Run, every: float = 60.0) -> None:
    """Without a terminal (cron): one log line a minute, so a long run shows it is alive."""
    while True:
        await asyncio.sleep(every)
        log.info("%s", line(snapshot(run)))


def _duration(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}h{rest // 60:02d}m" if hours else f"{rest // 60}m{rest % 60:02d}s"

"""What a running batch shows: a live panel in a terminal, a plain line a minute without one.

Both read a `Snapshot` of the run's published `Progress` (the ledger's counts, the create
times, the generation times seen) and the cap the create gate believes, never by scanning every item, so a redraw costs the
same for ten items and for a hundred thousand.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from batch_engine.inputs import read_input
from batch_engine.pacing.eta import Eta, describe, estimate
from batch_engine.states import State
from batch_engine.store.folder import write_atomic
from batch_engine.text import clean

if TYPE_CHECKING:
    from batch_engine.pipeline.engine import Run

log = logging.getLogger("batch_engine.progress")
PROGRESS_NAME = "progress.json"
MAX_FIGURE = 1e12  # items or seconds: more than any run has


@dataclass(frozen=True, slots=True)
class Snapshot:
    counts: dict[State, int]
    total: int
    creates_per_minute: float   # over the last minute
    cap_per_minute: float       # what the create gate believes the account allows now
    elapsed: float
    eta: Eta | None             # seconds left, when they can be told (`pacing.eta`)
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
    ages, seen, due = run.poller.in_flight(now)
    schedule = run.poller.schedule  # with callbacks, a task is known to run up to its age, its end told at once
    eta = estimate(to_create=progress.to_create(), cap_per_second=cap / 60.0, ages=ages, seen=seen, due=due,
                   durations=list(progress.durations) or progress.prior,
                   downloading=progress.counts.get(State.DOWNLOADING, 0),
                   notice=None if schedule.callbacks else schedule.noticed)
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
    table.add_row("time", f"{_duration(s.elapsed)} elapsed, {left(s)}")
    return Group(Text("batch-engine", style="bold cyan"), table)


def line(s: Snapshot) -> str:
    states = ", ".join(f"{n} {state}" for state, n in s.counts.items())
    eta = f", {left(s)}"
    return (f"progress: {s.done}/{s.total} at rest ({states}); {s.creates_per_minute:.0f} creates/min "
            f"(cap {s.cap_per_minute:.0f}), {s.rate_limited} answered 429{eta}")


def left(s: Snapshot) -> str:
    """The time left for people: a range while uncertain, never seconds while tasks generate."""
    text = describe(s.eta, generating=bool(s.counts.get(State.RUNNING) or s.counts.get(State.SUBMITTING)
                                           or s.counts.get(State.PENDING)))
    return text if text in ("done",) or text.startswith("unknown") else f"{text} to go"


def progress_record(s: Snapshot) -> dict[str, object]:
    """What `status` shows of a run going on in another process (DIR/progress.json)."""
    return {"at": time.time(), "done": s.done, "total": s.total, "left": left(s),
            "eta_low": None if s.eta is None else round(s.eta.low, 1),
            "eta": None if s.eta is None else round(s.eta.middle, 1),
            "eta_high": None if s.eta is None else round(s.eta.high, 1)}


async def live_display(run: Run, console: Console, every: float = 0.25) -> None:
    """A live panel for a terminal. Cancellation (the end, Ctrl-C) leaves the terminal clean:
    rich's Live restores the cursor on the way out."""
    with Live(render(snapshot(run)), console=console, transient=True, auto_refresh=False) as live:
        while True:
            live.update(render(snapshot(run)), refresh=True)
            await asyncio.sleep(every)


async def keep_progress(run: Run, folder: Path, every: float = 1.0) -> None:
    """DIR/progress.json every `every` seconds while the run lives, removed at its end: `status`
    in another process shows the same figures as the panel."""
    path = folder / PROGRESS_NAME
    try:
        while True:
            try:
                write_atomic(path, json.dumps(progress_record(snapshot(run))).encode())
            except OSError:
                pass
            await asyncio.sleep(every)
    finally:
        path.unlink(missing_ok=True)


def read_progress(folder: Path, now: float | None = None) -> dict[str, object] | None:
    """The progress a run going on wrote (None: none, or older than a few of its writes)."""
    try:
        record = json.loads(read_input(folder / PROGRESS_NAME, 64 * 1024, follow=False))
        at = float(record["at"])
    except (OSError, ValueError, KeyError, TypeError, RecursionError, OverflowError):
        return None
    if not abs((time.time() if now is None else now) - at) <= 15:  # NaN too: a forged file is no run
        return None
    numbers = {k: _number(record.get(k), whole=k in ("done", "total"))
               for k in ("done", "total", "eta_low", "eta", "eta_high")}
    return {"at": at, **numbers, "left": clean(record.get("left", ""), limit=80)}  # the folder's file: input too


def _number(value: object, *, whole: bool = False) -> float | None:
    """A figure from the folder's progress file: a whole number for a count (`whole`), else any;
    from zero to MAX_FIGURE (an integer of a thousand digits is not a float), else None."""
    if isinstance(value, bool) or not isinstance(value, int if whole else (int, float)):
        return None
    return value if 0 <= value <= MAX_FIGURE else None  # NaN fails both tests


async def progress_lines(run: Run, every: float = 60.0) -> None:
    """Without a terminal (cron): one log line a minute, so a long run shows it is alive."""
    while True:
        await asyncio.sleep(every)
        log.info("%s", line(snapshot(run)))


def _duration(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}h{rest // 60:02d}m" if hours else f"{rest // 60}m{rest % 60:02d}s"

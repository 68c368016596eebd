"""The live display: drawn from the counts the run keeps, in a terminal a panel that
leaves the terminal clean when cancelled, without one a plain line."""

from __future__ import annotations

import asyncio
import io
import logging
import time
from types import SimpleNamespace

import pytest
from rich.console import Console

from batch_engine.config import PollSettings, Rate
from batch_engine.pacing.create_gate import CreateGate
from batch_engine.pacing.poll_schedule import PollSchedule
from batch_engine.pipeline.context import Progress
from batch_engine.report.live import live_display, progress_lines, render, snapshot
from batch_engine.states import State
from batch_engine.store import changes
from batch_engine.store.ledger import Item, Ledger


def a_run(tmp_path, n: int = 6):
    ledger = Ledger(tmp_path).open()
    items = [ledger.add(Item(id=f"sku-{i}", request={}, fingerprint="f", state=State.PENDING)) for i in range(n)]
    ledger.track(items)
    progress = Progress(ledger.counts)
    progress.total = n
    poller = SimpleNamespace(in_flight=lambda now: ([5.0], [None], [None]),  # one task in flight, 5 s old
                             schedule=PollSchedule(PollSettings()))
    return SimpleNamespace(progress=progress, gate=CreateGate(Rate(20, 10.0)), poller=poller), ledger, items


def test_counts_follow_every_ledger_change_without_a_scan(tmp_path):
    run, ledger, items = a_run(tmp_path)
    ledger.apply(items[0], changes.sending(items[0]))
    ledger.apply(items[0], changes.created("t"))
    ledger.apply(items[1], changes.sending(items[1]))
    ledger.apply(items[1], changes.failed("x", "no", retryable=False))
    run.progress.create_times.extend([time.monotonic()] * 2)
    run.progress.durations.extend([30.0, 40.0])
    s = snapshot(run)
    assert s.counts == {State.PENDING: 4, State.RUNNING: 1, State.FAILED: 1}
    assert s.done == 1 and s.total == 6 and s.creates_per_minute == 2 and s.cap_per_minute == 120
    assert s.eta is not None and s.eta.middle > 35  # 4 creates at 2/s, then a generation of 30-40 s
    assert s.eta.low <= s.eta.middle <= s.eta.high
    ledger.close()


def test_with_callbacks_a_task_is_known_to_run_up_to_its_age(tmp_path):
    run, ledger, items = a_run(tmp_path, n=1)
    ledger.apply(items[0], changes.sending(items[0]))
    ledger.apply(items[0], changes.created("t"))  # nothing left to create
    run.progress.durations.extend(50.0 + i for i in range(100))  # 50..149 s
    # one task 100 s old, never polled, its next look at 140 s: with polls, it may have ended
    # unseen and is seen done at that look; with callbacks, it runs still (half of those that
    # reach 100 s end by about 125 s) and is told as it ends
    run.poller.in_flight = lambda now: ([100.0], [None], [140.0])
    polled = snapshot(run).eta
    run.poller.schedule = PollSchedule(PollSettings(), callbacks=True)
    told = snapshot(run).eta
    assert polled is not None and told is not None
    assert polled.middle == pytest.approx(40.0)  # at the look
    assert 15 < told.middle < 40
    ledger.close()


def test_the_panel_in_a_terminal_and_a_clean_exit_on_cancel(tmp_path):
    run, ledger, items = a_run(tmp_path)
    ledger.apply(items[2], changes.sending(items[2]))
    text = io.StringIO()
    console = Console(file=text, force_terminal=True, width=100, color_system=None)
    console.print(render(snapshot(run)))
    shown = text.getvalue()
    assert "0/6 at rest" in shown and "pending 5" in shown and "submitting 1" in shown
    assert "cap 120/min" in shown

    async def draw_then_interrupt() -> None:
        task = asyncio.create_task(live_display(run, console, every=0.01))
        await asyncio.sleep(0.1)
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass
    text.seek(0)
    text.truncate(0)
    asyncio.run(draw_then_interrupt())
    assert "\x1b[?25h" in text.getvalue(), "the cursor is shown again after a Ctrl-C"
    ledger.close()


def test_without_a_terminal_a_plain_line(tmp_path, caplog):
    run, ledger, _ = a_run(tmp_path, 3)

    async def a_few_lines() -> None:
        task = asyncio.create_task(progress_lines(run, every=0.01))
        await asyncio.sleep(0.1)
        task.cancel()
    with caplog.at_level(logging.INFO, logger="batch_engine.progress"):
        asyncio.run(a_few_lines())
    lines = [r.getMessage() for r in caplog.records if r.name == "batch_engine.progress"]
    assert lines and lines[0].startswith("progress: 0/3 at rest (3 pending)")
    assert all("\x1b" not in line for line in lines)
    ledger.close()

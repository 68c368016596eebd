"""Waits that end on an event or a time limit never lose a cancellation (a lost one hung runs)."""

from __future__ import annotations

import asyncio

import pytest

from batch_engine.config import PollSettings, Rate
from batch_engine.pacing.create_gate import CreateGate
from batch_engine.pacing.waits import wait_event
from batch_engine.pipeline.context import Control, Progress
from batch_engine.pipeline.poll import Poller
from batch_engine.states import State
from batch_engine.store.ledger import Item, now_iso

STEPS = range(4)  # loop steps between the event firing and the cancellation: every interleaving


async def _cancel_as_it_fires(task: asyncio.Task, fire, steps: int) -> bool:
    """Let `task` settle into its wait, fire its event, then cancel it `steps` loop steps later;
    False if it had already ended by then."""
    for _ in range(3):
        await asyncio.sleep(0)
    fire()
    for _ in range(steps):
        await asyncio.sleep(0)
    return task.cancel()


async def test_wait_event_says_whether_the_event_came():
    """True as soon as the event is set, False when the time runs out first."""
    event = asyncio.Event()
    asyncio.get_running_loop().call_soon(event.set)
    assert await wait_event(event, 5.0) is True
    assert await wait_event(asyncio.Event(), 0.01) is False


@pytest.mark.parametrize("steps", STEPS)
async def test_a_waiting_loop_cancelled_as_its_event_fires_stops(steps):
    """The pattern of the workers: wait in a loop; a cancellation in the step the event fires ends it."""
    event = asyncio.Event()
    rounds = 0

    async def waiting_loop() -> None:
        nonlocal rounds
        while rounds < 5:  # bounded: a lost cancellation shows as a normal return
            rounds += 1
            event.clear()
            await wait_event(event, 30.0)

    task = asyncio.create_task(waiting_loop())
    await _cancel_as_it_fires(task, event.set, steps)
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 5.0)


@pytest.mark.parametrize("steps", STEPS)
async def test_poll_scheduler_stops_when_cancelled_as_a_task_arrives(tmp_path, steps):
    """The scheduler, waiting for its next check, is cancelled in the step a new task wakes it."""
    gate = CreateGate(Rate(20, 10.0))
    poller = Poller(PollSettings(), ledger=None, provider=None, control=Control(gate),  # type: ignore[arg-type]  # never polls
                    progress=Progress({}), to_download=lambda item: None)

    def item(name: str) -> Item:
        return Item(id=name, request={}, fingerprint="f", state=State.PENDING, task_id=f"task-{name}", submitted_at=now_iso())

    poller.track(item("a"), delay=60.0)
    scheduler = asyncio.create_task(poller.scheduler())
    await _cancel_as_it_fires(scheduler, lambda: poller.track(item("b"), delay=30.0), steps)
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(scheduler, 5.0)


@pytest.mark.parametrize("steps", STEPS)
async def test_create_gate_wait_is_cancelled_even_as_the_gate_closes(steps):
    """A create waiting out a pause, cancelled as the gate closes, raises rather than returns."""
    gate = CreateGate(Rate(20, 10.0))
    gate.pause(60.0)
    waiting = asyncio.create_task(gate.acquire())
    if await _cancel_as_it_fires(waiting, gate.close, steps):
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(waiting, 5.0)
    else:  # it saw the gate closed before the cancellation came: it says so, and nothing is lost
        assert waiting.result() is None

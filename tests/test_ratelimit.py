"""The create gate: the pure policy (no loop, no sleeps) and the window guarantee on a real loop."""

from __future__ import annotations

import asyncio

import pytest

from batch_engine.config import Rate
from batch_engine.ratelimit import CreateGate, RatePolicy, backoff_delay


def test_backoff_is_capped_jittered_and_overflow_safe():
    """Delays double per attempt within [half, full] of the step, never past the cap."""
    assert backoff_delay(1, base=1, rng=lambda: 1.0) == 1.0
    assert backoff_delay(3, base=1, rng=lambda: 0.0) == 2.0
    assert backoff_delay(10_000, base=1, cap=60, rng=lambda: 1.0) == 60.0


def test_429_cuts_the_cap_once_per_window_and_pauses_everyone():
    """A burst of 429s lowers the cap once, not once per answer; all creates pause until Retry-After."""
    policy = RatePolicy(Rate(20, 10.0))
    for t in (100.0, 100.1, 100.2):
        policy.on_rate_limited(t, retry_after=3.0)
    assert policy.creates == 15
    assert policy.pause_until == pytest.approx(103.2)
    policy.on_rate_limited(111.0, retry_after=None)
    assert policy.creates == 11
    assert 111.0 < policy.pause_until <= 121.0


def test_cap_creeps_back_up_after_clean_windows_but_never_past_the_told_cap():
    """Once 429s stop, one more create per window is allowed every two clean windows, up to the told cap."""
    policy = RatePolicy(Rate(20, 10.0))
    policy.on_rate_limited(0.0, retry_after=1.0)
    assert policy.creates == 15
    for t in range(1, 400):
        policy.on_accepted(float(t))
    assert policy.creates == 20
    assert RatePolicy(Rate(20, 10.0)).creates == 20


def test_maintenance_pause_is_shared():
    """A maintenance answer pauses every create for the given time."""
    policy = RatePolicy(Rate(20, 10.0))
    policy.on_pause(50.0, 60.0)
    assert policy.pause_until == 110.0


async def test_gate_keeps_every_window_under_the_cap():
    """Creates through the gate never put more than N in any window of W seconds, counted from answers."""
    gate = CreateGate(Rate(5, 0.3))
    sent: list[float] = []
    loop = asyncio.get_running_loop()

    async def create() -> None:
        slot = await gate.acquire()
        assert slot is not None
        sent.append(loop.time())
        await asyncio.sleep(0.01)  # the answer takes a moment
        gate.answered(slot, accepted=True)

    await asyncio.wait_for(asyncio.gather(*(create() for _ in range(16))), timeout=10)
    assert len(sent) == 16
    assert all(later - earlier >= 0.3 for earlier, later in zip(sent, sent[5:]))
    assert sent[-1] - sent[0] < 1.5  # and it keeps the pace (3 full windows' worth)


async def test_gate_counts_creates_of_an_earlier_run():
    """Creates a crashed run made in the current window are counted: no fresh burst on restart."""
    gate = CreateGate(Rate(3, 0.4))
    gate.seed([0.0, 0.05, 0.1])  # three creates just now
    loop = asyncio.get_running_loop()
    start = loop.time()
    slot = await asyncio.wait_for(gate.acquire(), timeout=5)
    assert slot is not None and loop.time() - start >= 0.25


async def test_closed_gate_lets_nothing_through():
    """Once the account is refused, waiting creates are turned away."""
    gate = CreateGate(Rate(1, 5.0))
    first = await gate.acquire()
    gate.answered(first, accepted=True)
    waiting = asyncio.ensure_future(gate.acquire())
    await asyncio.sleep(0)
    gate.close()
    assert await asyncio.wait_for(waiting, timeout=1) is None  # at once, not after the 5 s window

"""The create gate: the pure policy (no loop, no sleeps) and the window guarantee on a real loop."""

from __future__ import annotations

import asyncio

import pytest

from batch_engine.config import Rate
from batch_engine.pacing.create_gate import CreateGate, RatePolicy
from batch_engine.pacing.policy import backoff_delay
from batch_engine.pacing.poll_pace import PollPace


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
    assert policy.creates == 16
    assert policy.pause_until == pytest.approx(103.2)
    policy.on_rate_limited(111.0, retry_after=None)
    assert policy.creates == 12
    assert 111.0 < policy.pause_until <= 121.0


def test_429_learns_the_hidden_cap_from_what_was_accepted():
    """Told 20/10s while the provider allows 8: the first 429 sets the cap to the 8 it accepted."""
    policy = RatePolicy(Rate(20, 10.0))
    policy.on_rate_limited(4.0, retry_after=None, accepted_in_window=8)
    assert policy.creates == 8
    policy.on_rate_limited(4.5, retry_after=None, accepted_in_window=8)  # same window: no new cut
    assert policy.creates == 8


def test_probes_back_up_ever_more_rarely_after_each_429():
    """The cap probes one step up after two clean windows; a probe that meets a 429 doubles the wait."""
    policy = RatePolicy(Rate(20, 10.0))
    policy.on_rate_limited(0.0, retry_after=0.0, accepted_in_window=8)
    policy.on_accepted(19.0)
    assert policy.creates == 8
    policy.on_accepted(20.0)
    assert policy.creates == 9  # probe after 2 windows
    policy.on_rate_limited(21.0, retry_after=0.0, accepted_in_window=8)
    assert policy.creates == 8
    policy.on_accepted(21.0 + 39.0)
    assert policy.creates == 8  # now 4 windows before the next probe
    policy.on_accepted(21.0 + 40.0)
    assert policy.creates == 9


def test_429_without_retry_after_backs_off_with_the_streak():
    """Without Retry-After, the pause grows with consecutive 429s, capped at one window."""
    policy = RatePolicy(Rate(10, 2.0))
    pauses = []
    for n in range(8):
        now = 100.0 + n * 10
        policy.on_rate_limited(now, retry_after=None, accepted_in_window=5)
        pauses.append(policy.pause_until - now)
    assert pauses[-1] <= 2.0 and max(pauses[:2]) < pauses[-1] + 1e-9

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


async def test_gate_keeps_only_the_latest_earlier_creates_that_can_matter():
    """A ledger may list more creates in the window than the cap allows (a clock that jumped, a
    hand edit): the gate keeps the latest, as many as the cap, and waits on the same one."""
    gate = CreateGate(Rate(3, 0.4))
    gate.seed([i / 1000 for i in range(100_000)][::-1])  # a create every ms: 400 in the 0.4 s window
    assert len(gate._log) == 3
    loop = asyncio.get_running_loop()
    start = loop.time()
    slot = await asyncio.wait_for(gate.acquire(), timeout=5)
    assert slot is not None and loop.time() - start >= 0.25  # the oldest of the latest three: 2 ms ago


async def test_closed_gate_lets_nothing_through():
    """Once the account is refused, waiting creates are turned away."""
    gate = CreateGate(Rate(1, 5.0))
    first = await gate.acquire()
    gate.answered(first, accepted=True)
    waiting = asyncio.ensure_future(gate.acquire())
    await asyncio.sleep(0)
    gate.close()
    assert await asyncio.wait_for(waiting, timeout=1) is None  # at once, not after the 5 s window


def test_poll_429s_halve_the_poll_rate_once_a_second_and_pause_every_poll():
    """A burst of 429s on polls halves the rate once, pauses all polls (Retry-After, else 1 s);
    another burst a second later halves it again, never below the floor."""
    pace = PollPace(25.0)
    for t in (10.0, 10.2, 10.4):
        pace.on_refused(t, retry_after=None)
    assert pace.rate == 12.5 and pace.throttled
    assert pace.pause_until == pytest.approx(11.4)
    pace.on_refused(11.5, retry_after=4.0)
    assert pace.rate == 6.25 and pace.pause_until == pytest.approx(15.5)
    for t in range(12, 40):
        pace.on_refused(float(t), retry_after=None)
    assert pace.rate == PollPace.FLOOR


def test_poll_rate_climbs_back_when_429s_stop():
    """Without 429s the rate rises a quarter per RECOVER seconds, up to what was allowed, no further."""
    pace = PollPace(10.0)
    pace.on_refused(0.0, retry_after=None)
    pace.on_answered(5.0)
    assert pace.rate == 5.0, "too soon to climb"
    t, steps = 0.0, 0
    while pace.throttled and steps < 20:
        t += PollPace.RECOVER
        pace.on_answered(t)
        steps += 1
    assert pace.rate == 10.0 and steps == 4

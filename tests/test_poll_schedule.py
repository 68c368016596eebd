"""The poll schedule, simulated with plain numbers (no clock, no loop): few polls, prompt notice."""

from __future__ import annotations

import heapq
import random

import pytest

from batch_engine.config import PollSettings
from batch_engine.poll_schedule import PollSchedule


def simulate(durations: list[float], *, callbacks: bool = False) -> tuple[float, list[float]]:
    """Tasks all started at t=0, checked as the poller does. Returns (polls per task, lag/duration)."""
    schedule = PollSchedule(PollSettings(), callbacks=callbacks)
    heap = [(schedule.next_check(0.0), i, 0) for i in range(len(durations))]
    heapq.heapify(heap)
    gen, checks = [0] * len(durations), [0] * len(durations)
    polls, lags, open_ = [0] * len(durations), [0.0] * len(durations), set(range(len(durations)))
    for _ in range(1_000_000):  # bounded; every step moves a task forward in time
        if not heap:
            break
        now, i, g = heapq.heappop(heap)
        if g != gen[i] or i not in open_:
            continue
        checks[i] += 1
        if schedule.should_poll(now, len(open_), i, checks[i]):
            polls[i] += 1
            if now >= durations[i]:
                open_.discard(i)
                lags[i] = (now - durations[i]) / durations[i]
                if schedule.observe(durations[i]):  # first news: re-plan every task in flight
                    for j in open_:
                        gen[j] += 1
                        heapq.heappush(heap, (now + schedule.replan(now), j, gen[j]))
                continue
        heapq.heappush(heap, (now + schedule.next_check(now), i, gen[i]))
    return sum(polls) / len(polls), lags


@pytest.mark.parametrize("seed", range(8))
def test_two_x_spread_few_polls_and_prompt_notice(seed):
    """Generations of 20-40 s, all started together: <= 4 polls per task on average, every
    finished task noticed within 30% of its generation time, 15% on average."""
    rng = random.Random(seed)
    durations = [rng.uniform(20, 40) for _ in range(200)]
    mean_polls, lags = simulate(durations)
    assert mean_polls <= 4.0, mean_polls
    assert max(lags) <= 0.30, max(lags)
    assert sum(lags) / len(lags) <= 0.15, sum(lags) / len(lags)


@pytest.mark.parametrize("low, high", [(60, 120), (120, 240)])
@pytest.mark.parametrize("seed", range(8))
def test_longer_generations_stay_near_the_targets(low, high, seed):
    """Minutes-long generations cost more checks before the first news (the log of the age):
    the same targets hold within a small margin (measured: at most 4.1 polls, worst task 33%)."""
    rng = random.Random(seed)
    durations = [rng.uniform(low, high) for _ in range(200)]
    mean_polls, lags = simulate(durations)
    assert mean_polls <= 4.2, mean_polls
    assert max(lags) <= 0.35, max(lags)
    assert sum(lags) / len(lags) <= 0.15, sum(lags) / len(lags)


def test_a_fixed_cadence_is_what_it_replaces():
    """For scale: a fixed 2.5 s cadence spends 8-16 polls per task on the same batch."""
    rng = random.Random(5)
    durations = [rng.uniform(20, 40) for _ in range(200)]
    fixed = sum(int(d // 2.5) + 1 for d in durations) / len(durations)
    assert fixed > 8 and simulate(durations)[0] < fixed / 2


def test_small_batch_is_polled_at_every_check():
    """With a handful of tasks in flight every check is a poll; in a big batch, a rotating few."""
    schedule = PollSchedule(PollSettings())
    assert all(schedule.should_poll(10.0, 8, order, 1) for order in range(8))
    polled = [order for order in range(200) if schedule.should_poll(10.0, 200, order, 3)]
    assert len(polled) == 8
    assert polled != [order for order in range(200) if schedule.should_poll(10.0, 200, order, 4)]
    assert schedule.should_poll(300.0, 200, 1, 1), "old tasks are polled without news"


def test_callbacks_leave_polling_as_a_slow_fallback():
    """With callbacks on, a task is first polled only after several expected durations."""
    schedule = PollSchedule(PollSettings(), callbacks=True)
    assert schedule.next_check(0.0) >= 600
    schedule.observe(30.0)
    assert schedule.next_check(0.0) == pytest.approx(90.0)
    assert schedule.next_check(200.0) == pytest.approx(100.0)


def test_news_sets_the_first_poll_and_the_gaps():
    """After a success of 20 s, new tasks are first polled at 17 s, then every quarter of their age."""
    schedule = PollSchedule(PollSettings())
    assert schedule.next_check(0.0) == pytest.approx(3.0)
    assert schedule.next_check(40.0) == pytest.approx(4.0)
    schedule.observe(20.0)
    assert schedule.next_check(0.0) == pytest.approx(17.0)
    assert schedule.next_check(30.0) == pytest.approx(7.5)

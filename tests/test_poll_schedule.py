"""The poll schedule, simulated with plain numbers (no clock, no loop): few polls, prompt notice."""

from __future__ import annotations

import heapq
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass

import pytest

from batch_engine.config import PollSettings
from batch_engine.pacing.poll_schedule import NEWS_FALLBACK, PRIOR_LEAD, PRIOR_MIN, PollSchedule, duration_of


@dataclass
class Outcome:
    polls: float        # polls per task
    lags: list[float]   # per task: (noticed - finished) / generation time
    worst: float        # the largest lag as a share of what the target allows: max(30%, 3 s)
    noticed: list[float]  # per task: its age when its end was seen

    @property
    def mean_lag(self) -> float:
        return sum(self.lags) / len(self.lags)


def simulate(durations: list[float], *, apart: float = 0.0, callbacks: bool = False,
             prior: Sequence[float] = ()) -> Outcome:
    """Tasks created `apart` seconds after one another (0: all at once), each finishing after its
    duration, checked as the poller checks them, on a simulated clock; `prior`: durations of an
    earlier run."""
    n = len(durations)
    born = [i * apart for i in range(n)]
    schedule = PollSchedule(PollSettings(), callbacks=callbacks)
    schedule.use_prior(prior)
    heap = [(born[i], i, -1) for i in range(n)]  # (time, task, plan); plan -1: the create
    gen, checks, polls, seen = [0] * n, [0] * n, [0] * n, [None] * n
    lags, worst, noticed, open_ = [0.0] * n, [0.0] * n, [0.0] * n, set()
    for _ in range(1_000_000):  # bounded; every step moves a task forward in time
        if not heap:
            break
        now, i, plan = heapq.heappop(heap)
        schedule.settled = now >= born[-1]  # the engine tells it when nothing is left to create
        if plan == -1:
            open_.add(i)
            schedule.started(born[i])
            heapq.heappush(heap, (now + schedule.next_check(0.0), i, gen[i]))
            continue
        if plan != gen[i] or i not in open_:
            continue
        checks[i] += 1
        age = now - born[i]
        if schedule.should_poll(now, born[i], i, checks[i]):
            polls[i] += 1
            if age >= durations[i]:
                open_.discard(i)
                schedule.ended(born[i])
                lags[i], noticed[i] = (age - durations[i]) / durations[i], age
                worst[i] = (age - durations[i]) / max(0.3 * durations[i], 3.0)
                if schedule.observe(durations[i]):  # first news: re-plan every task in flight
                    for j in open_:
                        gen[j] += 1
                        heapq.heappush(heap, (now + schedule.replan(now - born[j], seen[j]), j, gen[j]))
                continue
            seen[i] = age
        heapq.heappush(heap, (now + schedule.next_check(age), i, gen[i]))
    assert not open_, "the simulation ran out of steps"
    return Outcome(sum(polls) / n, lags, max(worst), noticed)


def batch(seed: int, n: int, low: float) -> list[float]:
    rng = random.Random(seed)
    return [rng.uniform(low, 2 * low) for _ in range(n)]


@pytest.mark.parametrize("seed", range(8))
def test_two_x_spread_few_polls_and_prompt_notice(seed):
    """Generations of 20-40 s, all started together: <= 4 polls per task on average, every
    finished task noticed within 30% of its generation time (or 3 s), 15% on average."""
    outcome = simulate(batch(seed, 200, 20))
    assert outcome.polls <= 4.0, outcome.polls
    assert outcome.worst <= 1.0, outcome.worst
    assert outcome.mean_lag <= 0.15, outcome.mean_lag


@pytest.mark.parametrize("n, low, apart", [(200, 20, 0.5), (1000, 60, 0.5), (500, 20, 0.1)])
@pytest.mark.parametrize("seed", range(6))
def test_at_the_providers_pace_the_targets_hold(n, low, apart, seed):
    """Tasks created one after another (0.5 s apart is kie's 20 per 10 s): the oldest are
    sampled first, the news sets everyone's first poll, and the targets hold (measured: at most
    3.3 polls per task; the latest notice at 0.87x what the target allows)."""
    outcome = simulate(batch(seed, n, low), apart=apart)
    assert outcome.polls <= 4.0, outcome.polls
    assert outcome.worst <= 1.0, outcome.worst
    assert outcome.mean_lag <= 0.15, outcome.mean_lag


@pytest.mark.parametrize("low", [60, 120])
@pytest.mark.parametrize("seed", range(8))
def test_minutes_long_generations_all_at_once_stay_near_the_targets(low, seed):
    """Minutes-long generations started together cost more checks before the first news (the
    log of the age, shared by the batch): measured at most 4.06 polls per task for 200 tasks
    of 2-4 min (3.75 on average over 32 seeds), the latest task of 1-2 min at 1.09x what the
    target allows in one seed of eight; the mean lag holds."""
    outcome = simulate(batch(seed, 200, low))
    assert outcome.polls <= 4.1, outcome.polls
    assert outcome.worst <= 1.1, outcome.worst
    assert outcome.mean_lag <= 0.15, outcome.mean_lag


def test_a_fixed_cadence_is_what_it_replaces():
    """For scale: a fixed 2.5 s cadence spends 8-16 polls per task on the same batch."""
    durations = batch(5, 200, 20)
    fixed = sum(int(d // 2.5) + 1 for d in durations) / len(durations)
    assert fixed > 8 and simulate(durations).polls < fixed / 2


def test_small_batch_is_polled_at_every_check():
    """With a handful of tasks in flight every check is a poll; in a big batch, a rotating few."""
    few = PollSchedule(PollSettings())
    for _ in range(8):
        few.started(0.0)
    assert all(few.should_poll(10.0, 0.0, order, 1) for order in range(8))
    many = PollSchedule(PollSettings())
    for _ in range(200):
        many.started(0.0)
    polled = [order for order in range(200) if many.should_poll(10.0, 0.0, order, 3)]
    assert len(polled) == 8
    assert polled != [order for order in range(200) if many.should_poll(10.0, 0.0, order, 4)]
    assert many.should_poll(300.0, 0.0, 1, 1), "old tasks are polled without news"


def test_a_few_tasks_are_checked_as_far_apart_as_the_target_allows():
    """Before news, checks of a big batch come at ages growing by a tenth (each polls a few of
    the batch); with eight tasks or fewer in flight every check polls each, so checks come at
    ages growing by 26%: each is still noticed within 30%, at a third of the polls."""
    few = PollSchedule(PollSettings())
    for _ in range(5):
        few.started(0.0)
    assert few.next_check(40.0) == pytest.approx(0.26 * 40.0)
    outcome = simulate(batch(3, 5, 120))
    assert outcome.polls <= 20, outcome.polls  # 31 a task when they were checked as a big batch is
    assert outcome.worst <= 1.0, outcome.worst


def test_young_tasks_wait_while_the_oldest_are_sampled():
    """Before any news, a task much younger than the oldest in flight is not polled; the
    oldest are, in turn, and a task that ends leaves the cohort."""
    schedule = PollSchedule(PollSettings())
    births = [i * 0.5 for i in range(100)]  # created at 2 per second
    for born in births:
        schedule.started(born)
    now = 60.0
    assert not any(schedule.should_poll(now, 40.0, 80, check) for check in range(1, 20))
    assert any(schedule.should_poll(now, 1.0, 2, check) for check in range(1, 3))
    for born in births[:70]:  # the 70 oldest ended: the task created at 40 s is now among the oldest
        schedule.ended(born)
    assert any(schedule.should_poll(now, 40.0, 80, check) for check in range(1, 20)), \
        "once the old ones ended, the next oldest are sampled"


def test_callbacks_leave_polling_as_a_slow_fallback():
    """With callbacks on, a task is first polled only after several expected durations."""
    schedule = PollSchedule(PollSettings(), callbacks=True)
    assert schedule.next_check(0.0) >= 600
    schedule.observe(30.0)
    assert schedule.next_check(0.0) == pytest.approx(90.0)
    assert schedule.next_check(200.0) == pytest.approx(100.0)


def test_news_sets_the_first_poll_and_the_gaps():
    """After one success of 20 s, new tasks are first polled at 20 s, then at gaps of 26% of
    their age; once 32 have finished (20-51 s), the earliest finish is estimated below the
    shortest seen (19 s) and the first poll moves to 1.2x that."""
    schedule = PollSchedule(PollSettings())
    for _ in range(50):
        schedule.started(0.0)
    assert schedule.next_check(0.0) == pytest.approx(3.0)
    assert schedule.next_check(40.0) == pytest.approx(4.0)
    assert schedule.observe(20.0) is True
    assert schedule.next_check(0.0) == pytest.approx(20.0)
    assert schedule.next_check(30.0) == pytest.approx(7.8)
    assert schedule.replan(25.0) == 0.0, "at the first news, tasks old enough are looked at now"
    for duration in range(21, 52):
        assert schedule.observe(float(duration)) is False
    assert schedule.expected() == pytest.approx(19.0)
    assert schedule.next_check(0.0) == pytest.approx(1.2 * 19.0)
    assert schedule.next_check(20.0) == pytest.approx(5.2), "never sooner than a gap after a poll"


def test_at_the_first_news_a_task_seen_running_lately_is_not_polled_again_at_once():
    """News of a 20 s task: one never polled, or last seen running long ago, is looked at now;
    one seen running at 25 s is looked at a gap after that (31.5 s), still in time had it
    finished right after it was seen."""
    schedule = PollSchedule(PollSettings())
    schedule.observe(20.0)
    assert schedule.replan(30.0) == 0.0
    assert schedule.replan(30.0, seen=12.0) == 0.0
    assert schedule.replan(30.0, seen=25.0) == pytest.approx(1.5)
    assert schedule.replan(10.0, seen=8.0) == pytest.approx(10.0), "young tasks wait for the earliest finish"


def test_a_check_due_at_an_age_is_not_repeated_by_rounding():
    """A check that lands a hair before its due age (float rounding) does not spin."""
    assert PollSchedule(PollSettings()).next_check(3.0 - 1e-12) >= 2.0


def test_a_duration_the_provider_says_is_checked_against_what_was_seen():
    """The provider's duration is used when it fits the polls; one in the wrong unit, or none,
    gives way to the last age the task was seen running, or else the age it was noticed at."""
    assert duration_of(24.0, 22.0, 27.5) == 24.0
    assert duration_of(0.024, 22.0, 27.5) == 22.0, "costTime in seconds read as milliseconds"
    assert duration_of(24000.0, 22.0, 27.5) == 22.0, "seconds where milliseconds were due"
    assert duration_of(None, 22.0, 27.5) == 22.0
    assert duration_of(None, None, 27.5) == 27.5
    assert duration_of(0.024, None, 27.5) == 27.5
    assert duration_of(20.0, None, 27.5) == 20.0


def test_the_tail_is_looked_at_closely():
    """With news, the batch's last tasks (nothing left to create, few in flight) are polled at
    gaps of a few percent of their age, never before the earliest finish expected."""
    from batch_engine.pacing.poll_schedule import GROWTH, TAIL_GAP, TAIL_GROWTH
    schedule = PollSchedule(PollSettings())
    schedule.started(0.0)
    schedule.observe(100.0)
    assert schedule.next_check(150.0, tail=True) == pytest.approx(max(TAIL_GAP, TAIL_GROWTH * 150.0))
    assert schedule.next_check(150.0) >= GROWTH * 150.0 - 1e-9
    assert schedule.next_check(10.0, tail=True) == pytest.approx(schedule.next_check(10.0))  # not before due
    assert PollSchedule(PollSettings(), callbacks=True).next_check(50.0, tail=True) >= 0.5 * 50.0


@pytest.mark.parametrize("seed", range(8))
def test_a_prior_from_an_earlier_run_meets_the_targets_for_minutes_long_generations(seed):
    """50 tasks of 2-4 min started together: about 7 polls a task from nothing (the sampling
    before the first news), at most 4 with the durations of an earlier run of the same model
    and settings (3.32-3.82 over these seeds), every task noticed in time."""
    durations = batch(seed, 50, 120)
    assert simulate(durations).polls > 6.5
    outcome = simulate(durations, prior=batch(1000 + seed, 64, 120))
    assert outcome.polls <= 4.0, outcome.polls
    assert outcome.worst <= 1.0, outcome.worst


@pytest.mark.parametrize("n", [1, 5, 20])
def test_a_prior_saves_most_for_a_small_rerun(n):
    """The nightly re-run of a few failures: a third to a half of the polls (1 task: 16 -> 9;
    5 tasks: 18.2 -> 6.8; 20 tasks: 16.8 -> 5.7)."""
    durations = batch(n, n, 120)
    without, with_prior = simulate(durations), simulate(durations, prior=batch(99, 64, 120))
    assert with_prior.polls <= 0.7 * without.polls, (with_prior.polls, without.polls)
    assert with_prior.worst <= 1.0, with_prior.worst


@pytest.mark.parametrize("faster", [3, 10])
def test_a_provider_much_faster_than_the_prior_is_noticed_by_the_end_of_the_quiet(faster):
    """If tonight's generations take a tenth of what the prior says, a sparse net (one poll a
    round, at ages doubling) may miss the first ends: no task is noticed later than the quiet
    part of the schedule ends (65% of the prior's shortest), plus a round; then the schedule
    learns tonight's durations."""
    prior = [faster * d for d in batch(7, 64, 20)]
    durations = batch(8, 50, 20)
    outcome = simulate(durations, prior=prior)
    quiet_until = PRIOR_LEAD * min(prior)
    assert all(age <= max(1.3 * d, 1.1 * quiet_until) for age, d in zip(outcome.noticed, durations)), \
        max(age / d for age, d in zip(outcome.noticed, durations))


def test_a_forged_prior_cannot_delay_the_looks_past_the_fallback():
    """A durations file claiming days: the quiet part ends at the five-minute fallback anyway."""
    schedule = PollSchedule(PollSettings())
    assert schedule.use_prior([86_400.0] * PRIOR_MIN) is True
    assert schedule.quiet_until == NEWS_FALLBACK
    durations = batch(4, 20, 30)
    outcome = simulate(durations, prior=[86_400.0] * PRIOR_MIN)
    assert max(outcome.noticed) <= 1.1 * NEWS_FALLBACK


def test_too_few_earlier_durations_are_no_prior():
    assert PollSchedule(PollSettings()).use_prior([120.0] * (PRIOR_MIN - 1)) is False
    durations = batch(2, 50, 120)
    assert simulate(durations, prior=[120.0] * (PRIOR_MIN - 1)) == simulate(durations)


@pytest.mark.parametrize("low", [60.0, 120.0, 300.0])
def test_a_small_batch_once_created_is_watched_task_by_task(low):
    """Ten generations of minutes, created 0.5 s apart, on a fresh folder: once all are created,
    each is polled on its own chain of 26% steps before any news (not a sample every 10%): fewer
    polls than a sample of the cohort would take, and none noticed late."""
    rng = random.Random(int(low))
    outcome = simulate([rng.uniform(low, 2 * low) for _ in range(10)], apart=0.5)
    assert outcome.worst <= 1.0
    assert outcome.polls <= 0.6 * (math.log(low / 3) / math.log(1.1) + 3)  # a 10% chain from 3 s, and after

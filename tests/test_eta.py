"""The time left: a pure model of generation time (`pacing.eta`), and a sandbox run whose known
generation times let the test compare the estimate with the time that actually remained."""

from __future__ import annotations

import json
import random
import time

import pytest

from batch_engine.config import PollSettings
from batch_engine.pacing.eta import Curve, Eta, describe, estimate
from batch_engine.pacing.poll_schedule import PollSchedule
from tests.conftest import FAST, cli_env, start_cli, stop, write_manifest
from tests.test_poll_schedule import simulate


def test_nothing_known_nothing_said_and_nothing_left_is_done():
    assert estimate(to_create=5, cap_per_second=2, ages=[], durations=[]) is None
    assert estimate(to_create=0, cap_per_second=2, ages=[], durations=[30.0]) == Eta(0.0, 0.0, 0.0)
    assert describe(None, generating=True).startswith("unknown")


def test_tasks_in_flight_end_when_generations_of_their_age_do():
    seen = [float(s) for s in range(100, 201, 10)]  # 100..200 s
    eta = estimate(to_create=0, cap_per_second=2, ages=[50.0], durations=seen)
    assert eta is not None and 100 <= eta.middle <= 150 and eta.low <= eta.middle <= eta.high
    older = estimate(to_create=0, cap_per_second=2, ages=[150.0], durations=seen)
    assert older is not None and older.middle < eta.middle  # the older task is nearer its end
    done_soon = estimate(to_create=0, cap_per_second=2, ages=[400.0], durations=seen)  # older than any seen
    assert done_soon is not None and done_soon.middle < 60


def test_a_last_finish_few_were_known_to_reach_does_not_end_the_curve():
    # fifteen tasks in flight, last seen running at 128-135 s; one finish at 136 s, reached by
    # itself alone as far as is known: the curve does not fall to nothing there (half the batch
    # is still going), so the tasks in flight are not taken as done in seconds
    durations = [66.0, 67, 74, 82, 93, 96, 97, 111, 113, 120, 120, 123, 127, 128, 136]
    last_seen = [128.0] * 6 + [129.0, 130, 131, 132, 133, 134, 134, 135, 135.5]
    ages = [age + 4 for age in last_seen]
    eta = estimate(to_create=0, cap_per_second=2, ages=ages, durations=durations, seen=last_seen,
                   due=[age + 30 for age in last_seen], notice=lambda ends, due, age: max(ends, due or age))
    assert eta is not None and eta.middle > 35  # the last would end about 175 s old: some 40 s on


def test_the_age_by_which_a_share_is_left_is_the_first_time_the_curve_is_at_or_below_it():
    rng = random.Random(3)
    for _ in range(300):  # bounded; times drawn whole, so ties are common
        curve = Curve([round(rng.uniform(1, 100)) for _ in range(rng.randint(1, 40))],
                      [rng.uniform(0, 120) for _ in range(rng.randint(0, 40))])
        for share in [rng.random() for _ in range(5)] + curve.left:
            first = next((t for t, left in zip(curve.times, curve.left, strict=True) if left <= share), None)
            assert curve.age_at(share) == (first if first is not None else
                                           curve.times[-1] + (curve.tail - share) / curve.slope)


def test_what_is_left_to_create_is_spaced_by_the_cap():
    seen = [60.0] * 20
    eta = estimate(to_create=200, cap_per_second=2, ages=[], durations=seen)
    assert eta is not None and abs(eta.middle - (100 + 60)) < 1


def test_the_range_narrows_as_times_come_in():
    few = estimate(to_create=0, cap_per_second=2, ages=[10.0], durations=[100.0, 120.0])
    many = estimate(to_create=0, cap_per_second=2, ages=[10.0], durations=[100.0 + i % 20 for i in range(200)])
    assert few is not None and many is not None
    assert (few.high - few.low) / few.middle > (many.high - many.low) / many.middle


def test_a_tail_read_from_a_few_times_leaves_room_for_a_longer_one():
    # five finishes close together (62-74 s) and fifteen tasks last seen running at 78 s: the tail
    # continued at their slope ends them by about 100 s, but five times tell that slope only to
    # within about half of itself, so the range reaches twice as far; with eighty such times, not
    def eta(copies: int) -> Eta:
        durations, ages = [62.0, 63, 67, 70, 74] * copies, [80.0] * 15 * copies
        got = estimate(to_create=0, cap_per_second=2, ages=ages, durations=durations, seen=[78.0] * len(ages),
                       due=[98.0] * len(ages), notice=lambda ends, due, age: max(ends, due or age))
        assert got is not None
        return got

    few, many = eta(1), eta(16)
    assert few.high > 2 * few.middle and few.low < 0.5 * few.middle
    assert many.high < 1.3 * many.middle


def test_an_end_counts_when_the_poller_would_see_it():
    durations = [100.0 + i for i in range(20)]  # 100..119 s: a task of 90 s ends in 10-29 s
    schedule = PollSchedule(PollSettings())
    for duration in durations:
        schedule.observe(duration)

    def left(due: float) -> float:
        eta = estimate(to_create=0, cap_per_second=2, ages=[90.0], durations=durations, seen=[90.0], due=[due],
                       notice=schedule.noticed)
        assert eta is not None
        return eta.middle

    at_once = estimate(to_create=0, cap_per_second=2, ages=[90.0], durations=durations)
    assert at_once is not None and 10 < at_once.middle < 29
    assert left(130.0) == pytest.approx(40.0)  # ends before its next look: seen at that look
    assert left(100.0) == pytest.approx(1.26 * 100.0 - 90.0)  # looked at too soon: seen at the look after


@pytest.mark.parametrize(("low", "high"), [(60.0, 180.0), (120.0, 240.0), (300.0, 600.0)])
def test_for_minutes_long_generations_the_range_holds_what_remained(low, high):
    """Batches of 10, 50 and 200 tasks, fresh and with a record, on a simulated clock with the
    poll schedule's own looks: from 20% done on, while at least a tenth of the run remains, the
    range shown holds the time that remained, and the middle figure is near it, most of the time."""
    within = covered = samples = 0
    for n in (10, 50, 200):
        for record in (False, True):
            for seed in range(2):
                rng = random.Random(seed * 31 + n)
                durations = [rng.uniform(low, high) for _ in range(n)]
                prior = [rng.uniform(low, high) for _ in range(50)] if record else []
                etas = simulate(durations, apart=0.5, prior=prior, eta_every=high / 40).etas
                span = max(left for _, left, _ in etas)
                for share, left, eta in etas:
                    if share >= 0.2 and left >= 0.1 * span:
                        samples += 1
                        within += abs(eta.middle - left) <= 0.25 * left
                        covered += eta.low <= left <= eta.high
    print(f"\n{low:g}-{high:g} s: {samples} samples, middle within 25% in {within / samples:.0%}, "
          f"range holds what remained in {covered / samples:.0%}")
    assert samples >= 100
    assert covered >= 0.85 * samples and within >= 0.6 * samples


def test_no_seconds_are_shown_while_tasks_are_generating():
    assert describe(Eta(0.5, 1.0, 1.5), generating=True) == "under a minute"
    assert describe(Eta(100, 150, 400), generating=True) == "about 1-7 min"
    assert describe(Eta(0.5, 1.0, 1.5), generating=False) == "under 5 s"
    assert describe(Eta(3600, 4000, 9000), generating=True) == "about 1.0-2.5 h"


def test_in_a_run_from_20_percent_done_the_estimate_is_within_25_percent_of_what_remained(serve, tmp_path):
    served = serve(gen_time=(4.0, 6.0))  # 60 items at 5 creates a second: the cap and the generations both count
    out = tmp_path / "out"
    manifest = write_manifest(tmp_path / "m.yaml", 60)
    proc = start_cli("run", str(manifest), "--out", str(out), "--rate", "5/1s", *FAST, env=cli_env(served))
    samples: list[tuple[float, dict]] = []
    deadline = time.monotonic() + 90
    try:
        while proc.poll() is None and time.monotonic() < deadline:  # bounded: 90 s, a sample every 0.1 s
            try:
                samples.append((0.0, json.loads((out / "progress.json").read_text())))
            except (OSError, ValueError):
                pass
            time.sleep(0.1)
        ended = time.time()  # the records' clock
    finally:
        stop(proc)
    assert proc.returncode == 0
    assert not (out / "progress.json").exists()  # removed at the end of the run
    records = {record["at"]: record for _, record in samples}.values()  # each write once
    # judged while at least 2 s remain: the run's own finishing (the index, the report) takes a
    # few tenths of a second that --time-scale does not shrink, a fifth of the last second's time
    judged = [(ended - record["at"], record["eta"]) for record in records
              if record["done"] >= 0.2 * record["total"] and record["eta"] is not None and ended - record["at"] >= 2.0]
    assert len(judged) >= 4
    errors = [abs(eta - left) / left for left, eta in judged]
    print(f"\nETA from 20% done: {len(judged)} samples, worst error {max(errors):.0%}, "
          f"median {sorted(errors)[len(errors) // 2]:.0%}")
    assert max(errors) <= 0.25, [(round(left, 1), eta) for left, eta in judged]

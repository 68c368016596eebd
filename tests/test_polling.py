"""The poll schedule in the real engine, over real sockets, on a clock five times faster."""

from __future__ import annotations

import statistics

import pytest

from batch_engine.config import Rate
from tests.conftest import run_manifest

SCALE = 0.2  # every interval of the engine's schedule shrinks with this; 4-8 s here is 20-40 s


@pytest.mark.parametrize("rate, times", [("1000/1s", "ms"), ("10/1s", "ms"), ("1000/1s", "none"),
                                         ("1000/1s", "seconds")],
                         ids=["all at once", "at the provider's pace", "no times said", "costTime in seconds"])
def test_polls_per_task_and_notice_on_a_two_x_spread(serve, tmp_path, rate, times):
    """100 generations spread over 2x, created all at once or one after another (10/s here is
    kie's 20 per 10 s on this clock): <= 4 polls per task, every task noticed within 30% of its
    generation time (or 3 s, scaled) give or take the time the polls themselves take, 15% on
    average. It holds when the provider says nothing of a task's times, or says them wrongly."""
    served = serve(gen_time=(20 * SCALE, 40 * SCALE), rate=Rate(1000, 1.0), times=times)
    done, _ = run_manifest(served, tmp_path, 100, "--time-scale", str(SCALE), rate=rate)
    assert done.returncode == 0, done.stderr
    polls, noticed, durations = served.read(lambda s: (
        s.stats.polls, dict(s.stats.noticed), {t: task.duration for t, task in s.tasks.items()}))
    assert len(noticed) == 100
    assert polls / 100 <= 4.0, polls
    noise = 0.2  # seconds (1 s on the 20-40 s clock): the 100 polls at the first news take about
    #              that long here, where the engine, the sandbox and pytest share two cores
    late = {t: lag - max(0.3 * durations[t], 3.0 * SCALE) for t, lag in noticed.items()}
    assert max(late.values()) <= noise, max(late.values())
    assert statistics.mean(lag / durations[t] for t, lag in noticed.items()) <= 0.15


def test_polls_slow_down_when_the_provider_limits_them_too(serve, tmp_path):
    """kie.ai does not say whether polls count against a limit. A provider that caps recordInfo
    (here 10 per second, against the 25 allowed) gets a few 429s at first, then polls at its
    pace: every item finishes, and few polls are refused."""
    served = serve(gen_time=(0.3, 3.0), poll_cap=Rate(10, 1.0))
    done, _ = run_manifest(served, tmp_path, 60, "--time-scale", "0.02")
    assert done.returncode == 0, done.stderr
    assert "polls answered 429" in done.stderr and "polling slowed to" in done.stderr
    polls, refused = served.read(lambda s: (s.stats.polls, s.stats.polls_refused))
    assert 0 < refused <= 0.15 * (polls + refused), (polls, refused)

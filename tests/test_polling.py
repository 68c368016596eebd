"""The poll schedule in the real engine, over real sockets, on a clock five times faster."""

from __future__ import annotations

import json
import statistics

import pytest

from batch_engine.config import Rate
from batch_engine.store.durations import profile_of
from tests.conftest import FAST, cli_env, run_cli, run_manifest, write_manifest

SCALE = 0.2  # every interval of the engine's schedule shrinks with this; 4-8 s here is 20-40 s


@pytest.mark.parametrize("n, rate, times", [(400, "1000/1s", "ms"), (200, "10/1s", "ms"), (200, "10/1s", "none"),
                                            (200, "10/1s", "seconds")],
                         ids=["all at once", "at the provider's pace", "no times said", "costTime in seconds"])
def test_polls_per_task_and_notice_on_a_two_x_spread(serve, tmp_path, n, rate, times):
    """Hundreds of generations spread over 2x, created all at once or one after another (10/s
    here is kie's 20 per 10 s on this clock): <= 3.5 polls per task, every task noticed within
    30% of its generation time (or 3 s, scaled) give or take the time the polls themselves
    take, 15% on average (the poll cap is scaled like the clock). It holds when the provider
    says nothing of a task's times, or says them wrongly."""
    served = serve(gen_time=(20 * SCALE, 40 * SCALE), rate=Rate(1000, 1.0), times=times)
    done, _ = run_manifest(served, tmp_path, n, "--time-scale", str(SCALE), "--poll-rate", str(25 / SCALE), rate=rate)
    assert done.returncode == 0, done.stderr
    polls, noticed, durations = served.read(lambda s: (
        s.stats.polls, dict(s.stats.noticed), {t: task.duration for t, task in s.tasks.items()}))
    assert len(noticed) == n
    assert polls / n <= 3.5, polls
    noise = 0.2  # seconds (1 s on the 20-40 s clock): the polls at the first news take about
    #              that long here, where the engine, the sandbox and pytest share two cores
    late = {t: lag - max(0.3 * durations[t], 3.0 * SCALE) for t, lag in noticed.items()}
    assert max(late.values()) <= noise, max(late.values())
    assert statistics.mean(lag / durations[t] for t, lag in noticed.items()) <= 0.15


def test_minutes_long_generations_on_a_fresh_folder_cost_few_polls(serve, tmp_path):
    """50 generations of 2-4 min (on a clock twenty times faster) created at kie's pace, on a
    fresh folder: fewer than three polls a task (measured 2.4, the lag 15% on average, 33% at
    most), against 7.5 when a sample of the oldest was polled at every tenth of their age, and
    19 at a fixed 10 s."""
    scale = 0.05
    served = serve(gen_time=(120 * scale, 240 * scale), rate=Rate(1000, 1.0))
    done, _ = run_manifest(served, tmp_path, 50, "--time-scale", str(scale), "--poll-rate", str(25 / scale),
                           rate="40/1s")
    assert done.returncode == 0, done.stderr
    polls, noticed, durations = served.read(lambda s: (
        s.stats.polls, dict(s.stats.noticed), {t: task.duration for t, task in s.tasks.items()}))
    assert len(noticed) == 50
    lags = [lag / durations[t] for t, lag in noticed.items()]
    print(f"minutes-long, fresh folder: {polls / 50:.2f} polls a task, lag mean {statistics.mean(lags):.1%} "
          f"median {statistics.median(lags):.1%} max {max(lags):.1%}")
    assert polls / 50 <= 4.0, polls
    assert statistics.median(lags) <= 0.2, lags


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


def test_a_folder_remembers_how_long_generations_took(serve, tmp_path):
    """Each success's duration goes to the folder's durations.jsonl; the next run there (the
    nightly re-run of a few failures) starts its schedule from them: 20 generations of 2-4 min
    (on a clock twenty times faster), all at once, cost about as many polls, and every task is
    noticed within its target, which a fresh folder's watch of its oldest need not manage (measured:
    2.4-2.5 polls a task and the latest up to 0.2 s past the target, then 2.2-2.4 and all in time)."""
    scale = 0.05
    served = serve(gen_time=(120 * scale, 240 * scale), rate=Rate(1000, 1.0))
    out = tmp_path / "out"
    runs = []
    for night in ("night1", "night2"):
        done = run_cli("run", str(write_manifest(tmp_path / f"{night}.yaml", 20, prefix=night)), "--out", str(out),
                       "--rate", "1000/1s", *FAST, env=cli_env(served))
        assert done.returncode == 0, done.stderr
        runs.append(served.read(lambda s: (s.stats.polls, dict(s.stats.noticed))))
        served.read(lambda s: s.stats.noticed.clear())
    lines = [json.loads(line) for line in (out / "durations.jsonl").read_text().splitlines()]
    assert len(lines) == 40
    assert {line["profile"] for line in lines} == {profile_of({"model": "hailuo/02-image-to-video-pro", "input": {}})}
    assert all(120 * scale * 0.9 <= line["seconds"] <= 240 * scale * 1.3 for line in lines), lines
    assert "20 durations of earlier runs here" in (out / "batch-engine.log").read_text()

    (first_polls, first_noticed), (both_polls, noticed) = runs
    second_polls = both_polls - first_polls
    durations = served.read(lambda s: {t: task.duration for t, task in s.tasks.items()})
    late = {t: lag - max(0.3 * durations[t], 3.0 * scale) for t, lag in noticed.items()}
    first_late = {t: lag - max(0.3 * durations[t], 3.0 * scale) for t, lag in first_noticed.items()}
    print(f"night 1: {first_polls / 20:.1f} polls a task, latest {max(first_late.values()):+.2f} s past the target; "
          f"night 2: {second_polls / 20:.1f}, {max(late.values()):+.2f} s")
    assert second_polls <= 1.2 * first_polls, (second_polls, first_polls)
    assert len(noticed) == 20
    assert max(late.values()) <= 0.2, max(late.values())

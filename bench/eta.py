"""The time an ETA takes, as the live panel makes it (four a second, and one for progress.json):
the curve's `age_at` by bisection, against the same curve scanned from its start, in one run.
Tasks in flight up to what kie's cap allows with 10-minute generations (20 creates per 10 s:
about 1,200) and past it; 256 durations, the most a run keeps.

    python bench/eta.py
"""

from __future__ import annotations

import random
import sys
import time
from pathlib import Path
from unittest.mock import patch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from batch_engine.config import PollSettings
from batch_engine.pacing import eta
from batch_engine.pacing.poll_schedule import PollSchedule

IN_FLIGHT = (100, 1200, 5000)
DURATIONS = 256
PER_SECOND = 5  # estimates a second while a run shows its panel
ROUNDS = 20


class ScannedCurve(eta.Curve):
    """The baseline: the first share at or below the one asked, found by a scan from the start."""

    def age_at(self, share: float) -> float:
        at = next((i for i, left in enumerate(self.left) if left <= share), None)
        if at is not None:
            return self.times[at]
        return self.times[-1] + (self.tail - share) / self.slope


def timed(n: int, curve: type[eta.Curve]) -> float:
    """Seconds an estimate takes with `n` tasks in flight (the mean of ROUNDS)."""
    rng = random.Random(n)
    schedule = PollSchedule(PollSettings())
    for duration in (rng.uniform(300, 600) for _ in range(DURATIONS)):
        schedule.observe(duration)
    durations = [rng.uniform(300, 600) for _ in range(DURATIONS)]
    ages = [rng.uniform(0, 600) for _ in range(n)]
    for age in ages:
        schedule.started(-age)
    seen, due = [age / 1.26 for age in ages], [age * 1.1 for age in ages]
    with patch.object(eta, "Curve", curve):  # the module's own name, as estimate() reads it
        start = time.perf_counter()
        for _ in range(ROUNDS):
            eta.estimate(to_create=10_000, cap_per_second=2, ages=ages, durations=durations, seen=seen, due=due,
                         notice=schedule.noticed)
        return (time.perf_counter() - start) / ROUNDS


def main() -> None:
    print(f"{'tasks in flight':<16} {'scanned':>10} {'bisected':>10} {'ratio':>7} {'a core at 5/s':>14}")
    for n in IN_FLIGHT:
        scanned, bisected = timed(n, ScannedCurve), timed(n, eta.Curve)
        print(f"{n:<16} {scanned * 1000:8.1f}ms {bisected * 1000:8.1f}ms {scanned / bisected:6.1f}x "
              f"{bisected * PER_SECOND:13.1%}")


if __name__ == "__main__":
    main()

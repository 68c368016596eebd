"""Polls a task and how late its end is noticed, for minutes-long generations, in one run: the
engine's poll schedule (fresh folder, and with the folder's record of earlier durations) against
a fixed 10 s cadence. Pure simulation of the schedule's own code on a simulated clock (the one in
tests/test_poll_schedule.py): creates 0.5 s apart (kie's cap of 20 per 10 s), durations uniform
and independent (the hard case for a watch of the oldest: a young task may end first); the
record is 50 durations of an earlier night of the same spread. The floor is what no schedule can
beat that notices every end within 30%: knowing the batch's shortest duration exactly, each task
looked at 1.3x that, then at steps of 1.3x.

    python bench/polls.py
"""

from __future__ import annotations

import math
import random
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.test_poll_schedule import simulate

CASES = ((60.0, 180.0), (120.0, 240.0), (300.0, 600.0))
SIZES = (10, 50, 500)
SEEDS = 5


def fixed(durations: list[float], every: float = 10.0) -> tuple[float, float, float]:
    polls = [math.ceil(d / every) for d in durations]
    lags = [(p * every - d) / d for p, d in zip(polls, durations, strict=True)]
    return sum(polls) / len(polls), sum(lags) / len(lags), max(lags)


def floor(durations: list[float], within: float = 0.3) -> float:
    """The fewest polls a task of a schedule that notices every end within `within` of its
    duration, given the shortest duration: looks at (1 + within)**k times it, k = 1, 2, ..."""
    low = min(durations)
    polls = [max(1, math.ceil(math.log(d / low) / math.log(1 + within) - 1e-9)) for d in durations]
    return sum(polls) / len(polls)


def main() -> None:
    print(f"{'case':<22} {'fixed 10 s':>22} {'fresh folder':>22} {'with a record':>22} {'floor':>6}")
    print(f"{'':<22} {'polls  mean   max':>22} {'polls  mean   max':>22} {'polls  mean   max':>22} {'polls':>6}")
    for low, high in CASES:
        for n in SIZES:
            rows: dict[str, list[tuple[float, float, float]]] = {"fixed": [], "fresh": [], "record": []}
            floors = []
            for seed in range(SEEDS):
                rng = random.Random(seed * 7919 + n)
                durations = [rng.uniform(low, high) for _ in range(n)]
                prior = [rng.uniform(low, high) for _ in range(50)]
                rows["fixed"].append(fixed(durations))
                floors.append(floor(durations))
                for name, given in (("fresh", ()), ("record", prior)):
                    o = simulate(durations, apart=0.5, prior=given)
                    rows[name].append((o.polls, o.mean_lag, max(o.lags)))
            cells = []
            for name in ("fixed", "fresh", "record"):
                got = rows[name]
                cells.append(f"{sum(r[0] for r in got) / SEEDS:5.2f} {sum(r[1] for r in got) / SEEDS:5.0%} "
                             f"{max(r[2] for r in got):5.0%}")
            print(f"{f'{low / 60:g}-{high / 60:g} min, {n} tasks':<22} " + " ".join(f"{c:>22}" for c in cells)
                  + f" {sum(floors) / SEEDS:6.2f}")
    print("goals: fresh <= 3 polls a task, mean lag <= 15%, max <= 30% (or 10 s); with a record <= 2.5 polls")
    print()
    print("50 tasks of 2-4 min, other nights:")
    others = (("ending in the order made (a queue), fresh", True, None),
              ("a record 3x slower than tonight", False, 3.0),
              ("a record 3x faster than tonight", False, 1 / 3))
    for name, ordered, factor in others:
        got = []
        for seed in range(SEEDS):
            rng = random.Random(seed * 7919 + 50)
            durations = [rng.uniform(120.0, 240.0) for _ in range(50)]
            durations = sorted(durations) if ordered else durations
            prior = [factor * rng.uniform(120.0, 240.0) for _ in range(50)] if factor else []
            o = simulate(durations, apart=0.5, prior=prior)
            got.append((o.polls, o.mean_lag, max(o.lags)))
        print(f"  {name:<44} {sum(r[0] for r in got) / SEEDS:5.2f} {sum(r[1] for r in got) / SEEDS:5.0%} "
              f"{max(r[2] for r in got):5.0%}")


if __name__ == "__main__":
    main()

"""How long a batch has left, from the one model of generation time: what is left to create
against the cap, the tasks in flight and their ages, and the generation times seen so far (or
the folder's record). A pure function: numbers in, a range of seconds out.

The times seen are a biased sample while a batch runs (the short generations end first), so the
model is a survival curve that counts the tasks still in flight as "longer than their age"
(Kaplan-Meier), continued past the longest time seen at the slope it had, until no task is left.
A task of age a then ends when the curve, taken from a on, falls by the share asked. The batch
ends when its last task does: of n tasks left, about the n/(n+1) share, for those in flight and
for the last create (spaced by the cap) alike. The range runs from the middle of the curve to
its end, widened while few times are known.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Eta:
    low: float     # seconds
    middle: float  # the best single figure
    high: float


class Curve:
    """The share of generations still going at each age (Kaplan-Meier, tasks in flight censored),
    with a straight tail after the longest time seen."""

    def __init__(self, durations: Sequence[float], ages: Sequence[float]) -> None:
        events, censored = sorted(durations), sorted(ages)
        self.times: list[float] = []
        self.left: list[float] = []   # the share still going just after each time
        share = 1.0
        for t in sorted(set(events)):
            ended = bisect.bisect_right(events, t) - bisect.bisect_left(events, t)
            at_risk = len(events) - bisect.bisect_left(events, t) + len(censored) - bisect.bisect_left(censored, t)
            share *= 1 - ended / max(at_risk, ended)
            self.times.append(t)
            self.left.append(share)
        first, last = self.times[0], self.times[-1]
        self.tail = self.left[-1]                                      # still going after the longest seen
        width = last - first if last > first else max(last, 1.0) * 0.25
        self.slope = (1 - self.tail) / width if self.tail < 1 else 1 / width  # share per second, kept in the tail
        self.end = last + self.tail / self.slope                         # when the last one should be done

    def going(self, age: float) -> float:
        """The share of generations still going at `age`."""
        at = bisect.bisect_right(self.times, age)
        if at < len(self.times):
            return 1.0 if at == 0 else self.left[at - 1]
        return max(0.0, self.tail - self.slope * (age - self.times[-1]))

    def age_at(self, share: float) -> float:
        """The age by which only `share` of generations are still going."""
        at = next((i for i, left in enumerate(self.left) if left <= share), None)
        if at is not None:
            return self.times[at]
        return self.times[-1] + (self.tail - share) / self.slope

    def remaining(self, age: float, share: float) -> float:
        """Seconds until a task of `age` has ended, with chance `share`."""
        now = self.going(age)
        if now <= 1e-9:  # older than the model says any gets: nearly done, surely
            return 0.1 * age + 1.0
        return max(0.0, self.age_at(now * (1 - share)) - age)


def estimate(*, to_create: int, cap_per_second: float, ages: Sequence[float], durations: Sequence[float],
             downloading: int = 0) -> Eta | None:
    """The time left, or None while nothing is known (no generation seen yet, nor recorded)."""
    if not to_create and not ages:
        return Eta(0.0, 1.0, 2.0) if downloading else Eta(0.0, 0.0, 0.0)
    if not durations:
        return None
    curve = Curve(durations, ages)
    waiting = len(ages) + to_create
    last_create = to_create / max(cap_per_second, 1e-6)

    def end(share: float) -> float:
        ends = [curve.remaining(age, share) for age in ages]
        if to_create:
            ends.append(last_create + curve.remaining(0.0, share))
        return max(ends)

    middle = end(waiting / (waiting + 1))
    spread = _spread(len(durations))
    return Eta(min(middle, end(0.5)) * (1 - spread), middle, max(middle, end(0.999)) * (1 + spread))


def _spread(samples: int) -> float:
    """How far either side of the middle the range reaches: wide with few times seen."""
    return max(0.1, 0.5 / math.sqrt(samples))


def describe(eta: Eta | None, *, generating: bool) -> str:
    """For people: a range while uncertain, minutes while tasks are generating (never seconds)."""
    if eta is None:
        return "unknown until the first video is done"
    if eta.high <= 0:
        return "done"
    if generating and eta.high < 60:
        return "under a minute"
    if generating or eta.high >= 120:
        low, high = max(1, math.floor(eta.low / 60)), max(1, math.ceil(eta.high / 60))
        if high >= 120:
            return f"about {low / 60:.1f}-{high / 60:.1f} h" if low != high else f"about {high / 60:.1f} h"
        return f"about {low}-{high} min" if low != high else f"about {high} min"
    return f"under {max(5, math.ceil(eta.high / 5) * 5)} s"

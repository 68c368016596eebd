"""How long a batch has left, from the one model of generation time: what is left to create
against the cap, the tasks in flight and their ages, and the generation times seen so far (or
the folder's record). A pure function: numbers in, a range of seconds out.

The times seen are a biased sample while a batch runs (the short generations end first), so the
model is a survival curve that counts the tasks still in flight as "longer than their age"
(Kaplan-Meier), continued past the longest time seen at the slope it had, until no task is left.
A task of age a then ends when the curve, taken from a on, falls by the share asked. The batch
ends when its last task does: of n tasks left, about the n/(n+1) share, for those in flight and
for the last create (spaced by the cap) alike. A task's end counts when the poller sees it: at
the first of its looks after the end (`notice`, the poll schedule's own, walked for the few
tasks that may end last). The range runs from the middle of the curve to its end, widened while
few times are known: the tail's slope, read from k times, is known to about 1/sqrt(k) of itself,
so the range's ends take the tail that much steeper and shallower.
"""

from __future__ import annotations

import bisect
import math
import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass

Notice = Callable[[float, "float | None", float], float]  # (age it ends at, next look, age now) -> age seen done
MIN_AT_RISK = 5  # the curve stops at a time fewer tasks than this were known to reach (its tail goes on)
MAX_DOUBT = 0.7  # the most of the slope seen the range takes off or adds (a tail read from one or two times)
LAST_FEW = 32  # the tasks, by when they should end, whose looks are walked to find when the last is seen


@dataclass(frozen=True, slots=True)
class Eta:
    low: float     # seconds
    middle: float  # the best single figure
    high: float


class Curve:
    """The share of generations still going at each age (Kaplan-Meier, tasks in flight censored),
    with a straight tail after the longest time seen, at `lean` times the slope the curve had."""

    def __init__(self, durations: Sequence[float], ages: Sequence[float], lean: float = 1.0) -> None:
        events, censored = sorted(durations), sorted(ages)
        self.times: list[float] = []
        self.left: list[float] = []   # the share still going just after each time
        share = 1.0
        for t in sorted(set(events)):
            ended = bisect.bisect_right(events, t) - bisect.bisect_left(events, t)
            going = len(censored) - bisect.bisect_left(censored, t)
            at_risk = len(events) - bisect.bisect_left(events, t) + going
            if self.times and at_risk < MIN_AT_RISK and going < len(censored):
                break  # too few left to tell, while tasks are in flight: the tail carries on instead
            share *= 1 - ended / max(at_risk, ended)
            self.times.append(t)
            self.left.append(share)
        first, last = self.times[0], self.times[-1]
        self.tail = self.left[-1]                                      # still going after the longest seen
        width = max(last - first, 0.25 * last)  # a few close times seen: not a cliff after them
        slope = (1 - self.tail) / width if self.tail < 1 else 1 / width
        self.slope = lean * slope  # share per second, kept in the tail

    def going(self, age: float) -> float:
        """The share of generations still going at `age`."""
        at = bisect.bisect_right(self.times, age)
        if at < len(self.times):
            return 1.0 if at == 0 else self.left[at - 1]
        return max(0.0, self.tail - self.slope * (age - self.times[-1]))

    def age_at(self, share: float) -> float:
        """The age by which only `share` of generations are still going."""
        at = bisect.bisect_left(self.left, -share, key=operator.neg)  # the first at or below `share`
        if at < len(self.left):
            return self.times[at]
        return self.times[-1] + (self.tail - share) / self.slope

    def remaining(self, age: float, share: float) -> float:
        """Seconds until a task of `age` has ended, with chance `share`."""
        now = self.going(age)
        if now <= 1e-9:  # older than the model says any gets: nearly done, surely
            return 0.1 * age + 1.0
        return max(0.0, self.age_at(now * (1 - share)) - age)


def estimate(*, to_create: int, cap_per_second: float, ages: Sequence[float], durations: Sequence[float],
             downloading: int = 0, seen: Sequence[float | None] = (), due: Sequence[float | None] = (),
             notice: Notice | None = None) -> Eta | None:
    """The time left, or None while nothing is known (no generation seen yet, nor recorded).
    Beside `ages`, per task (or not given at all): `seen`, its age when last seen running, and
    `due`, the age of its next planned look (None: not known); `notice`: when the poller sees an
    end that happens at an age, from that look on (None: at once, as with callbacks)."""
    if not to_create and not ages:
        return Eta(0.0, 1.0, 2.0) if downloading else Eta(0.0, 0.0, 0.0)
    if not durations:
        return None
    seen = list(seen) or [None] * len(ages)
    due = list(due) or [None] * len(ages)
    # with polls, a task is known to run only up to the age it was last seen running (it may
    # have ended since, unseen); with callbacks, up to its age
    alive = list(ages) if notice is None else [0.0 if last is None else min(last, age)
                                               for age, last in zip(ages, seen, strict=True)]
    doubt = min(1 / math.sqrt(len(durations)), MAX_DOUBT)
    curve, longer, shorter = (Curve(durations, alive, lean) for lean in (1.0, 1 - doubt, 1 + doubt))
    waiting = len(ages) + to_create
    last_create = to_create / max(cap_per_second, 1e-6)

    def end(share: float, curve: Curve = curve) -> float:
        """Seconds until the last task is seen done, each ending at `share` of `curve`:
        per task, the age it ends at, its age now and its next look (the last to create:
        its age now is minus the wait for its create)."""
        tasks = [(known + curve.remaining(known, share), age, look)
                 for known, age, look in zip(alive, ages, due, strict=True)]
        if to_create:
            tasks.append((curve.remaining(0.0, share), -last_create, None))
        tasks.sort(key=lambda task: task[0] - task[1], reverse=True)
        if notice is None:
            return tasks[0][0] - tasks[0][1]
        return max(notice(ends, look, max(age, 0.0)) - age for ends, age, look in tasks[:LAST_FEW])

    middle = end(waiting / (waiting + 1))
    spread = _spread(len(durations))
    return Eta(min(middle, end(0.5, shorter)) * (1 - spread), middle, max(middle, end(0.999, longer)) * (1 + spread))


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

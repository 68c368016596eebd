"""When to look at a task next: a pure policy (every method is told the time), learnt from the
tasks that finished.

Tasks created together take similar times, so until one finishes only a rotating sample of the
oldest tasks is polled; the first finish tells when to look at the others, and from then on a
task is polled from the earliest finish expected, at gaps of 26% of its age. Durations of earlier
runs in the folder (a *prior*) let the sampling begin later. docs/design.md gives the numbers and
why; tests/test_poll_schedule.py simulates batches against them.
"""

from __future__ import annotations

import bisect
from collections import deque
from collections.abc import Sequence

from batch_engine.config import PollSettings

FIRST_CHECK = 3.0       # seconds (scaled): the first check of a task before any news
CHECK_GROWTH = 0.1      # before news: checks at ages growing by this share ...
CHECK_GAP = 2.0         # ... and at least this many seconds (scaled) apart
PER_CHECK = 8           # before news: about this many of the cohort are polled per round of checks
SMALL_BATCH = 19        # before news, all created: up to this many in flight, each is polled at every
                        # check, GROWTH apart: as many polls a round as the sample's PER_CHECK at
                        # CHECK_GROWTH (8 x log 1.26 / log 1.1), and none of them left unwatched
COHORT = 0.9            # before news: the cohort is the tasks at least this share as old as ...
LEAD = 8                # ... the LEAD-th oldest task in flight (a few stragglers do not count)
FIRST_FACTOR = 1.0      # with news: first poll at this share of the shortest duration seen ...
SURE = 32               # ... rising, as more durations are seen, up to this many, ...
SURE_FACTOR = 1.2       # ... at this share of it
GROWTH = 0.26           # with news: gaps of this share of the task's age (0.3 would meet the
                        # notice target exactly, leaving nothing for the time a poll takes)
MIN_GAP = 2.5           # seconds (scaled): with news, never poll one task more often than this (a
                        # little under the 3 s the notice target allows, for the time a poll takes)
TAIL_TASKS = 8          # the tail: nothing left to create and at most this many tasks in flight ...
TAIL_GROWTH = 0.05      # ... each polled at gaps of this share of its age ...
TAIL_GAP = 0.25         # ... and at least this many seconds (scaled) apart: the batch ends when its
                        # last video is ready, so a late notice there costs the whole batch
NEWS_FALLBACK = 300.0   # seconds (scaled): without news, a task this old is polled regardless
PRIOR_MIN = 8           # a prior: at least this many durations of earlier runs (same model, settings) ...
PRIOR_LEAD = 0.65       # ... and the sampling before news begins at this share of the shortest; ...
QUIET_GROWTH = 1.0      # ... before that, checks at ages growing by this share, each polling one of
                        # the cohort (a safety net for a provider much faster than the prior says)
CALLBACK_FACTOR = 3.0   # with callbacks: the fallback poll waits this many expected durations
CALLBACK_FALLBACK = 600.0  # seconds (scaled): the same before any duration is known
EPSILON = 1e-3          # seconds: a check due at an age is taken as at that age (float rounding)
SKEW = 2.0              # seconds: how far the provider's clock and ours may disagree on a duration


def duration_of(said: float | None, seen: float | None, noticed: float) -> float:
    """How long a finished task took, in seconds: the provider's figure (`said`) if it fits what
    the poller saw (the task running at age `seen`, finished by age `noticed`; never seen
    running, not implausibly sooner than noticed); otherwise the last age it was seen running,
    the earliest it may have finished (so the schedule errs towards looking too soon);
    otherwise the age it was noticed at."""
    earliest = 0.9 * seen if seen is not None else 0.25 * noticed
    if said is not None and earliest - SKEW <= said <= noticed + SKEW:
        return said
    return seen if seen is not None else noticed


class PollSchedule:
    __slots__ = ("_births", "_durations", "_earliest", "_first", "callbacks", "quiet_until", "settings", "settled")

    def __init__(self, settings: PollSettings, *, callbacks: bool = False) -> None:
        self.settings = settings
        self.callbacks = callbacks                         # tasks report their end themselves
        self._durations: deque[float] = deque(maxlen=64)   # seconds, recently succeeded tasks
        self._births: list[float] = []                     # sorted creation times of tasks in flight
        self._earliest: float | None = None                # expected(): set by observe() only
        self._first: float | None = None                   # age of a task's first poll, the same
        self.quiet_until = 0.0                             # age: before it, a prior says it is too soon
        self.settled = False                               # nothing is left to create (told by the poller)

    def __repr__(self) -> str:
        return (f"<PollSchedule expected={self.expected()} seen={len(self._durations)} "
                f"in_flight={len(self._births)} callbacks={self.callbacks}>")

    def use_prior(self, prior: Sequence[float]) -> bool:
        """Durations of earlier runs' tasks of the same model and settings (at least PRIOR_MIN):
        before any news, sampling starts at PRIOR_LEAD of the shortest, never later than
        NEWS_FALLBACK, with only a sparse safety net before. True if the prior is used."""
        if len(prior) < PRIOR_MIN:
            return False
        self.quiet_until = min(PRIOR_LEAD * min(prior), NEWS_FALLBACK * self.settings.scale)
        return True

    def started(self, born: float) -> None:
        """A task created at `born` (any clock, the same for every call) is in flight."""
        bisect.insort(self._births, born)

    def ended(self, born: float) -> None:
        """The task created at `born` is no longer in flight."""
        i = bisect.bisect_left(self._births, born)
        if i < len(self._births) and self._births[i] == born:
            del self._births[i]

    def observe(self, duration: float) -> bool:
        """A task succeeded after `duration` seconds. True if this is the first news.

        Works out the estimates every check reads (durations change only here): the earliest
        finish expected, the shortest recent duration lowered by the gap a sample of this size
        leaves below its minimum (for a uniform spread, (max - min) / (n - 1)); and the age of a
        task's first poll, from 1x that estimate up to 1.2x as more durations come in."""
        first = not self._durations
        durations = self._durations
        durations.append(max(duration, 0.0))
        low, high, n = min(durations), max(durations), len(durations)
        self._earliest = low if n < 2 else max(low - (high - low) / (n - 1), 0.5 * low)
        trust = min(1.0, (n - 1) / (SURE - 1))
        self._first = self._earliest * (FIRST_FACTOR + (SURE_FACTOR - FIRST_FACTOR) * trust)
        return first

    def expected(self) -> float | None:
        """The earliest a task of this batch is likely to finish (None before any news)."""
        return self._earliest

    def next_check(self, age: float, *, tail: bool = False) -> float:
        """Seconds until the next check of a task that is `age` seconds old; `tail`: the batch's
        last tasks (nothing left to create, few in flight) are looked at more closely."""
        scale = self.settings.scale
        min_gap = MIN_GAP * scale
        expected = self._earliest
        if tail and self._first is not None and not self.callbacks:
            return max(self._first - age, TAIL_GAP * scale, TAIL_GROWTH * age)
        if self.callbacks:
            fallback = CALLBACK_FACTOR * expected if expected is not None else CALLBACK_FALLBACK * scale
            return max(fallback - age, min_gap, 0.5 * age)
        if self._first is not None:
            # never sooner than a gap after this check, nor before the first poll is due
            return max(self._first - age, min_gap, GROWTH * age)
        if age < FIRST_CHECK * scale - EPSILON:
            return FIRST_CHECK * scale - age
        if age >= NEWS_FALLBACK * scale:
            return max(min_gap, 0.5 * age)
        if age < self.quiet_until - EPSILON:  # a prior says it is too soon: a sparse safety net
            return min(max(CHECK_GAP * scale, QUIET_GROWTH * age), self.quiet_until - age)
        # a batch of a few: every check polls each, so checks as far apart as the target allows
        growth = GROWTH if len(self._births) <= PER_CHECK or self._small() else CHECK_GROWTH
        return max(CHECK_GAP * scale, growth * age)

    def _small(self) -> bool:
        """All of the batch is created and few are in flight: each can be watched on its own."""
        return self.settled and len(self._births) <= SMALL_BATCH

    def replan(self, age: float, seen: float | None = None) -> float:
        """At the first news: seconds until a task in flight should be looked at (0: now, as it
        may already have finished). A task seen running at age `seen` need not be looked at
        before a gap after that: had it finished since, it would still be noticed in time."""
        if self._earliest is None or self.callbacks:
            return self.next_check(age)
        due = max(FIRST_FACTOR * self._earliest, (1.0 + GROWTH) * (seen or 0.0))
        return max(0.0, due - age)

    def should_poll(self, now: float, born: float, order: int, check: int) -> bool:
        """At the `check`-th check of the task created at `born`: poll it now? `order` numbers
        the tasks as they came, so the rotation polls different tasks at successive checks."""
        age = now - born
        if self.callbacks or self._durations or age >= NEWS_FALLBACK * self.settings.scale:
            return True
        births = self._births
        if not births or (self._small() and age >= self.quiet_until - EPSILON):
            return True
        lead_age = now - births[min(LEAD, len(births)) - 1]
        cohort_from = now - COHORT * lead_age       # born at or before this: old enough to matter
        if born > cohort_from + EPSILON:
            return False
        peers = bisect.bisect_right(births, cohort_from + EPSILON)
        # about eight of the cohort a round; one while a prior says it is too soon
        every = peers if age < self.quiet_until - EPSILON else max(1, round(peers / PER_CHECK))
        return (order + check) % every == 0

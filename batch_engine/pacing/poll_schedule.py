"""When to look at a task next: a pure policy (every method is told the time), learnt from the
tasks that finished.

Until a batch has news (its first success) it spends about one poll a task, on its oldest tasks:
a batch of a few hundred affords a rotating sample of them at ages a tenth apart; a smaller one
a watch of its oldest few at ages 26% apart, the rest waiting, since tasks made together take
similar times; past a fallback age, every task on its own chain. From the news on, every task is
polled from the earliest finish expected, at gaps of 26% of its age. Durations of earlier runs
in the folder (the *record*) stand for the news from the start, with a net of a few looks at the
oldest before the earliest they predict, and are dropped as soon as tonight's batch disagrees: a
first finish well before them, or none long after.
docs/design.md gives the numbers and why; tests/test_poll_schedule.py and bench/polls.py
simulate batches against them.
"""

from __future__ import annotations

import bisect
import math
from collections import deque
from collections.abc import Sequence

from batch_engine.config import PollSettings

FIRST_CHECK = 3.0       # seconds (scaled): the first check of a task before any news
CHECK_GAP = 2.0         # ... and checks at least this many seconds (scaled) apart before news ...
WATCH_GAP = 10.0        # ... or this many for a watch of a few, which must not spend its budget
                        # early (a task ended this soon is still noticed within 10 s)
GROWTH = 0.26           # checks at gaps of this share of the task's age (0.3 would meet the notice
                        # target exactly, leaving nothing for the time a poll takes)
NEWS_FALLBACK = 300.0   # seconds (scaled): without news, a task this old is polled regardless ...
SAMPLE_FALLBACK = 600.0  # ... or this old, in a batch that samples at least SAMPLE_WIDE of its
SAMPLE_WIDE = 4         # oldest a check (a few hundred tasks): the sample finds the first finish
                        # without it, and a batch of 5-10 min is spared a look before any can end
WATCH_BUDGET = 1.0      # before news: about this many polls a task of the batch, by the fallback age
EFOLDS = math.log(NEWS_FALLBACK / FIRST_CHECK)  # ... spread evenly over the log of the age
CHECK_GROWTH = 0.1      # a batch that affords it samples at checks this share of the age apart ...
PER_CHECK = 8           # ... about this many of its oldest a check, at most (a rotating sample)
COHORT = 0.9            # the sample's oldest: at least this share as old as ...
LEAD = 8                # ... the LEAD-th oldest task in flight (a few stragglers do not count)
FIRST_FACTOR = 1.0      # with news: first poll at this share of the earliest finish expected ...
SURE = 32               # ... rising, as more durations are seen, up to this many, ...
SURE_FACTOR = 1.2       # ... to this share of it
RECORD_FACTOR = 1.0 + GROWTH  # ... or, with the folder's record (whole nights, not the fastest
                        # few so far), one step of a chain from it: a task ending then is in time
MIN_GAP = 2.5           # seconds (scaled): with news, never poll one task more often than this (a
                        # little under the 3 s the notice target allows, for the time a poll takes)
TAIL_TASKS = 8          # the tail: nothing left to create and at most this many tasks in flight ...
TAIL_AFTER = 32         # ... of a batch that has seen this many finish (a small share of it) ...
TAIL_GROWTH = 0.05      # ... each polled at gaps of this share of its age ...
TAIL_GAP = 0.25         # ... and at least this many seconds (scaled) apart: the batch ends when its
                        # last video is ready, so a late notice there costs the whole batch
PRIOR_MIN = 8           # a record: at least this many durations of earlier runs (same model, settings)
PRIOR_KEEP = 256        # ... of which the most recent this many are read
PRIOR_FAST = 0.65       # a first finish before this share of the record's shortest: a faster night
PRIOR_SLOW = 1.0 + GROWTH  # ... after this share of its longest: a slower one
DOUBT_LEAD = 8          # no news while this many of the oldest (or all, if fewer) are past the
DOUBT_AGE = 1.3         # record's median by this factor (a finish by then is noticed): a slower
                        # night (were it not, a chance of 1 in 256)
NET_LOOKS = 8           # with a record, before its first look: the oldest task is looked at this
NET_SPAN = 16.0         # many times, at ages a constant factor apart from 1/NET_SPAN of it (1.41),
NET_BUDGET = 0.4        # ... or at about this many looks a task of a small batch, at least
NET_MIN = 3             # this many (a factor 2.5): a faster night is still seen in a few polls
CALLBACK_FACTOR = 3.0   # with callbacks: the fallback poll waits this many expected durations
CALLBACK_FALLBACK = 600.0  # seconds (scaled): the same before any duration is known
RECENT = 512            # the latest this many of a batch's durations make its estimates
WALK = 256              # looks walked at most to find when an end is seen (the ETA's)
EPSILON = 1e-3          # seconds: a check due at an age is taken as at that age (float rounding)
SKEW = 2.0              # seconds (scaled): how far the provider's clock and ours may disagree on a duration


def duration_of(said: float | None, seen: float | None, noticed: float, skew: float = SKEW) -> float:
    """How long a finished task took, in seconds: the provider's figure (`said`) if it fits what
    the poller saw (the task running at age `seen`, finished by age `noticed`; never seen
    running, not implausibly sooner than noticed); otherwise the last age it was seen running,
    the earliest it may have finished (so the schedule errs towards looking too soon);
    otherwise a step of the chain before the age it was noticed at (it ended by then, maybe
    well before: taken as noticed, tasks first found done at the first look would keep that
    look where it is, however early the batch's tasks end). `skew`: how far the provider's
    clock and ours may disagree (SKEW, scaled)."""
    earliest = 0.9 * seen if seen is not None else 0.25 * noticed
    if said is not None and earliest - skew <= said <= noticed + skew:
        return said
    return seen if seen is not None else noticed / (1 + GROWTH)


def earliest_finish(durations: Sequence[float], sure: float = SURE_FACTOR) -> tuple[float, float]:
    """From durations seen: the earliest finish expected (the shortest, lowered by the gap a
    sample of this size leaves below its minimum: for a uniform spread, (max - min) / (n - 1)),
    and the age of a task's first poll, from 1x that up to `sure` times it as more come in."""
    low, high, n = min(durations), max(durations), len(durations)
    earliest = low if n < 2 else max(low - (high - low) / (n - 1), 0.5 * low)
    trust = min(1.0, (n - 1) / (SURE - 1))
    return earliest, earliest * (FIRST_FACTOR + (sure - FIRST_FACTOR) * trust)


def net_look(age: float, first: float, looks: int = NET_LOOKS) -> float:
    """The next age after `age` in the net before a record's first look at `first`: first /
    step**j for j = `looks` ... 1, then `first` itself, the step spanning NET_SPAN in `looks`."""
    step = NET_SPAN ** (1 / looks)
    look = first / NET_SPAN
    while look <= age + EPSILON and look < first:
        look *= step
    return min(look, first) if look > age + EPSILON else age + EPSILON


def net_looks(batch: int) -> int:
    """How many looks the net takes for a batch of `batch` tasks: about NET_BUDGET a task."""
    return max(NET_MIN, min(NET_LOOKS, round(NET_BUDGET * batch)))


def watch(batch: int) -> tuple[float, int, bool]:
    """Before news, for a batch of `batch` tasks (in flight and to create): the checks' growth,
    how many of the oldest are polled a check, and whether they rotate (a sample) or stay the
    same (a watch). About WATCH_BUDGET polls a task by the fallback age, never more than the
    sample of PER_CHECK at CHECK_GROWTH that a batch of a few hundred affords."""
    per_efold = WATCH_BUDGET * batch / EFOLDS
    sample = per_efold * math.log(1 + CHECK_GROWTH)
    if sample >= 1:
        return CHECK_GROWTH, min(PER_CHECK, round(sample)), True
    return GROWTH, max(1, round(per_efold * math.log(1 + GROWTH))), False


class PollSchedule:
    __slots__ = ("_births", "_durations", "_earliest", "_first", "_prior", "callbacks", "finished",
                 "settings", "to_create")

    def __init__(self, settings: PollSettings, *, callbacks: bool = False) -> None:
        self.settings = settings
        self.callbacks = callbacks                         # tasks report their end themselves
        self._durations: deque[float] = deque(maxlen=RECENT)  # seconds, this batch's recent successes
        self._prior: list[float] = []                      # the folder's record (sorted) while trusted
        self._births: list[float] = []                     # sorted creation times of tasks in flight
        self._earliest: float | None = None                # estimates: set by _estimate() only
        self._first: float | None = None                   # age of a task's first poll, the same
        self.finished = 0                                  # successes seen in this run
        self.to_create = 0                                 # tasks left to create (told by the poller)

    def __repr__(self) -> str:
        return (f"<PollSchedule expected={self.expected()} seen={len(self._durations)} prior={len(self._prior)} "
                f"in_flight={len(self._births)} callbacks={self.callbacks}>")

    def use_prior(self, prior: Sequence[float]) -> bool:
        """Durations of earlier runs' tasks of the same model and settings (at least PRIOR_MIN):
        they set the first polls until this batch says otherwise. None counts past the news
        fallback (a forged record delays nothing). True if the record is used."""
        if len(prior) < PRIOR_MIN or self.callbacks:
            return False
        cap = NEWS_FALLBACK * self.settings.scale
        self._prior = sorted(min(max(d, 0.0), cap) for d in list(prior)[-PRIOR_KEEP:])
        self._estimate()
        return True

    def first_look(self) -> float | None:
        """The age at which every task is first looked at (None: only the watch looks, for now)."""
        return self._first

    def started(self, born: float) -> None:
        """A task created at `born` (any clock, the same for every call) is in flight."""
        bisect.insort(self._births, born)

    def ended(self, born: float) -> None:
        """The task created at `born` is no longer in flight."""
        i = bisect.bisect_left(self._births, born)
        if i < len(self._births) and self._births[i] == born:
            del self._births[i]

    def observe(self, duration: float) -> bool:
        """A task succeeded after `duration` seconds. True if this is news that changes the
        plan, so the tasks in flight are planned anew (`replan`): the batch's first success,
        unless a record foresaw it. A first finish the record did not foresee (much sooner,
        or later than its longest) drops the record."""
        self.finished += 1
        news = not self._durations
        self._durations.append(max(duration, 0.0))
        prior = self._prior
        if news and prior and not PRIOR_FAST * prior[0] <= duration <= PRIOR_SLOW * prior[-1]:
            self._prior = []
        self._estimate()
        return news and not self._prior

    def _estimate(self) -> None:
        """The estimates every check reads: from this batch's durations and the record while it
        holds (durations change only through observe, use_prior and the doubt in should_poll)."""
        seen = [*self._durations, *self._prior]
        sure = RECORD_FACTOR if self._prior else SURE_FACTOR
        self._earliest, self._first = earliest_finish(seen, sure) if seen else (None, None)

    def expected(self) -> float | None:
        """The earliest a task of this batch is likely to finish (None before any news)."""
        return self._earliest

    def tail(self, in_flight: int) -> bool:
        """The batch's last few tasks, nothing left to create, of a batch big enough that closer
        looks at them cost it little: they are looked at more closely (`next_check(tail=True)`)."""
        return not self.to_create and in_flight <= TAIL_TASKS and self.finished >= TAIL_AFTER

    def next_check(self, age: float, *, tail: bool = False, seen: float | None = None) -> float:
        """Seconds until the next check of a task that is `age` seconds old, last seen running
        at age `seen` (None: never polled); `tail`: the batch's last tasks, looked at closer."""
        scale = self.settings.scale
        min_gap = MIN_GAP * scale
        first = self._first
        if self.callbacks:
            fallback = CALLBACK_FACTOR * first if first is not None else CALLBACK_FALLBACK * scale
            return max(fallback - age, min_gap, 0.5 * age)
        if first is not None and tail:
            return max(first - age, TAIL_GAP * scale, TAIL_GROWTH * age)
        if first is not None and (self._durations or age >= first - EPSILON):
            # the first look, then gaps of GROWTH of the age at the last poll, never under min_gap
            due = first if seen is None else max(first, (1 + GROWTH) * seen, seen + min_gap)
            return max(due - age, EPSILON)
        if first is not None:  # a record says it is too soon: the net, at ages growing up to it
            return net_look(age, first, net_looks(len(self._births) + self.to_create)) - age
        if age < FIRST_CHECK * scale - EPSILON:
            return FIRST_CHECK * scale - age
        if age >= self._fallback() - EPSILON:  # no news this late: every task on its own chain
            return max(min_gap, GROWTH * age)
        growth, _, sample = watch(len(self._births) + self.to_create)
        return max((CHECK_GAP if sample else WATCH_GAP) * scale, growth * age)

    def noticed(self, ends: float, due: float | None, age: float) -> float:
        """The age at which a task `age` seconds old, next looked at at age `due` (None: now),
        is seen done if it ends at age `ends`: its looks walked from that one, as the ETA counts
        a video when it is seen (with polls; a callback tells the end at once). In the tail, the
        looks are the tail's."""
        look = max(age if due is None else due, age)
        tail = self.tail(len(self._births))
        for _ in range(WALK):  # bounded: the gaps grow with the age, never under MIN_GAP
            if look >= ends - EPSILON:
                break
            look += self.next_check(look, tail=tail, seen=look)
        return max(look, ends)

    def replan(self, age: float, seen: float | None = None) -> float:
        """At the first news: seconds until a task in flight should be looked at (0: now, as it
        may already have finished). A task seen running at age `seen` need not be looked at
        before a gap after that: had it finished since, it would still be noticed in time."""
        if self._earliest is None or self.callbacks:
            return self.next_check(age)
        due = max(FIRST_FACTOR * self._earliest, (1.0 + GROWTH) * (seen or 0.0))
        return max(0.0, due - age)

    def should_poll(self, now: float, born: float, order: int, check: int, seen: float | None = None) -> bool:
        """At the `check`-th check of the task created at `born`, last seen running at age
        `seen` (None: never polled): poll it now? Before news only the oldest are (`watch`);
        `order` numbers the tasks as they came, breaking ties of age and turning the sample."""
        age = now - born
        if self.callbacks or age >= self._fallback():
            return True
        if self._durations:  # a first poll waits for the first look the times seen give by now
            return seen is not None or self._first is None or age >= self._first - EPSILON
        if self._prior and self._doubt(now):
            self._prior = []
            self._estimate()
        if self._first is not None and age >= self._first - EPSILON:
            return True
        births = self._births
        if not births:
            return True
        older = bisect.bisect_left(births, born)
        rank = older + order % max(bisect.bisect_right(births, born) - older, 1)
        if self._prior:  # before the record's first look: the net, the oldest alone
            return rank < 1
        _, per_check, sample = watch(len(births) + self.to_create)
        if not sample:
            return rank < per_check
        lead_age = now - births[min(LEAD, len(births)) - 1]
        cohort_from = now - COHORT * lead_age       # born at or before this: old enough to matter
        if born > cohort_from + EPSILON:
            return False
        peers = bisect.bisect_right(births, cohort_from + EPSILON)
        return (order + check) % max(1, round(peers / per_check)) == 0

    def _fallback(self) -> float:
        """The age past which every task is polled on its own chain whatever the news:
        NEWS_FALLBACK, or SAMPLE_FALLBACK in a batch big enough to sample SAMPLE_WIDE a check."""
        _, per_check, sample = watch(len(self._births) + self.to_create)
        wide = sample and per_check >= SAMPLE_WIDE
        return (SAMPLE_FALLBACK if wide else NEWS_FALLBACK) * self.settings.scale

    def _doubt(self, now: float) -> bool:
        """No news, yet the oldest tasks are past the record's median: tonight is slower."""
        births = self._births
        if not births:
            return False
        lead = births[min(DOUBT_LEAD, len(births)) - 1]
        return now - lead > DOUBT_AGE * self._prior[len(self._prior) // 2]

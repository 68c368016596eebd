"""When to look at a task next: a pure policy, learnt from the tasks that finished.

Tasks created together take similar times, so the first to finish tells when to look at the
others. Until one has succeeded, tasks are *checked* at ages growing by a tenth (from 3 s, at
least 2 s apart), and at each check only about eight of the tasks in flight are polled, in
rotation: together they sample the batch finely enough to see the first finish soon after it
happens, while each task spends about one poll on it. With that news, every task in flight is
looked at once (some may have finished meanwhile), then first polled a little before the
shortest duration seen, and afterwards at gaps of a quarter of its age. Simulated on batches
spread over 2x (tests/test_poll_schedule.py): about 3.5 polls per task (a little over 4 for
batches of several minutes), each finished task noticed within 30% of its generation time in
nearly every batch, 13% on average. A task older than five minutes with no news at all is polled
regardless. With callbacks on, polling is only a slow fallback. No clock, no event loop: every
method takes ages in seconds.
"""

from __future__ import annotations

from collections import deque

from batch_engine.config import PollSettings

FIRST_CHECK = 3.0       # seconds (scaled): the first check of a task before any news
CHECK_GROWTH = 0.1      # before news: checks at ages growing by this share ...
CHECK_GAP = 2.0         # ... and at least this many seconds (scaled) apart
PER_CHECK = 8           # before news: about this many tasks in flight are polled at a check
FIRST_FACTOR = 0.85     # with news: first poll at this share of the shortest duration seen
GROWTH = 0.25           # with news: gaps of this share of the task's age
MIN_GAP = 3.0           # seconds (scaled): with news, never poll one task more often than this
NEWS_FALLBACK = 300.0   # seconds (scaled): without news, a task this old is polled regardless
CALLBACK_FACTOR = 3.0   # with callbacks: the fallback poll waits this many expected durations
CALLBACK_FALLBACK = 600.0  # seconds (scaled): the same before any duration is known


class PollSchedule:
    __slots__ = ("settings", "callbacks", "_durations")

    def __init__(self, settings: PollSettings, *, callbacks: bool = False) -> None:
        self.settings = settings
        self.callbacks = callbacks                         # tasks report their end themselves
        self._durations: deque[float] = deque(maxlen=64)   # seconds, recently succeeded tasks

    def __repr__(self) -> str:
        return f"<PollSchedule expected={self.expected()} seen={len(self._durations)} callbacks={self.callbacks}>"

    def observe(self, duration: float) -> bool:
        """A task succeeded after `duration` seconds. True if this is the first news."""
        first = not self._durations
        self._durations.append(max(duration, 0.0))
        return first

    def expected(self) -> float | None:
        """The shortest recent duration: the earliest a task of this batch is likely to finish."""
        return min(self._durations) if self._durations else None

    def next_check(self, age: float) -> float:
        """Seconds until the next check of a task that is `age` seconds old."""
        scale = self.settings.scale
        min_gap = MIN_GAP * scale
        expected = self.expected()
        if self.callbacks:
            fallback = CALLBACK_FACTOR * expected if expected is not None else CALLBACK_FALLBACK * scale
            return max(fallback - age, min_gap, 0.5 * age)
        if expected is not None:
            first = FIRST_FACTOR * expected
            return first - age if age < first else max(min_gap, GROWTH * age)
        if age < FIRST_CHECK * scale:
            return FIRST_CHECK * scale - age
        if age >= NEWS_FALLBACK * scale:
            return max(min_gap, 0.5 * age)
        return max(CHECK_GAP * scale, CHECK_GROWTH * age)

    def replan(self, age: float) -> float:
        """At the first news: seconds until a task in flight should be looked at (0: now, as it
        may already have finished)."""
        expected = self.expected()
        if expected is None or self.callbacks:
            return self.next_check(age)
        return max(0.0, FIRST_FACTOR * expected - age)

    def should_poll(self, age: float, in_flight: int, order: int, check: int) -> bool:
        """At a task's `check`-th check: poll it now? `order` numbers the tasks as they came, so
        the rotation polls different tasks at successive checks."""
        if self.callbacks or self._durations or age >= NEWS_FALLBACK * self.settings.scale:
            return True
        every = max(1, round(in_flight / PER_CHECK))
        return (order + check) % every == 0

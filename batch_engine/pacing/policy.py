"""Retry and pause policies as data, and the one back-off function they share (as stamina does).

Every wait the engine makes after a failure is named here, so the numbers can be read, compared
and changed in one place; the stages only say which policy applies. Waits given in seconds are
multiplied by the run's time scale (tests and the demo run on a small one); caps are not.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass


def backoff_delay(attempt: int, *, base: float = 1.0, cap: float = 60.0,
                  rng: Callable[[], float] = random.random) -> float:
    """Capped exponential backoff with full jitter; `attempt` counts from 1; overflow-safe."""
    exp = base * 2.0 ** min(max(attempt - 1, 0), 30)
    return min(cap, exp) * (0.5 + rng() / 2)


@dataclass(frozen=True, slots=True)
class Retry:
    """How often, and how patiently, one kind of failure is tried again."""

    tries: int | None   # failures in a row before giving up for this run (None: never give up)
    base: float         # seconds (scaled) before the second try; doubling after that
    cap: float          # the longest wait between two tries, in seconds

    def delay(self, failures: int, scale: float = 1.0) -> float:
        return backoff_delay(max(failures, 1), base=self.base * scale, cap=self.cap)

    def exhausted(self, failures: int) -> bool:
        return self.tries is not None and failures >= self.tries


@dataclass(frozen=True, slots=True)
class Pauses:
    """Fixed waits, in seconds (scaled where the stage says so)."""

    maintenance: float = 30.0     # every create waits this long after a 455 without Retry-After
    unknown_grace: float = 300.0  # a new task may be unknown to the provider this long (scaled)
    create_grace: float = 5.0     # an interrupted run still waits this long for a create's answer


CREATE = Retry(tries=8, base=1.0, cap=30.0)          # create failures other than 429
POLL = Retry(tries=None, base=2.0, cap=60.0)         # status errors: keep trying, slower
TASK_UNKNOWN = Retry(tries=None, base=1.0, cap=30.0)  # the provider does not know a new task yet
DOWNLOAD = Retry(tries=8, base=1.0, cap=30.0)        # downloads that made no progress
UPLOAD = Retry(tries=5, base=1.0, cap=30.0)          # uploads of local images
PAUSES = Pauses()

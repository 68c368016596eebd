"""The services a run's stages share, each its own small object, handed to the stages that use it:

- `Control`: which items still have work in this run, when the run is over, and an account
  refusal that stops the creates (or everything);
- `Budget`: how many creates `--max-tasks` still allows;
- `Progress`: what the live display and the summary read (the ledger's counts, the figures of
  `RunStats`, recent create and generation times), published, never reached into.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from typing import Protocol

from batch_engine.errors import AccountRefused
from batch_engine.pipeline.stats import RunStats
from batch_engine.states import IN_FLIGHT, TO_CREATE, State

log = logging.getLogger(__name__)


class Closable(Protocol):
    def close(self) -> None: ...


class Control:
    """Items with work left in this run, and the one place a refusal of the account is taken."""

    __slots__ = ("_done", "_gate", "_outstanding", "refused")

    def __init__(self, gate: Closable) -> None:
        self.refused: AccountRefused | None = None  # the account refusal that stopped creates
        self._gate = gate                  # closed on a refusal: nothing more is created
        self._outstanding = 0              # items of this run with work left
        self._done = asyncio.Event()       # set when nothing is outstanding, or all stop

    def __repr__(self) -> str:
        return f"<Control outstanding={self._outstanding} refused={self.refused and self.refused.code}>"

    @property
    def outstanding(self) -> int:
        return self._outstanding

    def expect(self) -> None:
        """One more item has work to do in this run."""
        self._outstanding += 1

    def item_done(self) -> None:
        """An item needs nothing more from this run (succeeded, failed, or left for the next)."""
        self._outstanding -= 1
        if self._outstanding <= 0:
            self._done.set()

    def refuse(self, error: AccountRefused, *, stop_all: bool = False) -> None:
        """The account was refused: create nothing more; with `stop_all`, stop everything."""
        if self.refused is None:
            self.refused = error
            log.error("the provider refused the account (%s): %s. No more tasks will be created%s.",
                      error.message, error.advice,
                      "" if stop_all else "; tasks already created are still followed and downloaded")
        self._gate.close()
        if stop_all:
            self._done.set()

    async def finished(self) -> None:
        """Return once no item has work left, or the run was stopped."""
        await self._done.wait()


class Budget:
    """Creates `--max-tasks` still allows, counted before each create is sent (there is no cancel
    at the provider: a budget must hold before spending, not after)."""

    __slots__ = ("left", "left_out")

    def __init__(self, max_tasks: int | None) -> None:
        self.left = max_tasks              # None: no limit
        self.left_out: set[str] = set()    # ids left pending because the budget was spent

    def __repr__(self) -> str:
        return f"<Budget left={self.left} left_out={len(self.left_out)}>"

    def take(self) -> bool:
        if self.left is None:
            return True
        if self.left <= 0:
            return False
        self.left -= 1
        return True

    def give_back(self) -> None:
        """The create made no task (429, refused, rejected): it does not count."""
        if self.left is not None:
            self.left += 1


class Progress:
    """What the run shows while it goes: read by the live display and the summary."""

    __slots__ = ("counts", "create_times", "durations", "prior", "started", "stats", "total")

    def __init__(self, counts: dict[State, int]) -> None:
        self.counts = counts                   # this run's items per state (kept by the ledger)
        self.total = 0                         # this run's items
        self.stats = RunStats()
        self.started = time.monotonic()
        self.create_times: deque[float] = deque(maxlen=10_000)  # monotonic times of recent creates
        self.durations: deque[float] = deque(maxlen=256)        # generation seconds of recent successes
        self.prior: list[float] = []           # generation seconds of earlier runs here (the folder's record)

    def __repr__(self) -> str:
        return f"<Progress total={self.total} {dict(self.counts)} {self.stats}>"

    def to_create(self) -> int:
        return sum(self.counts.get(state, 0) for state in TO_CREATE)

    def in_flight(self) -> int:
        return sum(self.counts.get(state, 0) for state in IN_FLIGHT)

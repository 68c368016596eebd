"""What one run shares: its configuration, the ledger, the provider client, the create gate and
the counters, and the two things every stage reports: an item came to rest, or the account was
refused. Stages receive a `Context` and the hand-off they feed; none of them knows the engine.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter, deque
from typing import TYPE_CHECKING

from batch_engine.config import Config
from batch_engine.errors import AccountRefused
from batch_engine.pacing.create_gate import CreateGate
from batch_engine.pipeline.stats import RunStats
from batch_engine.states import State
from batch_engine.store.ledger import Item, Ledger, Resting

if TYPE_CHECKING:
    from batch_engine.provider.client import KieClient

log = logging.getLogger(__name__)


class Context:
    """One run's shared state. `rest` is the one place an item is reported to have come to rest."""

    __slots__ = ("config", "ledger", "client", "gate", "stats", "items", "refused", "budget",
                 "left_by_budget", "counts", "started", "create_times", "durations", "_ids",
                 "_outstanding", "_done")

    def __init__(self, config: Config, ledger: Ledger, client: "KieClient",
                 gate: CreateGate | None = None) -> None:
        self.config = config
        self.ledger = ledger
        self.client = client
        self.gate = gate or CreateGate(config.rate)
        self.stats = RunStats()
        self.items: list[Item | Resting] = []  # the items this run is about (untouched succeeded ones at rest)
        self.refused: AccountRefused | None = None  # the account refusal that stopped creates
        self.budget = config.max_tasks         # creates this run may still send (None: no limit)
        self.left_by_budget: set[str] = set()  # ids left pending because the budget was spent
        self.counts: Counter[State] = Counter()  # this run's items per state, kept as they move
        self.started = time.monotonic()        # when the run began
        self.create_times: deque[float] = deque(maxlen=10_000)  # monotonic times of recent creates
        self.durations: deque[float] = deque(maxlen=256)  # generation seconds of recent successes
        self._ids: set[str] = set()            # ids of this run's items that may move (not at rest)
        self._outstanding = 0                  # items of this run not yet at rest
        self._done = asyncio.Event()           # set when nothing is outstanding, or all stop

    def __repr__(self) -> str:
        return (f"<Context {self.config.out_dir} items={len(self.items)} outstanding={self._outstanding} "
                f"refused={self.refused and self.refused.code} {self.stats}>")

    def track(self, items: list[Item | Resting]) -> None:
        """The items this run is about; their counts per state follow every ledger change."""
        self.items.extend(items)
        self._ids.update(item.id for item in items if not isinstance(item, Resting))
        self.counts.update(item.state for item in items)
        self.ledger.on_change = self._moved

    def _moved(self, item: Item, old: State, new: State) -> None:
        if item.id in self._ids and old is not new:
            self.counts[old] -= 1
            self.counts[new] += 1

    @property
    def outstanding(self) -> int:
        return self._outstanding

    def expect(self, item: Item) -> None:
        """`item` has work to do in this run; the run ends once every such item has rested."""
        self._outstanding += 1

    def rest(self, item: Item) -> None:
        """`item` needs nothing more from this run (succeeded, failed, or left for the next)."""
        self._outstanding -= 1
        if self._outstanding <= 0:
            self._done.set()

    def take_create(self) -> bool:
        """Count one create against the budget before it is sent; False once it is spent (there
        is no cancel at kie.ai: a budget must hold before spending, not after)."""
        if self.budget is None:
            return True
        if self.budget <= 0:
            return False
        self.budget -= 1
        return True

    def give_back_create(self) -> None:
        """The create made no task (429, refused, rejected): it does not count."""
        if self.budget is not None:
            self.budget += 1

    def refuse(self, error: AccountRefused, *, stop_all: bool = False) -> None:
        """The account was refused: create nothing more; with `stop_all`, stop everything."""
        if self.refused is None:
            self.refused = error
            log.error("the provider refused the account (%s): %s. No more tasks will be created%s.",
                      error.message, error.advice,
                      "" if stop_all else "; tasks already created are still followed and downloaded")
        self.gate.close()
        if stop_all:
            self._done.set()

    async def finished(self) -> None:
        """Return once every item has rested, or the run was stopped."""
        await self._done.wait()

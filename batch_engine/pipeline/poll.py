"""Stage 2: follow every created task until it succeeds or fails.

One scheduler keeps a heap of (when to check next, item); `pacing.poll_schedule.PollSchedule`
decides when and whether each check polls, learning from the tasks that finished; a few workers
make the calls through a `pacing.poll_pace.PollGate` (a polite limit of their own, separate from
the create cap). What an answer means is decided by `outcomes`; a callback (see
`provider.callbacks`) only makes a task be looked at at once (`poll_soon`). A task that
succeeded goes to `to_download`.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import time
from collections.abc import Callable
from datetime import datetime

from batch_engine.config import PollSettings
from batch_engine.errors import AccountRefused, KieError, RateLimited
from batch_engine.pacing.poll_pace import PollGate
from batch_engine.pacing.poll_schedule import PRIOR_MIN, SKEW, PollSchedule, duration_of
from batch_engine.pacing.waits import wait_event
from batch_engine.pipeline.context import Control, Progress
from batch_engine.pipeline.outcomes import AfterPoll, PollOutcome, after_poll_error, after_task_info
from batch_engine.provider.base import Provider, TaskInfo, TaskState
from batch_engine.states import State
from batch_engine.store import changes
from batch_engine.store.durations import DurationBook, profile_of
from batch_engine.store.ledger import Item, Ledger

log = logging.getLogger(__name__)


class _Tracked:
    """What the poller keeps of one task in flight."""

    __slots__ = ("born", "checks", "due", "errors", "generation", "item", "order", "seen_running")

    def __init__(self, item: Item, born: float, order: int) -> None:
        self.item = item
        self.born = born          # monotonic time the task was created
        self.order = order        # arrival number: spreads the sampled checks across tasks
        self.generation = 0       # bumped on every re-plan; older heap entries are stale
        self.checks = 0           # checks so far
        self.errors = 0           # failed polls in a row
        self.seen_running = 0.0   # monotonic time of the last answer that said "in progress"
        self.due = born           # monotonic time of its next planned check

    def seen(self) -> float | None:
        """The task's age when last seen running (None: not yet)."""
        return self.seen_running - self.born if self.seen_running else None


class Poller:
    def __init__(self, settings: PollSettings, ledger: Ledger, provider: Provider, control: Control,
                 progress: Progress, to_download: Callable[[Item], None], workers: int = 8, *,
                 callbacks: bool = False, book: DurationBook | None = None) -> None:
        self.settings = settings
        self.ledger = ledger
        self.provider = provider
        self.control = control
        self.progress = progress
        self.book = book  # durations of earlier runs in this folder, and where this run's go
        self.to_download = to_download
        self.workers = workers
        self.schedule = PollSchedule(settings, callbacks=callbacks)
        self.gate = PollGate(settings.polls_per_second)
        self._heap: list[tuple[float, int, int, _Tracked]] = []  # (due, tie-break, generation, task)
        self._order = itertools.count()                  # tie-breaks in the heap
        self._numbers = itertools.count()                # the tasks as they came (the schedule's order)
        self._wakeup = asyncio.Event()                   # set when an earlier due time arrives
        self._due: asyncio.Queue[Item] = asyncio.Queue(maxsize=workers * 2)
        self._tracked: dict[str, _Tracked] = {}          # item id -> task in flight
        self._by_task: dict[str, Item] = {}              # task id -> item, for callbacks
        self._unknown_states: set[str] = set()

    def __repr__(self) -> str:
        due = self._heap[0][0] - time.monotonic() if self._heap else None
        return (f"<Poller tracked={len(self._tracked)} heap={len(self._heap)} due_queue={self._due.qsize()} "
                f"next_in={due if due is None else round(due, 2)} {self.schedule!r} {self.gate!r}>")

    def expect(self, items: list[Item]) -> None:
        """The items this run will create or follow: with durations of earlier runs of their
        model and settings in the folder, the schedule starts from them (`use_prior`)."""
        if self.book is None or self.schedule.callbacks or not items:
            return
        prior = self.book.prior((profile_of(item.request) for item in items), PRIOR_MIN)
        self.progress.prior = list(prior)
        if self.schedule.use_prior(prior):
            log.info("polling: %d durations of earlier runs here (shortest %.0f s); every task is "
                     "first looked at %.0f s old", len(prior), min(prior), self.schedule.first_look() or 0.0)

    def in_flight(self, now: float) -> tuple[list[float], list[float | None], list[float | None]]:
        """The ETA's tasks in flight: each one's age, its age when last seen running (None: not
        yet) and the age of its next planned check (its age now, when that check is overdue)."""
        tracked = list(self._tracked.values())
        return ([now - t.born for t in tracked], [t.seen() for t in tracked],
                [max(t.due, now) - t.born for t in tracked])

    def track(self, item: Item, delay: float | None = None) -> None:
        """Follow `item`'s task; look at it after `delay` seconds, or when the schedule says."""
        tracked = self._tracked.get(item.id)
        if tracked is None:
            tracked = _Tracked(item, _monotonic_from_iso(item.submitted_at), next(self._numbers))
            self._tracked[item.id] = tracked
            self._by_task[item.task_id or ""] = item
            self.schedule.started(tracked.born)
        now = time.monotonic()
        if delay is None:
            delay = self.schedule.next_check(now - tracked.born, tail=self._in_tail(), seen=tracked.seen())
        tracked.generation += 1
        tracked.due = now + delay
        heapq.heappush(self._heap, (tracked.due, next(self._order), tracked.generation, tracked))
        self._wakeup.set()

    def _in_tail(self) -> bool:
        """Nothing left to create and few tasks in flight: the batch's last videos, each looked
        at closely from its next check on (a check planned already is kept: it is in time)."""
        self.schedule.to_create = self.progress.to_create()
        return self.schedule.tail(len(self._tracked))

    def item_for_task(self, task_id: str) -> Item | None:
        return self._by_task.get(task_id)

    def poll_soon(self, item_id: str) -> None:
        """Look at a task now (an unsigned callback said it ended: confirm it)."""
        tracked = self._tracked.get(item_id)
        if tracked is not None:
            self.track(tracked.item, delay=0.0)

    async def scheduler(self) -> None:
        while True:
            if not self._heap:
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            wait = self._heap[0][0] - time.monotonic()
            if wait > 0:
                self._wakeup.clear()
                await wait_event(self._wakeup, wait)
                continue
            _, _, generation, tracked = heapq.heappop(self._heap)
            if tracked.generation != generation or self._tracked.get(tracked.item.id) is not tracked:
                continue  # re-planned or finished since
            tracked.checks += 1
            self.schedule.to_create = self.progress.to_create()
            if not self.schedule.should_poll(time.monotonic(), tracked.born, tracked.order, tracked.checks,
                                             tracked.seen()):
                self.track(tracked.item)
                continue
            await self._due.put(tracked.item)

    async def worker(self) -> None:
        while True:
            item = await self._due.get()
            if item.state is State.RUNNING:  # a callback may have finished it meanwhile
                await self.poll(item)

    async def poll(self, item: Item) -> None:
        tracked = self._tracked.get(item.id)
        if tracked is None:
            return
        age = time.monotonic() - tracked.born
        if age > self.settings.task_timeout:
            log.warning("item %s: task %s unfinished after %.0f s; it stays in the ledger and the "
                        "next run picks it up", item.id, item.task_id, age)
            self.progress.stats.timed_out += 1
            self._forget(item)  # a late callback for it is left to the next run as well
            self.control.item_done()
            return
        await self.gate.wait_turn()
        self.progress.stats.polls += 1
        try:
            info = await self.provider.status(item.task_id or "")
        except KieError as e:
            if self._tracked.get(item.id) is not tracked:
                return  # a callback ended the task while the poll was out
            if not isinstance(e, (RateLimited, AccountRefused)):  # those say nothing of the task
                tracked.errors += 1
            outcome = after_poll_error(e, age=age, errors=tracked.errors, task_id=item.task_id,
                                       scale=self.settings.scale)
            if outcome.message and outcome.next is AfterPoll.RETRY:
                log.info("item %s: asking for the task's status failed (%s), try %d", item.id, outcome.message, tracked.errors)
            self._after_error(item, e, outcome)
            return
        self.gate.pace.on_answered(time.monotonic())
        tracked.errors = 0
        self.apply(item, info)

    def _after_error(self, item: Item, error: KieError, outcome: PollOutcome) -> None:
        pace = self.gate.pace
        if outcome.next is AfterPoll.STOP_ALL and isinstance(error, AccountRefused):
            self.control.refuse(error, stop_all=True)
        elif outcome.next is AfterPoll.SLOW_DOWN:  # polls count against a limit after all
            before = pace.rate
            pace.on_refused(time.monotonic(), getattr(error, "retry_after", None))
            self.progress.stats.polls_refused += 1
            if pace.rate < before:  # a warning the first time, then quieter
                level = logging.WARNING if before == pace.allowed else logging.INFO
                log.log(level, "the provider answered a poll with 429 (%s); polling slowed to %.2g "
                        "per second", error.message, pace.rate)
            self.track(item, max(pace.pause_until - time.monotonic(), 0.0))
        elif outcome.next is AfterPoll.FAIL:
            self._forget(item)
            self._fail(item, outcome)
        else:
            self.track(item, outcome.wait)

    def _fail(self, item: Item, outcome: PollOutcome) -> None:
        self.ledger.apply(item, changes.failed(outcome.code or "fail", outcome.message or "",
                                               retryable=outcome.retryable, provider_state=outcome.provider_state))
        self.control.item_done()

    def apply(self, item: Item, info: TaskInfo) -> None:
        """Act on what the provider says of a task (asked, or told by a verified callback)."""
        if item.state is not State.RUNNING:
            return  # already handled: duplicates happen
        outcome = after_task_info(info)
        if outcome.next is not AfterPoll.WAIT:
            if info.state is TaskState.SUCCESS:
                self._learn(item, info)
            self._forget(item)
        if outcome.next is AfterPoll.DOWNLOAD:
            if outcome.credits is not None:
                self.progress.stats.credits_spent += outcome.credits
            self.ledger.apply(item, changes.generated(outcome.url or "", outcome.credits))
            self.to_download(item)
        elif outcome.next is AfterPoll.FAIL:
            self._fail(item, outcome)
        else:
            word = outcome.provider_state or ""
            if outcome.undocumented and word not in self._unknown_states:
                self._unknown_states.add(word)
                log.warning("the provider reported an undocumented state %r; treating it as in progress", word)
            if word != item.provider_state:
                self.ledger.apply(item, changes.progressed(word))
            tracked = self._tracked.get(item.id)
            if tracked is not None:
                tracked.seen_running = time.monotonic()
            self.track(item)

    def _learn(self, item: Item, info: TaskInfo) -> None:
        tracked = self._tracked.get(item.id)
        if tracked is None:
            return
        duration = duration_of(info.seconds, tracked.seen(), time.monotonic() - tracked.born,
                               SKEW * self.settings.scale)
        self.progress.durations.append(duration)
        if tracked.born >= self.progress.started:  # created by this run: a resumed task's age
            self._record(item, duration)     # includes the time nothing ran
        if self.schedule.observe(duration):
            now = time.monotonic()  # the first news: every task in flight gets a new plan
            for other in list(self._tracked.values()):
                if other is not tracked:
                    self.track(other.item, self.schedule.replan(now - other.born, other.seen()))

    def _record(self, item: Item, duration: float) -> None:
        """Keep a success's duration for later runs in this folder (`store.durations`)."""
        book = self.book
        if book is None:
            return
        try:
            book.record(profile_of(item.request), duration)
        except OSError as e:
            log.warning("cannot write %s (%s): later runs will poll without this run's durations",
                        book.path, e.strerror or e)
            self.book = None

    def _forget(self, item: Item) -> None:
        tracked = self._tracked.pop(item.id, None)
        if tracked is not None:
            self.schedule.ended(tracked.born)
        self._by_task.pop(item.task_id or "", None)


def _monotonic_from_iso(stamp: str | None) -> float:
    now = time.monotonic()
    if not stamp:
        return now
    try:
        ago = time.time() - datetime.fromisoformat(stamp).timestamp()
    except ValueError:
        return now
    return now - max(ago, 0.0)

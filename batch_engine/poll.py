"""Stage 2: follow every created task with recordInfo until it succeeds or fails.

One scheduler keeps a heap of (when to check next, item); `poll_schedule.PollSchedule` decides
when and whether each check polls, learning from the tasks that finished; a few workers make the
calls under a shared, polite limit of their own (separate from the create cap). A callback (see
`callbacks`) ends a task the same way a poll does, through `apply`.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import time
from datetime import datetime
from typing import TYPE_CHECKING

from aiolimiter import AsyncLimiter

from batch_engine.client import TaskInfo
from batch_engine.errors import AccountRefused, KieError, RateLimited, TaskUnknown
from batch_engine.ledger import Item, now_iso
from batch_engine.poll_schedule import PollSchedule, duration_of
from batch_engine.ratelimit import PollPace, backoff_delay
from batch_engine.states import State
from batch_engine.waits import wait_event

if TYPE_CHECKING:
    from batch_engine.engine import Run

log = logging.getLogger(__name__)
IN_PROGRESS = frozenset({"waiting", "queuing", "generating", "created"})
UNKNOWN_GRACE = 300.0  # seconds a new task may be unknown to recordInfo before it is given up
POLL_BURST = 8.0       # seconds of polls that may go out at once (see Poller.__init__)


class _Tracked:
    """What the poller keeps of one task in flight."""

    __slots__ = ("item", "born", "order", "generation", "checks", "errors", "seen_running")

    def __init__(self, item: Item, born: float, order: int) -> None:
        self.item = item
        self.born = born          # monotonic time the task was created
        self.order = order        # arrival number: spreads the sampled checks across tasks
        self.generation = 0       # bumped on every re-plan; older heap entries are stale
        self.checks = 0           # checks so far
        self.errors = 0           # failed polls in a row
        self.seen_running = 0.0   # monotonic time of the last answer that said "in progress"


class Poller:
    def __init__(self, run: "Run", workers: int = 8, *, callbacks: bool = False) -> None:
        self.run = run
        self.workers = workers
        self.schedule = PollSchedule(run.config.poll, callbacks=callbacks)
        self._heap: list[tuple[float, int, int, _Tracked]] = []  # (due, tie-break, generation, task)
        self._order = itertools.count()
        self._wakeup = asyncio.Event()                   # set when an earlier due time arrives
        self._due: asyncio.Queue[Item] = asyncio.Queue(maxsize=workers * 2)
        self.pace = PollPace(run.config.poll.polls_per_second)
        self._limiter = self._make_limiter()
        self._limiter_rate = self.pace.rate              # the rate `_limiter` was made for
        self._tracked: dict[str, _Tracked] = {}          # item id -> task in flight
        self._by_task: dict[str, Item] = {}              # task id -> item, for callbacks
        self._unknown_states: set[str] = set()

    def track(self, item: Item, delay: float | None = None) -> None:
        """Follow `item`'s task; look at it after `delay` seconds, or when the schedule says."""
        tracked = self._tracked.get(item.id)
        if tracked is None:
            tracked = _Tracked(item, _monotonic_from_iso(item.submitted_at), next(self._order))
            self._tracked[item.id] = tracked
            self._by_task[item.task_id or ""] = item
            self.schedule.started(tracked.born)
        now = time.monotonic()
        if delay is None:
            delay = self.schedule.next_check(now - tracked.born)
        tracked.generation += 1
        heapq.heappush(self._heap, (now + delay, next(self._order), tracked.generation, tracked))
        self._wakeup.set()

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
            due, _, generation, tracked = heapq.heappop(self._heap)
            if tracked.generation != generation or self._tracked.get(tracked.item.id) is not tracked:
                continue  # re-planned or finished since
            tracked.checks += 1
            if not self.schedule.should_poll(time.monotonic(), tracked.born, tracked.order, tracked.checks):
                self.track(tracked.item)
                continue
            await self._due.put(tracked.item)

    async def worker(self) -> None:
        while True:
            item = await self._due.get()
            if item.state is State.RUNNING:  # a callback may have finished it meanwhile
                await self.poll(item)

    async def poll(self, item: Item) -> None:
        run = self.run
        tracked = self._tracked.get(item.id)
        if tracked is None:
            return
        age = time.monotonic() - tracked.born
        if age > run.config.poll.task_timeout:
            log.warning("item %s: task %s unfinished after %.0f s; it stays in the ledger and the "
                        "next run picks it up", item.id, item.task_id, age)
            run.stats.timed_out += 1
            self._forget(item)  # a late callback for it is left to the next run as well
            run.finished(item)
            return
        await self._wait_turn()
        run.stats.polls += 1
        try:
            info = await run.client.record_info(item.task_id)  # type: ignore[arg-type]
        except AccountRefused as e:
            run.refuse(e, stop_all=True)
            return
        except RateLimited as e:  # polls count against a limit after all: every poll slows down
            before = self.pace.rate
            self.pace.on_refused(time.monotonic(), e.retry_after)
            run.stats.polls_refused += 1
            if self.pace.rate < before:  # a warning the first time, then quieter
                level = logging.WARNING if before == self.pace.allowed else logging.INFO
                log.log(level, "the provider answered a poll with 429 (%s); polling slowed to %.2g "
                        "per second", e.message, self.pace.rate)
            self.track(item, max(self.pace.pause_until - time.monotonic(), 0.0))
            return
        except TaskUnknown as e:
            if age > UNKNOWN_GRACE * run.config.poll.scale:
                self._forget(item)
                run.ledger.advance(item, State.FAILED, fail_code="task_unknown",
                                   fail_msg=f"the provider does not know task {item.task_id}: {e.message}",
                                   finished_at=now_iso())
                run.finished(item)
                return
            tracked.errors += 1
            self.track(item, backoff_delay(tracked.errors, base=run.config.poll.scale, cap=30.0))
            return
        except KieError as e:
            tracked.errors += 1
            log.info("item %s: recordInfo failed (%s), try %d", item.id, e.message, tracked.errors)
            self.track(item, backoff_delay(tracked.errors, base=2.0 * run.config.poll.scale, cap=60.0))
            return
        self.pace.on_answered(time.monotonic())
        tracked.errors = 0
        self.apply(item, info)

    async def _wait_turn(self) -> None:
        """Wait until a poll may go out: past any pause, then through the limiter."""
        while True:
            pause = self.pace.pause_until - time.monotonic()
            if pause > 0:
                await asyncio.sleep(pause)
                continue
            if self._limiter_rate != self.pace.rate:
                self._limiter, self._limiter_rate = self._make_limiter(), self.pace.rate
            await self._limiter.acquire()
            if self.pace.pause_until <= time.monotonic():
                return

    def _make_limiter(self) -> AsyncLimiter:
        rate = self.pace.rate
        if self.pace.throttled:  # evenly, one at a time: a burst is what was refused
            return AsyncLimiter(1, 1.0 / rate)
        # a bucket of POLL_BURST seconds: the first news may send every task in flight to be
        # looked at at once; the average stays at the allowed rate
        return AsyncLimiter(rate * POLL_BURST, POLL_BURST)

    def apply(self, item: Item, info: TaskInfo) -> None:
        """Act on what the provider says of a task (from recordInfo or a verified callback)."""
        run = self.run
        if item.state is not State.RUNNING:
            return  # already handled: duplicates happen
        if info.state == "success":
            self._learn(item, info)
            self._forget(item)
            if not info.result_urls:
                run.ledger.advance(item, State.FAILED, provider_state="success", fail_code="no_result",
                                   fail_msg="the task succeeded without a result URL",
                                   finished_at=now_iso())
                run.finished(item)
                return
            run.ledger.advance(item, State.DOWNLOADING, provider_state="success",
                               result_url=info.result_urls[0])
            run.downloader.enqueue(item)
        elif info.state == "fail":
            self._forget(item)
            run.ledger.advance(item, State.FAILED, provider_state="fail",
                               fail_code=info.fail_code or "fail",
                               fail_msg=info.fail_msg or "the provider reported the task failed",
                               finished_at=now_iso())
            run.finished(item)
        else:
            if info.state not in IN_PROGRESS and info.state not in self._unknown_states:
                self._unknown_states.add(info.state)
                log.warning("recordInfo reported an undocumented state %r; treating it as in progress",
                            info.state)
            if info.state != item.provider_state:
                run.ledger.advance(item, State.RUNNING, provider_state=info.state)
            tracked = self._tracked.get(item.id)
            if tracked is not None:
                tracked.seen_running = time.monotonic()
            self.track(item)

    def _learn(self, item: Item, info: TaskInfo) -> None:
        tracked = self._tracked.get(item.id)
        if tracked is None:
            return
        seen = tracked.seen_running - tracked.born if tracked.seen_running else None
        duration = duration_of(info.duration(), seen, time.monotonic() - tracked.born)
        if self.schedule.observe(duration):
            now = time.monotonic()  # the first news: every task in flight gets a new plan
            for other in list(self._tracked.values()):
                if other is not tracked:
                    seen = other.seen_running - other.born if other.seen_running else None
                    self.track(other.item, self.schedule.replan(now - other.born, seen))

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

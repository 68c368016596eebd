"""Stage 2: follow every created task with recordInfo until it succeeds or fails.

One scheduler keeps a heap of (when to look next, item); a few workers make the calls under a
shared, polite limit of their own (separate from the create cap). The cadence follows the
provider's advice: quick at first, slower as a task ages.
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
from batch_engine.config import PollSettings
from batch_engine.errors import AccountRefused, KieError, TaskUnknown
from batch_engine.ledger import Item, now_iso
from batch_engine.ratelimit import backoff_delay
from batch_engine.states import State

if TYPE_CHECKING:
    from batch_engine.engine import Run

log = logging.getLogger(__name__)
IN_PROGRESS = frozenset({"waiting", "queuing", "generating", "created"})
UNKNOWN_GRACE = 300.0  # seconds a new task may be unknown to recordInfo before it is given up


def next_poll_delay(age: float, settings: PollSettings) -> float:
    """Seconds until the next look at a task that is `age` seconds old."""
    if age < 30 * settings.scale:
        base = settings.early
    elif age < 120 * settings.scale:
        base = settings.middle
    else:
        base = settings.late
    return base * settings.scale


class Poller:
    def __init__(self, run: "Run", workers: int = 8) -> None:
        self.run = run
        self.workers = workers
        self._heap: list[tuple[float, int, Item]] = []   # (monotonic due time, order, item)
        self._order = itertools.count()
        self._wakeup = asyncio.Event()                   # set when an earlier due time arrives
        self._due: asyncio.Queue[Item] = asyncio.Queue(maxsize=workers * 2)
        self._limiter = AsyncLimiter(run.config.poll.polls_per_second, 1.0)
        self._born: dict[str, float] = {}                # item id -> monotonic time its task began
        self._errors: dict[str, int] = {}                # item id -> failed polls in a row
        self._unknown_states: set[str] = set()

    def track(self, item: Item, delay: float | None = None) -> None:
        born = self._born.setdefault(item.id, _monotonic_from_iso(item.submitted_at))
        now = time.monotonic()
        if delay is None:
            delay = next_poll_delay(now - born, self.run.config.poll)
        heapq.heappush(self._heap, (now + delay, next(self._order), item))
        self._wakeup.set()

    async def scheduler(self) -> None:
        while True:
            if not self._heap:
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            wait = self._heap[0][0] - time.monotonic()
            if wait > 0:
                self._wakeup.clear()
                try:
                    await asyncio.wait_for(self._wakeup.wait(), wait)
                except TimeoutError:
                    pass
                continue
            _, _, item = heapq.heappop(self._heap)
            await self._due.put(item)

    async def worker(self) -> None:
        while True:
            item = await self._due.get()
            if item.state is State.RUNNING:  # a callback may have finished it meanwhile
                await self.poll(item)

    async def poll(self, item: Item) -> None:
        run = self.run
        age = time.monotonic() - self._born[item.id]
        if age > run.config.poll.task_timeout:
            log.warning("item %s: task %s unfinished after %.0f s; it stays in the ledger and the "
                        "next run picks it up", item.id, item.task_id, age)
            run.stats.timed_out += 1
            run.finished(item)
            return
        await self._limiter.acquire()
        run.stats.polls += 1
        try:
            info = await run.client.record_info(item.task_id)  # type: ignore[arg-type]
        except AccountRefused as e:
            run.refuse(e, stop_all=True)
            return
        except TaskUnknown as e:
            if age > UNKNOWN_GRACE * run.config.poll.scale:
                self._forget(item)
                run.ledger.advance(item, State.FAILED, fail_code="task_unknown",
                                   fail_msg=f"the provider does not know task {item.task_id}: {e.message}",
                                   finished_at=now_iso())
                run.finished(item)
                return
            self.track(item, backoff_delay(self._count_error(item), base=run.config.poll.scale, cap=30.0))
            return
        except KieError as e:
            errors = self._count_error(item)
            log.info("item %s: recordInfo failed (%s), try %d", item.id, e.message, errors)
            self.track(item, backoff_delay(errors, base=2.0 * run.config.poll.scale, cap=60.0))
            return
        self._errors.pop(item.id, None)
        self.apply(item, info)

    def apply(self, item: Item, info: TaskInfo) -> None:
        """Act on what the provider says of a task (from recordInfo or a verified callback)."""
        run = self.run
        if item.state is not State.RUNNING:
            return  # already handled: duplicates happen
        if info.state == "success":
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
            self.track(item)

    def _forget(self, item: Item) -> None:
        self._born.pop(item.id, None)
        self._errors.pop(item.id, None)

    def _count_error(self, item: Item) -> int:
        self._errors[item.id] = self._errors.get(item.id, 0) + 1
        return self._errors[item.id]


def _monotonic_from_iso(stamp: str | None) -> float:
    now = time.monotonic()
    if not stamp:
        return now
    try:
        ago = time.time() - datetime.fromisoformat(stamp).timestamp()
    except ValueError:
        return now
    return now - max(ago, 0.0)

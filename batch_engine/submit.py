"""Stage 1: create a task for each item, through the create gate, recording each step first.

A create is not idempotent. The item is marked `submitting` (and the attempt counted) before the
request leaves; the task id is recorded the moment the answer arrives. Policy for a create that
may have reached the provider but whose answer never came (a dropped connection, a time-out, or a
run killed mid-request): send it again, and count it in `unanswered_creates` and in the summary
as possibly paid twice. Losing the item silently would be worse for a catalog run; the count
makes the cost visible.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from batch_engine.errors import AccountRefused, Maintenance, RateLimited, Rejected, Transient
from batch_engine.ledger import Item, now_iso
from batch_engine.ratelimit import backoff_delay
from batch_engine.states import State

if TYPE_CHECKING:
    from batch_engine.engine import Run

log = logging.getLogger(__name__)
MAINTENANCE_PAUSE = 30.0  # seconds all creates wait after a 455 without Retry-After
MAX_TRANSIENT = 8  # create failures in a row (not 429s) before an item is given up for this run
GRACE = 5.0        # seconds an interrupted run still waits for the answer to a create on the wire


class Submitter:
    def __init__(self, run: "Run") -> None:
        self.run = run
        self.queue: asyncio.Queue[Item] = asyncio.Queue()

    def enqueue(self, item: Item) -> None:
        self.queue.put_nowait(item)

    async def worker(self) -> None:
        while True:
            item = await self.queue.get()
            await self.submit(item)

    async def submit(self, item: Item) -> None:
        run, ledger, gate = self.run, self.run.ledger, self.run.gate
        if item.state is State.SUBMITTING:  # a create of an earlier run was never answered
            ledger.advance(item, State.SUBMITTING, unanswered_creates=item.unanswered_creates + 1)
            run.stats.unanswered_creates += 1
        failures = 0
        while True:
            slot = await gate.acquire()
            if slot is None:  # the account was refused: leave the item for the next run
                run.stats.not_submitted += 1
                run.finished(item)
                return
            ledger.advance(item, State.SUBMITTING, attempts=item.attempts + 1,
                           fail_code=None, fail_msg=None, submitted_at=now_iso())
            run.stats.creates_sent += 1
            body = item.request if run.config.callback_url is None else \
                {**item.request, "callBackUrl": run.config.callback_url}
            create = asyncio.ensure_future(run.client.create_task(body))
            try:
                task_id = await asyncio.shield(create)
            except asyncio.CancelledError:
                await self._settle(item, create)
                raise
            except RateLimited as e:
                gate.answered(slot, rate_limited=True, retry_after=e.retry_after)
                run.stats.rate_limited += 1
                ledger.advance(item, State.PENDING, attempts=item.attempts - 1)
                continue
            except AccountRefused as e:
                gate.answered(slot)
                ledger.advance(item, State.PENDING, attempts=item.attempts - 1)
                run.refuse(e)
                continue  # the closed gate turns this item away above
            except Rejected as e:
                gate.answered(slot)
                ledger.advance(item, State.FAILED, attempts=item.attempts - 1, fail_code=str(e.code),
                               fail_msg=f"create rejected: {e.message}", finished_at=now_iso())
                run.finished(item)
                return
            except Transient as e:
                gate.answered(slot)
                failures += 1
                if isinstance(e, Maintenance):
                    gate.pause(e.retry_after or MAINTENANCE_PAUSE * run.config.poll.scale)
                if e.maybe_sent:
                    run.stats.unanswered_creates += 1
                    log.warning("item %s: create sent but not answered (%s); sending it again",
                                item.id, e.message)
                    ledger.advance(item, State.SUBMITTING,
                                   unanswered_creates=item.unanswered_creates + 1)
                else:
                    ledger.advance(item, State.PENDING, attempts=item.attempts - 1)
                if failures >= MAX_TRANSIENT:
                    code = "unanswered_create" if item.state is State.SUBMITTING else str(e.code)
                    log.error("item %s: create failed %d times (%s); left for the next run",
                              item.id, failures, e.message)
                    run.stats.gave_up[code] = run.stats.gave_up.get(code, 0) + 1
                    run.finished(item)
                    return
                await asyncio.sleep(backoff_delay(failures, base=run.config.poll.scale, cap=30.0))
                continue
            gate.answered(slot, accepted=True)
            ledger.advance(item, State.RUNNING, task_id=task_id, provider_state="created",
                           submitted_at=now_iso())
            run.poller.track(item)
            return

    async def _settle(self, item: Item, create: "asyncio.Future[str]") -> None:
        """Interrupted with a create on the wire: wait a moment for its answer, so that a task the
        provider made is recorded (and not paid for again by the next run)."""
        done, _ = await asyncio.wait({create}, timeout=GRACE)
        if not done:
            create.cancel()
            return  # stays `submitting`: the next run counts it as unanswered
        error = create.exception()
        if error is None:
            self.run.ledger.advance(item, State.RUNNING, task_id=create.result(),
                                    provider_state="created", submitted_at=now_iso())
        elif not (isinstance(error, Transient) and error.maybe_sent):
            self.run.ledger.advance(item, State.PENDING, attempts=item.attempts - 1)

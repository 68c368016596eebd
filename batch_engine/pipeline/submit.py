"""Stage 1: create a task for each item, through the create gate, recording each step first.

A create is not idempotent. The item is marked `submitting` (and the attempt counted) before the
request leaves; the task id is recorded the moment the answer arrives. Policy for a create that
may have reached the provider but whose answer never came (a dropped connection, a time-out, or a
run killed mid-request): send it again, and count it in `unanswered_creates` and in the summary
as possibly paid twice. Losing the item silently would be worse for a catalog run; the count
makes the cost visible. What follows each answer is decided by `outcomes.after_create`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Awaitable, Callable

from batch_engine.errors import AccountRefused, KieError, RateLimited, Transient
from batch_engine.pacing.policy import PAUSES
from batch_engine.pipeline.context import Context
from batch_engine.pipeline.outcomes import AfterCreate, CreateOutcome, after_create
from batch_engine.states import State
from batch_engine.store.ledger import Item, now_iso

log = logging.getLogger(__name__)


class Submitter:
    """Creates tasks; hands each created item to `to_poll`."""

    def __init__(self, ctx: Context, to_poll: Callable[[Item], None],
                 prepare: Callable[[Item], Awaitable[dict]] | None = None) -> None:
        self.ctx = ctx
        self.to_poll = to_poll
        self.prepare = prepare  # the request with its URLs (local images uploaded), before a create
        self.queue: asyncio.Queue[Item] = asyncio.Queue()
        self._sending: set[str] = set()  # ids of items whose create is on the wire

    def __repr__(self) -> str:
        return f"<Submitter queued={self.queue.qsize()} sending={sorted(self._sending)[:8]} {self.ctx.gate!r}>"

    def enqueue(self, item: Item) -> None:
        self.queue.put_nowait(item)

    async def worker(self) -> None:
        while True:
            item = await self.queue.get()
            await self.submit(item)

    async def submit(self, item: Item) -> None:
        ctx, ledger, gate = self.ctx, self.ctx.ledger, self.ctx.gate
        if item.state is State.SUBMITTING:  # a create of an earlier run was never answered
            ledger.advance(item, State.SUBMITTING, unanswered_creates=item.unanswered_creates + 1)
            ctx.stats.unanswered_creates += 1
        failures, body = 0, None
        while True:
            if not ctx.take_create():  # the budget is spent: the item waits for another run
                ctx.stats.over_budget += 1
                ctx.left_by_budget.add(item.id)
                ctx.rest(item)
                return
            if body is None and (body := await self._prepared(item)) is None:
                ctx.give_back_create()
                return
            slot = await gate.acquire()
            if slot is None:  # the account was refused: leave the item for the next run
                ctx.give_back_create()
                ctx.stats.not_submitted += 1
                ctx.rest(item)
                return
            ledger.advance(item, State.SUBMITTING, attempts=item.attempts + 1,
                           fail_code=None, fail_msg=None, submitted_at=now_iso())
            ctx.stats.creates_sent += 1
            ctx.create_times.append(time.monotonic())
            task_id, error = await self._send(item, body)
            if isinstance(error, Transient) and not isinstance(error, RateLimited):
                failures += 1
            outcome = after_create(error, failures, scale=ctx.config.poll.scale)
            gate.answered(slot, accepted=error is None, rate_limited=isinstance(error, RateLimited),
                          retry_after=error.retry_after if isinstance(error, RateLimited) else None)
            if self._record(item, outcome, error, task_id, failures):
                return
            if outcome.wait:
                await asyncio.sleep(outcome.wait)

    def _record(self, item: Item, outcome: CreateOutcome, error: KieError | None, task_id: str | None,
                failures: int) -> bool:
        """Write what the create's answer means; True when the item is done with this stage."""
        ctx, ledger = self.ctx, self.ctx.ledger
        if outcome.pause_all is not None:
            ctx.gate.pause(outcome.pause_all)
        changes: dict = {}
        if not outcome.counted:
            changes["attempts"] = item.attempts - 1
            ctx.give_back_create()
        if outcome.maybe_paid:
            ctx.stats.unanswered_creates += 1
            changes["unanswered_creates"] = item.unanswered_creates + 1
            log.warning("item %s: create sent but not answered (%s); sending it again", item.id, outcome.message)
        if outcome.next is AfterCreate.FOLLOW:
            ledger.advance(item, State.RUNNING, task_id=task_id, provider_state="created", submitted_at=now_iso())
            self.to_poll(item)
            return True
        if outcome.next is AfterCreate.FAIL:
            ledger.advance(item, State.FAILED, fail_code=outcome.code, fail_msg=outcome.message,
                           retryable=outcome.retryable, finished_at=now_iso(), **changes)
            ctx.rest(item)
            return True
        ledger.advance(item, outcome.state, **changes)
        if isinstance(error, RateLimited):
            ctx.stats.rate_limited += 1
        elif outcome.next is AfterCreate.STOP:
            ctx.refuse(error)  # type: ignore[arg-type]  # the closed gate turns the item away
        elif outcome.next is AfterCreate.LEAVE:
            log.error("item %s: create failed %d times (%s); left for the next run", item.id, failures,
                      outcome.message)
            ctx.stats.gave_up[outcome.code] = ctx.stats.gave_up.get(outcome.code, 0) + 1  # type: ignore[index]
            ctx.rest(item)
            return True
        return False

    async def _prepared(self, item: Item) -> dict | None:
        """The body to send, or None when the item cannot be sent (it has come to rest)."""
        if self.prepare is None:
            return item.request
        try:
            return await self.prepare(item)
        except AccountRefused as e:
            self.ctx.refuse(e)
            self.ctx.stats.not_submitted += 1
        except KieError as e:
            self.ctx.ledger.advance(item, State.FAILED, fail_code=str(e.code or "upload_failed"),
                                    fail_msg=e.message, retryable=True, finished_at=now_iso())
        self.ctx.rest(item)
        return None

    async def _send(self, item: Item, body: dict) -> tuple[str | None, KieError | None]:
        """One createTask for `item`: its task id, or the engine error it raised."""
        ctx = self.ctx
        if ctx.config.callback_url is not None:
            body = {**body, "callBackUrl": ctx.config.callback_url}
        create = asyncio.ensure_future(ctx.client.create_task(body))
        self._sending.add(item.id)
        try:
            return await asyncio.shield(create), None
        except asyncio.CancelledError:
            await self._settle(item, create)
            raise
        except KieError as e:
            return None, e
        finally:
            self._sending.discard(item.id)

    async def _settle(self, item: Item, create: "asyncio.Future[str]") -> None:
        """Interrupted with a create on the wire: wait a moment for its answer, so that a task the
        provider made is recorded (and not paid for again by the next run)."""
        done, _ = await asyncio.wait({create}, timeout=PAUSES.create_grace)
        if not done:
            create.cancel()
            return  # stays `submitting`: the next run counts it as unanswered
        error = create.exception()
        if error is None:
            self.ctx.ledger.advance(item, State.RUNNING, task_id=create.result(),
                                    provider_state="created", submitted_at=now_iso())
        elif not (isinstance(error, Transient) and error.maybe_sent):
            self.ctx.ledger.advance(item, State.PENDING, attempts=item.attempts - 1)

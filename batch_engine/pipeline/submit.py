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
from collections.abc import Awaitable, Callable
from typing import Any

from batch_engine.errors import AccountRefused, KieError, RateLimited, Transient
from batch_engine.pacing.create_gate import CreateGate
from batch_engine.pacing.policy import PAUSES
from batch_engine.pipeline.context import Budget, Control, Progress
from batch_engine.pipeline.outcomes import AfterCreate, CreateOutcome, after_create
from batch_engine.provider.base import Provider
from batch_engine.states import State
from batch_engine.store import changes
from batch_engine.store.ledger import Item, Ledger

log = logging.getLogger(__name__)


class Submitter:
    """Creates tasks; hands each created item to `to_poll`."""

    def __init__(self, ledger: Ledger, provider: Provider, gate: CreateGate, budget: Budget, control: Control,
                 progress: Progress, to_poll: Callable[[Item], None], *, scale: float = 1.0,
                 prepare: Callable[[Item], Awaitable[dict[str, Any]]] | None = None) -> None:
        self.ledger = ledger
        self.provider = provider
        self.gate = gate
        self.budget = budget
        self.control = control
        self.progress = progress
        self.to_poll = to_poll
        self.scale = scale                # multiplies every back-off (tests, the demo)
        self.prepare = prepare  # the request with its URLs (local images uploaded), before a create
        self.queue: asyncio.Queue[Item] = asyncio.Queue()
        self._sending: set[str] = set()  # ids of items whose create is on the wire

    def __repr__(self) -> str:
        return f"<Submitter queued={self.queue.qsize()} sending={sorted(self._sending)[:8]} {self.gate!r}>"

    def enqueue(self, item: Item) -> None:
        self.queue.put_nowait(item)

    async def worker(self) -> None:
        while True:
            item = await self.queue.get()
            await self.submit(item)

    async def submit(self, item: Item) -> None:
        stats = self.progress.stats
        if item.state is State.SUBMITTING:  # a create of an earlier run was never answered
            self.ledger.apply(item, changes.unanswered(item))
            stats.unanswered_creates += 1
        failures, body = 0, None
        while True:
            if not self.budget.take():  # the budget is spent: the item waits for another run
                self.budget.left_out.add(item.id)
                self.control.item_done()
                return
            if body is None and (body := await self._prepared(item)) is None:
                self.budget.give_back()
                return
            slot = await self.gate.acquire()
            if slot is None:  # the account was refused: leave the item for the next run
                self.budget.give_back()
                stats.not_submitted += 1
                self.control.item_done()
                return
            self.ledger.apply(item, changes.sending(item))
            stats.creates_sent += 1
            self.progress.create_times.append(time.monotonic())
            task_id, error = await self._send(item, body)
            if isinstance(error, Transient) and not isinstance(error, RateLimited):
                failures += 1
            outcome = after_create(error, failures, scale=self.scale)
            self.gate.answered(slot, accepted=error is None, rate_limited=isinstance(error, RateLimited),
                               retry_after=error.retry_after if isinstance(error, RateLimited) else None)
            if self._record(item, outcome, error, task_id, failures):
                return
            if outcome.wait:
                await asyncio.sleep(outcome.wait)

    def _record(self, item: Item, outcome: CreateOutcome, error: KieError | None, task_id: str | None,
                failures: int) -> bool:
        """Write what the create's answer means; True when the item is done with this stage."""
        stats = self.progress.stats
        if outcome.pause_all is not None:
            self.gate.pause(outcome.pause_all)
        if not outcome.counted:
            self.budget.give_back()
        if outcome.next is AfterCreate.FOLLOW and task_id is not None:
            self.ledger.apply(item, changes.created(task_id))
            self.to_poll(item)
            return True
        if outcome.maybe_paid:
            stats.unanswered_creates += 1
            log.warning("item %s: create sent but not answered (%s); sending it again", item.id, outcome.message)
        if outcome.next is AfterCreate.FAIL:
            self.ledger.apply(item, changes.failed(outcome.code or "rejected", outcome.message or "",
                                                   retryable=outcome.retryable,
                                                   attempts=item.attempts - (not outcome.counted)))
            self.control.item_done()
            return True
        if outcome.maybe_paid:
            self.ledger.apply(item, changes.unanswered(item, outcome.state))
        elif not outcome.counted:
            self.ledger.apply(item, changes.not_sent(item))
        if isinstance(error, RateLimited):
            stats.rate_limited += 1
        elif outcome.next is AfterCreate.STOP and isinstance(error, AccountRefused):
            self.control.refuse(error)  # the closed gate turns the item away
        elif outcome.next is AfterCreate.LEAVE:
            log.error("item %s: create failed %d times (%s); left for the next run", item.id, failures,
                      outcome.message)
            code = outcome.code or "create_failed"
            stats.gave_up[code] = stats.gave_up.get(code, 0) + 1
            self.control.item_done()
            return True
        return False

    async def _prepared(self, item: Item) -> dict[str, Any] | None:
        """The body to send, or None when the item cannot be sent (it is done with this run)."""
        if self.prepare is None:
            return item.request
        try:
            return await self.prepare(item)
        except AccountRefused as e:
            self.control.refuse(e)
            self.progress.stats.not_submitted += 1
        except KieError as e:
            self.ledger.apply(item, changes.failed(str(e.code or "upload_failed"), e.message, retryable=True))
        self.control.item_done()
        return None

    async def _send(self, item: Item, body: dict[str, Any]) -> tuple[str | None, KieError | None]:
        """One create for `item`: its task id, or the engine error it raised."""
        create = asyncio.ensure_future(self.provider.create(body))
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

    async def _settle(self, item: Item, create: asyncio.Future[str]) -> None:
        """Interrupted with a create on the wire: wait a moment for its answer, so that a task the
        provider made is recorded (and not paid for again by the next run)."""
        done, _ = await asyncio.wait({create}, timeout=PAUSES.create_grace)
        if not done:
            create.cancel()
            return  # stays `submitting`: the next run counts it as unanswered
        error = create.exception()
        if error is None:
            self.ledger.apply(item, changes.created(create.result()))
        elif not (isinstance(error, Transient) and error.maybe_sent):
            self.ledger.apply(item, changes.not_sent(item))

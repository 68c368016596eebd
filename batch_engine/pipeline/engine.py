"""The engine: carry out a plan by running the stages until every item of the run rests.

Collaborators, in pipeline order: `plan` (pure: what each item needs), `submit.Submitter`
(creates, through the create gate), `poll.Poller` (recordInfo, and callbacks through
`provider.callbacks`), `download.Downloader` (result files), all sharing one `context.Context`
(config, ledger, client, gate, counters). Each stage is handed the next stage's `enqueue`; none
of them imports this module. They run as workers of one `asyncio.TaskGroup`; the run ends when
every item has come to rest (`Context.rest`). Ctrl-C arrives as cancellation: every state change
is already in the ledger, so the next run resumes.
"""

from __future__ import annotations

import asyncio
import logging
import time
from contextlib import asynccontextmanager
from typing import AsyncIterator, Awaitable, Callable, Mapping
from urllib.parse import urlsplit

from batch_engine.catalog.images import LocalImage
from batch_engine.config import Config
from batch_engine.errors import AccountRefused, KieError
from batch_engine.pipeline.context import Context
from batch_engine.pipeline.stats import RunStats
from batch_engine.pipeline.download import Downloader
from batch_engine.pipeline.plan import Decision, Plan, Step, changed_fields, recent_creates
from batch_engine.pipeline.poll import Poller
from batch_engine.pipeline.submit import Submitter
from batch_engine.pipeline.upload import Uploader
from batch_engine.provider.callbacks import CallbackReceiver
from batch_engine.provider.client import KieClient
from batch_engine.states import State
from batch_engine.store.durations import DurationBook
from batch_engine.store.folder import set_aside
from batch_engine.store.ledger import Item, Ledger, LedgerError, Resting
from batch_engine.store.uploads import UploadBook

log = logging.getLogger(__name__)
CREDITS_WAIT = 5.0  # seconds the balance may take before the run goes on without it
Watch = Callable[["Run"], Awaitable[None]]  # runs beside the workers (a progress display)


class Run:
    """One run: the context and the three stages, wired to hand items on to each other."""

    def __init__(self, config: Config, ledger: Ledger, client: KieClient,
                 images: Mapping[str, LocalImage] | None = None) -> None:
        self.ctx = Context(config, ledger, client)
        self.uploader = Uploader(self.ctx, UploadBook(config.out_dir).load(), images or {})
        self.downloader = Downloader(self.ctx)
        self.poller = Poller(self.ctx, self.downloader.enqueue, callbacks=config.callback_url is not None,
                             book=DurationBook(config.out_dir).load())
        self.submitter = Submitter(self.ctx, self.poller.track, prepare=self.uploader.body_for)
        self.callbacks: CallbackReceiver | None = None
        if config.callback_url is not None and config.listen is not None:
            path = urlsplit(config.callback_url).path or "/"
            self.callbacks = CallbackReceiver(*config.listen, path, config.webhook_hmac_key,
                                              on_callback=self._on_callback)

    def __repr__(self) -> str:
        return f"<Run {self.ctx!r}\n  {self.submitter!r}\n  {self.poller!r}\n  {self.downloader!r}>"

    # what the report and the CLI read
    config = property(lambda self: self.ctx.config)
    stats = property(lambda self: self.ctx.stats)
    items = property(lambda self: self.ctx.items)
    refused = property(lambda self: self.ctx.refused)

    def start(self, items: list[Item | Resting]) -> None:
        """Queue each item at the stage its state says (after `apply_plan`)."""
        self.ctx.gate.seed(recent_creates(items, time.time(), self.ctx.config.rate.window))
        self.ctx.track(items)
        self.poller.expect([item for item in items
                            if isinstance(item, Item) and item.state not in (State.SUCCEEDED, State.FAILED)])
        for item in items:
            if item.state in (State.SUCCEEDED, State.FAILED):
                continue
            assert isinstance(item, Item)  # only succeeded items are at rest
            self.ctx.expect(item)
            if item.state in (State.PENDING, State.SUBMITTING):
                self.submitter.enqueue(item)
            elif item.state is State.RUNNING:
                self.poller.track(item, delay=0.0)
            else:
                self.downloader.enqueue(item)

    async def read_credits(self) -> None:
        """The balance before the first create (shown; a refused account stops here)."""
        try:
            async with asyncio.timeout(CREDITS_WAIT):  # a slow answer must not hold the batch up
                self.ctx.stats.credits_before = await self.ctx.client.credits()
        except AccountRefused as e:
            self.ctx.refuse(e)
        except KieError as e:
            log.warning("could not read the account's credits (%s); going on", e.message)
        except TimeoutError:
            log.warning("the account's credits did not come within %g s; going on", CREDITS_WAIT)

    @asynccontextmanager
    async def listening(self) -> AsyncIterator[None]:
        """The callback receiver bound first: a busy port stops the run before anything is sent."""
        if self.callbacks is not None:
            await self.callbacks.start()
        try:
            yield
        finally:
            if self.callbacks is not None:
                await self.callbacks.stop()

    async def execute(self, watch: Watch | None = None) -> None:
        if self.ctx.outstanding:
            await self._work(watch)

    async def _work(self, watch: Watch | None) -> None:
        config = self.ctx.config
        try:
            async with asyncio.TaskGroup() as tg:
                workers = [tg.create_task(self.poller.scheduler())]
                if watch is not None:
                    workers.append(tg.create_task(watch(self)))
                workers += [tg.create_task(self.submitter.worker()) for _ in range(config.create_workers)]
                workers += [tg.create_task(self.poller.worker()) for _ in range(self.poller.workers)]
                workers += [tg.create_task(self.downloader.worker()) for _ in range(config.download_workers)]
                await self.ctx.finished()
                for worker in workers:
                    worker.cancel()
        except BaseExceptionGroup as group:
            # a stage that cannot write the ledger or a video stops the run with a plain message
            storage = group.subgroup((LedgerError, OSError))
            if storage is not None:
                error = _first(storage)
                if isinstance(error, OSError):
                    error = LedgerError(f"cannot write in {config.out_dir}: "
                                        f"{error.strerror or error}; the ledger is consistent up to here")
                raise error from None
            raise

    def _on_callback(self, task_id: str) -> bool:
        """A callback named `task_id`: look at the task now (never trust the body). False when no
        task of this run has that id."""
        item = self.poller.item_for_task(task_id)
        if item is not None:
            self.poller.poll_soon(item.id)
        return item is not None


def apply_plan(ledger: Ledger, plan: Plan, stats: RunStats) -> list[Item | Resting]:
    """Record what the plan decided, before any request: new items added, edited ones reset
    (their old video set aside), lost videos and `retry`'s failures put back to work. Returns
    the plan's items in its order (those it leaves alone may be at rest)."""
    items: list[Item | Resting] = []
    for decision in plan.decisions:
        step = decision.step
        if step in _LEFT_AS_THEY_ARE:
            items.append(ledger.items[decision.item_id])
            continue
        if step is Step.NEW:
            items.append(ledger.add(Item(id=decision.item_id, request=decision.request or {},
                                         fingerprint=decision.fingerprint or "")))
            continue
        item = ledger.thaw(decision.item_id) if step is not Step.DAMAGED else None
        if item is None:  # damaged: in the ledger as loaded, or its line at rest turned out so
            stats.damaged += 1
            log.warning("item %s: its records in the ledger cannot be read (%s); it is left alone "
                        "(nothing is created for it): fix or remove those lines", decision.item_id,
                        ledger.damaged.get(decision.item_id, "damaged"))
            continue
        _apply_step(ledger, item, decision, stats)
        items.append(item)
    return items


_LEFT_AS_THEY_ARE = frozenset({Step.SKIP, Step.KEEP_FAILED, Step.CREATE, Step.POLL, Step.DOWNLOAD})


def _apply_step(ledger: Ledger, item: Item, decision: Decision, stats: RunStats) -> None:
    """What a step changes in the ledger before the run starts (the steps that change nothing
    are not sent here)."""
    step = decision.step
    if step is Step.REMAKE:
        stats.changed += 1
        set_aside(ledger.out_dir, item.id, item.task_id, item.sha256)
        log.warning("item %s: changed in the manifest since the last run (%s); it will be "
                    "made again", item.id, ", ".join(changed_fields(item.request, decision.request or {})))
        ledger.advance(item, State.PENDING, request=decision.request, fingerprint=decision.fingerprint,
                       task_id=None, provider_state=None, result_url=None, video=None, bytes=None,
                       sha256=None, fail_code=None, fail_msg=None, finished_at=None)
    elif step in (Step.REFETCH, Step.RECREATE):
        log.warning("item %s: its video is missing or damaged; fetching it again", item.id)
        ledger.advance(item, State.DOWNLOADING if step is Step.REFETCH else State.PENDING)
    elif step is Step.REDO:
        set_aside(ledger.out_dir, item.id, item.task_id, item.sha256)
        earlier = {"task_id": item.task_id, "sha256": item.sha256, "finished_at": item.finished_at,
                   "prompt": item.request.get("input", {}).get("prompt"), "credits": item.credits}
        ledger.advance(item, State.PENDING, request=decision.request, fingerprint=decision.fingerprint,
                       history=[*(item.history or []), earlier], task_id=None, provider_state=None,
                       result_url=None, video=None, bytes=None, sha256=None, credits=None,
                       finished_at=None)
    elif step is Step.REOPEN_DOWNLOAD:
        ledger.advance(item, State.DOWNLOADING, fail_code=None, fail_msg=None, retryable=None)
    elif step is Step.REREAD:
        ledger.advance(item, State.RUNNING, fail_code=None, fail_msg=None, retryable=None)
    elif step is Step.REOPEN_CREATE:
        ledger.advance(item, State.PENDING, task_id=None, provider_state=None, retryable=None)


async def run_plan(config: Config, ledger: Ledger, plan: Plan, *,
                   watch: Watch | None = None, images: Mapping[str, LocalImage] | None = None) -> Run:
    """Open the client, record the plan, and run its items to rest."""
    async with KieClient(config.base_url, config.api_key, user_agent=config.user_agent,
                         timeout=config.request_timeout, stall=config.download_stall,
                         max_file_bytes=config.max_video_bytes, upload_url=config.upload_url) as client:
        run = Run(config, ledger, client, images)
        async with run.listening():
            if plan.creates:
                await run.read_credits()
            run.start(apply_plan(ledger, plan, run.stats))
            await run.execute(watch)
        return run


def _first(group: BaseExceptionGroup) -> BaseException:
    first = group.exceptions[0]
    return _first(first) if isinstance(first, BaseExceptionGroup) else first

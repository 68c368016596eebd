"""The engine: carry out a plan by running the stages until no item of the run has work left.

Collaborators, in pipeline order: `plan` (pure: what each item needs), `upload.Uploader` (local
images), `submit.Submitter` (creates, through the create gate), `poll.Poller` (task status, and
callbacks), `download.Downloader` (result files, handed to a `store.videos.VideoStore`). Each
stage gets the services it uses (`context`: control, budget, progress; the ledger; the provider)
and the next stage's `enqueue`; none of them imports this module. They run as workers of one
`asyncio.TaskGroup`; the run ends when no item has work left. Ctrl-C arrives as
cancellation: every change is already in the ledger, so the next run resumes.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping
from contextlib import asynccontextmanager
from typing import Any, Protocol

from batch_engine.catalog.images import LocalImage
from batch_engine.config import Config
from batch_engine.errors import AccountRefused, KieError
from batch_engine.pacing.create_gate import CreateGate
from batch_engine.pacing.shared import account_of, open_window
from batch_engine.pipeline.context import Budget, Control, Progress
from batch_engine.pipeline.download import Downloader
from batch_engine.pipeline.plan import Decision, Plan, Step, changed_fields, recent_creates
from batch_engine.pipeline.poll import Poller
from batch_engine.pipeline.stats import RunStats
from batch_engine.pipeline.submit import Submitter
from batch_engine.pipeline.upload import Uploader
from batch_engine.provider.base import Provider
from batch_engine.states import TERMINAL, TO_CREATE, State
from batch_engine.store import changes
from batch_engine.store.durations import DurationBook
from batch_engine.store.ledger import Item, Ledger, LedgerError
from batch_engine.store.partial import PARTIAL_DIR, part_path
from batch_engine.store.uploads import UploadBook
from batch_engine.store.videos import VideoStore

log = logging.getLogger(__name__)
CREDITS_WAIT = 5.0  # seconds the balance may take before the run goes on without it
Watch = Callable[["Run"], Coroutine[Any, Any, None]]  # runs beside the workers (a progress display)


class Listener(Protocol):
    """Something that tells the run a task may have ended (a callback receiver)."""

    async def start(self) -> None: ...
    async def stop(self) -> None: ...


Listen = Callable[[Callable[[str], bool]], Listener]  # made with the run's callback handler


class Run:
    """One run: its services and the stages, wired to hand items on to each other."""

    def __init__(self, config: Config, ledger: Ledger, provider: Provider, videos: VideoStore,
                 images: Mapping[str, LocalImage] | None = None, listen: Listen | None = None) -> None:
        scale = config.poll.scale
        self.config = config
        self.ledger = ledger
        self.provider = provider
        self.gate = CreateGate(config.rate, shared=open_window(config.rate_store, account_of(config.api_key, config.base_url),
                                                               config.rate, shards=config.shards))
        self.control = Control(self.gate)
        self.budget = Budget(config.max_tasks)
        self.progress = Progress(ledger.counts)
        self.items: list[Item] = []
        self.uploader = Uploader(provider, UploadBook(config.out_dir).load(), images or {}, scale=scale)
        self.downloader = Downloader(ledger, provider, videos, self.control, self.progress,
                                     config.out_dir / PARTIAL_DIR, attempts=config.download_attempts, scale=scale)
        self.poller = Poller(config.poll, ledger, provider, self.control, self.progress, self.downloader.enqueue,
                             callbacks=config.callback_url is not None, book=DurationBook(config.out_dir).load())
        self.submitter = Submitter(ledger, provider, self.gate, self.budget, self.control, self.progress,
                                   self.poller.track, scale=scale, prepare=self.uploader.body_for)
        self.listener = listen(self._on_callback) if listen is not None else None

    def __repr__(self) -> str:
        return (f"<Run {self.config.out_dir} {self.control!r} {self.budget!r} {self.progress!r}\n"
                f"  {self.submitter!r}\n  {self.poller!r}\n  {self.downloader!r}>")

    @property
    def stats(self) -> RunStats:
        return self.progress.stats

    def start(self, items: list[Item]) -> None:
        """Queue each item at the stage its state says (after `apply_plan`)."""
        self.items = items
        self.progress.total = len(items)
        self.gate.seed(recent_creates(items, time.time(), self.config.rate.window))
        self.ledger.track(items)
        working = [item for item in items if item.state not in TERMINAL]
        self.poller.expect(working)
        for item in working:
            self.control.expect()
            if item.state in TO_CREATE:
                self.submitter.enqueue(item)
            elif item.state is State.RUNNING:
                self.poller.track(item, delay=0.0)
            else:
                self.downloader.enqueue(item)

    async def read_credits(self) -> None:
        """The balance before the first create (shown; a refused account stops here)."""
        try:
            async with asyncio.timeout(CREDITS_WAIT):  # a slow answer must not hold the batch up
                self.stats.credits_before = await self.provider.credits()
        except AccountRefused as e:
            self.control.refuse(e)
        except KieError as e:
            log.warning("could not read the account's credits (%s); going on", e.message)
        except TimeoutError:
            log.warning("the account's credits did not come within %g s; going on", CREDITS_WAIT)

    @asynccontextmanager
    async def listening(self) -> AsyncIterator[None]:
        """The callback receiver bound first: a busy port stops the run before anything is sent."""
        if self.listener is not None:
            await self.listener.start()
        try:
            yield
        finally:
            if self.listener is not None:
                await self.listener.stop()

    async def execute(self, watch: Watch | None = None) -> None:
        if self.control.outstanding:
            await self._work(watch)

    async def _work(self, watch: Watch | None) -> None:
        config = self.config
        try:
            async with asyncio.TaskGroup() as tg:
                workers = [tg.create_task(self.poller.scheduler())]
                if watch is not None:
                    workers.append(tg.create_task(watch(self)))
                workers += [tg.create_task(self.submitter.worker()) for _ in range(config.create_workers)]
                workers += [tg.create_task(self.poller.worker()) for _ in range(self.poller.workers)]
                workers += [tg.create_task(self.downloader.worker()) for _ in range(config.download_workers)]
                await self.control.finished()
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


def apply_plan(ledger: Ledger, videos: VideoStore, plan: Plan, stats: RunStats) -> list[Item]:
    """Record what the plan decided, before any request: new items added, edited ones reset
    (their old video set aside), lost videos and `retry`'s failures put back to work. Returns
    the plan's items in its order."""
    items: list[Item] = []
    for decision in plan.decisions:
        step = decision.step
        if step is Step.DAMAGED:
            stats.damaged += 1
            log.warning("item %s: its records in the ledger cannot be read (%s); it is left alone "
                        "(nothing is created for it): fix or remove those lines", decision.item_id,
                        ledger.damaged.get(decision.item_id, "damaged"))
        elif step is Step.NEW:
            items.append(ledger.add(Item(id=decision.item_id, request=decision.request or {},
                                         fingerprint=decision.fingerprint or "", state=State.PENDING)))
        else:
            item = ledger.items[decision.item_id]
            stats.changed += step is Step.REMAKE
            change = _change_for(ledger, videos, item, decision)
            if change is not None:
                ledger.apply(item, change)
            items.append(item)
    return items


def _change_for(ledger: Ledger, videos: VideoStore, item: Item, decision: Decision) -> changes.Change | None:
    """What a step changes in the ledger before the run starts (most change nothing)."""
    step = decision.step
    if step is Step.REMAKE:
        log.warning("item %s: changed in the manifest since the last run (%s); it will be "
                    "made again", item.id, ", ".join(changed_fields(item.request, decision.request or {})))
        _set_aside(ledger, videos, item)
        return changes.remade(decision.request or {}, decision.fingerprint or "")
    if step is Step.REDO:
        _set_aside(ledger, videos, item)
        return changes.redone(item, decision.request or {}, decision.fingerprint or "")
    if step in (Step.REFETCH, Step.RECREATE):
        log.warning("item %s: its video is missing or damaged; fetching it again", item.id)
        return changes.refetch() if step is Step.REFETCH else changes.recreate()
    reopen = _REOPENED.get(step)
    return reopen() if reopen is not None else None


# `retry`'s steps for a failed item, as the record changes they make
_REOPENED = {Step.REOPEN_DOWNLOAD: changes.reopened_download, Step.REREAD: changes.reread,
             Step.REOPEN_CREATE: changes.reopened_create}


def _set_aside(ledger: Ledger, videos: VideoStore, item: Item) -> None:
    """Make way for an item made again: its old video kept aside, a download of its old task left
    half-done (it will never be finished) removed."""
    if item.task_id:
        part_path(ledger.out_dir, item.id, item.task_id).unlink(missing_ok=True)
    moved = videos.set_aside(item.id, (item.sha256 or "old")[:12])
    if moved is not None:
        log.warning("item %s: its old video was moved to %s", item.id, moved)


async def run_plan(config: Config, ledger: Ledger, plan: Plan, provider: Provider, videos: VideoStore, *,
                   watch: Watch | None = None, images: Mapping[str, LocalImage] | None = None,
                   listen: Listen | None = None) -> Run:
    """Record the plan and run its items until none has work left (the provider already open)."""
    run = Run(config, ledger, provider, videos, images, listen)
    async with run.listening():
        if plan.creates:
            await run.read_credits()
        run.start(apply_plan(ledger, videos, plan, run.stats))
        await run.execute(watch)
    return run


def _first(group: BaseExceptionGroup) -> BaseException:
    first = group.exceptions[0]
    return _first(first) if isinstance(first, BaseExceptionGroup) else first

"""The engine: reconcile the manifest with the ledger, then run the stages until every item rests.

Collaborators, in pipeline order: `submit.Submitter` (creates, through `ratelimit.CreateGate`),
`poll.Poller` (recordInfo), `download.Downloader` (result files), all writing to one
`ledger.Ledger` and talking to the provider through one `client.KieClient`. They run as workers of
one `asyncio.TaskGroup`; the run ends when every item of this run has come to rest (succeeded,
failed, or left resumable for a reason the summary names). Ctrl-C arrives as cancellation: every
state change is already in the ledger, so the next run resumes.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Awaitable, Callable, Iterable
from urllib.parse import urlsplit

from batch_engine.callbacks import CallbackReceiver
from batch_engine.client import KieClient
from batch_engine.config import Config
from batch_engine.download import Downloader, part_path, video_name
from batch_engine.errors import AccountRefused
from batch_engine.ledger import Item, Ledger, LedgerError
from batch_engine.manifest import ItemSpec, fingerprint
from batch_engine.poll import Poller
from batch_engine.ratelimit import CreateGate
from batch_engine.states import State
from batch_engine.submit import Submitter

log = logging.getLogger(__name__)
REPLACED_DIR = ".replaced"


@dataclass(slots=True)
class RunStats:
    creates_sent: int = 0
    rate_limited: int = 0
    polls: int = 0
    polls_refused: int = 0        # polls answered 429 (the provider limits polls too)
    unanswered_creates: int = 0   # creates re-sent because an answer never came: maybe paid twice
    timed_out: int = 0            # tasks still unfinished at the time-out: resumable
    not_submitted: int = 0        # left pending because the account was refused
    bytes_downloaded: int = 0
    changed: int = 0              # items whose manifest entry changed since the last run
    gave_up: dict[str, int] = field(default_factory=dict)  # create errors that outlasted retries


class Run:
    """One run's shared context: what the stages need of each other and of the run."""

    def __init__(self, config: Config, ledger: Ledger, client: KieClient) -> None:
        self.config = config
        self.ledger = ledger
        self.client = client
        self.gate = CreateGate(config.rate)
        self.stats = RunStats()
        self.refused: AccountRefused | None = None
        self.items: list[Item] = []        # the items this run is about
        self.submitter = Submitter(self)
        self.poller = Poller(self, callbacks=config.callback_url is not None)
        self.downloader = Downloader(self)
        self.callbacks: CallbackReceiver | None = None
        if config.callback_url is not None and config.listen is not None:
            path = urlsplit(config.callback_url).path or "/"
            self.callbacks = CallbackReceiver(self, *config.listen, path, config.webhook_hmac_key)
        self._outstanding = 0              # items of this run not yet at rest
        self._done = asyncio.Event()

    def finished(self, item: Item) -> None:
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
        self.gate.close()
        if stop_all:
            self._done.set()

    def plan(self, items: Iterable[Item]) -> None:
        """Queue each item at the stage its state says; a succeeded item whose video is gone is
        downloaded again (never created again) when its result URL is known."""
        recent: list[float] = []
        now = time.time()
        # ledger times are ISO strings in UTC: comparing them as text is comparing the times
        window_start = datetime.fromtimestamp(now - self.config.rate.window, timezone.utc).isoformat()
        folder = os.fspath(self.config.out_dir)
        for item in items:
            self.items.append(item)
            if item.attempts and item.submitted_at and item.submitted_at >= window_start:
                # a create left unanswered reached the provider, if at all, before this run began
                recent.append(0.0 if item.state is State.SUBMITTING else
                              now - datetime.fromisoformat(item.submitted_at).timestamp())
            if item.state is State.SUCCEEDED:
                if _video_intact(folder, item):
                    continue
                log.warning("item %s: its video is missing or damaged; fetching it again", item.id)
                if item.result_url:
                    self.ledger.advance(item, State.DOWNLOADING)
                else:
                    self.ledger.advance(item, State.PENDING)
            if item.state is State.FAILED:
                continue
            self._outstanding += 1
            if item.state in (State.PENDING, State.SUBMITTING):
                self.submitter.enqueue(item)
            elif item.state is State.RUNNING:
                self.poller.track(item, delay=0.0)
            elif item.state is State.DOWNLOADING:
                self.downloader.enqueue(item)
        self.gate.seed(recent)

    async def execute(self, watch: Callable[["Run"], Awaitable[None]] | None = None) -> None:
        if self._outstanding == 0:
            return
        if self.callbacks is not None:
            await self.callbacks.start()
        try:
            await self._work(watch)
        finally:
            if self.callbacks is not None:
                await self.callbacks.stop()

    async def _work(self, watch: Callable[["Run"], Awaitable[None]] | None) -> None:
        try:
            async with asyncio.TaskGroup() as tg:
                workers = [tg.create_task(self.poller.scheduler())]
                if watch is not None:
                    workers.append(tg.create_task(watch(self)))
                workers += [tg.create_task(self.submitter.worker()) for _ in range(self.config.create_workers)]
                workers += [tg.create_task(self.poller.worker()) for _ in range(self.poller.workers)]
                workers += [tg.create_task(self.downloader.worker()) for _ in range(self.config.download_workers)]
                await self._done.wait()
                for worker in workers:
                    worker.cancel()
        except BaseExceptionGroup as group:
            # a stage that cannot write the ledger or a video stops the run with a plain message
            storage = group.subgroup((LedgerError, OSError))
            if storage is not None:
                error = _first(storage)
                if isinstance(error, OSError):
                    error = LedgerError(f"cannot write in {self.config.out_dir}: "
                                        f"{error.strerror or error}; the ledger is consistent up to here")
                raise error from None
            raise


def reconcile(ledger: Ledger, specs: list[ItemSpec], stats: RunStats) -> list[Item]:
    """Bring the ledger in line with the manifest; return the manifest's items, in its order.

    The rule for an item edited since an earlier run (prompt, images or flags): the manifest wins.
    The item is made again under its new parameters; a video made from the old ones is moved to
    `.replaced/` (never left under `<id>.mp4`), and the change is logged and counted.
    """
    items = []
    for spec in specs:
        request = spec.request()
        digest = fingerprint(request)
        item = ledger.items.get(spec.id)
        if item is None:
            item = ledger.add(Item(id=spec.id, request=request, fingerprint=digest))
        elif item.fingerprint != digest:
            stats.changed += 1
            _set_aside(ledger.out_dir, item)
            log.warning("item %s: changed in the manifest since the last run (%s); it will be "
                        "made again", item.id, ", ".join(_changed_fields(item.request, request)))
            ledger.advance(item, State.PENDING, request=request, fingerprint=digest, task_id=None,
                           provider_state=None, result_url=None, video=None, bytes=None,
                           sha256=None, fail_code=None, fail_msg=None, finished_at=None)
        items.append(item)
    return items


def reopen_failed(ledger: Ledger) -> list[Item]:
    """For `retry`: failed items go back to work, from the ledger alone. A task that succeeded but
    whose download failed is downloaded again; one that failed at the provider is created anew."""
    items = list(ledger.items.values())
    for item in items:
        if item.state is State.FAILED:
            if item.result_url and item.task_id:
                ledger.advance(item, State.DOWNLOADING, fail_code=None, fail_msg=None)
            else:
                ledger.advance(item, State.PENDING, task_id=None, provider_state=None)
    return items


async def run_items(config: Config, ledger: Ledger, select: Any, *,
                    watch: Callable[[Run], Awaitable[None]] | None = None) -> Run:
    """Open the client, pick the items with `select(ledger, stats)`, and run them to rest.
    `watch(run)`, if given, runs beside the workers (a progress display)."""
    async with KieClient(config.base_url, config.api_key, user_agent=config.user_agent,
                         timeout=config.request_timeout) as client:
        run = Run(config, ledger, client)
        run.plan(select(ledger, run.stats))
        await run.execute(watch)
        return run


def _first(group: BaseExceptionGroup) -> BaseException:
    first = group.exceptions[0]
    return _first(first) if isinstance(first, BaseExceptionGroup) else first


def _video_intact(folder: str, item: Item) -> bool:
    try:
        return os.stat(os.path.join(folder, item.video or video_name(item.id))).st_size == item.bytes
    except OSError:
        return False


def _set_aside(out_dir: Path, item: Item) -> None:
    """Make way for an item made again: its old video to .replaced/, a download of its old task
    left half-done (it will never be finished) removed."""
    if item.task_id:
        part_path(out_dir, item).unlink(missing_ok=True)
    video = out_dir / video_name(item.id)
    if video.exists():
        target = out_dir / REPLACED_DIR / f"{item.id}.{(item.sha256 or 'old')[:12]}.mp4"
        target.parent.mkdir(exist_ok=True)
        video.replace(target)
        log.warning("item %s: its old video was moved to %s", item.id, target)


def _changed_fields(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    old_in, new_in = old.get("input", {}), new.get("input", {})
    return sorted(k for k in old_in.keys() | new_in.keys() if old_in.get(k) != new_in.get(k)) or ["model"]

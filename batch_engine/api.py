"""The library entry point: run a batch from Python, get a result object back.

    from batch_engine import run_batch
    result = run_batch("catalog.yaml", out="out/catalog", api_key=key, shard=(1, 4))
    if not result.ok:
        print(result.counts, [item.id for item in result.failures])

`run_batch` takes the same options as `batch-engine run` (a manifest path, or `items` built in
code), returns a `BatchResult` instead of an exit code, raises `BatchInputError` (with every
problem) for bad input before anything is sent, and configures no logging handlers (records go
to the "batch_engine" logger; the application decides where they go). `run_batch_async` is the
same inside an event loop that is already running (Prefect, Airflow's async operators, a web app).
The CLI is built on `execute` below.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from decimal import Decimal
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from batch_engine.catalog.images import LocalImage
from batch_engine.catalog.items import ItemSpec
from batch_engine.catalog.select import select
from batch_engine.config import DEFAULTS, Config, Environment, build_config
from batch_engine.errors import AccountRefused
from batch_engine.exits import Exit
from batch_engine.pipeline.plan import Plan, plan_manifest
from batch_engine.pipeline.stats import RunStats
from batch_engine.states import State, state_counts
from batch_engine.store.bucket import BucketURL
from batch_engine.store.lease import LEASE_SECONDS
from batch_engine.store.ledger import FolderUnusable, Item, Ledger
from batch_engine.store.metadata import INDEX_CSV, INDEX_JSONL, index_csv, index_jsonl, index_rows
from batch_engine.store.output import Output, resolve_out
from batch_engine.store.videos import StoreError, VideoStore

if TYPE_CHECKING:  # the engine (and with it the HTTP stack) is imported only when there is work
    from batch_engine.pipeline.engine import Listen, Watch


log = logging.getLogger(__name__)


class BatchInputError(ValueError):
    """The batch cannot start: `problems` names every reason (nothing was sent)."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems[:5]) + (" ..." if len(problems) > 5 else ""))
        self.problems = problems


@dataclass(frozen=True)
class BatchResult:
    out_dir: Path
    items: tuple[Item, ...]            # the items of this run, as the ledger has them now
    stats: RunStats
    refused: int | None = None         # the code when the provider refused the account
    left_by_budget: frozenset[str] = frozenset()  # ids left pending: --max-tasks was spent
    rate: str = ""                     # the create cap the run was told, N/Ws
    out: str = ""                      # where the videos went, as named: a folder or a bucket URL

    # worked out once (a result is read several times: the summary, summary.json, the exit code)
    @cached_property
    def counts(self) -> dict[str, int]:
        return state_counts(item.state for item in self.items)

    @cached_property
    def failures(self) -> list[Item]:
        return [item for item in self.items if item.state is State.FAILED]

    @cached_property
    def ok(self) -> bool:
        """Every item succeeded (or waits for the next run's budget), nothing refused or damaged."""
        return self.refused is None and not self.stats.damaged and all(
            item.state is State.SUCCEEDED or item.id in self.left_by_budget for item in self.items)

    @property
    def exit_code(self) -> int:
        return Exit.REFUSED if self.refused is not None else Exit.OK if self.ok else Exit.SOME_FAILED

    def __repr__(self) -> str:
        return f"<BatchResult {self.out_dir} {self.counts} ok={self.ok} refused={self.refused}>"

    def summary(self) -> dict[str, Any]:
        """Counts, failures with reasons, credits and timings: what summary.json holds."""
        s = self.stats
        return {
            "out_dir": self.out if BucketURL.parse(self.out or "-") else os.path.abspath(self.out_dir),
            "counts": self.counts, "ok": self.ok, "rate": self.rate,
            "exit_code": self.exit_code, "refused": self.refused,
            "left_by_budget": sorted(self.left_by_budget), "damaged": s.damaged,
            "failures": [{"id": i.id, "fail_code": i.fail_code, "fail_msg": i.fail_msg,
                          "retryable": i.retryable} for i in self.failures],
            "creates_sent": s.creates_sent, "rate_limited": s.rate_limited, "polls": s.polls,
            "unanswered_creates": s.unanswered_creates, "bytes_downloaded": s.bytes_downloaded,
            "credits_before": _number(s.credits_before), "credits_spent": _number(s.credits_spent),
        }


def run_batch(manifest: str | os.PathLike[str] | None = None, **options: Any) -> BatchResult:
    """Run a batch to the end (see the module's docstring); not inside a running event loop."""
    return asyncio.run(run_batch_async(manifest, **options))


async def run_batch_async(manifest: str | os.PathLike[str] | None = None, *,
                          out: str | os.PathLike[str], items: Iterable[Mapping[str, Any]] | None = None,
                          defaults: Mapping[str, Any] | None = None, api_key: str | None = None,
                          base_url: str | None = None, upload_url: str | None = None,
                          only: Iterable[str] | None = None, shard: tuple[int, int] | None = None,
                          watch: Watch | None = None, cache: str | os.PathLike[str] | None = None,
                          **options: Any) -> BatchResult:
    """`api_key` defaults to KIE_API_KEY, `base_url` to KIE_BASE_URL or kie.ai's, `upload_url`
    to KIE_UPLOAD_BASE_URL or kie.ai's upload host; `out` may be a bucket URL (s3://, gs://, az://;
    `cache` is then the local folder of its ledger); `options` are the run options of
    `config.DEFAULTS` (rate="20/10s", max_tasks=..., poll_rate=..., task_timeout=minutes, ...)."""
    if "task_timeout_minutes" in options:  # the name earlier versions took
        options["task_timeout"] = options.pop("task_timeout_minutes")
    unknown = sorted(set(options) - set(DEFAULTS))
    if unknown:
        raise BatchInputError([f"unknown option(s): {', '.join(unknown)} (known: {', '.join(DEFAULTS)})"])
    env = Environment.read(os.environ)
    env = replace(env, api_key=(api_key or env.api_key).strip(), base_url=(base_url or env.base_url).strip(),
                  upload_url=(upload_url or env.upload_url).strip())
    try:
        where, folder = resolve_out(str(out), str(cache) if cache is not None else None)
        config = build_config(folder, options, env, out=where)
    except ValueError as e:
        raise BatchInputError([str(e)]) from None
    specs = load_specs(manifest, items, defaults)
    specs = choose(specs, only=set(only) if only is not None else None, shard=shard)
    return await execute(config, lambda ledger, videos: plan_for(ledger, videos, specs), watch=watch,
                         images=images_of(specs))


def load_specs(manifest: str | os.PathLike[str] | None, items: Iterable[Mapping[str, Any]] | None,
               defaults: Mapping[str, Any] | None = None) -> list[ItemSpec]:
    from batch_engine.catalog.manifest import ManifestError, load_manifest, validate_catalog  # PyYAML, csv: only here

    if (manifest is None) == (items is None):
        raise BatchInputError(["give a manifest path or items, not both or neither"])
    try:
        if manifest is not None:
            return load_manifest(Path(manifest))
        data = {"defaults": dict(defaults or {}), "items": [dict(item) for item in items or ()]}
        return validate_catalog(data, Path("<items>"))
    except ManifestError as e:
        raise BatchInputError(e.problems) from None


def choose(specs: list[ItemSpec], *, only: set[str] | None, shard: tuple[int, int] | None) -> list[ItemSpec]:
    try:
        return select(specs, [spec.id for spec in specs], only=only, shard=shard)
    except ValueError as e:
        raise BatchInputError([str(e)]) from None


def plan_for(ledger: Ledger, videos: VideoStore, specs: list[ItemSpec]) -> Plan:
    return plan_manifest(ledger.items, specs, videos.sizes(), ledger.damaged)


def images_of(specs: Iterable[ItemSpec]) -> dict[str, LocalImage]:
    """The local image files the items name, by content hash (each is uploaded once)."""
    return {image.sha256: image for spec in specs for image in spec.images}


async def execute(config: Config, make_plan: Callable[[Ledger, VideoStore], Plan], *, watch: Watch | None = None,
                  images: Mapping[str, LocalImage] | None = None) -> BatchResult:
    """Open and lock the output's ledger, plan, run the plan, write the index, close: the core of
    `run` and `retry`. A plan with nothing to send, fetch or change returns at once (`watch` is
    not called). Raises LedgerError (output unusable, or a write failed), CannotListen, or
    CancelledError."""
    output = Output.of(config)
    videos = output.videos()
    # the lease is shortened with the time scale (tests, the demo), never below 3 s
    async with output.open_ledger(videos, lease_seconds=max(3.0, LEASE_SECONDS * config.poll.scale)) as ledger:
        try:
            plan = await asyncio.to_thread(make_plan, ledger, videos)
        except StoreError as e:
            raise FolderUnusable(f"cannot use {output}: {e}") from None
        if plan.nothing_to_do:  # nothing to send: the HTTP stack is not even imported
            items = tuple(ledger.items[d.item_id] for d in plan.decisions)
            await asyncio.to_thread(write_index, videos, ledger.items.values())
            return BatchResult(out_dir=config.out_dir, items=items, stats=RunStats(), rate=str(config.rate),
                               out=output.out)
        from batch_engine.pipeline.engine import run_plan
        from batch_engine.provider.kie import KieProvider
        async with KieProvider(config.base_url, config.api_key, user_agent=config.user_agent,
                               timeout=config.request_timeout, stall=config.download_stall,
                               max_file_bytes=config.max_video_bytes, upload_url=config.upload_url,
                               callback_url=config.callback_url) as provider:
            run = await run_plan(config, ledger, plan, provider, videos, watch=watch, images=images,
                                 listen=_listener(config))
        await asyncio.to_thread(write_index, videos, ledger.items.values())
    return BatchResult(out_dir=config.out_dir, items=tuple(run.items), stats=run.stats,
                       refused=_refused_code(run.control.refused),
                       left_by_budget=frozenset(run.budget.left_out), rate=str(config.rate), out=output.out)


def write_index(videos: VideoStore, items: Iterable[Item]) -> None:
    """index.csv and index.jsonl of every video, beside them; a failure is only logged."""
    rows = index_rows(items, videos.where)
    try:
        videos.write(INDEX_CSV, index_csv(rows))
        videos.write(INDEX_JSONL, index_jsonl(rows))
    except StoreError as e:
        log.warning("could not write the index: %s", e)


def _listener(config: Config) -> Listen | None:
    """The callback receiver, when the run asks the provider to call back."""
    if config.callback_url is None or config.listen is None:
        return None
    from batch_engine.provider.callbacks import CallbackReceiver
    host, port = config.listen
    path = urlsplit(config.callback_url).path or "/"
    return lambda on_callback: CallbackReceiver(host, port, path, config.webhook_hmac_key, on_callback=on_callback)


def _refused_code(error: AccountRefused | None) -> int | None:
    return error.code if error is not None and isinstance(error.code, int) else None


def _number(value: Decimal | None) -> float | None:
    return None if value is None else float(value)

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
import os
from dataclasses import dataclass
from functools import cached_property
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping

from batch_engine.catalog.items import ItemSpec
from batch_engine.catalog.select import select
from batch_engine.catalog.images import LocalImage
from batch_engine.config import (DEFAULT_BASE_URL, DEFAULT_UPLOAD_URL, Config, PollSettings, Rate, check_positive, check_secret,
                                 check_url)
from batch_engine.pipeline.stats import RunStats
from batch_engine.pipeline.plan import Plan, plan_manifest
from batch_engine.states import State, state_counts
from batch_engine.store.ledger import Item, Ledger, Resting

if TYPE_CHECKING:  # the engine (and with it the HTTP stack) is imported only when there is work
    from batch_engine.pipeline.engine import Run, Watch

OK, SOME_FAILED, REFUSED = 0, 1, 3


class BatchInputError(ValueError):
    """The batch cannot start: `problems` names every reason (nothing was sent)."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems[:5]) + (" ..." if len(problems) > 5 else ""))
        self.problems = problems


@dataclass(frozen=True)
class BatchResult:
    out_dir: Path
    items: tuple[Item | Resting, ...]  # the items of this run, as the ledger has them now; those
                                       # it left alone that had succeeded are `Resting` (id, state,
                                       # video, bytes...): `read_items(out_dir)` has every field
    stats: RunStats
    refused: int | None = None         # the code when the provider refused the account
    left_by_budget: frozenset[str] = frozenset()  # ids left pending: --max-tasks was spent
    rate: str = ""                     # the create cap the run was told, N/Ws

    # worked out once (a result is read several times: the summary, summary.json, the exit code)
    @cached_property
    def counts(self) -> dict[str, int]:
        return state_counts(item.state for item in self.items)

    @cached_property
    def failures(self) -> list[Item]:
        return [item for item in self.items if item.state is State.FAILED]  # type: ignore[misc]

    @cached_property
    def ok(self) -> bool:
        """Every item succeeded (or waits for the next run's budget), nothing refused or damaged."""
        return self.refused is None and not self.stats.damaged and all(
            item.state is State.SUCCEEDED or item.id in self.left_by_budget for item in self.items)

    @property
    def exit_code(self) -> int:
        return REFUSED if self.refused is not None else OK if self.ok else SOME_FAILED

    def __repr__(self) -> str:
        return f"<BatchResult {self.out_dir} {self.counts} ok={self.ok} refused={self.refused}>"

    def summary(self) -> dict[str, Any]:
        """Counts, failures with reasons, credits and timings: what summary.json holds."""
        s = self.stats
        return {
            "out_dir": os.path.abspath(self.out_dir), "counts": self.counts, "ok": self.ok, "rate": self.rate,
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
                          base_url: str | None = None, rate: str = "20/10s",
                          only: Iterable[str] | None = None, shard: tuple[int, int] | None = None,
                          max_tasks: int | None = None, poll_rate: float = 25.0,
                          task_timeout_minutes: float = 20.0, request_timeout: float = 60.0,
                          download_stall: float = 60.0, upload_url: str | None = None,
                          watch: Watch | None = None) -> BatchResult:
    """`api_key` defaults to KIE_API_KEY, `base_url` to KIE_BASE_URL or kie.ai's, `upload_url`
    to KIE_UPLOAD_BASE_URL or kie.ai's upload host."""
    try:
        key = check_secret("api_key", (api_key or os.environ.get("KIE_API_KEY", "")).strip())
        if not key:
            raise ValueError("no API key: pass api_key= or set KIE_API_KEY")
        config = Config(api_key=key, out_dir=Path(out),
                        base_url=check_url("base_url", base_url or os.environ.get("KIE_BASE_URL") or DEFAULT_BASE_URL),
                        upload_url=check_url("upload_url", upload_url or os.environ.get("KIE_UPLOAD_BASE_URL")
                                             or DEFAULT_UPLOAD_URL),
                        rate=Rate.parse(rate), max_tasks=max_tasks,
                        poll=PollSettings(polls_per_second=check_positive("poll_rate", poll_rate),
                                          task_timeout=check_positive("task_timeout", task_timeout_minutes) * 60),
                        request_timeout=check_positive("request_timeout", request_timeout),
                        download_stall=check_positive("download_stall", download_stall))
    except ValueError as e:
        raise BatchInputError([str(e)]) from None
    specs = load_specs(manifest, items, defaults)
    specs = choose(specs, only=set(only) if only is not None else None, shard=shard)
    return await execute(config, lambda ledger: plan_for(ledger, specs), watch=watch, images=images_of(specs))


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


def plan_for(ledger: Ledger, specs: list[ItemSpec]) -> Plan:
    return plan_manifest(ledger.items, specs, ledger.file_sizes(), ledger.damaged)


def images_of(specs: Iterable[ItemSpec]) -> dict[str, LocalImage]:
    """The local image files the items name, by content hash (each is uploaded once)."""
    return {image.sha256: image for spec in specs for image in spec.images}


async def execute(config: Config, make_plan: Callable[[Ledger], Plan], *, watch: Watch | None = None,
                  images: Mapping[str, LocalImage] | None = None) -> BatchResult:
    """Open and lock the folder's ledger, plan, run to rest, close: the core of `run` and `retry`.
    A plan with nothing to send, fetch or change returns at once (`watch` is not called).
    Raises LedgerError (folder unusable, or a write failed), CannotListen, or CancelledError."""
    ledger = Ledger(config.out_dir)
    ledger.open()
    try:
        plan = make_plan(ledger)
        if plan.at_rest:  # nothing to send: the HTTP stack is not even imported (a fifth of a second)
            return BatchResult(out_dir=config.out_dir, items=tuple(ledger.items[d.item_id] for d in plan.decisions),
                               stats=RunStats(), rate=str(config.rate))
        from batch_engine.pipeline.engine import run_plan
        run = await run_plan(config, ledger, plan, watch=watch, images=images)
    finally:
        ledger.close()
    return result_of(run)


def result_of(run: Run) -> BatchResult:
    return BatchResult(out_dir=run.config.out_dir, items=tuple(run.items), stats=run.stats,
                       refused=run.refused.code if run.refused is not None else None,  # type: ignore[arg-type]
                       left_by_budget=frozenset(run.ctx.left_by_budget), rate=str(run.config.rate))


def _number(value: Decimal | None) -> float | None:
    return None if value is None else float(value)

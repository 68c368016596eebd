"""`run` and `retry`: build the config, plan, run through `api.execute`, report, exit code.
`run --dry-run` plans from the ledger as it stands and prints the plan: nothing sent, nothing
written."""

from __future__ import annotations

import argparse
import asyncio
import faulthandler
import json
import logging
import signal
from collections.abc import Callable
from contextlib import AsyncExitStack
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console
from rich.markup import escape

from batch_engine import logs
from batch_engine.api import BatchInputError, BatchResult, choose, execute, images_of, load_specs
from batch_engine.catalog.images import LocalImage
from batch_engine.catalog.jobs import Job, is_job_file, load_job
from batch_engine.catalog.select import parse_shard
from batch_engine.cli.common import OK, REFUSED, SOME_FAILED, UsageError, open_output, print_problems
from batch_engine.cli.settings import config_from_args
from batch_engine.config import Config
from batch_engine.errors import AccountRefused, CannotListen
from batch_engine.pipeline.plan import Plan, plan_manifest, plan_redo, plan_retry
from batch_engine.report.console import dry_run_report, summary, validation_report
from batch_engine.store.bucket import BucketError
from batch_engine.store.folder import write_atomic
from batch_engine.store.ledger import LEDGER_NAME, FolderUnusable, Ledger, LedgerError, LedgerLocked
from batch_engine.store.mirror import LEDGER_DIR
from batch_engine.store.output import Output
from batch_engine.store.replay import Replayed
from batch_engine.store.videos import StoreError, VideoStore

if TYPE_CHECKING:
    from batch_engine.pipeline.engine import Run

# The HTTP stack (aiohttp: a fifth of a second to import) is imported where it is used, so that
# `status`, `validate` and a `retry` with nothing left to do never load it.

SUMMARY_NAME = "summary.json"
log = logging.getLogger("batch_engine")


def cmd_run(args: argparse.Namespace, console: Console) -> int:
    if is_job_file(Path(args.manifest)):
        job, problems = load_job(Path(args.manifest))
        if job is None:
            return print_problems(console, args.manifest, problems)
        _apply_job(args, job)
    if not args.out:
        raise UsageError("--out is required (the output folder), or run a job file that names it")
    try:
        specs = load_specs(args.manifest, None)
        only = {part.strip() for part in args.only.split(",") if part.strip()} if args.only else None
        specs = choose(specs, only=only, shard=parse_shard(args.shard) if args.shard else None)
    except BatchInputError as e:
        return print_problems(console, args.manifest, e.problems)
    except ValueError as e:
        raise UsageError(str(e)) from None
    if args.dry_run:
        return _dry_run(args, console, lambda known, damaged, files: plan_manifest(known, specs, files, damaged))
    return _execute(args, console, lambda ledger, videos: plan_manifest(ledger.items, specs, videos.sizes(),
                                                                         ledger.damaged), images=images_of(specs))


def cmd_redo(args: argparse.Namespace, console: Console) -> int:
    from batch_engine.cli.review import check_redo  # the gallery's module: only for redo
    ids, stop = check_redo(args, console)
    if stop is not None:
        return stop
    return _execute(args, console, lambda ledger, videos: plan_redo(ledger.items, ids, args.prompt))


def cmd_validate(args: argparse.Namespace, console: Console) -> int:
    """Every problem, or what would be sent: item count, models, a few expanded prompts."""
    if is_job_file(Path(args.manifest)):
        job, problems = load_job(Path(args.manifest))
        if job is None:
            return print_problems(console, args.manifest, problems)
        args.manifest = str(job.manifest)
    try:
        specs = load_specs(args.manifest, None)
    except BatchInputError as e:
        return print_problems(console, args.manifest, e.problems)
    validation_report(specs, console)
    return OK


def cmd_retry(args: argparse.Namespace, console: Console) -> int:
    try:
        found = _output(args).has_ledger()
    except LedgerError as e:
        raise UsageError(str(e)) from None
    if not found:
        raise UsageError(f"no ledger in {args.out}: nothing to retry (run a manifest first)")
    if args.dry_run:
        return _dry_run(args, console, lambda known, damaged, files: plan_retry(known, files, damaged))
    return _execute(args, console, lambda ledger, videos: plan_retry(ledger.items, videos.sizes(), ledger.damaged))


def _apply_job(args: argparse.Namespace, job: Job) -> None:
    """The job's manifest, folder and options, except where the command line gave its own."""
    defaults = args.option_defaults
    args.manifest = str(job.manifest)
    args.out = args.out or str(job.out)
    for name, value in job.options.items():
        if getattr(args, name) == defaults.get(name):
            setattr(args, name, value)


def _dry_run(args: argparse.Namespace, console: Console, make_plan: Callable[..., Plan]) -> int:
    """The plan against the ledger as it stands (read without the lock): nothing sent or written."""
    try:
        config_from_args(args, terminal=False)  # every option is checked, as a run would
        output = _output(args)
        loaded = output.read_ledger() or Replayed()
        files = output.videos().sizes()
    except (ValueError, LedgerError, StoreError) as e:
        raise UsageError(str(e)) from None
    plan = make_plan(loaded.items, loaded.damaged, files)
    dry_run_report(plan, console, max_tasks=args.max_tasks, credits_per_task=args.credits_per_task)
    unused = [flag for flag, value in (("--notify", args.notify), ("--callback-url", args.callback_url)) if value]
    if unused:
        console.print(f"dry run: {' and '.join(unused)} not used (nothing is sent)", highlight=False)
    return OK


def _execute(args: argparse.Namespace, console: Console, make_plan: Callable[[Ledger, VideoStore], Plan],
             images: dict[str, LocalImage] | None = None) -> int:
    try:
        config = config_from_args(args, terminal=console.is_terminal)
        config.out_dir.mkdir(parents=True, exist_ok=True)
    except ValueError as e:
        raise UsageError(str(e)) from None
    except OSError as e:
        raise UsageError(f"cannot use the output folder {args.out}: {e.strerror or e}") from None
    logs.to_file(config.out_dir, [k for k in (config.api_key, config.webhook_hmac_key) if k])
    try:
        result = asyncio.run(_run_async(config, make_plan, console, args, images))
    except (LedgerLocked, FolderUnusable) as e:  # nothing was sent
        raise UsageError(str(e)) from None
    except CannotListen as e:  # bound before anything was sent
        raise UsageError(f"{e}; nothing was sent") from None
    except LedgerError as e:
        console.print(f"[red]error:[/] {escape(str(e))}")
        return SOME_FAILED
    if result is None:
        raise KeyboardInterrupt  # reported once, by main
    summary(result, console, task_timeout=config.poll.task_timeout, secrets=(config.api_key,),
            credits_per_task=args.credits_per_task)
    _write_summary(Output.of(config), result)
    if args.notify:
        from batch_engine.provider.notify import post_json
        error = asyncio.run(post_json(args.notify, result.summary(), user_agent=config.user_agent))
        if error:
            log.warning("could not notify %s: %s (the run's result stands)", args.notify, error)
    if result.refused is not None:
        console.print(f"[red]account refused ({result.refused}):[/] {_advice(result.refused)}")
        return REFUSED
    return result.exit_code


async def _run_async(config: Config, make_plan: Callable[[Ledger, VideoStore], Plan], console: Console,
                     args: argparse.Namespace, images: dict[str, LocalImage] | None) -> BatchResult | None:
    main_task = asyncio.current_task()
    assert main_task is not None
    # a closure, not the bound method: signal.signal() reprs the handler it replaces, and a task's
    # repr holds its result (a long string nobody reads)
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, lambda: main_task.cancel())  # noqa: PLW0108
    async with AsyncExitStack() as stack:
        if args.sandbox:
            config = await _start_demo_sandbox(stack, config, console)
        where = (f"{config.out}/{LEDGER_DIR} (cache: {config.out_dir})" if config.out != str(config.out_dir)
                 else str(config.out_dir / LEDGER_NAME))
        console.print(f"ledger: {where}   rate: {config.rate}   provider: {config.base_url}", highlight=False)
        async def watch(run: Run) -> None:  # only when there is work
            from batch_engine.report.live import keep_progress, live_display, progress_lines
            show = (lambda run: live_display(run, console)) if config.show_progress else progress_lines
            _show_state_on_usr1(run, console)
            if run.stats.credits_before is not None:
                console.print(f"credits: {run.stats.credits_before} on the account", highlight=False)
            keeper = asyncio.ensure_future(keep_progress(run, config.out_dir))
            try:
                await show(run)
            finally:
                keeper.cancel()
                await asyncio.gather(keeper, return_exceptions=True)
        try:
            return await execute(config, make_plan, watch=watch, images=images)
        except asyncio.CancelledError:
            return None
    return None


def _show_state_on_usr1(run: Run, console: Console) -> None:
    """`kill -USR1 PID`: the stacks at once (even if the loop is stuck), then the live state of
    the run, its stages and its gates, from the loop."""
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGUSR1, lambda: console.print(repr(run), markup=False, highlight=False))
    faulthandler.register(signal.SIGUSR1, chain=True)


async def _start_demo_sandbox(stack: AsyncExitStack, config: Config, console: Console) -> Config:
    from batch_engine.sandbox.server import Sandbox
    from batch_engine.sandbox.settings import SandboxSettings
    sandbox = Sandbox(SandboxSettings(api_key=config.api_key, gen_time=(2.0, 5.0), fail_rate=0.0, clips=True))
    await sandbox.start()
    stack.push_async_callback(sandbox.stop)
    console.print(f"[bold yellow]No KIE_API_KEY set: running against the built-in sandbox at "
                  f"{sandbox.base_url}[/] (a local stand-in for kie.ai; no real videos, no charge). "
                  "Set KIE_API_KEY to use kie.ai.", highlight=False)
    poll = replace(config.poll, scale=0.2)
    return replace(config, base_url=sandbox.base_url, upload_url=sandbox.base_url, poll=poll)


def _output(args: argparse.Namespace) -> Output:
    return open_output(args.out, getattr(args, "cache", None))


def _write_summary(output: Output, result: BatchResult) -> None:
    """summary.json beside the videos, for monitors and the morning review (for a bucket, in the
    cache too, and the run's log beside it); never fails the run."""
    data = json.dumps(result.summary(), indent=2).encode() + b"\n"
    try:
        write_atomic(output.folder / SUMMARY_NAME, data)
        if output.url is not None:
            output.videos().write(SUMMARY_NAME, data)
            output.bucket().put_file(logs.LOG_NAME, output.folder / logs.LOG_NAME, {}, "text/plain")
    except (OSError, StoreError, LedgerError, BucketError) as e:
        log.warning("could not write %s: %s", SUMMARY_NAME, e)


def _advice(code: int) -> str:
    return AccountRefused("", code=code).advice

"""The command line: the only module that reads the environment. Exit codes:
0 every item succeeded, 1 some item failed (or is left unfinished), 2 invalid input or usage
(nothing sent), 3 the account was refused, 130 interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import faulthandler
import json
import logging
import os
import signal
import sys
from contextlib import AsyncExitStack
from dataclasses import replace
from pathlib import Path
from typing import Callable
from urllib.parse import urlsplit

from rich.console import Console
from rich.markup import escape

from batch_engine import __version__, logs
from batch_engine.config import (DEFAULT_BASE_URL, Config, PollSettings, Rate, check_positive, check_secret,
                                 check_url, parse_listen)
from batch_engine.catalog.manifest import ManifestError, load_manifest
from batch_engine.pipeline.engine import Run, run_plan
from batch_engine.pipeline.plan import Plan, plan_manifest, plan_retry
from batch_engine.provider.callbacks import CannotListen
from batch_engine.sandbox import Sandbox, SandboxSettings
from batch_engine.sandbox.command import add_arguments as add_sandbox_arguments, serve as serve_sandbox
from batch_engine.report.console import live_progress, progress_lines, status_json, status_table, summary
from batch_engine.store.folder import file_sizes
from batch_engine.store.ledger import LEDGER_NAME, Ledger, LedgerError, LedgerLocked, read_items
from batch_engine.states import State

OK, SOME_FAILED, BAD_INPUT, REFUSED, INTERRUPTED = 0, 1, 2, 3, 130
log = logging.getLogger("batch_engine")


class UsageError(Exception):
    pass


def main(argv: list[str] | None = None) -> int:
    faulthandler.register(signal.SIGUSR1)  # `kill -USR1 PID` prints where a stuck run is
    logging.raiseExceptions = False  # a log that cannot be written (disk full) is not a traceback
    args = _parser().parse_args(argv)
    console = Console(stderr=True, soft_wrap=True)
    logs.to_console(console, verbose=getattr(args, "verbose", False))
    try:
        return args.handler(args, console)
    except UsageError as e:
        console.print(f"[red]error:[/] {escape(str(e))}")
        return BAD_INPUT
    except KeyboardInterrupt:
        console.print("[yellow]interrupted[/]: the ledger holds everything done so far; "
                      "run the same command again to resume")
        return INTERRUPTED
    except Exception as e:  # a bug: say so plainly, keep the details in the log
        log.debug("internal error", exc_info=True)
        console.print(f"[red]internal error:[/] {type(e).__name__}: {e}. The ledger holds everything "
                      "done so far; please report this with batch-engine.log from the output folder.")
        return SOME_FAILED


# -- run / retry -------------------------------------------------------------------------------
def cmd_run(args: argparse.Namespace, console: Console) -> int:
    try:
        specs = load_manifest(Path(args.manifest))
    except ManifestError as e:
        console.print(f"[red]{e.path}: {len(e.problems)} problem(s); nothing was sent[/]")
        for problem in e.problems:
            console.print(f"  {problem}", markup=False, highlight=False)
        return BAD_INPUT
    return _execute(args, console, lambda ledger: plan_manifest(ledger.items, specs, file_sizes(ledger.out_dir),
                                                                 ledger.damaged))


def cmd_retry(args: argparse.Namespace, console: Console) -> int:
    if not (Path(args.out) / LEDGER_NAME).exists():
        raise UsageError(f"no ledger in {args.out}: nothing to retry (run a manifest first)")
    return _execute(args, console, lambda ledger: plan_retry(ledger.items, file_sizes(ledger.out_dir), ledger.damaged))


def _execute(args: argparse.Namespace, console: Console, make_plan: Callable[[Ledger], Plan]) -> int:
    config = _config(args, console)
    ledger = Ledger(config.out_dir)
    try:
        config.out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UsageError(f"cannot use the output folder {config.out_dir}: {e.strerror or e}") from None
    logs.to_file(config.out_dir, [k for k in (config.api_key, config.webhook_hmac_key) if k])
    try:
        ledger.open()
    except LedgerLocked as e:
        console.print(f"[red]error:[/] {escape(str(e))}")
        return BAD_INPUT
    except LedgerError as e:  # nothing was sent: the folder cannot be used
        console.print(f"[red]error:[/] {escape(str(e))}")
        return BAD_INPUT
    try:
        run = asyncio.run(_run_async(config, ledger, make_plan, console, args))
    except LedgerError as e:
        console.print(f"[red]error:[/] {escape(str(e))}")
        return SOME_FAILED
    except CannotListen as e:  # bound before anything was sent
        console.print(f"[red]error:[/] {escape(str(e))}; nothing was sent")
        return BAD_INPUT
    finally:
        ledger.close()
    if run is None:
        raise KeyboardInterrupt  # reported once, by main
    summary(run, console)
    if run.refused is not None:
        console.print(f"[red]account refused ({run.refused.code}):[/] {run.refused.advice}")
        return REFUSED
    done = all(item.state is State.SUCCEEDED for item in run.items) and not run.stats.damaged
    return OK if done else SOME_FAILED


async def _run_async(config: Config, ledger: Ledger, make_plan: Callable[[Ledger], Plan],
                     console: Console, args: argparse.Namespace) -> Run | None:
    main_task = asyncio.current_task()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, main_task.cancel)  # type: ignore[union-attr]
    async with AsyncExitStack() as stack:
        if getattr(args, "sandbox", False):
            config = await _start_demo_sandbox(stack, config, console)
        console.print(f"ledger: {ledger.path}   rate: {config.rate}   provider: {config.base_url}",
                      highlight=False)
        show = (lambda run: live_progress(run, console)) if config.show_progress else progress_lines

        async def watch(run: Run) -> None:
            _show_state_on_usr1(run, console)
            await show(run)
        try:
            return await run_plan(config, ledger, lambda: make_plan(ledger), watch=watch)
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
    sandbox = Sandbox(SandboxSettings(api_key=config.api_key, gen_time=(2.0, 5.0), fail_rate=0.0))
    await sandbox.start()
    stack.push_async_callback(sandbox.stop)
    console.print(f"[bold yellow]No KIE_API_KEY set: running against the built-in sandbox at "
                  f"{sandbox.base_url}[/] (a local stand-in for kie.ai; no real videos, no charge). "
                  "Set KIE_API_KEY to use kie.ai.", highlight=False)
    poll = replace(config.poll, scale=0.2)
    return replace(config, base_url=sandbox.base_url, poll=poll)


def _config(args: argparse.Namespace, console: Console) -> Config:
    try:
        return _checked_config(args, console)
    except ValueError as e:
        raise UsageError(str(e)) from None


def _checked_config(args: argparse.Namespace, console: Console) -> Config:
    """The run's Config from the environment and the options; ValueError names what is wrong."""
    key = check_secret("KIE_API_KEY", os.environ.get("KIE_API_KEY", "").strip())
    base = os.environ.get("KIE_BASE_URL", "").strip()
    args.sandbox = False
    if not key:
        if base:
            raise ValueError("KIE_BASE_URL is set but KIE_API_KEY is not: set the key for that provider")
        key, args.sandbox = "sandbox-key", True
    base = check_url("KIE_BASE_URL", base) if base else DEFAULT_BASE_URL
    rate = Rate.parse(args.rate)
    for option in ("poll_rate", "time_scale", "task_timeout", "request_timeout", "download_stall"):
        check_positive("--" + option.replace("_", "-"), getattr(args, option))
    poll = PollSettings(scale=args.time_scale, task_timeout=args.task_timeout * 60,
                        polls_per_second=args.poll_rate)
    listen = None
    if args.callback_url:
        port = urlsplit(check_url("--callback-url", args.callback_url)).port
        listen = parse_listen(args.listen or f"127.0.0.1:{port or 8080}")
    elif args.listen:
        raise ValueError("--listen needs --callback-url (the address kie.ai should call)")
    hmac_key = check_secret("KIE_WEBHOOK_HMAC_KEY", os.environ.get("KIE_WEBHOOK_HMAC_KEY", "").strip()) or None
    logs.redact(key)
    if hmac_key:
        logs.redact(hmac_key)
    return Config(api_key=key, out_dir=Path(args.out), base_url=base,
                  rate=rate, poll=poll, request_timeout=args.request_timeout,
                  download_stall=args.download_stall,
                  show_progress=console.is_terminal and not args.quiet,
                  callback_url=args.callback_url, listen=listen, webhook_hmac_key=hmac_key)


# -- status -----------------------------------------------------------------------------------
def cmd_status(args: argparse.Namespace, console: Console) -> int:
    out = Path(args.out)
    if not (out / LEDGER_NAME).exists():
        raise UsageError(f"no ledger in {out} (looked for {out / LEDGER_NAME})")
    items = read_items(out).values()
    secrets = tuple(k for k in (os.environ.get("KIE_API_KEY", "").strip(),
                                os.environ.get("KIE_WEBHOOK_HMAC_KEY", "").strip()) if k)
    if args.json:  # one item a line: readable, and quick to write for 100,000 items
        report = status_json(out, items, secrets)
        rows = ",\n  ".join(json.dumps(row, ensure_ascii=False) for row in report["items"])
        sys.stdout.write(f'{{"items": [\n  {rows}\n],\n "counts": {json.dumps(report["counts"])}}}\n')
    else:
        status_table(items, Console(), secrets=secrets)
    return OK


# -- sandbox ----------------------------------------------------------------------------------
def cmd_sandbox(args: argparse.Namespace, console: Console) -> int:
    try:
        return serve_sandbox(args, console)
    except ValueError as e:
        raise UsageError(f"sandbox: {e}") from None


# -- plumbing ---------------------------------------------------------------------------------
def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="batch-engine", description=(
        "Turn a YAML manifest of image/prompt pairs into MP4 videos with kie.ai's Hailuo 02 "
        "Image To Video Pro. Environment: KIE_API_KEY, KIE_BASE_URL, KIE_WEBHOOK_HMAC_KEY."))
    parser.add_argument("--version", action="version", version=f"batch-engine {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    def add_run_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("--rate", default="20/10s", help="create cap, N/Ws (default 20/10s, kie.ai's limit)")
        p.add_argument("--task-timeout", type=float, default=20.0, metavar="MINUTES",
                       help="report a task still unfinished after this long (it stays resumable)")
        p.add_argument("--poll-rate", type=float, default=25.0, metavar="N",
                       help="at most N recordInfo calls per second, all tasks together (default 25)")
        p.add_argument("--request-timeout", type=float, default=60.0, metavar="SECONDS",
                       help="give up waiting for one API answer after this long (default 60)")
        p.add_argument("--download-stall", type=float, default=60.0, metavar="SECONDS",
                       help="cut a download that brings under 1 KiB in this long, and resume it (default 60)")
        # for tests and demos: multiplies poll intervals and retry back-offs
        p.add_argument("--time-scale", type=float, default=1.0, help=argparse.SUPPRESS)
        p.add_argument("--callback-url", metavar="URL",
                       help="ask kie.ai to POST each finished task here; polling becomes a slow fallback")
        p.add_argument("--listen", metavar="HOST:PORT",
                       help="where the callback receiver listens (default 127.0.0.1 and the URL's port)")
        p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
        p.add_argument("-v", "--verbose", action="store_true", help="log every retry and refresh")

    run = sub.add_parser("run", help="make a video for every item of a manifest (resumes)")
    run.add_argument("manifest")
    run.add_argument("--out", required=True, help="output folder: videos and the ledger")
    add_run_options(run)
    run.set_defaults(handler=cmd_run)

    retry = sub.add_parser("retry", help="re-run the failed items of an output folder, from its ledger")
    retry.add_argument("out")
    add_run_options(retry)
    retry.set_defaults(handler=cmd_retry)

    status = sub.add_parser("status", help="show the ledger of an output folder")
    status.add_argument("out")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.set_defaults(handler=cmd_status)

    sandbox = sub.add_parser("sandbox", help="serve a local stand-in for kie.ai (for trying things out)")
    add_sandbox_arguments(sandbox)
    sandbox.set_defaults(handler=cmd_sandbox)
    return parser

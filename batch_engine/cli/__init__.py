"""The command line: `run`, `retry`, `status`, `sandbox` (and `python -m batch_engine`).
The only package that reads the environment (settings) and configures logging. Exit codes:
0 every item succeeded (or waits for the next run's --max-tasks budget), 1 some item failed (or
is left unfinished), 2 invalid input or usage (nothing sent), 3 the account was refused,
130 interrupted.
"""

from __future__ import annotations

import argparse
import faulthandler
import importlib
import logging
import os
import signal
import sys
from collections.abc import Callable

from rich.console import Console
from rich.markup import escape

from batch_engine import logs
from batch_engine.cli.common import BAD_INPUT, CLOSED_PIPE, INTERRUPTED, SOME_FAILED, UsageError
from batch_engine.config import DEFAULTS
from batch_engine.sandbox.command import add_arguments as add_sandbox_arguments
from batch_engine.version import __version__

log = logging.getLogger("batch_engine")


def main(argv: list[str] | None = None) -> int:
    faulthandler.register(signal.SIGUSR1)  # `kill -USR1 PID` prints where a stuck run is
    logging.raiseExceptions = False  # a log that cannot be written (disk full) is not a traceback
    args = _parser().parse_args(argv)
    console = Console(stderr=True, soft_wrap=True)
    logs.to_console(console, verbose=getattr(args, "verbose", False), as_json=getattr(args, "log_json", False))
    try:
        return args.handler(args, console)
    except UsageError as e:
        console.print(f"[red]error:[/] {escape(str(e))}")
        return BAD_INPUT
    except KeyboardInterrupt:
        console.print("[yellow]interrupted[/]: the ledger holds everything done so far; "
                      "run the same command again to resume")
        return INTERRUPTED
    except BrokenPipeError:  # `status --json | head`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        return CLOSED_PIPE
    except Exception as e:  # a bug: say so plainly, keep the details in the log
        log.debug("internal error", exc_info=True)
        console.print(f"[red]internal error:[/] {type(e).__name__}: {e}. The ledger holds everything "
                      "done so far; please report this with batch-engine.log from the output folder.")
        return SOME_FAILED


def _command(module: str, name: str) -> Callable[[argparse.Namespace, Console], int]:
    """A command's handler, imported when it runs: `status` need not load the HTTP stack."""
    def handler(args: argparse.Namespace, console: Console) -> int:
        return getattr(importlib.import_module(f"batch_engine.cli.{module}"), name)(args, console)
    return handler


cmd_run, cmd_retry, cmd_redo, cmd_validate = (_command("run", n) for n in ("cmd_run", "cmd_retry", "cmd_redo",
                                                                           "cmd_validate"))
cmd_report, cmd_status = _command("review", "cmd_report"), _command("status", "cmd_status")
cmd_desk, cmd_export = _command("desk", "cmd_review"), _command("desk", "cmd_export")


def cmd_sandbox(args: argparse.Namespace, console: Console) -> int:
    from batch_engine.sandbox.command import serve
    try:
        return serve(args, console)
    except ValueError as e:
        raise UsageError(f"sandbox: {e}") from None


def add_run_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--rate", default=DEFAULTS["rate"], help="create cap, N/Ws (default 20/10s, kie.ai's limit)")
    p.add_argument("--task-timeout", type=float, default=DEFAULTS["task_timeout"], metavar="MINUTES",
                   help="report a task still unfinished after this long (it stays resumable)")
    p.add_argument("--poll-rate", type=float, default=DEFAULTS["poll_rate"], metavar="N",
                   help="at most N recordInfo calls per second, all tasks together (default 25)")
    p.add_argument("--request-timeout", type=float, default=DEFAULTS["request_timeout"], metavar="SECONDS",
                   help="give up waiting for one API answer after this long (default 60)")
    p.add_argument("--download-stall", type=float, default=DEFAULTS["download_stall"], metavar="SECONDS",
                   help="cut a download that brings under 1 KiB in this long, and resume it (default 60)")
    # for tests and demos: multiplies poll intervals and retry back-offs
    p.add_argument("--time-scale", type=float, default=DEFAULTS["time_scale"], help=argparse.SUPPRESS)
    p.add_argument("--callback-url", metavar="URL",
                   help="ask kie.ai to POST each finished task here; polling becomes a slow fallback")
    p.add_argument("--listen", metavar="HOST:PORT",
                   help="where the callback receiver listens (default 127.0.0.1 and the URL's port)")
    p.add_argument("--max-tasks", type=int, metavar="N",
                   help="create at most N tasks in this run (the rest stay pending; not a failure)")
    p.add_argument("--dry-run", action="store_true",
                   help="show what would be created, skipped and made again; send nothing")
    p.add_argument("--credits-per-task", type=float, metavar="C",
                   help="what one task costs, in credits, for the dry run's estimate")
    p.add_argument("--notify", metavar="URL",
                   help="POST summary.json here at the end (a chat or monitoring hook; a failure is only logged)")
    p.add_argument("--rate-store", metavar="URL",
                   help="share the account's create cap with other runs on its key: redis://HOST:PORT/DB across "
                        "machines (default: a file shared by the runs on this machine; off: not shared)")
    p.add_argument("--cache", metavar="DIR",
                   help="with a bucket --out: the local folder for its ledger and downloads "
                        "(default ~/.cache/batch-engine/...; a fresh one resumes from the bucket)")
    p.add_argument("--log-json", action="store_true", help="log JSON lines instead of plain lines")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.add_argument("-v", "--verbose", action="store_true", help="log every retry and refresh")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="batch-engine", description=(
        "Turn a YAML manifest of image/prompt pairs into MP4 videos with kie.ai's Hailuo 02 "
        "Image To Video Pro. Environment: KIE_API_KEY, KIE_BASE_URL, KIE_WEBHOOK_HMAC_KEY."))
    parser.add_argument("--version", action="version", version=f"batch-engine {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="make a video for every item of a manifest or job file (resumes)")
    run.add_argument("manifest", help="a manifest, or a job file (manifest:, out:, options)")
    run.add_argument("--out", help="output folder, or a bucket URL (s3://, gs://, az://): videos and the "
                     "ledger (a job file may give it)")
    run.add_argument("--only", metavar="ID,...", help="only these items of the catalog")
    run.add_argument("--shard", metavar="K/N", help="only the K-th of N shards (by a hash of each id: stable)")
    add_run_options(run)
    run.set_defaults(handler=cmd_run)

    retry = sub.add_parser("retry", help="re-run the failed items of an output folder, from its ledger")
    retry.add_argument("out")
    add_run_options(retry)
    retry.set_defaults(handler=cmd_retry)

    validate = sub.add_parser("validate", help="check a manifest and show what would be sent; send nothing")
    validate.add_argument("manifest")
    validate.set_defaults(handler=cmd_validate)

    redo = sub.add_parser("redo", help="make chosen succeeded videos again (paid again; asks first)")
    redo.add_argument("out")
    redo.add_argument("ids", nargs="*", metavar="ID")
    redo.add_argument("--from", dest="from_file", metavar="FILE", help="ids to make again, one a line")
    redo.add_argument("--prompt", help="a new prompt for them (the manifest keeps its own)")
    redo.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    add_run_options(redo)
    redo.set_defaults(handler=cmd_redo)

    report = sub.add_parser("report", help="write DIR/report.html: every video with its prompt and state")
    report.add_argument("out")
    report.set_defaults(handler=cmd_report)

    desk = sub.add_parser("review", help="the review desk in the browser: approve, reject, make again")
    desk.add_argument("out")
    desk.add_argument("--host", default="127.0.0.1", help=argparse.SUPPRESS)
    desk.add_argument("--port", type=int, default=0, help="the port to listen on (default: a free one)")
    desk.add_argument("--no-open", action="store_true", help="print the desk's URL, do not open a browser")
    add_run_options(desk)  # for the tasks "Make again" creates
    desk.set_defaults(handler=cmd_desk)

    export = sub.add_parser("export", help="copy the approved videos and their metadata to a folder, with an index")
    export.add_argument("out")
    export.add_argument("--approved", metavar="DEST", help="where the approved videos go")
    export.set_defaults(handler=cmd_export)

    status = sub.add_parser("status", help="show the ledger of an output folder")
    status.add_argument("out")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.set_defaults(handler=cmd_status)

    sandbox = sub.add_parser("sandbox", help="serve a local stand-in for kie.ai (for trying things out)")
    add_sandbox_arguments(sandbox)
    sandbox.set_defaults(handler=cmd_sandbox)
    run.set_defaults(option_defaults=vars(parser.parse_args(["run", "-", "--out", "-"])))
    return parser

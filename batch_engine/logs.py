"""Where log records go (the console, and batch-engine.log in the output folder), with every
secret replaced by *** on the way. Only the CLI calls these: a library user's application
decides where the "batch_engine" logger's records go (they propagate as usual)."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from rich.console import Console
from rich.logging import RichHandler

LOG_NAME = "batch-engine.log"
log = logging.getLogger("batch_engine")


class Redact(logging.Filter):
    def __init__(self, secret: str) -> None:
        super().__init__()
        self.secret = secret

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if self.secret and self.secret in message:
            record.msg, record.args = message.replace(self.secret, "***"), None
        return True


def redact(key: str) -> None:
    for handler in log.handlers:
        handler.addFilter(Redact(key))


def to_console(console: Console, *, verbose: bool) -> None:
    handler: logging.Handler
    if console.is_terminal:
        handler = RichHandler(console=console, show_path=False, show_time=False, markup=False)
    else:  # cron, pipes: one plain line per record
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    handler.setLevel(logging.INFO if verbose else logging.WARNING)
    log.addHandler(handler)
    log.setLevel(logging.DEBUG)


def to_file(out_dir: Path, secrets: list[str]) -> None:
    handler = logging.FileHandler(out_dir / LOG_NAME, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    for secret in secrets:
        handler.addFilter(Redact(secret))
    handler.setLevel(logging.DEBUG)
    log.addHandler(handler)

"""Where log records go (the console, and batch-engine.log in the output folder), with every
secret replaced by *** and every control character removed on the way. Only the CLI calls these: a library user's application
decides where the "batch_engine" logger's records go (they propagate as usual)."""

from __future__ import annotations

import io
import json
import logging
import os
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.logging import RichHandler

from batch_engine.inputs import open_regular
from batch_engine.text import clean

LOG_NAME = "batch-engine.log"
log = logging.getLogger("batch_engine")


class Redact(logging.Filter):
    def __init__(self, secret: str) -> None:
        super().__init__()
        self.secret = secret

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        safe = clean(message, (self.secret,), limit=20_000)
        if safe != message:
            record.msg, record.args = safe, None
        return True


class FloodGuard(logging.Handler):
    """What the network libraries log (aiohttp's server, asyncio's accept loop) is what a flood of
    hostile connections produces: at most one summary line a minute, never a traceback."""

    def __init__(self, every: float = 60.0) -> None:
        super().__init__(logging.WARNING)
        self.every = every
        self._count = 0          # records since the last summary
        self._next_at = 0.0      # monotonic time the next summary may be written

    def emit(self, record: logging.LogRecord) -> None:
        self._count += 1
        now = time.monotonic()
        if now >= self._next_at:
            error = record.exc_info[1] if record.exc_info else None
            latest = f"{type(error).__name__}: {error}" if error else record.getMessage()
            log.warning("connections from outside failed %d time(s) in the last minute (latest: %s); "
                        "the run goes on", self._count, clean(latest, limit=120))
            self._count, self._next_at = 0, now + self.every


class SafeFileHandler(logging.FileHandler):
    """The log file, never written through a symbolic link planted in its place; a full disk
    silences it instead of printing a traceback."""

    def _open(self) -> io.TextIOWrapper:
        fd = open_regular(self.baseFilename, os.O_WRONLY | os.O_APPEND | os.O_CREAT)  # never a FIFO or a link
        return open(fd, "a", encoding=self.encoding, errors=self.errors)

    def handleError(self, record: logging.LogRecord) -> None:
        self.setLevel(logging.CRITICAL + 1)


def redact(key: str) -> None:
    for handler in log.handlers:
        handler.addFilter(Redact(key))


class JsonLines(logging.Formatter):
    """One JSON object a line (`--log-json`), for log shippers."""

    def format(self, record: logging.LogRecord) -> str:
        return json.dumps({"time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"), "level": record.levelname,
                           "logger": record.name, "message": record.getMessage()}, ensure_ascii=False)


def to_console(console: Console, *, verbose: bool, as_json: bool = False) -> None:
    handler: logging.Handler
    if console.is_terminal and not as_json:
        handler = RichHandler(console=console, show_path=False, show_time=False, markup=False)
    else:  # cron, pipes: one timestamped line per record
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(JsonLines() if as_json else
                             logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%Y-%m-%d %H:%M:%S"))
    handler.setLevel(logging.INFO if verbose else logging.WARNING)
    log.addHandler(handler)
    log.setLevel(logging.DEBUG)
    guard = FloodGuard()
    for name in ("aiohttp", "asyncio"):
        outside = logging.getLogger(name)
        outside.addHandler(guard)
        outside.propagate = False

def to_file(out_dir: Path, secrets: list[str]) -> None:
    try:
        handler = SafeFileHandler(out_dir / LOG_NAME, encoding="utf-8")
    except OSError as e:
        log.warning("cannot write the log file %s (%s); logging to the console only",
                    out_dir / LOG_NAME, e.strerror or e)
        return
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    for secret in secrets:
        handler.addFilter(Redact(secret))
    handler.setLevel(logging.DEBUG)
    log.addHandler(handler)

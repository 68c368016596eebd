"""One frozen configuration, built once by the CLI and passed down."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from batch_engine.version import __version__

DEFAULT_BASE_URL = "https://api.kie.ai"
DEFAULT_UPLOAD_URL = "https://kieai.redpandaai.co"
USER_AGENT = f"batch-engine/{__version__} (+https://pypi.org/project/batch-engine/)"


MAX_WINDOW = 86_400.0  # seconds: the longest create window (a load forgets creates older than this)


@dataclass(frozen=True, slots=True)
class Rate:
    """At most `creates` createTask calls in any window of `window` seconds."""

    creates: int
    window: float

    @classmethod
    def parse(cls, text: str) -> "Rate":
        """'20/10s', '20/10', '100/1m', '5/s' -> Rate. Raises ValueError with a readable reason."""
        m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+(?:\.\d+)?)?\s*(ms|s|m|min)?\s*", text)
        if not m or int(m.group(1)) <= 0:
            raise ValueError(f"rate {text!r} is not of the form N/Ws, e.g. 20/10s")
        amount = float(m.group(2) or 1)
        unit = {"ms": 0.001, "s": 1, None: 1, "m": 60, "min": 60}[m.group(3)]
        window = amount * unit
        if window <= 0:
            raise ValueError(f"rate {text!r} has an empty window")
        if window > MAX_WINDOW:
            raise ValueError(f"rate {text!r}: a window longer than a day is not a rate limit")
        return cls(int(m.group(1)), window)

    def __str__(self) -> str:
        return f"{self.creates}/{self.window:g}s"


@dataclass(frozen=True, slots=True)
class PollSettings:
    """How polling is paced (the schedule itself is `poll_schedule.PollSchedule`).

    `scale` multiplies every interval and back-off (tests and the sandbox demo use a small one).
    """

    scale: float = 1.0
    polls_per_second: float = 25.0  # shared, polite cap on recordInfo calls
    task_timeout: float = 20 * 60   # a task unfinished after this is reported (it stays resumable)


@dataclass(frozen=True, slots=True)
class Config:
    api_key: str = field(repr=False)
    out_dir: Path
    base_url: str = DEFAULT_BASE_URL
    upload_url: str = DEFAULT_UPLOAD_URL     # kie's file upload host, for local images
    rate: Rate = Rate(20, 10.0)
    poll: PollSettings = PollSettings()
    create_workers: int = 4
    download_workers: int = 4
    download_attempts: int = 8  # tries without progress before an item's download is failed
    download_stall: float = 60.0  # seconds a download may bring under 1 KiB before it is cut
    max_video_bytes: int = 4 * 1024**3  # the most a result file may hold
    request_timeout: float = 60.0
    show_progress: bool = False
    user_agent: str = USER_AGENT
    max_tasks: int | None = None             # the most createTask calls that may make a task, this run
    callback_url: str | None = None          # sent as callBackUrl with every create
    listen: tuple[str, int] | None = None    # where the callback receiver listens
    webhook_hmac_key: str | None = field(default=None, repr=False)


# -- checks of what the user typed (the CLI turns each ValueError into exit 2, before any request)
def check_url(name: str, text: str) -> str:
    """An http(s) URL with a host and a possible port, no credentials, no white space."""
    try:
        parts = urlsplit(text)
        parts.port  # raises ValueError for a port that cannot be
    except ValueError:
        raise ValueError(f"{name} {text!r} has an impossible port") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{name} {text!r} is not an http(s) URL")
    if parts.username is not None or parts.password is not None:
        raise ValueError(f"{name} must not hold a user name or password")
    if " " in text or not text.isprintable():  # the only white space str.isprintable allows is " "
        raise ValueError(f"{name} {text!r} holds white space or a control character")
    return text


def check_secret(name: str, value: str) -> str:
    if " " in value or not value.isprintable():
        raise ValueError(f"{name} holds white space or a control character (a copy-paste accident?)")
    return value


def check_positive(name: str, value: float) -> float:
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a positive number, not {value}")
    return value


def parse_listen(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not port.isdigit() or not host or not 1 <= int(port) <= 65535:
        raise ValueError(f"--listen {text!r} is not HOST:PORT with a port from 1 to 65535")
    return host.strip("[]"), int(port)

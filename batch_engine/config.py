"""One frozen configuration, built once by the CLI and passed down."""

from __future__ import annotations

import importlib.util
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
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
    def parse(cls, text: str) -> Rate:
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
    out_dir: Path                            # the ledger's folder: --out, or a bucket's cache
    out: str = ""                            # --out as named (a folder, or a bucket URL); "" for out_dir
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
    rate_store: str | None = field(default=None, repr=False)  # where the account's cap is shared (None: the machine's file)
    shards: int = 1                          # the N of --shard K/N: this run's share of the cap if the store is away


# The run options' defaults: the CLI's, the job files' and the library API's.
DEFAULTS: dict[str, Any] = {
    "rate": "20/10s",          # kie.ai's documented cap: 20 creates per 10 s
    "poll_rate": 25.0,         # recordInfo calls a second, all tasks together
    "task_timeout": 20.0,      # minutes before an unfinished task is reported (it stays resumable)
    "request_timeout": 60.0,   # seconds to wait for one API answer
    "download_stall": 60.0,    # seconds a download may bring under 1 KiB before it is cut
    "time_scale": 1.0,         # multiplies every interval and back-off (tests, the demo)
    "max_tasks": None,         # creates this run may send (None: no limit)
    "callback_url": None,
    "listen": None,
    "rate_store": None,        # redis://HOST:PORT/DB to share the account's cap across machines; "off"
}


@dataclass(frozen=True, slots=True)
class Environment:
    """What the environment says, read once (by the CLI, or for the library API)."""

    api_key: str = field(default="", repr=False)
    base_url: str = ""
    upload_url: str = ""
    hmac_key: str = field(default="", repr=False)

    @classmethod
    def read(cls, environ: Mapping[str, str]) -> Environment:
        return cls(*(environ.get(name, "").strip() for name in
                     ("KIE_API_KEY", "KIE_BASE_URL", "KIE_UPLOAD_BASE_URL", "KIE_WEBHOOK_HMAC_KEY")))

    @property
    def secrets(self) -> tuple[str, ...]:
        return tuple(k for k in (self.api_key, self.hmac_key) if k)


def build_config(out_dir: Path, options: Mapping[str, Any], env: Environment, *,
                 show_progress: bool = False, out: str = "", shards: int = 1) -> Config:
    """The one way a Config is made: `options` by the names of DEFAULTS (missing ones take the
    default), the key and hosts from `env`. ValueError names the first thing wrong."""
    opts = {**DEFAULTS, **{k: v for k, v in options.items() if v is not None}}
    key = check_secret("KIE_API_KEY", env.api_key)
    if not key:
        raise ValueError("no API key: set KIE_API_KEY (or pass api_key=)")
    for name in ("poll_rate", "time_scale", "task_timeout", "request_timeout", "download_stall"):
        if isinstance(opts[name], bool) or not isinstance(opts[name], (int, float)):
            raise ValueError(f"--{name.replace('_', '-')} must be a number, not {opts[name]!r}")
        check_positive("--" + name.replace("_", "-"), opts[name])
    max_tasks = opts["max_tasks"]
    if max_tasks is not None and (isinstance(max_tasks, bool) or not isinstance(max_tasks, int) or max_tasks < 0):
        raise ValueError("--max-tasks must be a whole number, 0 or more")
    listen = None
    if opts["callback_url"]:
        port = urlsplit(check_url("--callback-url", opts["callback_url"])).port
        listen = parse_listen(opts["listen"] or f"127.0.0.1:{port or 8080}")
    elif opts["listen"]:
        raise ValueError("--listen needs --callback-url (the address kie.ai should call)")
    store = opts["rate_store"]
    if store is not None and (not isinstance(store, str) or not store.strip() or not store.isprintable()):
        raise ValueError("--rate-store must be redis://HOST:PORT/DB, a file's path, or off")
    if isinstance(store, str) and "://" in store and not store.startswith(("redis://", "rediss://", "unix://")):
        raise ValueError(f"--rate-store {store.split('://')[0]}:// is not a store: give redis://HOST:PORT/DB, a path, or off")
    if isinstance(store, str) and "://" in store and importlib.util.find_spec("redis") is None:
        raise ValueError("--rate-store redis:// needs the redis package: pip install 'batch-engine[redis]'")
    return Config(api_key=key, out_dir=out_dir, out=out or str(out_dir), rate_store=store, shards=shards,
                  base_url=check_url("KIE_BASE_URL", env.base_url) if env.base_url else DEFAULT_BASE_URL,
                  upload_url=check_url("KIE_UPLOAD_BASE_URL", env.upload_url) if env.upload_url else DEFAULT_UPLOAD_URL,
                  rate=Rate.parse(str(opts["rate"])), max_tasks=max_tasks,
                  poll=PollSettings(scale=opts["time_scale"], task_timeout=opts["task_timeout"] * 60,
                                    polls_per_second=opts["poll_rate"]),
                  request_timeout=opts["request_timeout"], download_stall=opts["download_stall"],
                  show_progress=show_progress, callback_url=opts["callback_url"], listen=listen,
                  webhook_hmac_key=check_secret("KIE_WEBHOOK_HMAC_KEY", env.hmac_key) or None)


# -- checks of what the user typed (the CLI turns each ValueError into exit 2, before any request)
def check_url(name: str, text: str) -> str:
    """An http(s) URL with a host and a possible port, no credentials, no white space."""
    try:
        parts = urlsplit(text)
        _ = parts.port  # raises ValueError for a port that cannot be
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
    if not (port.isascii() and port.isdigit()) or not host or not 1 <= int(port) <= 65535:
        raise ValueError(f"--listen {text!r} is not HOST:PORT with a port from 1 to 65535")
    return host.strip("[]"), int(port)

"""What the sandbox is told (its rules and the faults to inject) and what it saw clients do."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from batch_engine.config import Rate


@dataclass
class Faults:
    """Misbehaviour on command: each rate is the share of matching requests that get the fault,
    drawn from a generator seeded with `seed`, so a faulty run can be replayed."""

    seed: int = 1
    server_error: float = 0.0       # API answers HTTP 500/502/503 (nothing done)
    body_error: float = 0.0         # API answers HTTP 200 with body code 500 (nothing done)
    drop: float = 0.0               # API closes the connection without an answer (nothing done)
    drop_after_create: float = 0.0  # createTask makes the task, then drops the connection
    slow: float = 0.0               # API answers only after `slow_seconds`
    slow_seconds: float = 5.0
    maintenance: float = 0.0        # API answers code 455 (service under maintenance)
    unknown_for: float = 0.0        # seconds a new task is "recordInfo is null" (422)
    extra_state: float = 0.0        # in-progress tasks reported in an undocumented state
    truncate: float = 0.0           # result downloads cut off mid-stream
    error_page: float = 0.0         # result downloads answered 200 with an HTML page
    bad_video: float = 0.0          # tasks whose video starts like an MP4 and does not decode
    refuse_code: int | None = None  # after `refuse_after` creates, the account is refused (401/402/433/505)
    refuse_after: int = 0

    def any_api(self) -> bool:
        return any((self.server_error, self.body_error, self.drop, self.slow, self.maintenance))


@dataclass
class SandboxSettings:
    api_key: str = "sandbox-key"
    rate: Rate = Rate(20, 10.0)  # noqa: RUF009  # a frozen value
    window_kind: str = "sliding"        # or "fixed": windows aligned on multiples of W
    limit_style: str = "status"         # "status": HTTP 429; "body": HTTP 200 with code 429
    retry_after: bool = False           # send Retry-After with 429s
    poll_cap: Rate | None = None        # recordInfo calls allowed per window (None: no limit)
    gen_time: tuple[float, float] = (2.0, 6.0)  # seconds a task takes, uniform in this range
    fail_rate: float = 0.0              # share of tasks that end in `fail`
    video_bytes: int = 256 * 1024
    clips: bool = False                 # serve real playable MP4 clips (the demo) instead of noise
    credits: int | None = None          # creates allowed before 402; None: unlimited
    task_cost: float | None = 12.5      # creditsConsumed on success records (None: not said)
    file_status: int | None = None      # the file host answers every request with this status
    expire_links: bool = False          # result URLs answer 403 until refreshed via download-url
    error_page: bool = False            # the file host answers 200 with an HTML page
    webhook_key: str | None = None      # sign callbacks with this HMAC key (None: unsigned)
    duplicate_callbacks: float = 0.0    # share of callbacks sent twice
    callback_delay: float = 0.0         # seconds between a task's end and its callback
    latency: tuple[float, float] = (0.0, 0.0)  # network jitter: each API answer waits this long (uniform)
    times: str = "ms"                   # recordInfo's createTime/completeTime/costTime: "ms" as
    #                                     documented, "seconds" (costTime only, in seconds) or "none"
    faults: Faults = field(default_factory=Faults)
    seed: int = 0


@dataclass
class SandboxStats:
    create_calls: int = 0
    creates: list[dict[str, Any]] = field(default_factory=list)  # accepted: time, task_id, item key
    rate_limited: int = 0
    polls: int = 0
    polls_refused: int = 0              # recordInfo calls answered 429 (over `poll_cap`)
    faults: Counter[str] = field(default_factory=Counter)  # injected faults by kind
    uploads: list[str] = field(default_factory=list)  # file names, one per upload
    callbacks_sent: int = 0
    callback_answers: list[int] = field(default_factory=list)  # HTTP statuses the receiver gave
    noticed: dict[str, float] = field(default_factory=dict)  # task id -> seconds late its end was first seen
    file_requests: list[dict[str, str]] = field(default_factory=list)  # headers the file host saw
    api_headers: list[dict[str, str]] = field(default_factory=list)    # headers of API calls

"""What the provider's answers mean: pure functions, no I/O.

`classify` is the one place that reads HTTP statuses and body codes: an HTTP status and a `code`
in the body of an HTTP 200 mean the same thing, and both become one exception of `errors`; the
message is read from `msg` or `message`. `TaskInfo` is what recordInfo (or a callback) says of a
task; `worth_retrying` says whether a failure may succeed when tried again.
"""

from __future__ import annotations

import email.utils
import json
import re
import time
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from batch_engine.errors import (AccountRefused, KieError, Maintenance, RateLimited, Rejected, TaskFailed,
                                 TaskUnknown, Transient)

ACCOUNT_CODES = frozenset({401, 402, 433, 505})
MAX_RETRY_AFTER = 300.0
MAX_TASK_ID = 256  # characters: a task id is data (never a path), but one this long is not kie's
_RETRYABLE_TEXT = re.compile(r"internal error|try again|timed? ?out|temporar|overload|busy", re.I)
_FINAL_TEXT = re.compile(r"polic|sensitive|nsfw|inappropriate|violat|required|invalid|not supported|"
                         r"too long|unsupported", re.I)


def valid_task_id(value: Any) -> str | None:
    """The task id if it is usable as data (text, printable, not absurdly long), else None."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not value or len(value) > MAX_TASK_ID:
        return None
    return value if value.isprintable() and value == value.strip() else None


def worth_retrying(code: str | None, message: str | None) -> bool:
    """A failure that may go the other way if tried again: the provider's 5xx or 408, or a
    message that says so; not a content-policy or validation refusal."""
    if message and _FINAL_TEXT.search(message):
        return False
    number = int(code) if code and code.isdigit() else None
    if number is not None and (number >= 500 or number == 408):
        return True
    return bool(message and _RETRYABLE_TEXT.search(message))


@dataclass(frozen=True, slots=True)
class TaskInfo:
    """What recordInfo (or a callback) says of one task."""

    task_id: str
    state: str
    result_urls: tuple[str, ...] = ()
    fail_code: str | None = None
    fail_msg: str | None = None
    cost_time_ms: int | None = None
    credits: Decimal | None = None      # creditsConsumed (undocumented; on success records)
    create_time_ms: int | None = None
    complete_time_ms: int | None = None

    def duration(self) -> float | None:
        """Seconds from creation to completion, by the provider's clock, when it says."""
        if self.create_time_ms is not None and self.complete_time_ms is not None:
            return max(self.complete_time_ms - self.create_time_ms, 0) / 1000
        return self.cost_time_ms / 1000 if self.cost_time_ms is not None else None

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> "TaskInfo":
        urls: tuple[str, ...] = ()
        result = data.get("resultJson")
        if isinstance(result, str) and result.strip():
            try:
                result = json.loads(result)
            except ValueError:
                result = None
        if not isinstance(result, dict):  # some answers carry the URLs beside resultJson
            result = data
        if isinstance(result.get("resultUrls"), list):
            urls = tuple(u for u in result["resultUrls"] if isinstance(u, str) and u)
        fail_code = data.get("failCode")
        fail_msg = data.get("failMsg") or data.get("msg") or data.get("message")
        return cls(task_id=valid_task_id(data.get("taskId") or data.get("task_id")) or "",
                   state=str(data.get("state") or "").lower(),
                   result_urls=urls, fail_code=None if fail_code in (None, "") else str(fail_code),
                   fail_msg=str(fail_msg) if fail_msg else None, credits=parse_credits(data.get("creditsConsumed")), cost_time_ms=_int(data.get("costTime")),
                   create_time_ms=_int(data.get("createTime")),
                   complete_time_ms=_int(data.get("completeTime")))


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Retry-After as seconds or as an HTTP date, capped at MAX_RETRY_AFTER; None if absent or bad."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when is None:
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    if seconds != seconds:  # NaN
        return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


def classify(status: int, body: Any, *, retry_after: float | None = None,
             creating: bool = False, task_query: bool = False) -> KieError | None:
    """The one place that turns an answer into an outcome: None for success, else the error."""
    code, msg = status, ""
    if isinstance(body, dict):
        msg = str(body.get("msg") or body.get("message") or "")
        body_code = _int(body.get("code"))
        if body_code is not None and (status == 200 or body_code != 200):
            code = body_code
    elif status == 200:
        return Transient("the answer was not JSON", code="bad_answer", maybe_sent=creating)
    if code == 200:
        return None
    text = f"HTTP {status}" + (f", code {code}" if code != status else "") + (f": {msg}" if msg else "")
    if code == 429:
        return RateLimited(text, code=code, retry_after=retry_after)
    if code in ACCOUNT_CODES:
        return AccountRefused(text, code=code)
    if code == 455:
        return Maintenance(text, code=code, retry_after=retry_after)
    if task_query and (code == 404 or (code == 422 and "null" in msg.lower())):
        return TaskUnknown(text, code=code)
    if task_query and code == 408:  # the model gave nothing for 10+ minutes: the task failed
        return TaskFailed(text, code=code)
    if code == 500 and "required" in msg.lower():
        return Rejected(text, code=code)
    if code in (400, 404, 413, 422, 501) or (400 <= code < 500 and code != 408):
        return Rejected(text, code=code)
    # 5xx and anything unknown: try again. A gateway error may hide a create that went through.
    return Transient(text, code=code, retry_after=retry_after,
                     maybe_sent=creating and code in (502, 504, 408))


def parse_credits(value: Any) -> Decimal | None:
    """A credit amount (kie's balances are fractional); None if absent or not a finite number."""
    if value is None or isinstance(value, bool):
        return None
    try:
        number = Decimal(str(value))
    except ArithmeticError:
        return None
    return number if number.is_finite() and number >= 0 else None


def _int(value: Any) -> int | None:
    try:
        return int(value) if value is not None and not isinstance(value, bool) else None
    except (TypeError, ValueError):
        return None

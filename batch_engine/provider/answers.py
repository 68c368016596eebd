"""What kie.ai's answers mean: pure functions, no I/O. The one place that knows kie's fields.

An answer is decoded as JSON (a NaN or an infinity is taken, as a number no field accepts); then
every field the engine uses is read on its own through a typed schema (`field`: msgspec, with
bounds), so a field of the wrong type, non-finite or out of range is unreadable: absent, or, for
the answer's `code`, the whole answer unreadable. Nothing raises further in. `classify` turns an
HTTP status or a body `code` (kie often answers HTTP 200 with the real code in the body) into one
exception of `errors`. `task_info` reads a recordInfo answer (or a callback).
"""

from __future__ import annotations

import email.utils
import json
import math
import re
import time
from decimal import Decimal
from typing import Annotated, Any

import msgspec

from batch_engine.errors import (
    AccountRefused,
    KieError,
    Maintenance,
    RateLimited,
    Rejected,
    TaskFailed,
    TaskUnknown,
    Transient,
)
from batch_engine.provider.base import TaskInfo, TaskState

ACCOUNT_CODES = frozenset({401, 402, 433, 505})
MAX_RETRY_AFTER = 300.0
MAX_TASK_ID = 256  # characters: a task id is data (never a path), but one this long is not kie's
_RETRYABLE_TEXT = re.compile(r"internal error|try again|timed? ?out|temporar|overload|busy", re.I)
_FINAL_TEXT = re.compile(r"polic|sensitive|nsfw|inappropriate|violat|required|invalid|not supported|"
                         r"too long|unsupported", re.I)
_STATES = {state.value: state for state in TaskState if state is not TaskState.UNKNOWN}

Millis = Annotated[int, msgspec.Meta(ge=0, le=10**14)]
Code = Annotated[int, msgspec.Meta(ge=-(10**9), le=10**9)]
_decode = msgspec.json.Decoder().decode
UNREADABLE = object()  # what `decode` gives for an answer that is not JSON, or not readable JSON


def decode(raw: bytes) -> Any:
    try:
        return _decode(raw)
    except (msgspec.DecodeError, RecursionError):
        pass
    try:  # NaN, Infinity or 1e999: JSON that only a lenient reader takes; its fields then fail
        return json.loads(raw)
    except (ValueError, RecursionError):
        return UNREADABLE


def field(data: dict[str, Any], name: str, kind: Any) -> Any:
    """`data[name]` if it is a `kind` (numbers within their bounds), else None."""
    value = data.get(name)
    if value is None:
        return None
    try:
        return msgspec.convert(value, kind, strict=False)
    except msgspec.ValidationError:
        return None


def _text(value: Any) -> str | None:
    """A code the provider may give as text or as a number, as text."""
    if isinstance(value, str):
        return value
    return str(value) if isinstance(value, int) and not isinstance(value, bool) and abs(value) < 10**12 else None


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
    number = int(code) if code and code.isascii() and code.isdigit() and len(code) < 10 else None  # not "²"
    if number is not None and (number >= 500 or number == 408):
        return True
    return bool(message and _RETRYABLE_TEXT.search(message))


def task_info(data: dict[str, Any], task_id: str) -> TaskInfo:
    """What a recordInfo answer's `data` says of `task_id` (texts not yet cleaned)."""
    word = field(data, "state", str) or ""
    result = data.get("resultJson")
    if isinstance(result, str) and result.strip():
        result = decode(result.encode("utf-8", "surrogatepass"))
    if not isinstance(result, dict):  # some answers carry the URLs beside resultJson
        result = data
    urls = field(result, "resultUrls", list[Any]) or []
    fail_code = _text(data.get("failCode"))
    fail_msg = field(data, "failMsg", str) or field(data, "msg", str) or field(data, "message", str)
    created, completed = field(data, "createTime", Millis), field(data, "completeTime", Millis)
    cost = field(data, "costTime", Millis)
    seconds = ((completed - created) / 1000 if created is not None and completed is not None and completed >= created
               else cost / 1000 if cost is not None else None)
    return TaskInfo(task_id=task_id, state=_STATES.get(word.lower(), TaskState.UNKNOWN),
                    word=word, result_urls=tuple(u for u in urls if isinstance(u, str) and u),
                    fail_code=fail_code or None, fail_msg=fail_msg or None,
                    retryable=worth_retrying(fail_code, fail_msg),
                    credits=parse_credits(data.get("creditsConsumed")), seconds=seconds)


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
    if math.isnan(seconds):
        return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


def classify(status: int, body: Any, *, retry_after: float | None = None,
             creating: bool = False, task_query: bool = False) -> KieError | None:
    """The one place that turns an answer into an outcome: None for success, else the error."""
    code, msg = status, ""
    if isinstance(body, dict):
        msg = field(body, "msg", str) or field(body, "message", str) or ""
        body_code = field(body, "code", Code)
        if body_code is None and body.get("code") is not None:
            return Transient("the answer's code could not be read", code="bad_answer", maybe_sent=creating)
        if body_code is not None and (status == 200 or body_code != 200):
            code = body_code
    elif status == 200:
        return Transient("the answer could not be read", code="bad_answer", maybe_sent=creating)
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
    """A credit amount (kie's balances are fractional); None if absent or not a sane number."""
    if value is None or isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return None
    try:
        number = Decimal(str(value)[:40])
    except ArithmeticError:
        return None
    return number if number.is_finite() and 0 <= number <= 10**12 else None

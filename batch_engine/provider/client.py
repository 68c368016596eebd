"""The provider, over HTTP: the only module that imports aiohttp on the engine's side.

Every answer goes through `classify` once: an HTTP status and a `code` in the body of an HTTP 200
mean the same thing, and both become one exception of `errors`. Two sessions keep the API key
where it belongs: the API session adds the Authorization header to each API call (and never
follows redirects); the file session, used for result URLs, never has it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import email.utils
import json
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, AsyncIterator

import aiohttp

from batch_engine.errors import (AccountRefused, FileUnavailable, KieError, Maintenance,
                                 RangeNotSatisfiable, RateLimited, Rejected, TaskUnknown, Transient)

ACCOUNT_CODES = frozenset({401, 402, 433, 505})
MAX_RETRY_AFTER = 300.0


@dataclass(frozen=True, slots=True)
class TaskInfo:
    """What recordInfo (or a callback) says of one task."""

    task_id: str
    state: str
    result_urls: tuple[str, ...] = ()
    fail_code: str | None = None
    fail_msg: str | None = None
    cost_time_ms: int | None = None
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
        return cls(task_id=str(data.get("taskId") or ""), state=str(data.get("state") or "").lower(),
                   result_urls=urls, fail_code=None if fail_code in (None, "") else str(fail_code),
                   fail_msg=data.get("failMsg") or None, cost_time_ms=_int(data.get("costTime")),
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
    if code == 500 and "required" in msg.lower():
        return Rejected(text, code=code)
    if code in (400, 404, 413, 422, 501) or (400 <= code < 500 and code != 408):
        return Rejected(text, code=code)
    # 5xx and anything unknown: try again. A gateway error may hide a create that went through.
    return Transient(text, code=code, retry_after=retry_after,
                     maybe_sent=creating and code in (502, 504, 408))


class KieClient:
    """createTask, recordInfo, download-url and result files, as documented."""

    def __init__(self, base_url: str, api_key: str, *, user_agent: str, timeout: float = 60.0) -> None:
        self._base = base_url.rstrip("/")
        self._auth = {"Authorization": f"Bearer {api_key}"}  # added to API calls only
        self._user_agent = user_agent
        self._timeout = timeout
        self._api: aiohttp.ClientSession | None = None
        self._files: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> "KieClient":
        headers = {"User-Agent": self._user_agent}
        self._api = aiohttp.ClientSession(
            headers=headers, timeout=aiohttp.ClientTimeout(total=self._timeout),
            connector=aiohttp.TCPConnector(limit=64))
        self._files = aiohttp.ClientSession(
            headers=headers, connector=aiohttp.TCPConnector(limit=32),
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=30, sock_read=60),
            cookie_jar=aiohttp.DummyCookieJar())
        return self

    async def __aexit__(self, *exc: object) -> None:
        for session in (self._api, self._files):
            if session is not None:
                await session.close()

    async def create_task(self, body: dict[str, Any]) -> str:
        data = await self._call("POST", "/api/v1/jobs/createTask", json=body, creating=True)
        task_id = data.get("taskId") if isinstance(data, dict) else None
        if not task_id:
            raise Transient("createTask answered without a taskId", code="bad_answer", maybe_sent=True)
        return str(task_id)

    async def record_info(self, task_id: str) -> TaskInfo:
        data = await self._call("GET", "/api/v1/jobs/recordInfo", params={"taskId": task_id},
                                task_query=True)
        if not isinstance(data, dict):
            raise TaskUnknown("recordInfo answered without data", code="bad_answer")
        info = TaskInfo.from_data(data)
        return info if info.task_id else dataclasses.replace(info, task_id=task_id)

    async def fresh_download_url(self, url: str) -> str:
        data = await self._call("POST", "/api/v1/common/download-url", json={"url": url})
        if isinstance(data, dict):  # documented as the bare URL; tolerate it wrapped
            data = data.get("url") or data.get("downloadUrl")
        if not isinstance(data, str) or not data:
            raise Transient("download-url answered without a URL", code="bad_answer")
        return data

    async def _call(self, method: str, path: str, *, creating: bool = False,
                    task_query: bool = False, **kwargs: Any) -> Any:
        assert self._api is not None, "use KieClient as an async context manager"
        try:
            async with self._api.request(method, self._base + path, headers=self._auth,
                                         allow_redirects=False, **kwargs) as resp:
                retry_after = parse_retry_after(resp.headers.get("Retry-After"))
                try:
                    body = await resp.json(content_type=None)
                except ValueError:
                    body = None
                status = resp.status
        except aiohttp.ClientConnectorError as e:
            raise Transient(f"cannot connect to the API: {e.os_error}", code="connect") from None
        except (aiohttp.ClientError, asyncio.TimeoutError) as e:
            raise Transient(f"no answer from the API ({type(e).__name__})", code="no_answer",
                            maybe_sent=creating) from None
        error = classify(status, body, retry_after=retry_after, creating=creating,
                         task_query=task_query)
        if error is not None:
            raise error
        return body.get("data")

    @asynccontextmanager
    async def open_file(self, url: str, offset: int = 0) -> AsyncIterator["FileStream"]:
        """GET a result file (no API key), from `offset` where the host allows ranges."""
        assert self._files is not None, "use KieClient as an async context manager"
        headers = {"Range": f"bytes={offset}-"} if offset else {}
        try:
            async with self._files.get(url, headers=headers) as resp:
                if resp.status == 416 and offset:
                    raise RangeNotSatisfiable("file host refused the range", code=416,
                                              total=_total_from_range(resp.headers.get("Content-Range", "")))
                if resp.status in (401, 403, 404, 410):
                    raise FileUnavailable(f"file host answered HTTP {resp.status}", code=resp.status)
                if resp.status not in (200, 206):
                    raise Transient(f"file host answered HTTP {resp.status}", code=resp.status)
                start = offset if resp.status == 206 and _range_start(resp) == offset else 0
                total = _total_length(resp, start)
                yield FileStream(start, total, resp.headers.get("Content-Type", ""),
                                 resp.content.iter_any())
        except aiohttp.ClientConnectorError as e:
            raise Transient(f"cannot connect to the file host: {e.os_error}", code="connect") from None
        except (aiohttp.ClientError, asyncio.TimeoutError) as e:
            raise Transient(f"download interrupted ({type(e).__name__})", code="interrupted") from None


@dataclass(frozen=True, slots=True)
class FileStream:
    start: int                  # the byte the chunks begin at (0 when the host ignored Range)
    total: int | None           # the whole file's length, when the host says
    content_type: str
    chunks: AsyncIterator[bytes]


def _range_start(resp: aiohttp.ClientResponse) -> int | None:
    value = resp.headers.get("Content-Range", "")  # bytes 100-199/200
    try:
        return int(value.split()[1].split("-")[0])
    except (IndexError, ValueError):
        return None


def _total_from_range(value: str) -> int | None:
    total = value.rpartition("/")[2]  # "bytes */12345"
    return int(total) if total.isdigit() else None


def _total_length(resp: aiohttp.ClientResponse, start: int) -> int | None:
    if resp.status == 206:
        total = resp.headers.get("Content-Range", "").rpartition("/")[2]
        return int(total) if total.isdigit() else None
    length = resp.headers.get("Content-Length")
    return int(length) + start if length and length.isdigit() else None


def _int(value: Any) -> int | None:
    try:
        return int(value) if value is not None and not isinstance(value, bool) else None
    except (TypeError, ValueError):
        return None

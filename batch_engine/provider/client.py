"""The provider, over HTTP: the only module that makes requests on the engine's side.

Every answer goes through `answers.classify` once. Two sessions keep the API key where it
belongs: the API session adds the Authorization header to each API call (and never follows
redirects); the file session, used for result URLs, never has it. Everything that comes back is
untrusted: bodies are capped (an API answer at MAX_ANSWER bytes, a video at `max_file_bytes`),
both sessions ask for the identity encoding and the file session refuses any other, a download
that makes too little progress is cut (`stall` seconds), a task id must be usable as data, and
every text kept from an answer passes through `text.clean` (the key redacted, control
characters removed) here, before any other module sees it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from contextlib import asynccontextmanager
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, AsyncIterator

import aiohttp

from batch_engine.errors import (BadVideo, FileUnavailable, RangeNotSatisfiable, Rejected,
                                 Stalled, TaskUnknown, Transient)
from batch_engine.provider.answers import TaskInfo, parse_credits, classify, parse_retry_after, valid_task_id
from batch_engine.text import clean

MAX_ANSWER = 1024 * 1024      # bytes an API answer may hold (decompressed)
STALL_BYTES = 1024            # a download must bring at least this much every `stall` seconds
IDENTITY = {"Accept-Encoding": "identity"}


class KieClient:
    """createTask, recordInfo, download-url and result files, as documented."""

    def __init__(self, base_url: str, api_key: str, *, user_agent: str, timeout: float = 60.0,
                 stall: float = 60.0, max_file_bytes: int = 4 * 1024**3,
                 upload_url: str = "https://kieai.redpandaai.co") -> None:
        self._base = base_url.rstrip("/")
        self._upload = upload_url.rstrip("/")  # kie's file upload host (the key goes there too)
        self._auth = {"Authorization": f"Bearer {api_key}"}  # added to API calls only
        self._secrets = (api_key,)          # redacted from every text an answer brings
        self._user_agent = user_agent
        self._timeout = timeout
        self._stall = stall                 # seconds a download may go with under STALL_BYTES
        self._max_file = max_file_bytes     # the most bytes a result file may have
        self._api: aiohttp.ClientSession | None = None
        self._files: aiohttp.ClientSession | None = None

    def __repr__(self) -> str:
        return f"<KieClient {self._base} open={self._api is not None}>"

    async def __aenter__(self) -> "KieClient":
        headers = {"User-Agent": self._user_agent, **IDENTITY}
        self._api = aiohttp.ClientSession(
            headers=headers, timeout=aiohttp.ClientTimeout(total=self._timeout),
            connector=aiohttp.TCPConnector(limit=64))
        self._files = aiohttp.ClientSession(
            headers=headers, connector=aiohttp.TCPConnector(limit=32), auto_decompress=False,
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=30, sock_read=self._stall),
            cookie_jar=aiohttp.DummyCookieJar())
        return self

    async def __aexit__(self, *exc: object) -> None:
        for session in (self._api, self._files):
            if session is not None:
                await session.close()

    def outside(self, text: object) -> str:
        """Text from an answer, safe to store and show: the one place it is cleaned."""
        return clean(text, self._secrets)

    async def create_task(self, body: dict[str, Any]) -> str:
        data = await self._call("POST", "/api/v1/jobs/createTask", json=body, creating=True)
        raw = data.get("taskId") if isinstance(data, dict) else None
        if not raw:
            raise Transient("createTask answered without a taskId", code="bad_answer", maybe_sent=True)
        task_id = valid_task_id(raw)
        if task_id is None:  # a task may exist and be paid; it cannot be followed: fail this item
            raise Rejected(f"createTask answered an unusable task id ({self.outside(repr(raw))[:80]}); "
                           "the task may exist at kie.ai", code="bad_task_id")
        return task_id

    async def record_info(self, task_id: str) -> TaskInfo:
        data = await self._call("GET", "/api/v1/jobs/recordInfo", params={"taskId": task_id},
                                task_query=True)
        if not isinstance(data, dict):
            raise TaskUnknown("recordInfo answered without data", code="bad_answer")
        info = TaskInfo.from_data(data)
        return dataclasses.replace(
            info, task_id=info.task_id or task_id, state=self.outside(info.state)[:64],
            fail_code=info.fail_code and self.outside(info.fail_code)[:64],
            fail_msg=info.fail_msg and self.outside(info.fail_msg))

    async def credits(self) -> Decimal:
        """The account's balance (GET /api/v1/chat/credit), a decimal: balances are fractional."""
        data = await self._call("GET", "/api/v1/chat/credit")
        balance = parse_credits(data)
        if balance is None:
            raise Transient("the credit endpoint answered without a number", code="bad_answer")
        return balance

    async def upload(self, path: Path, name: str) -> str:
        """Stream a local file to kie's upload host; its downloadUrl (valid about three days)."""
        assert self._api is not None, "use KieClient as an async context manager"
        try:
            file = open(path, "rb")
        except OSError as e:
            raise Rejected(f"cannot read {path.name}: {e.strerror or e}", code="unreadable") from None
        try:
            with file:
                form = aiohttp.FormData()
                form.add_field("file", file, filename=name)
                form.add_field("uploadPath", "batch-engine")
                form.add_field("fileName", name)
                async with self._api.post(self._upload + "/api/file-stream-upload", data=form,
                                          headers=self._auth, allow_redirects=False) as resp:
                    body = _json(await _read_capped(resp, MAX_ANSWER))
                    status = resp.status
        except (aiohttp.ClientError, asyncio.TimeoutError, ValueError) as e:  # ClientConnectorError is an OSError too
            raise Transient(f"no answer from the upload host ({type(e).__name__})", code="no_answer") from None
        error = classify(status, body)
        if error is not None:
            error.message = self.outside(error.message)
            raise error
        data = body.get("data") if isinstance(body, dict) else None
        url = data.get("downloadUrl") if isinstance(data, dict) else None
        if not isinstance(url, str) or not url.startswith(("https://", "http://")):
            raise Transient("the upload host answered without a downloadUrl", code="bad_answer")
        return url

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
                body = _json(await _read_capped(resp, MAX_ANSWER))
                status = resp.status
        except aiohttp.ClientConnectorError as e:
            raise Transient(f"cannot connect to the API: {e.os_error}", code="connect") from None
        except (aiohttp.ClientError, asyncio.TimeoutError, ValueError) as e:
            raise Transient(f"no answer from the API ({type(e).__name__})", code="no_answer",
                            maybe_sent=creating) from None
        error = classify(status, body, retry_after=retry_after, creating=creating,
                         task_query=task_query)
        if error is not None:
            error.message = self.outside(error.message)
            error.args = (error.message,)
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
                encoding = resp.headers.get("Content-Encoding", "identity").strip().lower()
                if encoding not in ("", "identity"):
                    raise BadVideo(f"the file host sent a {self.outside(encoding)[:20]}-encoded body "
                                   "although the identity encoding was asked for", code="encoded")
                start = offset if resp.status == 206 and _range_start(resp) == offset else 0
                total = _total_length(resp, start)
                if total is not None and total > self._max_file:
                    raise BadVideo(f"the file is {total:,} bytes; at most {self._max_file:,} are "
                                   "accepted", code="too_large")
                yield FileStream(start, total, self.outside(resp.headers.get("Content-Type", ""))[:100],
                                 self._guarded(resp.content.iter_any(), start))
        except aiohttp.ClientConnectorError as e:
            raise Transient(f"cannot connect to the file host: {e.os_error}", code="connect") from None
        except (aiohttp.ClientError, asyncio.TimeoutError) as e:
            raise Transient(f"download interrupted ({type(e).__name__})", code="interrupted") from None

    async def _guarded(self, chunks: AsyncIterator[bytes], start: int) -> AsyncIterator[bytes]:
        """The body's chunks, cut when fewer than STALL_BYTES came in `stall` seconds, or when
        the file grows past the cap."""
        loop = asyncio.get_running_loop()
        size, window_end, window_bytes = start, loop.time() + self._stall, 0
        it = chunks.__aiter__()
        while True:
            try:
                async with asyncio.timeout_at(window_end):
                    chunk = await it.__anext__()
            except StopAsyncIteration:
                return
            except TimeoutError:
                if window_bytes < STALL_BYTES:
                    raise Stalled(f"the download stalled: {window_bytes} bytes in {self._stall:g} s",
                                  code="stalled") from None
                window_end, window_bytes = loop.time() + self._stall, 0
                continue
            size += len(chunk)
            window_bytes += len(chunk)
            if size > self._max_file:
                raise BadVideo(f"the file grew past {self._max_file:,} bytes", code="too_large")
            yield chunk


@dataclass(frozen=True, slots=True)
class FileStream:
    start: int                  # the byte the chunks begin at (0 when the host ignored Range)
    total: int | None           # the whole file's length, when the host says
    content_type: str
    chunks: AsyncIterator[bytes]


async def _read_capped(resp: aiohttp.ClientResponse, limit: int) -> bytes:
    data = bytearray()
    async for chunk in resp.content.iter_any():
        data += chunk
        if len(data) > limit:
            raise ValueError(f"the answer is larger than {limit} bytes")
    return bytes(data)


def _json(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):  # not JSON, or nested deeper than the parser goes
        return None


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

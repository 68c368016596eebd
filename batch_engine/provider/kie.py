"""kie.ai over HTTP: the `Provider` the pipeline uses, and the only client of kie's API.

Every answer is decoded strictly and classified once (`answers`). Two sessions keep the API key
where it belongs: the API session adds the Authorization header to each API call (and never
follows redirects); the file session, used for result URLs, never has it. Everything that comes
back is untrusted: bodies are capped (an API answer at MAX_ANSWER bytes, a video at
`max_file_bytes`, decoded or not), a download that makes too little progress is cut (`stall`
seconds), a task id must be usable as data, a URL must be an http(s) URL without the key, and
every text kept from an answer is cleaned (`text.clean`: the key redacted, control characters
removed) here, before any other module sees it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal
from typing import Any

import aiohttp

from batch_engine.errors import (
    BadVideo,
    FileUnavailable,
    KieError,
    RangeNotSatisfiable,
    Rejected,
    Stalled,
    TaskUnknown,
    Transient,
)
from batch_engine.provider.answers import (
    classify,
    decode,
    parse_credits,
    parse_retry_after,
    task_info,
    valid_task_id,
    worth_retrying,
)
from batch_engine.provider.base import FileStream, TaskInfo
from batch_engine.provider.encoding import DECODABLE, decoded_body
from batch_engine.text import clean, outside_url

log = logging.getLogger(__name__)
MAX_ANSWER = 1024 * 1024      # bytes an API answer may hold (decompressed)
STALL_BYTES = 1024            # a download must bring at least this much every `stall` seconds
IDENTITY = {"Accept-Encoding": "identity"}


class KieProvider:
    """createTask, recordInfo, download-url, uploads, credits and result files, as documented."""

    def __init__(self, base_url: str, api_key: str, *, user_agent: str, timeout: float = 60.0,
                 stall: float = 60.0, max_file_bytes: int = 4 * 1024**3,
                 upload_url: str = "https://kieai.redpandaai.co", callback_url: str | None = None) -> None:
        self._base = base_url.rstrip("/")
        self._upload = upload_url.rstrip("/")  # kie's file upload host (the key goes there too)
        self._callback = callback_url       # sent as callBackUrl with every create
        self._auth = {"Authorization": f"Bearer {api_key}"}  # added to API calls only
        self._secrets = (api_key,)          # redacted from every text an answer brings
        self._user_agent = user_agent
        self._timeout = timeout
        self._stall = stall                 # seconds a download may go with under STALL_BYTES
        self._max_file = max_file_bytes     # the most bytes a result file may have
        self._api: aiohttp.ClientSession | None = None
        self._files: aiohttp.ClientSession | None = None

    def __repr__(self) -> str:
        return f"<KieProvider {self._base} open={self._api is not None}>"

    async def __aenter__(self) -> KieProvider:
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

    async def create(self, request: dict[str, Any]) -> str:
        if self._callback is not None:
            request = {**request, "callBackUrl": self._callback}
        body = await self._call("POST", "/api/v1/jobs/createTask", json=request, creating=True)
        raw = body.get("data", {}).get("taskId") if isinstance(body.get("data"), dict) else None
        if not raw:
            raise Transient("createTask answered without a taskId", code="bad_answer", maybe_sent=True)
        task_id = valid_task_id(raw)
        if task_id is None:  # a task may exist and be paid; it cannot be followed: fail this item
            raise Rejected(f"createTask answered an unusable task id ({self.outside(repr(raw))[:80]}); "
                           "the task may exist at kie.ai", code="bad_task_id")
        return task_id

    async def status(self, task_id: str) -> TaskInfo:
        body = await self._call("GET", "/api/v1/jobs/recordInfo", params={"taskId": task_id}, task_query=True)
        data = body.get("data")
        if not isinstance(data, dict):
            raise TaskUnknown("recordInfo answered without data", code="bad_answer")
        info = task_info(data, task_id)
        urls = tuple(url for u in info.result_urls if (url := outside_url(u, self._secrets)) is not None)
        return TaskInfo(task_id, info.state, self.outside(info.word)[:64], urls,
                        info.fail_code and self.outside(info.fail_code)[:64],
                        info.fail_msg and self.outside(info.fail_msg), info.retryable, info.credits, info.seconds)

    async def credits(self) -> Decimal:
        """The account's balance (GET /api/v1/chat/credit), a decimal: balances are fractional."""
        body = await self._call("GET", "/api/v1/chat/credit")
        balance = parse_credits(body.get("data"))
        if balance is None:
            raise Transient("the credit endpoint answered without a number", code="bad_answer")
        return balance

    async def upload(self, data: bytes, name: str) -> str:
        """Send an image to kie's upload host; its downloadUrl (valid about three days)."""
        assert self._api is not None, "use KieProvider as an async context manager"
        form = aiohttp.FormData()
        form.add_field("file", data, filename=name)
        form.add_field("uploadPath", "batch-engine")
        form.add_field("fileName", name)
        try:
            async with self._api.post(self._upload + "/api/file-stream-upload", data=form,
                                      headers=self._auth, allow_redirects=False) as resp:
                body = decode(await _read_capped(resp, MAX_ANSWER))
                status = resp.status
        except (TimeoutError, aiohttp.ClientError, ValueError) as e:  # ClientConnectorError is an OSError too
            raise Transient(f"no answer from the upload host ({type(e).__name__})", code="no_answer") from None
        self._raise_for(classify(status, body))
        answer = body.get("data") if isinstance(body, dict) else None
        url = outside_url(answer.get("downloadUrl"), self._secrets) if isinstance(answer, dict) else None
        if url is None:
            raise Transient("the upload host answered without a usable downloadUrl", code="bad_answer")
        return url

    async def fresh_link(self, url: str) -> str:
        body = await self._call("POST", "/api/v1/common/download-url", json={"url": url})
        data = body.get("data")
        if isinstance(data, dict):  # documented as the bare URL; tolerate it wrapped
            data = data.get("url") or data.get("downloadUrl")
        fresh = outside_url(data, self._secrets)
        if fresh is None:
            raise Transient("download-url answered without a usable URL", code="bad_answer")
        return fresh

    def _raise_for(self, error: KieError | None) -> None:
        if error is not None:
            error.message = self.outside(error.message)
            error.args = (error.message,)
            error.retryable = worth_retrying(str(error.code), error.message)
            raise error

    async def _call(self, method: str, path: str, *, creating: bool = False,
                    task_query: bool = False, **kwargs: Any) -> dict[str, Any]:
        """The answer's body, a JSON object whose code said success; else the error it means."""
        assert self._api is not None, "use KieProvider as an async context manager"
        try:
            async with self._api.request(method, self._base + path, headers=self._auth,
                                         allow_redirects=False, **kwargs) as resp:
                retry_after = parse_retry_after(resp.headers.get("Retry-After"))
                raw = await _read_capped(resp, MAX_ANSWER)
                status = resp.status
        except aiohttp.ClientConnectorError as e:
            raise Transient(f"cannot connect to the API: {e.os_error}", code="connect") from None
        except (TimeoutError, aiohttp.ClientError, ValueError) as e:
            raise Transient(f"no answer from the API ({type(e).__name__})", code="no_answer",
                            maybe_sent=creating) from None
        body = decode(raw)
        error = classify(status, body, retry_after=retry_after, creating=creating, task_query=task_query)
        if creating and status == 200 and error is not None and error.code == "bad_answer" \
                and (task_id := _task_id_in(body)) is not None:  # a task was made and is paid for
            log.warning("createTask answered with unreadable values beside task id %s; the task is "
                        "kept and followed", self.outside(task_id)[:80])
            return {"data": {"taskId": task_id}}
        self._raise_for(error)
        assert isinstance(body, dict)  # classify passes only a JSON object
        return body

    @asynccontextmanager
    async def open_file(self, url: str, offset: int = 0) -> AsyncIterator[FileStream]:
        """GET a result file (no API key), from `offset` where the host allows ranges. A body the
        host compressed although the identity encoding was asked for is decoded on the way."""
        assert self._files is not None, "use KieProvider as an async context manager"
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
                chunks: AsyncIterator[bytes] = resp.content.iter_any()
                decoded = encoding in DECODABLE
                if decoded:  # the length and the range are the encoded body's
                    start, total, chunks = 0, None, decoded_body(chunks, encoding, self._max_file)
                elif encoding not in ("", "identity"):
                    raise BadVideo(f"the file host sent a {self.outside(encoding)[:20]}-encoded body "
                                   "that cannot be decoded", code="encoded")
                else:
                    start = offset if resp.status == 206 and _range_start(resp) == offset else 0
                    total = _total_length(resp, start)
                if total is not None and total > self._max_file:
                    raise BadVideo(f"the file is {total:,} bytes; at most {self._max_file:,} are "
                                   "accepted", code="too_large")
                yield FileStream(start, total, self.outside(resp.headers.get("Content-Type", ""))[:100],
                                 self._guarded(chunks, start), decoded)
        except aiohttp.ClientConnectorError as e:
            raise Transient(f"cannot connect to the file host: {e.os_error}", code="connect") from None
        except (TimeoutError, aiohttp.ClientError) as e:
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


def _task_id_in(body: Any) -> str | None:
    """The task id of a createTask answer whose other values cannot be read."""
    data = body.get("data") if isinstance(body, dict) else None
    return valid_task_id(data.get("taskId")) if isinstance(data, dict) else None


async def _read_capped(resp: aiohttp.ClientResponse, limit: int) -> bytes:
    data = bytearray()
    async for chunk in resp.content.iter_any():
        data += chunk
        if len(data) > limit:
            raise ValueError(f"the answer is larger than {limit} bytes")
    return bytes(data)


def _byte_count(text: str) -> int | None:
    """A count of bytes from a header: plain ASCII digits of a sane length (str.isdigit passes a
    superscript two, and int() reads no more than 4,300 digits), else None."""
    return int(text) if text.isascii() and text.isdigit() and len(text) <= 18 else None


def _range_start(resp: aiohttp.ClientResponse) -> int | None:
    value = resp.headers.get("Content-Range", "")  # bytes 100-199/200
    parts = value.split()
    return _byte_count(parts[1].split("-")[0]) if len(parts) > 1 else None


def _total_from_range(value: str) -> int | None:
    return _byte_count(value.rpartition("/")[2])  # "bytes */12345"


def _total_length(resp: aiohttp.ClientResponse, start: int) -> int | None:
    if resp.status == 206:
        return _total_from_range(resp.headers.get("Content-Range", ""))
    length = _byte_count(resp.headers.get("Content-Length", ""))
    return None if length is None else length + start

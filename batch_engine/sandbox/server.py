"""A local stand-in for kie.ai, for the demo, the tests and the benchmarks. Never the real thing.

Two aiohttp servers on loopback: the API (createTask, recordInfo, download-url, credit) and a
file host serving each task's result video (deterministic bytes, Range supported). The API keeps
the provider's rules as documented: Bearer key, a create cap counted in a sliding (or fixed)
window and answered with 429 (as an HTTP status or as a body code), states waiting -> queuing ->
generating -> success | fail. `stats` records what every client did, so tests can check it.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import time
import uuid
from collections import deque
from dataclasses import dataclass
from functools import partial
from typing import Any

from aiohttp import ClientSession, web

from batch_engine.catalog.models import MODELS
from batch_engine.config import Rate
from batch_engine.sandbox.media import clip_for, item_key, video_chunks
from batch_engine.sandbox.settings import SandboxSettings, SandboxStats
from batch_engine.sandbox.uploads import send_callback, upload, uploaded


@dataclass
class _Task:
    task_id: str
    param: dict[str, Any]
    created: float
    duration: float
    fails: bool
    size: int
    undecodable: bool = False   # its video has an MP4's first bytes and does not decode


class Sandbox:
    def __init__(self, settings: SandboxSettings | None = None) -> None:
        self.settings = settings or SandboxSettings()
        self.stats = SandboxStats()
        self.tasks: dict[str, _Task] = {}
        self.uploads: dict[str, bytes] = {}   # file name -> bytes uploaded
        self._rng = random.Random(self.settings.seed)
        self._fault_rng = random.Random(self.settings.faults.seed)
        self._window: deque[float] = deque()  # accepted create times (sliding window)
        self._poll_window: deque[float] = deque()  # accepted recordInfo times, when polls are capped
        self._runners: list[web.AppRunner] = []
        self._callbacks: set[asyncio.Task[None]] = set()
        self._session: ClientSession | None = None
        self.base_url = ""
        self.files_url = ""

    # -- life cycle --------------------------------------------------------------------------
    async def start(self, host: str = "127.0.0.1", port: int = 0, files_port: int = 0) -> None:
        api = web.Application()
        api.add_routes([web.post("/api/v1/jobs/createTask", self._create),
                        web.get("/api/v1/jobs/recordInfo", self._record_info),
                        web.post("/api/v1/common/download-url", self._download_url),
                        web.get("/api/v1/chat/credit", self._credit),
                        web.post("/api/file-stream-upload", partial(upload, self))])
        files = web.Application()
        files.add_routes([web.get("/files/{name}", self._file), web.get("/uploads/{name}", partial(uploaded, self))])
        self.base_url = await self._serve(api, host, port)
        self.files_url = await self._serve(files, host, files_port)

    async def stop(self) -> None:
        for task in list(self._callbacks):
            task.cancel()
        await asyncio.gather(*self._callbacks, return_exceptions=True)
        if self._session is not None:
            await self._session.close()
        for runner in self._runners:
            await runner.cleanup()
        self._runners.clear()

    async def _serve(self, app: web.Application, host: str, port: int) -> str:
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        await site.start()
        self._runners.append(runner)
        bound = runner.addresses[0][1]
        return f"http://{host}:{bound}"

    # -- what tests ask ----------------------------------------------------------------------
    def expected_video(self, task_id: str) -> tuple[int, str]:
        """(size, sha256) of the video the file host serves for `task_id`."""
        digest = hashlib.sha256()
        task = self.tasks[task_id]
        for chunk in video_chunks(task_id, task.size, 0, clip=self.settings.clips and not task.undecodable,
                                  decodable=not task.undecodable):
            digest.update(chunk)
        return self.tasks[task_id].size, digest.hexdigest()

    def creates_per_item(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for create in self.stats.creates:
            counts[create["key"]] = counts.get(create["key"], 0) + 1
        return counts

    # -- the API -----------------------------------------------------------------------------
    def _roll(self, rate: float) -> bool:
        return rate > 0 and self._fault_rng.random() < rate

    async def _refusal(self, request: web.Request, *, creating: bool = False) -> web.Response | None:
        """The answer for a request that does not get through: wrong key, or an injected fault."""
        self.stats.api_headers.append(dict(request.headers))
        if self.settings.latency[1] > 0:
            await asyncio.sleep(self._fault_rng.uniform(*self.settings.latency))
        if request.headers.get("Authorization") != f"Bearer {self.settings.api_key}":
            return _answer(401, "You do not have access permissions")
        faults = self.settings.faults
        if (faults.refuse_code is not None and len(self.stats.creates) >= faults.refuse_after
                and (creating or faults.refuse_code == 401)):  # a revoked key refuses everything
            return _answer(faults.refuse_code, "account refused (sandbox)", http=200)
        if not faults.any_api():
            return None
        if self._roll(faults.slow):
            await asyncio.sleep(faults.slow_seconds)
        if self._roll(faults.drop):
            self.stats.faults["drop"] += 1
            _close(request)
            return web.Response(status=500)
        if self._roll(faults.server_error):
            self.stats.faults["server_error"] += 1
            return web.Response(status=self._fault_rng.choice((500, 502, 503)), text="<html>oops</html>")
        if self._roll(faults.body_error):
            self.stats.faults["body_error"] += 1
            return _answer(500, "Server exception, please try again later", http=200)
        if self._roll(faults.maintenance):
            self.stats.faults["maintenance"] += 1
            return _answer(455, "Service under maintenance", http=200)
        return None

    async def _create(self, request: web.Request) -> web.Response:
        self.stats.create_calls += 1
        if (refused := await self._refusal(request, creating=True)) is not None:
            return refused
        try:
            body = await request.json()
        except ValueError:
            return _answer(400, "Invalid JSON")
        inp = body.get("input") if isinstance(body, dict) else None
        model = MODELS.get(str(body.get("model"))) if isinstance(body, dict) else None
        if not isinstance(inp, dict) or model is None:
            return _answer(422, "model name not supported")
        prompt, image = inp.get("prompt"), inp.get("image_url")
        if not isinstance(prompt, str) or not prompt or len(prompt) > model.prompt_max:
            return _answer(422, f"prompt is required and at most {model.prompt_max} characters")
        if not isinstance(image, str) or not image.startswith(("http://", "https://")):
            return _answer(500, "image_url: This field is required")
        now = time.monotonic()
        if not self._admit(self._window, self.settings.rate, now):
            self.stats.rate_limited += 1
            return self._too_many(self.settings.rate)
        if self.settings.credits is not None:
            if self.settings.credits <= 0:
                return _answer(402, "Insufficient credits")
            self.settings.credits -= 1
        task_id = uuid.UUID(int=self._rng.getrandbits(128)).hex
        low, high = self.settings.gen_time
        self.tasks[task_id] = _Task(task_id, body, now, self._rng.uniform(low, high),
                                    self._rng.random() < self.settings.fail_rate,
                                    len(clip_for(task_id)) if self.settings.clips else
                                    self.settings.video_bytes + self._rng.randrange(0, 4096),
                                    self._roll(self.settings.faults.bad_video))
        self.stats.creates.append({"time": now, "task_id": task_id, "key": item_key(body)})
        if isinstance(body.get("callBackUrl"), str):
            callback = asyncio.ensure_future(self._callback(self.tasks[task_id], body["callBackUrl"]))
            self._callbacks.add(callback)
            callback.add_done_callback(self._callbacks.discard)
        if self._roll(self.settings.faults.drop_after_create):
            self.stats.faults["drop_after_create"] += 1
            _close(request)
        return _answer(200, "success", data={"taskId": task_id})

    def _admit(self, admitted: deque[float], rate: Rate, now: float) -> bool:
        """Count a call against `rate` (times of the calls it admitted in `admitted`)."""
        if self.settings.window_kind == "fixed":
            start = now - (now % rate.window)
            while admitted and admitted[0] < start:
                admitted.popleft()
        else:
            while admitted and admitted[0] <= now - rate.window:
                admitted.popleft()
        if len(admitted) >= rate.creates:
            return False
        admitted.append(now)
        return True

    def _too_many(self, rate: Rate) -> web.Response:
        headers = {"Retry-After": str(max(1, round(rate.window / 2)))} if self.settings.retry_after else {}
        if self.settings.limit_style == "body":
            return _answer(429, "Too many requests", http=200, headers=headers)
        return _answer(429, "Too many requests", headers=headers)

    async def _record_info(self, request: web.Request) -> web.Response:
        if (refused := await self._refusal(request)) is not None:
            return refused
        cap = self.settings.poll_cap
        if cap is not None and not self._admit(self._poll_window, cap, time.monotonic()):
            self.stats.polls_refused += 1
            return self._too_many(cap)
        self.stats.polls += 1
        task = self.tasks.get(request.query.get("taskId", ""))
        if task is None or time.monotonic() - task.created < self.settings.faults.unknown_for:
            return _answer(422, "recordInfo is null", http=200)
        data = self.task_data(task)
        if data["state"] in ("waiting", "queuing", "generating") and self._roll(self.settings.faults.extra_state):
            data["state"] = "rendering"
        elif data["state"] in ("success", "fail") and task.task_id not in self.stats.noticed:
            self.stats.noticed[task.task_id] = time.monotonic() - task.created - task.duration
        return _answer(200, "success", data=data)

    def task_data(self, task: _Task) -> dict[str, Any]:
        progress = (time.monotonic() - task.created) / task.duration
        data: dict[str, Any] = {
            "taskId": task.task_id, "model": task.param.get("model"), "param": _json(task.param),
            "resultJson": "", "failCode": None, "failMsg": None, "costTime": None,
            "completeTime": None, "createTime": int((time.time() - (time.monotonic() - task.created)) * 1000),
            "state": "waiting" if progress < 0.1 else "queuing" if progress < 0.3 else "generating"}
        if progress >= 1:
            data["costTime"] = int(task.duration * 1000)
            data["completeTime"] = data["createTime"] + data["costTime"]
            if task.fails:
                data.update(state="fail", failCode="501", failMsg="Generation failed (sandbox)")
            else:
                url = f"{self.files_url}/files/{task.task_id}.mp4"
                data.update(state="success", resultJson=_json({"resultUrls": [url]}))
                if self.settings.task_cost is not None:
                    data["creditsConsumed"] = self.settings.task_cost
            if self.settings.times == "seconds":  # a stand-in that says it otherwise
                data.update(costTime=round(task.duration), completeTime=None, createTime=None)
        if self.settings.times == "none":
            data.update(costTime=None, completeTime=None, createTime=None)
        return data

    async def _callback(self, task: _Task, url: str) -> None:
        """POST the task's recordInfo body to its callBackUrl when it ends, signed if configured."""
        await asyncio.sleep(task.duration + self.settings.callback_delay)
        if self._session is None:
            self._session = ClientSession()
        times = 2 if self._roll(self.settings.duplicate_callbacks) else 1
        await send_callback(self._session, url, task.task_id, self.task_data(task), self.settings.webhook_key,
                            self.stats, times)

    async def _download_url(self, request: web.Request) -> web.Response:
        if (refused := await self._refusal(request)) is not None:
            return refused
        body = await request.json()
        url = body.get("url") if isinstance(body, dict) else None
        if not isinstance(url, str) or not url.startswith(self.files_url):
            return _answer(422, "url is not a result of this account")
        return _answer(200, "success", data=url.split("?")[0] + f"?fresh={int(time.time())}")

    async def _credit(self, request: web.Request) -> web.Response:
        if (refused := await self._refusal(request)) is not None:
            return refused
        return _answer(200, "success", data=self.settings.credits if self.settings.credits is not None else 10**6)

    # -- the file host -----------------------------------------------------------------------
    async def _file(self, request: web.Request) -> web.StreamResponse:
        self.stats.file_requests.append(dict(request.headers) | {"path": request.path_qs})
        task = self.tasks.get(request.match_info["name"].removesuffix(".mp4"))
        if task is None:
            return web.Response(status=404, text="not found")
        if self.settings.file_status is not None:
            return web.Response(status=self.settings.file_status, text="<html>error</html>")
        if self.settings.error_page or self._roll(self.settings.faults.error_page):
            self.stats.faults["error_page"] += 1
            return web.Response(status=200, text="<html><body>Service busy</body></html>",
                                content_type="text/html")
        if self.settings.expire_links and "fresh" not in request.query:
            return web.Response(status=403, text="<html>link expired</html>")
        start = 0
        if (rng := request.headers.get("Range", "")).startswith("bytes="):
            start = int(rng[6:].split("-")[0] or 0)
        if start >= task.size:
            return web.Response(status=416, headers={"Content-Range": f"bytes */{task.size}"})
        response = web.StreamResponse(status=206 if start else 200)
        response.content_length = task.size - start
        response.content_type = "video/mp4"
        response.headers["Accept-Ranges"] = "bytes"
        if start:
            response.headers["Content-Range"] = f"bytes {start}-{task.size - 1}/{task.size}"
        await response.prepare(request)
        cut_at = start + (task.size - start) // 2 if self._roll(self.settings.faults.truncate) else None
        sent = start
        for chunk in video_chunks(task.task_id, task.size, start, clip=self.settings.clips and not task.undecodable,
                                  decodable=not task.undecodable):
            if cut_at is not None and sent + len(chunk) > cut_at:
                await response.write(chunk[: max(cut_at - sent, 0)])
                self.stats.faults["truncate"] += 1
                await asyncio.sleep(0.05)  # like a stalled connection: what came so far is read
                _close(request)
                return response
            await response.write(chunk)
            sent += len(chunk)
        await response.write_eof()
        return response


def _answer(code: int, msg: str, *, http: int | None = None, data: Any = None,
            headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"code": code, "msg": msg, "data": data},
                             status=code if http is None else http, headers=headers)


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def _close(request: web.Request) -> None:
    """Drop the connection (a fault on command)."""
    if request.transport is not None:
        request.transport.close()

"""A provider and a file host that misbehave as each test scripts them, on loopback.

Unlike the sandbox (a faithful stand-in with faults on a dial), every answer here is a function a
test replaces: a task id with a path in it, a key echoed back, a gzip bomb, a trickle, a result
that is not JSON. It runs on its own loop in a thread and records what clients sent.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from batch_engine.sandbox.media import video_chunks

FTYP = b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2"
VIDEO = b"".join(video_chunks("hostile", 16 * 1024, 0))  # 16 KB that decode: a clip, then a free box


def ok(data: Any) -> tuple[int, dict]:
    return 200, {"code": 200, "msg": "success", "data": data}


@dataclass
class Hostile:
    """Set the answer functions, then read what came in (`creates`, `polls`, `files`)."""

    key: str = "hostile-key-1234567890"
    task_id: Callable[[int, dict], str] = lambda n, body: f"task{n:04d}"
    create: Callable[[int, dict], tuple[int, dict]] | None = None      # replaces the normal answer
    record: Callable[[Hostile, str], tuple[int, dict]] | None = None  # recordInfo answer
    file: Callable[[web.Request], Awaitable[web.StreamResponse]] | None = None  # file host answer
    upload: Callable[[Hostile, str], tuple[int, dict]] | None = None  # upload answer, by file name
    uploads: list[str] = field(default_factory=list)
    creates: list[dict] = field(default_factory=list)
    polls: list[str] = field(default_factory=list)
    refreshes: list[str] = field(default_factory=list)
    files: list[dict] = field(default_factory=list)
    base_url: str = ""
    files_url: str = ""

    def success(self, task_id: str) -> tuple[int, dict]:
        """The documented success record, its video on this host."""
        return ok({"taskId": task_id, "state": "success",
                   "resultJson": json.dumps({"resultUrls": [self.video_url(task_id)]})})

    def video_url(self, task_id: str) -> str:
        return f"{self.files_url}/v/{hashlib.sha256(task_id.encode()).hexdigest()[:12]}.mp4"

    async def _create(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.creates.append(body)
        n = len(self.creates)
        status, answer = self.create(n, body) if self.create else ok({"taskId": self.task_id(n, body)})
        return web.json_response(answer, status=status)

    async def _record(self, request: web.Request) -> web.Response:
        task_id = request.query.get("taskId", "")
        self.polls.append(task_id)
        status, answer = self.record(self, task_id) if self.record else self.success(task_id)
        return web.json_response(answer, status=status)

    async def _refresh(self, request: web.Request) -> web.Response:
        url = (await request.json()).get("url", "")
        self.refreshes.append(url)
        return web.json_response(ok(url.split("?")[0] + "?fresh=1")[1])

    async def _upload(self, request: web.Request) -> web.Response:
        form = await request.post()
        name = str(form.get("fileName", ""))
        self.uploads.append(name)
        status, answer = self.upload(self, name) if self.upload else ok({"downloadUrl": f"{self.files_url}/u/{name}"})
        return web.json_response(answer, status=status)

    async def _file(self, request: web.Request) -> web.StreamResponse:
        self.files.append(dict(request.headers))
        if self.file is not None:
            return await self.file(request)
        return web.Response(body=VIDEO, content_type="video/mp4")


class HostileThread:
    def __init__(self, hostile: Hostile) -> None:
        self.hostile = hostile
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._runners: list[web.AppRunner] = []

    async def _serve(self, app: web.Application) -> str:
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        self._runners.append(runner)
        return f"http://127.0.0.1:{runner.addresses[0][1]}"

    async def _start(self) -> None:
        h = self.hostile
        api = web.Application()
        api.add_routes([web.post("/api/v1/jobs/createTask", h._create),
                        web.get("/api/v1/jobs/recordInfo", h._record),
                        web.post("/api/v1/common/download-url", h._refresh),
                        web.post("/api/file-stream-upload", h._upload)])
        files = web.Application()
        files.add_routes([web.get("/v/{name}", h._file)])
        h.base_url = await self._serve(api)
        h.files_url = await self._serve(files)

    async def _stop(self) -> None:
        for runner in self._runners:
            await runner.cleanup()

    def __enter__(self) -> Hostile:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(timeout=10)
        return self.hostile

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self.loop).result(timeout=10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)
        self.loop.close()

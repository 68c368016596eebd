"""The callback receiver: kie.ai POSTs a task's recordInfo body to callBackUrl when it ends.

It faces the internet, so a callback is only ever a hint: "look at this task now". kie signs
only `taskId.timestamp` (X-Webhook-Timestamp, X-Webhook-Signature = base64 HMAC-SHA256 keyed with
KIE_WEBHOOK_HMAC_KEY), never the body, so the task's state and result URLs always come from one
recordInfo call, signed or not; a callback with a bad or stale signature is refused (401); a body
that is not a task callback gets 400 (whatever its shape: deep nesting, wrong types, not UTF-8).
The receiver keeps at most MAX_CONNECTIONS connections and closes any older than MAX_AGE seconds
(slow or held clients), so a flood cannot starve the run of file descriptors. Duplicates are
harmless. This is the product's only HTTP server.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import time
from collections.abc import Callable

from aiohttp import web

from batch_engine.errors import CannotListen
from batch_engine.provider.answers import valid_task_id
from batch_engine.text import clean

log = logging.getLogger(__name__)
MAX_SKEW = 300.0          # seconds a signed callback's timestamp may differ from our clock
MAX_BODY = 1024 * 1024
MAX_CONNECTIONS = 64      # connections open at once; newer ones beyond are closed
MAX_AGE = 10.0            # seconds a connection may stay open (kie waits 15 s for an answer)
SWEEP_EVERY = 0.5         # seconds between checks of the open connections


def sign(key: bytes, task_id: str, timestamp: str) -> str:
    return base64.b64encode(hmac.new(key, f"{task_id}.{timestamp}".encode(), hashlib.sha256).digest()).decode()


def signature_ok(key: bytes, task_id: str, timestamp: str | None, signature: str | None,
                 *, now: float | None = None) -> bool:
    """The signature matches (compared in constant time) and the timestamp is fresh."""
    if not timestamp or not signature:
        return False
    try:
        age = abs((time.time() if now is None else now) - float(timestamp))
    except ValueError:
        return False
    return age <= MAX_SKEW and hmac.compare_digest(sign(key, task_id, timestamp).encode(),
                                                   signature.strip().encode(errors="replace"))


def task_id_of(raw: bytes) -> str | None:
    """The task id a callback body names (`data.taskId`, or `task_id` as in kie's sample code)."""
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):
        return None
    data = body.get("data") if isinstance(body, dict) and isinstance(body.get("data"), dict) else body
    if not isinstance(data, dict):
        return None
    return valid_task_id(data.get("taskId") if data.get("taskId") is not None else data.get("task_id"))


class CallbackReceiver:
    """Hands the task id of each acceptable callback to `on_callback` (True: a task of this run)."""

    def __init__(self, host: str, port: int, path: str, hmac_key: str | None, *,
                 on_callback: Callable[[str], bool]) -> None:
        self.on_callback = on_callback
        self.host, self.port, self.path = host, port, path or "/"
        self.key = hmac_key.encode() if hmac_key else None  # None: nothing to check
        self._runner: web.AppRunner | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self._seen: dict[int, float] = {}  # id of an open connection -> when it was first seen

    def __repr__(self) -> str:
        open_now = len(self._runner.server.connections) if self._runner and self._runner.server else 0
        return f"<CallbackReceiver {self.host}:{self.port}{self.path} signed={self.key is not None} open={open_now}>"

    async def start(self) -> None:
        app = web.Application(client_max_size=MAX_BODY)
        app.add_routes([web.post(self.path, self.handle)])
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0, keepalive_timeout=MAX_AGE)
        await self._runner.setup()
        try:
            await web.TCPSite(self._runner, self.host, self.port, backlog=MAX_CONNECTIONS).start()
        except OSError as e:
            await self._runner.cleanup()
            raise CannotListen(f"cannot listen for callbacks on {self.host}:{self.port}: "
                               f"{e.strerror or e} (is another program using it?)") from None
        self._sweeper = asyncio.create_task(self._sweep())
        log.info("listening for callbacks on %s:%d%s", self.host, self.port, self.path)

    async def stop(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
        if self._runner is not None:
            await self._runner.cleanup()

    async def _sweep(self) -> None:
        """Close connections held too long, and the newest beyond the cap."""
        while True:
            await asyncio.sleep(SWEEP_EVERY)
            server = self._runner.server if self._runner else None
            if server is None:
                continue
            now = time.monotonic()
            connections = list(server.connections)
            alive = {id(c) for c in connections}
            self._seen = {k: v for k, v in self._seen.items() if k in alive}
            for handler in connections:
                self._seen.setdefault(id(handler), now)
            ordered = sorted(connections, key=lambda c: self._seen[id(c)])
            for index, handler in enumerate(ordered):
                if index >= MAX_CONNECTIONS or now - self._seen[id(handler)] > MAX_AGE:
                    handler.force_close()
                    if handler.transport is not None:
                        handler.transport.close()

    async def handle(self, request: web.Request) -> web.Response:
        try:
            raw = await request.read()
        except (ConnectionError, asyncio.IncompleteReadError, web.HTTPException):
            return web.json_response({"code": 400, "msg": "incomplete body"}, status=400)
        task_id = task_id_of(raw)
        if task_id is None:
            return web.json_response({"code": 400, "msg": "not a task callback"}, status=400)
        timestamp = request.headers.get("X-Webhook-Timestamp")
        signature = request.headers.get("X-Webhook-Signature")
        if self.key is not None and (timestamp or signature) and \
                not signature_ok(self.key, task_id, timestamp, signature):
            log.warning("refused a callback for task %s: bad or stale signature", clean(task_id)[:80])
            return web.json_response({"code": 401, "msg": "bad signature"}, status=401)
        self.on_callback(task_id)  # look at the task now: its state comes from recordInfo
        return web.json_response({"code": 200, "msg": "ok"})

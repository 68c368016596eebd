"""The callback receiver: kie.ai POSTs a task's recordInfo body to callBackUrl when it ends.

A signed callback (X-Webhook-Timestamp, X-Webhook-Signature = base64 HMAC-SHA256 over
"taskId.timestamp", keyed with KIE_WEBHOOK_HMAC_KEY) that verifies ends the task at once. An
unsigned one, or any callback when no key is set, is only a hint: its URLs are never trusted,
the task is looked up with recordInfo right away. A bad signature or a stale timestamp is
refused (401). Duplicates are harmless: a task that already ended ignores them. Every callback
is answered quickly. This is the receiving edge of the engine, the one place besides `client`
that speaks HTTP.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import time
from typing import Callable

from aiohttp import web

from batch_engine.provider.client import TaskInfo

log = logging.getLogger(__name__)
MAX_SKEW = 300.0          # seconds a signed callback's timestamp may differ from our clock
MAX_BODY = 1024 * 1024


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
    return age <= MAX_SKEW and hmac.compare_digest(sign(key, task_id, timestamp), signature.strip())


OnCallback = Callable[[str, "TaskInfo | None"], bool]  # (task id, verified body or None) -> known?


class CallbackReceiver:
    """Hands each acceptable callback to `on_callback`: the task id, and its body parsed when the
    signature verified (None: only a hint, to be confirmed by recordInfo)."""

    def __init__(self, host: str, port: int, path: str, hmac_key: str | None, *,
                 on_callback: OnCallback) -> None:
        self.on_callback = on_callback
        self.host, self.port, self.path = host, port, path or "/"
        self.key = hmac_key.encode() if hmac_key else None  # None: unsigned, confirm by polling
        self._runner: web.AppRunner | None = None

    def __repr__(self) -> str:
        return f"<CallbackReceiver {self.host}:{self.port}{self.path} signed={self.key is not None}>"

    async def start(self) -> None:
        app = web.Application(client_max_size=MAX_BODY)
        app.add_routes([web.post(self.path, self.handle)])
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        await web.TCPSite(self._runner, self.host, self.port).start()
        log.info("listening for callbacks on %s:%d%s", self.host, self.port, self.path)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def handle(self, request: web.Request) -> web.Response:
        try:
            body = json.loads(await request.read())
            data = body.get("data") if isinstance(body.get("data"), dict) else body
            task_id = str(data["taskId"])
        except (ValueError, KeyError, TypeError, AttributeError):
            return web.json_response({"code": 400, "msg": "not a task callback"}, status=400)
        timestamp = request.headers.get("X-Webhook-Timestamp")
        signature = request.headers.get("X-Webhook-Signature")
        if self.key is not None and (timestamp or signature):
            if not signature_ok(self.key, task_id, timestamp, signature):
                log.warning("refused a callback for task %s: bad or stale signature", task_id)
                return web.json_response({"code": 401, "msg": "bad signature"}, status=401)
            self.on_callback(task_id, TaskInfo.from_data(data))
        else:
            self.on_callback(task_id, None)
        return web.json_response({"code": 200, "msg": "ok"})

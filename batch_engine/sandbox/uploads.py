"""The sandbox's side doors: kie's file upload API (and the uploaded files) and callbacks.
The handlers take the sandbox as their first argument (bound with functools.partial)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from typing import Any

from aiohttp import ClientSession, web

from batch_engine.sandbox.settings import SandboxStats


async def upload(self: Any, request: web.Request) -> web.Response:
    """kie's stream upload: multipart `file`, `uploadPath`, `fileName`; answers downloadUrl."""
    if request.headers.get("Authorization") != f"Bearer {self.settings.api_key}":
        return answer(401, "You do not have access permissions")
    form = await request.post()
    upload, name = form.get("file"), form.get("fileName")
    if not hasattr(upload, "file") or not isinstance(name, str) or not form.get("uploadPath"):
        return answer(400, "file, uploadPath and fileName are required")
    data = upload.file.read()  # type: ignore[union-attr]  # a form field that is a file (checked above)
    self.uploads[name] = data
    self.stats.uploads.append(name)
    return web.json_response({"success": True, "code": 200, "msg": "File uploaded successfully", "data": {
        "fileName": name, "filePath": f"{form['uploadPath']!s}/{name}", "fileSize": len(data),
        "downloadUrl": f"{self.files_url}/uploads/{name}", "mimeType": "image/png",
        "uploadedAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}})

async def uploaded(self: Any, request: web.Request) -> web.Response:
    data = self.uploads.get(request.match_info["name"])
    return web.Response(status=404) if data is None else web.Response(body=data)



async def send_callback(session: ClientSession, url: str, task_id: str, data: dict[str, Any],
                        key: str | None, stats: SandboxStats, times: int = 1) -> None:
    """POST a task's recordInfo body to its callBackUrl, signed over "taskId.timestamp" if a key is set."""
    headers = {}
    if key:
        stamp = str(int(time.time()))
        digest = hmac.new(key.encode(), f"{task_id}.{stamp}".encode(), hashlib.sha256).digest()
        headers = {"X-Webhook-Timestamp": stamp, "X-Webhook-Signature": base64.b64encode(digest).decode()}
    for _ in range(times):
        stats.callbacks_sent += 1
        try:
            async with session.post(url, json={"code": 200, "msg": "success", "data": data},
                                    headers=headers) as response:
                stats.callback_answers.append(response.status)
        except OSError:
            stats.callback_answers.append(0)


def answer(code: int, msg: str) -> web.Response:
    return web.json_response({"code": code, "msg": msg, "data": None}, status=code)

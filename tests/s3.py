"""A real S3 API on loopback for the bucket tests: moto's server mode in a child process, and a
proxy in front of it that misbehaves on command (503 SlowDown, 403, a pause), counting requests.
The engine is pointed at the proxy with AWS_ENDPOINT_URL, as a user points it at MinIO."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web

ACCESS_KEY, SECRET_KEY = "AKIATESTBUCKETKEY01", "test-secret-key-1f0c9b7e2a"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Moto:
    """moto's S3 server on 127.0.0.1, in a child process that `stop` ends."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError("moto's server did not start")

    def client(self) -> Any:
        import boto3
        return boto3.client("s3", endpoint_url=self.url, aws_access_key_id=ACCESS_KEY,
                            aws_secret_access_key=SECRET_KEY, region_name="us-east-1")

    def new_bucket(self) -> str:
        name = f"b-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=name)
        return name

    def keys(self, bucket: str, prefix: str = "") -> dict[str, int]:
        found: dict[str, int] = {}
        for page in self.client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for obj in page.get("Contents", []):
                found[obj["Key"]] = obj["Size"]
        return found

    def get(self, bucket: str, key: str) -> bytes:
        return bytes(self.client().get_object(Bucket=bucket, Key=key)["Body"].read())

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)


@dataclass
class Faults:
    fail_next: int = 0           # answer this many requests 503 SlowDown
    deny: bool = False           # answer every request 403 AccessDenied
    methods: tuple[str, ...] = ()  # only requests with these methods misbehave (empty: all)
    requests: list[tuple[str, str]] = field(default_factory=list)  # (method, path) of every request


_SLOW = b'<?xml version="1.0"?><Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>'
_DENIED = b'<?xml version="1.0"?><Error><Code>AccessDenied</Code><Message>Access Denied</Message></Error>'


class StoreProxy:
    """A forwarding proxy to moto on its own loop in a thread; `faults` says how it misbehaves."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.faults = Faults()
        self.lock = threading.Lock()
        self.url = ""
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None

    def __enter__(self) -> StoreProxy:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(timeout=10)
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    def set(self, **changes: Any) -> None:
        with self.lock:
            for name, value in changes.items():
                setattr(self.faults, name, value)

    def count(self, method: str, part: str = "") -> int:
        with self.lock:
            return sum(1 for m, p in self.faults.requests if m == method and part in p)

    async def _start(self) -> None:
        self._session = aiohttp.ClientSession(auto_decompress=False)
        app = web.Application(client_max_size=1024**3)
        app.router.add_route("*", "/{tail:.*}", self._forward)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"

    async def _stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        with self.lock:
            f = self.faults
            f.requests.append((request.method, request.path_qs))
            applies = not f.methods or request.method in f.methods
            if applies and f.deny:
                return web.Response(status=403, body=_DENIED, content_type="application/xml")
            if applies and f.fail_next > 0:
                f.fail_next -= 1
                return web.Response(status=503, body=_SLOW, content_type="application/xml")
        body = await request.read()
        headers = {k: v for k, v in request.headers.items() if k.lower() not in ("host", "transfer-encoding")}
        assert self._session is not None
        async with self._session.request(request.method, self.upstream + request.path_qs, headers=headers,
                                         data=body, allow_redirects=False) as answer:
            data = await answer.read()
            dropped = ("transfer-encoding", "content-encoding", "connection")
            if request.method != "HEAD":  # a HEAD's length is the object's: kept as it is
                dropped += ("content-length",)
            out = {k: v for k, v in answer.headers.items() if k.lower() not in dropped}
            if request.method == "HEAD":
                return web.Response(status=answer.status, headers=out)
            return web.Response(status=answer.status, body=data, headers=out)


def s3_env(base: dict[str, str], endpoint: str) -> dict[str, str]:
    """The standard AWS variables a user sets for a local S3 server."""
    env = {k: v for k, v in base.items() if not k.startswith("AWS_")}
    env.update(AWS_ACCESS_KEY_ID=ACCESS_KEY, AWS_SECRET_ACCESS_KEY=SECRET_KEY, AWS_ENDPOINT_URL=endpoint,
               AWS_REGION="us-east-1")
    return env

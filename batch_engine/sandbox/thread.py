"""The sandbox on its own event loop in a background thread, for tests and benchmarks."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from batch_engine.sandbox.server import Sandbox
from batch_engine.sandbox.settings import SandboxSettings

T = TypeVar("T")


class SandboxThread:
    """The sandbox on its own event loop in a background thread (tests, benchmarks)."""

    def __init__(self, settings: SandboxSettings | None = None) -> None:
        self.sandbox = Sandbox(settings)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    def __enter__(self) -> Sandbox:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self.sandbox.start(), self._loop).result(timeout=10)
        return self.sandbox

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    async def _stop(self) -> None:
        """Stop the servers, then end what is left on the loop (a request handler of a client
        killed mid-request), so that no task outlives its loop."""
        await self.sandbox.stop()
        rest = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
        for task in rest:
            task.cancel()
        await asyncio.gather(*rest, return_exceptions=True)

    def call(self, fn: Callable[..., T], *args: Any) -> T:
        """Run `fn(*args)` on the sandbox's loop (to change settings or read stats safely)."""
        async def wrapper() -> T:
            return fn(*args)
        return asyncio.run_coroutine_threadsafe(wrapper(), self._loop).result(timeout=10)

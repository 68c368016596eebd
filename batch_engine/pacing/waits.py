"""Waiting for an event, with a time limit, in a way that never loses a cancellation.

`asyncio.wait_for` on Python 3.11 returns normally when the awaited event is set in the same
loop step as the waiting task is cancelled: the cancellation is lost. For a worker that waits in
a loop (the poll scheduler, the create gate) that meant it never stopped, and the whole run hung
at shutdown, after a failure or a Ctrl-C. `asyncio.timeout` counts cancellations and does not.
"""

from __future__ import annotations

import asyncio


async def wait_event(event: asyncio.Event, seconds: float) -> bool:
    """Wait until `event` is set or `seconds` have passed; True if it was set."""
    try:
        async with asyncio.timeout(seconds):
            await event.wait()
    except TimeoutError:
        return event.is_set()
    return True

"""One adaptive limiter: an aiolimiter bucket swapped for a new one when the rate changes.

aiolimiter works out its drain rate once, at construction, so changing `max_rate` on a live
limiter does not change its pace. The create gate and the poll gate both change rates as the
provider answers; this is the one place that rebuilds the bucket when they do.
"""

from __future__ import annotations

from aiolimiter import AsyncLimiter


class AdaptiveLimiter:
    __slots__ = ("_limiter", "_shape")

    def __init__(self, max_rate: float, period: float) -> None:
        self._shape = (max_rate, period)                 # (max_rate, period) `_limiter` was made for
        self._limiter = AsyncLimiter(max_rate, period)   # the bucket in use

    def __repr__(self) -> str:
        return f"<AdaptiveLimiter {self._shape[0]:g} per {self._shape[1]:g}s>"

    def reshape(self, max_rate: float, period: float) -> None:
        """Use this rate from the next acquire on (a no-op when it is the rate in use)."""
        if (max_rate, period) != self._shape:
            self._shape = (max_rate, period)
            self._limiter = AsyncLimiter(max_rate, period)

    async def acquire(self) -> None:
        await self._limiter.acquire()

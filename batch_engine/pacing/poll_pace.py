"""How fast task status may be asked: a pure pace that reacts to 429s, and the gate polls wait at.

The provider does not say whether polls count against a limit, so polls share one polite rate of their
own (separate from the create cap). `PollPace` decides the rate, told the time; `PollGate` makes
each poll wait its turn under it.
"""

from __future__ import annotations

import asyncio
import time

from batch_engine.pacing.limiter import AdaptiveLimiter

POLL_BURST = 8.0  # seconds of polls that may go out at once while nothing was refused


class PollPace:
    """How many status calls per second, all tasks together; pure, told the time.

    The provider does not say whether polls count against a limit. Should the provider answer a poll
    with 429, the rate halves (once a second, however many 429s arrive), every poll waits
    (Retry-After when given, else a second), and polls go out evenly, without bursts; once
    RECOVER seconds pass without a 429 the rate rises by a quarter, back to what was allowed.
    """

    __slots__ = ("_clean_since", "_last_cut", "allowed", "pause_until", "rate")
    FLOOR = 0.2       # polls per second: the least it slows to
    RECOVER = 10.0    # seconds without a 429 before each step back up

    def __init__(self, allowed: float) -> None:
        self.allowed = allowed            # polls per second the user allowed (the most ever used)
        self.rate = allowed               # polls per second believed welcome now
        self.pause_until = 0.0            # no poll goes out before this time
        self._last_cut = float("-inf")    # when the rate was last halved
        self._clean_since = 0.0           # start of the current run of polls without a 429

    def __repr__(self) -> str:
        return f"<PollPace {self.rate:g}/s (allowed {self.allowed:g}/s) pause_until={self.pause_until:.2f}>"

    @property
    def throttled(self) -> bool:
        return self.rate < self.allowed

    def on_refused(self, now: float, retry_after: float | None) -> None:
        if now - self._last_cut >= 1.0:
            self.rate = max(self.FLOOR, self.rate / 2)
            self._last_cut = now
        self._clean_since = now
        self.pause_until = max(self.pause_until, now + (retry_after if retry_after is not None else 1.0))

    def on_answered(self, now: float) -> None:
        if self.throttled and now - self._clean_since >= self.RECOVER:
            self.rate = min(self.allowed, self.rate * 1.25)
            self._clean_since = now


class PollGate:
    """Every poll waits here: past any pause, then through a bucket sized by the pace.

    While nothing was refused the bucket holds POLL_BURST seconds of polls (the first news may
    send every task in flight to be looked at at once; the average stays at the allowed rate);
    once the provider refused polls, they go out evenly, one at a time: a burst is what was refused.
    """

    __slots__ = ("_limiter", "pace")

    def __init__(self, allowed: float) -> None:
        self.pace = PollPace(allowed)                  # the rate, decided from the answers
        self._limiter = AdaptiveLimiter(*self._shape())  # the bucket for the current rate

    def __repr__(self) -> str:
        return f"<PollGate {self.pace!r} {self._limiter!r}>"

    async def wait_turn(self) -> None:
        while True:
            pause = self.pace.pause_until - time.monotonic()
            if pause > 0:
                await asyncio.sleep(pause)
                continue
            self._limiter.reshape(*self._shape())
            await self._limiter.acquire()
            if self.pace.pause_until <= time.monotonic():
                return

    def _shape(self) -> tuple[float, float]:
        rate = self.pace.rate
        return (1, 1.0 / rate) if self.pace.throttled else (rate * POLL_BURST, POLL_BURST)

"""The create gate: how fast tasks may be created, decided by a pure policy.

Three layers, each for one reason:
- `RatePolicy` (pure, no clock of its own): the cap currently believed, a shared pause after a
  429 or a maintenance answer, and the creep back up to the told cap once 429s stop.
- an `AdaptiveLimiter(1, W/N)` paces creates evenly (its burst is one create, never N).
- a log of the last N creates guarantees the provider's rule outright: a create is sent no sooner
  than W seconds after the *answer* to the N-th create before it, so no window of W seconds at the
  provider can hold more than N, whatever the network's jitter.
- the account's window, shared with the other runs on its key (`pacing.shared`), when given.
- creates in flight at once are as few as the rate allows: one, unless the answers take longer
  than the pacing gap. A create cut off by a crash may have made a task, so each one in flight is
  one item that a `kill -9` could make us pay twice.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Callable

from batch_engine.config import Rate
from batch_engine.pacing.limiter import AdaptiveLimiter
from batch_engine.pacing.policy import backoff_delay
from batch_engine.pacing.shared import SharedWindow
from batch_engine.pacing.waits import wait_event


class RatePolicy:
    """Decide the create cap; every method takes the time, so tests need no event loop.

    On a 429 the cap drops to what the provider demonstrably accepted in the trailing window (or
    by a fifth, if that tells nothing), once per window however many 429s arrive, and every create
    pauses (Retry-After when given, else a short jittered backoff). Once 429s stop, the cap probes
    one step back up after a few clean windows; each probe that meets a 429 doubles the wait before
    the next, so a cap that was learnt is not hammered again.
    """

    __slots__ = (
        "_clean_since",
        "_last_cut",
        "_probe_windows",
        "_streak",
        "creates",
        "pause_until",
        "told",
    )

    def __init__(self, told: Rate) -> None:
        self.told = told                  # the cap the user gave (the most we ever use)
        self.creates = told.creates       # creates per window believed allowed now
        self.pause_until = 0.0            # no create goes out before this time
        self._streak = 0                  # 429s in a row, for the backoff when no Retry-After
        self._last_cut = float("-inf")    # when the cap was last lowered
        self._clean_since = 0.0           # start of the current run of accepted creates
        self._probe_windows = 2           # clean windows before the cap may rise by one

    def __repr__(self) -> str:
        return (f"<RatePolicy {self.creates}/{self.told.window:g}s (told {self.told}) "
                f"pause_until={self.pause_until:.2f} streak={self._streak} "
                f"probe_every={self._probe_windows}w>")

    def on_accepted(self, now: float) -> None:
        self._streak = 0
        if (self.creates < self.told.creates
                and now - self._clean_since >= self._probe_windows * self.told.window):
            self.creates += 1
            self._clean_since = now

    def on_rate_limited(self, now: float, retry_after: float | None, accepted_in_window: int = 0) -> None:
        """A 429. `accepted_in_window`: creates the provider accepted in the last window."""
        self._streak += 1
        window = self.told.window
        if now - self._last_cut >= window:  # one decision per window, not one per 429
            if 0 < accepted_in_window < self.creates:
                learned = accepted_in_window
            else:
                learned = int(self.creates * 0.8)
            if self._last_cut != float("-inf"):
                self._probe_windows = min(self._probe_windows * 2, 32)
            self.creates = max(1, min(self.creates, learned))
            self._last_cut = now
        self._clean_since = now
        delay = retry_after if retry_after is not None else backoff_delay(
            self._streak, base=window / max(self.creates, 1), cap=window)
        self.pause_until = max(self.pause_until, now + delay)

    def on_pause(self, now: float, seconds: float) -> None:
        """The whole service asked us to wait (maintenance): everyone waits together."""
        self.pause_until = max(self.pause_until, now + seconds)


class _Slot:
    __slots__ = ("accepted", "answered_at", "event", "sent_at")

    def __init__(self, sent_at: float, answered_at: float | None = None) -> None:
        self.sent_at = sent_at            # monotonic time the create was let through
        self.answered_at = answered_at    # monotonic time the create was answered; None in flight
        self.accepted = answered_at is not None  # the provider made a task (seeded ones did)
        self.event = asyncio.Event()      # set once answered
        if answered_at is not None:
            self.event.set()


class CreateGate:
    """Wait here before every create; report how it went afterwards."""

    def __init__(self, told: Rate, *, clock: Callable[[], float] = time.monotonic,
                 max_in_flight: int = 4, shared: SharedWindow | None = None) -> None:
        self.policy = RatePolicy(told)
        self.shared = shared                 # the account's window, shared with its other runs
        self._clock = clock
        self._max_in_flight = max_in_flight  # the most creates on the wire at once, ever
        self._latency = 0.0                  # moving average of create answer times (seconds)
        self._log: deque[_Slot] = deque()   # recent creates, oldest first
        self._in_flight: list[_Slot] = []   # creates sent and not yet answered, oldest first
        self._pacer = AdaptiveLimiter(1, told.window / told.creates)  # one create per gap, no burst
        self._lock = asyncio.Lock()         # one create at a time passes the checks, in order
        self._wake = asyncio.Event()        # set to make a waiting acquire look again (close)
        self.closed = False                 # account refused: nothing more may be created

    def __repr__(self) -> str:
        return (f"<CreateGate {self.policy!r} recent={len(self._log)} in_flight={len(self._in_flight)} "
                f"latency={self._latency:.3f}s closed={self.closed}>")

    def cap_per_minute(self) -> float:
        """The creates a minute the gate believes the account allows now."""
        return self.policy.creates / self.policy.told.window * 60.0

    def seed(self, seconds_ago: list[float]) -> None:
        """Count creates an earlier run made in the current window (from the ledger): the latest
        of them, as many as the cap allows in a window (older ones cannot delay the next)."""
        now = self._clock()
        latest = sorted(ago for ago in seconds_ago if ago < self.policy.told.window)[:self.policy.told.creates]
        for ago in reversed(latest):
            self._log.append(_Slot(now - ago, now - ago))

    async def acquire(self) -> _Slot | None:
        """Wait until a create may go out; None once the gate is closed."""
        async with self._lock:
            while not self.closed:
                now = self._clock()
                if self.policy.pause_until > now:
                    await self._sleep(self.policy.pause_until - now)
                    continue
                limit, window = self.policy.creates, self.policy.told.window
                while len(self._log) > limit and self._log[0].answered_at is not None:
                    self._log.popleft()
                if len(self._in_flight) >= self.in_flight_allowed():
                    await self._in_flight[0].event.wait()
                    continue
                if len(self._log) >= limit:
                    ref = self._log[-limit]
                    if ref.answered_at is None:
                        await ref.event.wait()
                        continue
                    if ref.answered_at + window > now:
                        await self._sleep(ref.answered_at + window - now)
                        continue
                self._pacer.reshape(1, window / limit)
                await self._pacer.acquire()
                if self.shared is not None:
                    await self.shared.take()
                if self.policy.pause_until > self._clock() or self.closed:
                    continue
                slot = _Slot(self._clock())
                self._log.append(slot)
                self._in_flight.append(slot)
                return slot
            return None

    def answered(self, slot: _Slot, *, accepted: bool = False, rate_limited: bool = False,
                 retry_after: float | None = None) -> None:
        now = self._clock()
        slot.answered_at = now
        slot.event.set()
        self._in_flight.remove(slot)  # a handful at most
        self._latency = 0.8 * self._latency + 0.2 * (now - slot.sent_at)
        slot.accepted = accepted
        if rate_limited:
            window_start = now - self.policy.told.window
            recent = sum(1 for s in self._log if s.accepted and s.answered_at is not None and s.answered_at >= window_start)
            self.policy.on_rate_limited(now, retry_after, recent)
        elif accepted:
            self.policy.on_accepted(now)

    def in_flight_allowed(self) -> int:
        """One create on the wire, or as many as it takes to keep the pace when answers are slow."""
        gap = self.policy.told.window / self.policy.creates
        return max(1, min(self._max_in_flight, math.ceil(self._latency / gap)))

    def pause(self, seconds: float) -> None:
        self.policy.on_pause(self._clock(), seconds)

    def close(self) -> None:
        self.closed = True
        self._wake.set()

    async def _sleep(self, seconds: float) -> None:
        self._wake.clear()
        await wait_event(self._wake, seconds)

"""One account's create cap, shared by every process that uses the account's key.

Shards of one catalog (and any other runs on the same key) each believe they may create N tasks
per W seconds; the account allows N in all. Before each create leaves, the create gate takes a
place in a window log shared by those processes: granted while fewer than N creates went out in
the last W seconds, else it waits until the oldest of them leaves the window.

- `SqliteWindow`: one machine, no server: a SQLite file under the user's cache, one row per
  create, each decision one IMMEDIATE transaction (the processes share the machine's clock).
- `RedisWindow` (`--rate-store redis://HOST:PORT/DB`): machines together, through one sorted set
  and a script that runs atomically on the server, with the server's clock (no skew between
  machines). A Redis that goes away mid-run is not a failure: the run says so and goes on with a
  local window of its share of the cap (N divided by its shard count), and takes the shared one
  back when Redis answers again.

The account is known by a hash of its key, never by the key.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import sqlite3
import time
from collections import deque
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

from batch_engine.config import Rate

log = logging.getLogger(__name__)
RETRY_REDIS = 5.0  # seconds between tries to reach a Redis that went away
MARGIN = 0.25      # seconds added to the window: a create is counted when sent, the provider counts it on arrival


class SharedWindow(Protocol):
    async def take(self) -> None:
        """Wait for a place in the account's window, and take it."""
        ...

    def close(self) -> None: ...


def account_of(api_key: str, base_url: str) -> str:
    return hashlib.sha256(f"{base_url}\n{api_key}".encode()).hexdigest()[:24]


def default_store(environ: Mapping[str, str] = os.environ) -> Path:
    base = Path(environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "batch-engine" / "accounts.sqlite"


class LocalWindow:
    """A window log in this process only: the fallback while a shared store is away."""

    def __init__(self, rate: Rate) -> None:
        self.rate = rate
        self._sent: deque[float] = deque()

    async def take(self) -> None:
        while True:
            now = time.monotonic()
            while self._sent and self._sent[0] <= now - self.rate.window:
                self._sent.popleft()
            if len(self._sent) < self.rate.creates:
                self._sent.append(now)
                return
            await asyncio.sleep(self._sent[0] + self.rate.window - now)

    def close(self) -> None:
        pass


class SqliteWindow:
    def __init__(self, path: Path, account: str, rate: Rate) -> None:
        self.path, self.account, self.rate = path, account, rate
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS creates (account TEXT NOT NULL, at REAL NOT NULL)")
        self._db.execute("CREATE INDEX IF NOT EXISTS creates_by_account ON creates (account, at)")

    def __repr__(self) -> str:
        return f"<SqliteWindow {self.path} {self.rate}>"

    async def take(self) -> None:
        while True:
            wait = await asyncio.to_thread(self._try)
            if wait <= 0:
                return
            await asyncio.sleep(wait)

    def _try(self) -> float:
        """0 when a place was taken, else the seconds until one may be free."""
        now, window = time.time(), self.rate.window + MARGIN
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            db.execute("DELETE FROM creates WHERE at < ?", (now - max(window, 3600.0),))
            count, oldest = db.execute("SELECT COUNT(*), MIN(at) FROM creates WHERE account = ? AND at > ?",
                                       (self.account, now - window)).fetchone()
            if count < self.rate.creates:
                db.execute("INSERT INTO creates VALUES (?, ?)", (self.account, now))
                db.execute("COMMIT")
                return 0.0
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        if count > self.rate.creates:  # more than allowed in the window: wait for the N-th from the end
            (oldest,) = db.execute("SELECT at FROM creates WHERE account = ? AND at > ? ORDER BY at DESC "
                                   "LIMIT 1 OFFSET ?", (self.account, now - window, self.rate.creates - 1)).fetchone()
        return max(0.01, oldest + window - now)

    def close(self) -> None:
        self._db.close()


# KEYS[1]: the account's sorted set. ARGV: window (s), creates, a unique member. The server's clock.
_TAKE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
local window, creates = tonumber(ARGV[1]), tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local n = redis.call('ZCARD', KEYS[1])
if n < creates then
  redis.call('ZADD', KEYS[1], now, ARGV[3])
  redis.call('PEXPIRE', KEYS[1], math.ceil(window * 1000) + 1000)
  return '0'
end
local nth = redis.call('ZRANGE', KEYS[1], n - creates, n - creates, 'WITHSCORES')
return tostring(tonumber(nth[2]) + window - now)
"""


class RedisWindow:
    def __init__(self, url: str, account: str, rate: Rate, *, shards: int = 1) -> None:
        import redis.asyncio as redis
        self.url, self.account, self.rate = url, account, rate
        self._client: Any = redis.Redis.from_url(url, socket_timeout=3, socket_connect_timeout=3)
        self._script: Any = self._client.register_script(_TAKE)
        self._fallback = LocalWindow(Rate(max(1, rate.creates // max(shards, 1)), rate.window))
        self._away_since: float | None = None
        self._seq = 0
        self._me = f"{os.getpid()}-{id(self):x}"

    def __repr__(self) -> str:
        return f"<RedisWindow {_safe(self.url)} {self.rate} away={self._away_since is not None}>"

    async def take(self) -> None:
        while True:
            if self._away_since is not None and time.monotonic() - self._away_since < RETRY_REDIS:
                await self._fallback.take()
                return
            try:
                self._seq += 1
                wait = float(await self._script(keys=[f"batch-engine:creates:{self.account}"],
                                                args=[self.rate.window + MARGIN, self.rate.creates,
                                                      f"{self._me}-{self._seq}"]))
            except (OSError, ConnectionError, TimeoutError) as e:
                self._went_away(e)
                continue
            except Exception as e:  # redis-py's own ConnectionError and TimeoutError
                if type(e).__module__.startswith("redis"):
                    self._went_away(e)
                    continue
                raise
            if self._away_since is not None:
                log.warning("the shared create cap at %s answers again; the account's cap is shared again",
                            _safe(self.url))
                self._away_since = None
            if wait <= 0:
                return
            await asyncio.sleep(wait)

    def _went_away(self, error: Exception) -> None:
        if self._away_since is None:
            log.warning("the shared create cap at %s does not answer (%s); going on alone at %s (this run's share "
                        "of the cap) until it answers again", _safe(self.url), type(error).__name__, self._fallback.rate)
        self._away_since = time.monotonic()

    def close(self) -> None:
        pass


def open_window(store: str | None, account: str, rate: Rate, *, shards: int = 1) -> SharedWindow:
    """The window for `--rate-store` (None: the machine's SQLite file; "off": none shared)."""
    if store == "off":
        return LocalWindow(rate)
    if store and store.startswith(("redis://", "rediss://", "unix://")):
        return RedisWindow(store, account, rate, shards=shards)
    try:
        return SqliteWindow(Path(store) if store else default_store(), account, rate)
    except (OSError, sqlite3.Error) as e:
        log.warning("cannot use the shared create cap file (%s); this run keeps the cap to itself", e)
        return LocalWindow(rate)


def _safe(url: str) -> str:
    """A Redis URL without its password."""
    _, at, tail = url.rpartition("@")
    return f"{url.split('://', maxsplit=1)[0]}://***@{tail}" if at else url

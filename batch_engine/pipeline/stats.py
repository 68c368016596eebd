"""What a run counts (creates, polls, bytes, credits...): the summary's figures. Apart from the
context so that a run with nothing to do (`api.execute`) can report without importing the
engine's machinery (asyncio's gates, aiolimiter)."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal


@dataclass(slots=True)
class RunStats:
    creates_sent: int = 0
    rate_limited: int = 0
    polls: int = 0
    polls_refused: int = 0        # polls answered 429 (the provider limits polls too)
    unanswered_creates: int = 0   # creates re-sent because an answer never came: maybe paid twice
    timed_out: int = 0            # tasks still unfinished at the time-out: resumable
    not_submitted: int = 0        # left pending because the account was refused
    bytes_downloaded: int = 0
    credits_before: Decimal | None = None  # the account's balance before the first create
    credits_spent: Decimal = Decimal(0)    # what the provider says this run's tasks cost
    changed: int = 0              # items whose manifest entry changed since the last run
    damaged: int = 0              # items left alone: their ledger records cannot be read
    gave_up: dict[str, int] = field(default_factory=dict)  # create errors that outlasted retries

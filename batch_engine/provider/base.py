"""Who makes the videos, as the pipeline sees it: one interface, no provider's words or fields.

`Provider` is what a stage may ask (create a task, its status, a fresh result link, an upload,
the account's credits, a result file); `TaskInfo` and `TaskState` are what it hears back. An
implementation (`provider.kie`) translates its own API into these at its edge and raises only the
exceptions of `errors`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from typing import Any, Protocol


class TaskState(StrEnum):
    """Where a task stands at the provider."""

    CREATED = "created"        # created; the provider has said nothing of it yet
    WAITING = "waiting"
    QUEUING = "queuing"
    GENERATING = "generating"
    SUCCESS = "success"
    FAIL = "fail"
    UNKNOWN = "unknown"        # a word the provider does not document: treated as in progress


@dataclass(frozen=True, slots=True)
class TaskInfo:
    """What the provider says of one task (every text already cleaned)."""

    task_id: str
    state: TaskState
    word: str = ""                       # the provider's own word for the state, for the log
    result_urls: tuple[str, ...] = ()
    fail_code: str | None = None
    fail_msg: str | None = None
    retryable: bool = False              # a failure that may go the other way if tried again
    credits: Decimal | None = None       # what the task cost, when the provider says
    seconds: float | None = None         # how long it took, by the provider's clock, when it says


@dataclass(frozen=True, slots=True)
class FileStream:
    start: int                  # the byte the chunks begin at (0 when the host ignored Range)
    total: int | None           # the whole file's length, when the host says
    content_type: str
    chunks: AsyncIterator[bytes]
    decoded: bool = False       # the host compressed it although it was asked not to


class Provider(Protocol):
    async def create(self, request: dict[str, Any]) -> str:
        """Create a task; its id. Not idempotent: a Transient with `maybe_sent` may have made one."""
        ...

    async def status(self, task_id: str) -> TaskInfo: ...

    async def fresh_link(self, url: str) -> str:
        """A new link to a result whose link expired."""
        ...

    async def upload(self, data: bytes, name: str) -> str:
        """Put an image where the provider can fetch it; its URL."""
        ...

    async def credits(self) -> Decimal: ...

    def open_file(self, url: str, offset: int = 0) -> AbstractAsyncContextManager[FileStream]:
        """A result file's bytes, from `offset` where the host allows it."""
        ...

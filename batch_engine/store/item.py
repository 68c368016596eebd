"""One item's record: the one definition of what the ledger knows of an item.

The schema is also the check and the format: a line read back from the ledger (which is input too:
a user or another tool may have edited it) becomes an `Item` only through `from_builtins`, which
checks every type, the id and the video's name, or says why not.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

import msgspec

from batch_engine.ids import unsafe_id_reason
from batch_engine.states import State

Count = Annotated[int, msgspec.Meta(ge=0, le=1_000_000)]
Credits = Annotated[float, msgspec.Meta(ge=0, le=1e12)]


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


class Media(msgspec.Struct, frozen=True):
    """What the decoded video is (`media.probe`)."""

    duration: Annotated[float, msgspec.Meta(ge=0, le=1e6)]  # seconds
    width: Annotated[int, msgspec.Meta(ge=0, le=100_000)]
    height: Annotated[int, msgspec.Meta(ge=0, le=100_000)]
    codec: Annotated[str, msgspec.Meta(max_length=40)]
    fps: Annotated[float, msgspec.Meta(ge=0, le=10_000)]


class Item(msgspec.Struct, kw_only=True, omit_defaults=True):
    """What the ledger knows of one item. Only `Ledger.apply` changes it (see `store.changes`)."""

    id: str
    request: dict[str, Any]      # the createTask body (model + input), enough to make the item again
    fingerprint: str             # digest of `request`: tells an edited manifest item apart
    state: State                 # always written: a reader of the ledger sees it on every line
    task_id: str | None = None
    attempts: Count = 0          # create requests that made, or may have made, a task
    fail_code: str | None = None
    fail_msg: str | None = None
    provider_state: str | None = None  # the provider's last word on the task (its own text)
    result_url: str | None = None
    video: str | None = None     # file name of the verified video: always `<id>.mp4`
    size: Count | None = msgspec.field(default=None, name="bytes")  # the video's length in bytes
    sha256: str | None = None
    media: Media | None = None   # duration, size, codec and frame rate of the decoded video
    flags: list[str] | None = None  # how the video differs from what was asked (for the reviewer)
    unanswered_creates: Count = 0  # creates sent whose answer never came (possibly paid twice)
    retryable: bool | None = None  # a failure that may go the other way if tried again
    credits: Credits | None = None  # what the provider says the task cost
    history: list[dict[str, Any]] | None = None  # earlier results of an item made again (`redo`)
    created_at: str = msgspec.field(default_factory=now_iso)
    submitted_at: str | None = None  # when the last create went out
    finished_at: str | None = None
    updated_at: str = msgspec.field(default_factory=now_iso)

    def __post_init__(self) -> None:
        if why := unsafe_id_reason(self.id):
            raise ValueError(f"id {self.id[:60]!r} {why}")
        if self.video is not None and self.video != f"{self.id}.mp4":
            raise ValueError(f"video {self.video[:60]!r} is not {self.id[:60]}.mp4")

    def to_line(self) -> bytes:
        """The whole record as one JSON line (without the newline)."""
        return msgspec.json.encode(self)

    def to_builtins(self) -> dict[str, Any]:
        """The record as JSON-ready values, named as in the ledger."""
        record: dict[str, Any] = msgspec.to_builtins(self)
        return record


def video_name(item_id: str) -> str:
    """The one name a verified video of `item_id` has."""
    return f"{item_id}.mp4"


def from_builtins(record: Any) -> Item | str:
    """The Item a decoded ledger record describes, or why it cannot be one."""
    try:
        return msgspec.convert(record, Item)
    except msgspec.ValidationError as e:
        return str(e)[:200]




def parse_time(stamp: str | None) -> float | None:
    """The Unix time of a time read from a ledger (None when there is none, or it is not one)."""
    try:
        return datetime.fromisoformat(stamp).timestamp() if stamp else None
    except ValueError:
        return None

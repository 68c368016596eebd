"""Items at rest: kept on disk, not in memory.

Most of a large ledger is items that succeeded in an earlier run and whose whole record is one
line. A run needs a few of their fields (to see the video is still there, to compare the
manifest's fingerprint, to count recent creates) and nothing more, unless it works on one again
(its video went missing, its manifest entry was edited, `redo`). Such an item is loaded as a
`Resting`: those fields and where its line is; `Ledger.thaw` reads the line again and makes the
full `Item` when the run works on it, and compaction copies untouched lines as they are. Held
whole, a realistic record took about 2.5 KB; at rest, about 0.4 KB.
"""

from __future__ import annotations

from typing import ClassVar

import msgspec
from msgspec import UNSET, UnsetType

from batch_engine.states import State
from batch_engine.store.item import written_before
from batch_engine.store.lines import problem


class Head(msgspec.Struct, gc=False):
    """What loading decodes of every line to tell an item at rest (the other fields are skipped
    here, and checked when the item is thawed)."""

    id: str
    state: str
    request: msgspec.Raw | UnsetType = UNSET
    fingerprint: str | None | UnsetType = UNSET
    video: str | None = None
    bytes: int | None = None
    result_url: str | None = None
    attempts: int | None = None
    submitted_at: str | None = None


def may_rest(head: Head) -> bool:
    """Whether a line, on its own, is a whole record of a succeeded item with its video (and
    passes the checks `lines.problem` makes of an item's first line)."""
    return head.state == "succeeded" and head.video is not None and problem(head, first=True) is None


class Resting(msgspec.Struct, gc=False):
    """A succeeded item whose record is the line at `offset` (`length` bytes, no newline) of the
    ledger as loaded. Read like an `Item` by planning, the create gate and the summary (but for
    `refetchable`, which stands for the result URL)."""

    id: str
    fingerprint: str | None
    bytes: int | None
    refetchable: bool          # it has a result URL (kept on disk): a lost video can be fetched again
    attempts: int | None
    submitted_at: str | None   # only when sent within MAX_WINDOW: older creates fall in no window
    offset: int
    length: int
    state: ClassVar[State] = State.SUCCEEDED

    @property
    def video(self) -> str:
        return f"{self.id}.mp4"  # a record's video is checked on loading: always this name

    @classmethod
    def of(cls, head: Head, offset: int, length: int, long_ago: str) -> "Resting":
        """`long_ago`: a time as the engine writes times (`item.iso_at`) the longest create
        window (`config.MAX_WINDOW`, a day) before now: a create sent before it counts against
        no window, and its time is not kept (a sixth of the memory of an item at rest)."""
        sent = head.submitted_at
        if sent is not None and written_before(sent, long_ago):
            sent = None
        return cls(head.id, head.fingerprint, head.bytes, bool(head.result_url), head.attempts,
                   sent, offset, length)


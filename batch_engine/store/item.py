"""What the ledger knows of one item, and the check every record read back must pass: the
ledger is input too (a user or another tool may have edited it)."""

from __future__ import annotations

import re

import orjson
from dataclasses import dataclass, field, fields
from datetime import datetime, timezone
from typing import Any

from batch_engine.ids import unsafe_id_reason
from batch_engine.states import State


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


@dataclass(slots=True)
class Item:
    """What the ledger knows of one item. Only `Ledger.advance` changes `state`."""

    id: str
    request: dict[str, Any]     # the createTask body (model + input), enough to re-run the item
    fingerprint: str            # digest of `request`: tells an edited manifest item apart
    state: State = State.PENDING
    task_id: str | None = None
    attempts: int = 0           # create requests that made, or may have made, a task
    fail_code: str | None = None
    fail_msg: str | None = None
    provider_state: str | None = None
    result_url: str | None = None
    video: str | None = None    # file name inside the output folder
    bytes: int | None = None
    sha256: str | None = None
    unanswered_creates: int = 0  # creates sent whose answer never came (possibly paid twice)
    retryable: bool | None = None  # a failure that may go the other way if tried again
    credits: float | None = None   # what the provider says the task cost (creditsConsumed)
    history: list | None = None    # earlier results of an item made again on purpose (`redo`)
    created_at: str = field(default_factory=now_iso)
    submitted_at: str | None = None  # when the last create went out
    finished_at: str | None = None
    updated_at: str = field(default_factory=now_iso)

    def to_line(self) -> bytes:
        """The whole record as one JSON line's bytes; fields that are None are left out (they
        read back as None)."""
        return orjson.dumps({name: value for name in _FIELD_NAMES if (value := getattr(self, name)) is not None})

    def to_json(self) -> str:
        return self.to_line().decode()

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Item":
        try:
            item = cls(**data)
        except TypeError:  # a field this version does not know: leave it out
            item = cls(**{k: v for k, v in data.items() if k in _FIELDS})
        item.state = STATE_OF[item.state]
        return item

    def apply(self, change: dict[str, Any]) -> None:
        """Replay one change line (already checked by `record_problem`)."""
        state = STATE_OF[change["state"]]
        for name, value in change.items():
            if name in _FIELDS:
                setattr(self, name, value)
        self.state = state


STATE_OF: dict[str, State] = {str(state): state for state in State}  # a dict is faster than State(x)
_FIELD_NAMES = tuple(f.name for f in fields(Item))
_FIELDS = frozenset(_FIELD_NAMES)


_TYPES: dict[str, tuple[type, ...]] = {
    "id": (str,), "request": (dict,), "fingerprint": (str,), "state": (str,), "task_id": (str,),
    "attempts": (int,), "fail_code": (str,), "fail_msg": (str,), "provider_state": (str,),
    "result_url": (str,), "video": (str,), "bytes": (int,), "sha256": (str,),
    "unanswered_creates": (int,), "retryable": (bool,), "credits": (int, float), "history": (list,), "created_at": (str,),
    "submitted_at": (str,), "finished_at": (str,), "updated_at": (str,)}
_REQUIRED = ("id", "request", "fingerprint", "state")
# ids that unsafe_id_reason would accept, recognised without looking at each character's category
PLAIN_ID = re.compile(r"(?!(?i:(con|prn|aux|nul|com[0-9]|lpt[0-9])(\..*)?$))(?!.*\.\.)"
                       r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,199}(?<!\.)")


def record_problem(record: Any, first: bool) -> str | None:
    """Why a ledger record cannot be used (None: it can). `first`: the item's whole record."""
    if not isinstance(record, dict):
        return "not a JSON object"
    item_id = record.get("id")
    if not isinstance(item_id, str):
        return "no text id"
    if problem := id_problem(item_id):
        return problem
    # the names and the types of the values decide the next checks: a ledger has a handful of
    # shapes, and a shape found good needs no second look (one loop over the fields of each of
    # 100,000 records took a third of a second)
    shape = (first, tuple(record), tuple(map(type, record.values())))
    if shape not in _GOOD_SHAPES:
        if problem := _shape_problem(record, first):
            return problem
        if len(_GOOD_SHAPES) < 1000:
            _GOOD_SHAPES.add(shape)
    return state_and_video_problem(item_id, record["state"], record.get("video"))


def id_problem(item_id: str) -> str | None:
    """Why a record's id cannot name a file (plain ids are told by a regular expression first)."""
    if not PLAIN_ID.fullmatch(item_id) and (reason := unsafe_id_reason(item_id)):
        return f"id {item_id[:60]!r} {reason}"
    return None


def state_and_video_problem(item_id: str, state: Any, video: Any) -> str | None:
    """Why a record's state or video name cannot be used (the video is always `<id>.mp4`)."""
    if state not in STATE_OF:
        return f"unknown state {str(state)[:40]!r}"
    if video is not None and video != f"{item_id}.mp4":
        return f"video {str(video)[:60]!r} is not {item_id}.mp4"
    return None


def written_before(stamp: str, cutoff: str) -> bool:
    """Whether `stamp`, a time as `now_iso` writes it (UTC, milliseconds), is earlier than
    `cutoff` (`iso_at`): told by comparing the text, not parsing it. False for any other format."""
    return len(stamp) == len(cutoff) and stamp.endswith("+00:00") and stamp < cutoff


def iso_at(seconds: float) -> str:
    """A Unix time as `now_iso` writes times."""
    return datetime.fromtimestamp(seconds, timezone.utc).isoformat(timespec="milliseconds")


def parse_time(stamp: str | None) -> float | None:
    """The Unix time of a time read from a ledger (None when there is none, or it is not one)."""
    try:
        return datetime.fromisoformat(stamp).timestamp() if stamp else None
    except ValueError:
        return None


_GOOD_SHAPES: set[tuple[bool, tuple[str, ...], tuple[type, ...]]] = set()


def _shape_problem(record: dict[str, Any], first: bool) -> str | None:
    for name in _REQUIRED if first else ("state",):
        if name not in record:
            return f"{name} missing"
    for name, value in record.items():
        kinds = _TYPES.get(name)
        if kinds is None or value is None or type(value) in kinds:
            continue  # a field of another version, a field cleared, or the right type exactly
        if not isinstance(value, kinds) or (kinds == (int,) and isinstance(value, bool)):
            return f"{name} is {type(value).__name__}"
    return None

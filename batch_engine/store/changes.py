"""Every change the engine makes to an item's record, by name: the state it moves to and the fields
it sets. `Ledger.apply` checks the move against the state table, sets the fields and records the
change. Nothing else writes a record, so what each event clears or keeps is said here once.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from batch_engine.states import State
from batch_engine.store.item import Item, Media, now_iso

# what a task's result leaves in a record; cleared when the item is made again
_RESULT = {"task_id": None, "provider_state": None, "result_url": None, "video": None, "size": None,
           "sha256": None, "media": None, "flags": None, "fail_code": None, "fail_msg": None, "retryable": None,
           "finished_at": None}
_NO_FAILURE = {"fail_code": None, "fail_msg": None, "retryable": None}


@dataclass(frozen=True, slots=True)
class Change:
    name: str
    state: State
    fields: dict[str, Any]


def sending(item: Item) -> Change:
    """A create is about to leave: counted before it can reach the provider."""
    return Change("sending", State.SUBMITTING, {"attempts": item.attempts + 1, "fail_code": None,
                                                "fail_msg": None, "submitted_at": now_iso()})


def unanswered(item: Item, state: State = State.SUBMITTING) -> Change:
    """A create that may have reached the provider was never answered (it will be sent again)."""
    return Change("unanswered", state, {"unanswered_creates": item.unanswered_creates + 1})


def not_sent(item: Item) -> Change:
    """The create made no task (429, a refused account): it does not count as an attempt."""
    return Change("not_sent", State.PENDING, {"attempts": max(item.attempts - 1, 0)})


def created(task_id: str) -> Change:
    return Change("created", State.RUNNING, {"task_id": task_id, "provider_state": "created",
                                             "submitted_at": now_iso()})


def progressed(provider_state: str) -> Change:
    """The provider's word on a running task changed."""
    return Change("progressed", State.RUNNING, {"provider_state": provider_state})


def generated(url: str, credits: Decimal | None) -> Change:
    """The task succeeded: its video is at `url`."""
    fields: dict[str, Any] = {"provider_state": "success", "result_url": url}
    if credits is not None:
        fields["credits"] = float(credits)
    return Change("generated", State.DOWNLOADING, fields)


def succeeded(size: int, sha256: str, video: str, media: Media | None = None, flags: list[str] | None = None) -> Change:
    return Change("succeeded", State.SUCCEEDED, {"video": video, "size": size, "sha256": sha256, "media": media,
                                                 "flags": flags or None, **_NO_FAILURE, "finished_at": now_iso()})


def failed(code: str, message: str, *, retryable: bool | None, provider_state: str | None = None,
           **more: Any) -> Change:
    fields = {"fail_code": code, "fail_msg": message, "retryable": retryable, "finished_at": now_iso(), **more}
    if provider_state is not None:
        fields["provider_state"] = provider_state
    return Change("failed", State.FAILED, fields)


def remade(request: dict[str, Any], fingerprint: str) -> Change:
    """Its manifest entry changed: made again from the new request."""
    return Change("remade", State.PENDING, {**_RESULT, "request": request, "fingerprint": fingerprint})


def redone(item: Item, request: dict[str, Any], fingerprint: str) -> Change:
    """Made again on purpose (`redo`): the earlier result goes into its history."""
    earlier = {"task_id": item.task_id, "sha256": item.sha256, "finished_at": item.finished_at,
               "prompt": item.request.get("input", {}).get("prompt"), "credits": item.credits}
    return Change("redone", State.PENDING, {**_RESULT, "credits": None, "request": request,
                                            "fingerprint": fingerprint, "history": [*(item.history or []), earlier]})


def refetch() -> Change:
    """Its video is gone or damaged: downloaded again from the task's result."""
    return Change("refetch", State.DOWNLOADING, {})


def recreate() -> Change:
    """Its video is gone and no result link is known: created again."""
    return Change("recreate", State.PENDING, {})


def reopened_download() -> Change:
    """`retry` of a failed download: the task succeeded, fetched again without a new task."""
    return Change("reopened_download", State.DOWNLOADING, dict(_NO_FAILURE))


def reread() -> Change:
    """`retry` of a task that succeeded but whose answer could not be read: asked again."""
    return Change("reread", State.RUNNING, dict(_NO_FAILURE))


def reopened_create() -> Change:
    """`retry` of a task that failed: created anew."""
    return Change("reopened_create", State.PENDING, {"task_id": None, "provider_state": None, "retryable": None})

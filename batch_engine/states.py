"""An item's life: one enum, one transition table, one function that checks it."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from enum import StrEnum


class State(StrEnum):
    PENDING = "pending"          # known, no task created yet
    SUBMITTING = "submitting"    # a create may be on the wire; its answer is not recorded yet
    RUNNING = "running"          # task created at the provider, waiting for it to finish
    DOWNLOADING = "downloading"  # the provider succeeded; the video is not on disk yet
    SUCCEEDED = "succeeded"      # <id>.mp4 is on disk and verified
    FAILED = "failed"            # the provider, the file host or our checks said no


TERMINAL = frozenset({State.SUCCEEDED, State.FAILED})      # nothing more happens without a new run's say
TO_CREATE = frozenset({State.PENDING, State.SUBMITTING})   # a create is (still) to be sent
IN_FLIGHT = frozenset({State.RUNNING, State.DOWNLOADING})  # a task exists; its video is not on disk yet

_ALLOWED: dict[State, frozenset[State]] = {
    State.PENDING: frozenset({State.PENDING, State.SUBMITTING, State.FAILED}),
    State.SUBMITTING: frozenset({State.SUBMITTING, State.PENDING, State.RUNNING, State.FAILED}),
    State.RUNNING: frozenset({State.RUNNING, State.DOWNLOADING, State.FAILED, State.PENDING}),
    State.DOWNLOADING: frozenset({State.DOWNLOADING, State.SUCCEEDED, State.FAILED, State.PENDING}),
    State.SUCCEEDED: frozenset({State.PENDING, State.DOWNLOADING}),
    State.FAILED: frozenset({State.PENDING, State.DOWNLOADING, State.RUNNING}),
}


class IllegalTransition(RuntimeError):
    """A bug: some code tried to move an item along an edge the table does not have."""


def check_transition(item_id: str, old: State, new: State) -> None:
    if new not in _ALLOWED[old]:
        raise IllegalTransition(f"item {item_id!r}: {old} -> {new} is not allowed")


def state_counts(states: Iterable[State]) -> dict[str, int]:
    """How many of each state, every state named (scripts read `counts` from status --json)."""
    found = Counter(states)
    return {str(state): found.get(state, 0) for state in State}

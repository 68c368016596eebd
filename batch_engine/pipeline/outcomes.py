"""What to do after each answer: small pure decisions, one per stage, unit-tested without sockets.

The stages do the I/O (send, record, sleep, hand on); these functions only look at what came back
(an exception of the engine's own family, or the provider's word on a task) and say what follows.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum

from batch_engine.errors import (
    AccountRefused,
    FileUnavailable,
    KieError,
    Maintenance,
    RateLimited,
    Stalled,
    TaskFailed,
    TaskUnknown,
    Transient,
)
from batch_engine.pacing.policy import CREATE, PAUSES, POLL, TASK_UNKNOWN, Pauses, Retry
from batch_engine.provider.base import TaskInfo, TaskState
from batch_engine.states import State


# -- after a create ---------------------------------------------------------------------------
class AfterCreate(StrEnum):
    FOLLOW = "follow"    # a task was made: record its id and follow it
    AGAIN = "again"      # no task (or maybe one): send again after `wait`
    STOP = "stop"        # the account was refused: leave the item pending, create nothing more
    FAIL = "fail"        # the provider refused this item's request
    LEAVE = "leave"      # failed too often in a row: leave it for the next run


@dataclass(frozen=True, slots=True)
class CreateOutcome:
    next: AfterCreate
    state: State                    # what the ledger records now
    counted: bool = True            # the attempt counts: a task was, or may have been, made
    wait: float = 0.0               # seconds before sending again
    pause_all: float | None = None  # every create waits this long (maintenance)
    maybe_paid: bool = False        # sent, never answered: may have made a task
    code: str | None = None
    message: str | None = None
    retryable: bool | None = None   # FAIL: whether trying again may succeed


def after_create(error: KieError | None, failures: int, *, scale: float = 1.0,
                 retry: Retry = CREATE, pauses: Pauses = PAUSES) -> CreateOutcome:
    """`error` is what the create raised (None: it made a task); `failures` counts the transient
    failures of this item in a row, this one included."""
    if error is None:
        return CreateOutcome(AfterCreate.FOLLOW, State.RUNNING)
    if isinstance(error, RateLimited):
        return CreateOutcome(AfterCreate.AGAIN, State.PENDING, counted=False)
    if isinstance(error, AccountRefused):
        return CreateOutcome(AfterCreate.STOP, State.PENDING, counted=False)
    if not isinstance(error, Transient):
        return CreateOutcome(AfterCreate.FAIL, State.FAILED, counted=False, code=str(error.code),
                             message=f"create rejected: {error.message}",
                             retryable=error.retryable)
    pause = None
    if isinstance(error, Maintenance):
        pause = error.retry_after or pauses.maintenance * scale
    state = State.SUBMITTING if error.maybe_sent else State.PENDING
    if retry.exhausted(failures):
        code = "unanswered_create" if error.maybe_sent else str(error.code)
        return CreateOutcome(AfterCreate.LEAVE, state, counted=error.maybe_sent, pause_all=pause,
                             maybe_paid=error.maybe_sent, code=code, message=error.message)
    return CreateOutcome(AfterCreate.AGAIN, state, counted=error.maybe_sent, pause_all=pause,
                         maybe_paid=error.maybe_sent, wait=retry.delay(failures, scale),
                         message=error.message)


# -- after a poll (or a callback) ---------------------------------------------------------------
class AfterPoll(StrEnum):
    DOWNLOAD = "download"  # the task succeeded: fetch its video
    FAIL = "fail"          # the task failed (or succeeded with nothing to fetch)
    WAIT = "wait"          # still in progress: look again later
    SLOW_DOWN = "slow"     # the poll was refused (429): every poll slows down
    STOP_ALL = "stop"      # the account was refused: stop the run
    RETRY = "retry"        # the poll failed: try again after `wait`


@dataclass(frozen=True, slots=True)
class PollOutcome:
    next: AfterPoll
    provider_state: str | None = None
    url: str | None = None
    code: str | None = None
    message: str | None = None
    wait: float = 0.0
    undocumented: bool = False      # a state the provider does not document (treated as in progress)
    retryable: bool | None = None   # FAIL: whether trying again may succeed
    credits: Decimal | None = None  # DOWNLOAD: what the task cost, when the provider says


def after_task_info(info: TaskInfo) -> PollOutcome:
    """What the provider's word on a task means for its item."""
    if info.state is TaskState.SUCCESS:
        if not info.result_urls:  # never created again: `retry` reads the record once more
            return PollOutcome(AfterPoll.FAIL, TaskState.SUCCESS, code="no_result", retryable=True,
                               message="the task succeeded without a readable result URL; `batch-engine "
                                       "retry` reads its record again (the task is not created again)")
        return PollOutcome(AfterPoll.DOWNLOAD, TaskState.SUCCESS, url=info.result_urls[0], credits=info.credits)
    if info.state is TaskState.FAIL:
        return PollOutcome(AfterPoll.FAIL, TaskState.FAIL, code=info.fail_code or "fail",
                           message=info.fail_msg or "the provider reported the task failed",
                           retryable=info.retryable)
    return PollOutcome(AfterPoll.WAIT, info.word or info.state, undocumented=info.state is TaskState.UNKNOWN)


def after_poll_error(error: KieError, *, age: float, errors: int, task_id: str | None,
                     scale: float = 1.0, pauses: Pauses = PAUSES) -> PollOutcome:
    """A poll raised `error`; the task is `age` seconds old and this is its `errors`-th failed
    poll in a row."""
    if isinstance(error, AccountRefused):
        return PollOutcome(AfterPoll.STOP_ALL)
    if isinstance(error, RateLimited):
        return PollOutcome(AfterPoll.SLOW_DOWN, message=error.message)
    if isinstance(error, TaskFailed):
        return PollOutcome(AfterPoll.FAIL, TaskState.FAIL, code=str(error.code), retryable=True,
                           message=f"the task failed: {error.message}")
    if isinstance(error, TaskUnknown):
        if age > pauses.unknown_grace * scale:
            return PollOutcome(AfterPoll.FAIL, code="task_unknown",
                               message=f"the provider does not know task {task_id}: {error.message}")
        return PollOutcome(AfterPoll.RETRY, wait=TASK_UNKNOWN.delay(errors, scale))
    return PollOutcome(AfterPoll.RETRY, wait=POLL.delay(errors, scale), message=error.message)


# -- after a download try -------------------------------------------------------------------------
class AfterDownload(StrEnum):
    REFRESH = "refresh"  # the link was refused: ask download-url for a fresh one, then try again
    RETRY = "retry"      # try again (resuming with Range) after a back-off


def after_download_error(error: KieError, *, progressed: bool, failures: int) -> tuple[AfterDownload, int]:
    """The next step, and the failures counted so far: a try that got further than the last one
    (resumed with Range) is not a failure."""
    if isinstance(error, FileUnavailable):
        return AfterDownload.REFRESH, failures + 1
    if isinstance(error, Stalled):  # a trickle progresses a little every time: it still counts
        return AfterDownload.RETRY, failures + 1
    return AfterDownload.RETRY, failures if progressed else failures + 1


def download_exhausted(failures: int, tries: int, limit: int) -> bool:
    """Tries without progress are bounded by `limit`; all tries together by four times that."""
    return failures >= limit or tries >= 4 * limit

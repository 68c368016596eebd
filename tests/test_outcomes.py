"""The decisions after each answer, without sockets or an event loop."""

from __future__ import annotations

import pytest

from batch_engine.errors import (
    AccountRefused,
    BadVideo,
    FileUnavailable,
    Maintenance,
    RateLimited,
    Rejected,
    TaskUnknown,
    Transient,
)
from batch_engine.pacing.policy import CREATE, PAUSES
from batch_engine.pipeline.outcomes import (
    AfterCreate,
    AfterDownload,
    AfterPoll,
    after_create,
    after_download_error,
    after_poll_error,
    after_task_info,
    download_exhausted,
)
from batch_engine.provider.base import TaskInfo, TaskState
from batch_engine.states import State


def test_a_made_task_is_followed():
    assert after_create(None, 0).next is AfterCreate.FOLLOW


@pytest.mark.parametrize("error, nxt, state, counted", [
    (RateLimited("429", code=429), AfterCreate.AGAIN, State.PENDING, False),
    (AccountRefused("402", code=402), AfterCreate.STOP, State.PENDING, False),
    (Rejected("422", code=422), AfterCreate.FAIL, State.FAILED, False),
    (Transient("503", code=503), AfterCreate.AGAIN, State.PENDING, False),
    (Transient("no answer", code="no_answer", maybe_sent=True), AfterCreate.AGAIN, State.SUBMITTING, True),
])
def test_each_create_error_has_one_outcome(error, nxt, state, counted):
    """Nothing made: the attempt is not counted; maybe made: it is, and stays `submitting`."""
    outcome = after_create(error, 1)
    assert (outcome.next, outcome.state, outcome.counted) == (nxt, state, counted)
    assert outcome.maybe_paid == counted


def test_maintenance_pauses_every_create():
    assert after_create(Maintenance("455", code=455), 1, scale=0.5).pause_all == PAUSES.maintenance * 0.5
    assert after_create(Maintenance("455", code=455, retry_after=7.0), 1).pause_all == 7.0


def test_transient_failures_give_up_after_the_policy_s_tries():
    """Below the limit the item is sent again after a back-off; at it, it is left for the next run."""
    assert after_create(Transient("503", code=503), CREATE.tries - 1).wait > 0
    last = after_create(Transient("503", code=503), CREATE.tries)
    assert last.next is AfterCreate.LEAVE and last.code == "503"
    unanswered = after_create(Transient("x", code="no_answer", maybe_sent=True), CREATE.tries)
    assert unanswered.code == "unanswered_create"


def info(word: str, **fields) -> TaskInfo:
    return TaskInfo(task_id="t", state=TaskState(word) if word in set(TaskState) else TaskState.UNKNOWN,
                    word=word, **fields)


def test_task_states():
    """success with a URL downloads it; success without one fails; fail carries the provider's
    reason; anything else waits, an undocumented state flagged."""
    assert after_task_info(info("success", result_urls=("https://f/v.mp4",))).url == "https://f/v.mp4"
    assert after_task_info(info("success")).code == "no_result"
    failed = after_task_info(info("fail", fail_code="501", fail_msg="nope"))
    assert (failed.next, failed.code, failed.message) == (AfterPoll.FAIL, "501", "nope")
    assert after_task_info(info("generating")).next is AfterPoll.WAIT
    assert after_task_info(info("rendering")).undocumented


def test_poll_errors():
    """Refused account stops all; 429 slows polling; an unknown task fails only after the grace."""
    assert after_poll_error(AccountRefused("x", code=401), age=1, errors=1, task_id="t").next is AfterPoll.STOP_ALL
    assert after_poll_error(RateLimited("x", code=429), age=1, errors=1, task_id="t").next is AfterPoll.SLOW_DOWN
    young = after_poll_error(TaskUnknown("null", code=422), age=10, errors=1, task_id="t")
    assert young.next is AfterPoll.RETRY and young.wait > 0
    old = after_poll_error(TaskUnknown("null", code=422), age=PAUSES.unknown_grace + 1, errors=9, task_id="t")
    assert (old.next, old.code) == (AfterPoll.FAIL, "task_unknown")


def test_download_errors_count_only_tries_without_progress():
    assert after_download_error(FileUnavailable("403", code=403), progressed=False, failures=0) == (AfterDownload.REFRESH, 1)
    assert after_download_error(BadVideo("short", code="short"), progressed=True, failures=2) == (AfterDownload.RETRY, 2)
    assert after_download_error(Transient("cut", code="x"), progressed=False, failures=2) == (AfterDownload.RETRY, 3)
    assert not download_exhausted(7, 10, 8) and download_exhausted(8, 10, 8) and download_exhausted(0, 32, 8)

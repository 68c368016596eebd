"""Answers become outcomes in one place: HTTP statuses and body codes alike."""

from __future__ import annotations

import email.utils

import pytest

from batch_engine.errors import AccountRefused, Maintenance, RateLimited, Rejected, TaskUnknown, Transient
from batch_engine.provider.answers import classify, parse_retry_after, task_info
from batch_engine.provider.base import TaskState


@pytest.mark.parametrize("status, body, kind", [
    (200, {"code": 200, "data": {}}, None),
    (429, {"code": 429, "msg": "slow down"}, RateLimited),
    (200, {"code": 429, "msg": "slow down"}, RateLimited),
    (200, {"code": 401, "msg": "bad key"}, AccountRefused),
    (402, None, AccountRefused),
    (200, {"code": 433}, AccountRefused),
    (200, {"code": 505}, AccountRefused),
    (200, {"code": 455}, Maintenance),
    (200, {"code": 422, "msg": "prompt too long"}, Rejected),
    (500, {"code": 500, "msg": "This field is required"}, Rejected),
    (200, {"code": 501, "msg": "generation failed"}, Rejected),
    (500, {"code": 500, "msg": "internal"}, Transient),
    (503, "<html>", Transient),
    (200, None, Transient),
])
def test_classify_status_and_body_codes_alike(status, body, kind):
    """Each documented code, as HTTP status or HTTP-200 body code, maps to one outcome."""
    outcome = classify(status, body)
    assert (outcome is None) if kind is None else type(outcome) is kind


def test_record_info_null_means_unknown_task():
    """recordInfo's 422 "recordInfo is null" is an unknown (maybe brand-new) task, not a rejection."""
    assert isinstance(classify(200, {"code": 422, "msg": "recordInfo is null"}, task_query=True), TaskUnknown)


def test_gateway_errors_on_create_may_have_created_a_task():
    """A 502/504 on create may hide a task; a plain 500 answer does not."""
    assert classify(502, None, creating=True).maybe_sent
    assert not classify(500, {"code": 500, "msg": "boom"}, creating=True).maybe_sent


def test_retry_after_seconds_and_http_date():
    """Retry-After is read as seconds or as an HTTP date, and capped."""
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after(email.utils.formatdate(1_000_030, usegmt=True), now=1_000_000) == pytest.approx(30)
    assert parse_retry_after("999999") == 300.0
    assert parse_retry_after("soon") is None and parse_retry_after(None) is None


def test_task_info_parses_result_json_string():
    """resultJson is a JSON string holding resultUrls; failCode is kept as text."""
    info = task_info({"taskId": "t1", "state": "success",
                      "resultJson": '{"resultUrls":["https://cdn.test/v.mp4"]}', "costTime": 1234}, "t1")
    assert info.result_urls == ("https://cdn.test/v.mp4",) and info.seconds == 1.234
    failed = task_info({"taskId": "t2", "state": "fail", "failCode": 501, "failMsg": "x"}, "t2")
    assert failed.fail_code == "501" and failed.result_urls == () and failed.state is TaskState.FAIL
    as_object = task_info({"taskId": "t3", "state": "SUCCESS",
                           "resultJson": {"resultUrls": ["https://cdn.test/3.mp4"]}}, "t3")
    assert as_object.state is TaskState.SUCCESS and as_object.result_urls == ("https://cdn.test/3.mp4",)
    odd = task_info({"state": "rendering", "costTime": -5, "createTime": 1e300}, "t5")
    assert odd.state is TaskState.UNKNOWN and odd.word == "rendering" and odd.seconds is None
    beside = task_info({"taskId": "t4", "state": "success", "resultUrls": ["https://cdn.test/4.mp4"]}, "t4")
    assert beside.result_urls == ("https://cdn.test/4.mp4",)

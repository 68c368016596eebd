"""The pure planner: ledger + manifest + the folder's file sizes -> what each item needs; no I/O."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from batch_engine.catalog.manifest import ItemSpec, fingerprint
from batch_engine.pipeline.plan import Step, changed_fields, plan_manifest, plan_redo, plan_retry, recent_creates
from batch_engine.states import State
from batch_engine.store.ledger import Item


def spec(n: int, prompt: str = "a watch") -> ItemSpec:
    return ItemSpec(id=f"sku-{n}", prompt=prompt, image_url=f"https://cdn.example.com/{n}.jpg")


def item(n: int, state: State, **fields) -> Item:
    request = spec(n).request()
    return Item(id=f"sku-{n}", request=request, fingerprint=fingerprint(request), state=state, **fields)


def test_every_state_maps_to_one_step():
    """New, edited, resumed, intact, lost and failed items each get the step the rules give."""
    known = {i.id: i for i in [
        item(1, State.PENDING), item(2, State.SUBMITTING, attempts=1), item(3, State.RUNNING, task_id="t3"),
        item(4, State.DOWNLOADING, task_id="t4", result_url="https://f/4"),
        item(5, State.SUCCEEDED, video="sku-5.mp4", size=10),
        item(6, State.SUCCEEDED, video="sku-6.mp4", size=10, result_url="https://f/6"),
        item(7, State.SUCCEEDED, video="sku-7.mp4", size=10),
        item(8, State.FAILED, fail_code="501"), item(9, State.RUNNING, task_id="t9")]}
    specs = [spec(n) for n in range(1, 9)] + [spec(9, "a watch in the rain"), spec(10)]
    files = {"sku-5.mp4": 10, "sku-6.mp4": 3}  # 6 is damaged, 7 is gone
    plan = plan_manifest(known, specs, files)
    steps = {d.item_id: d.step for d in plan.decisions}
    assert steps == {"sku-1": Step.CREATE, "sku-2": Step.CREATE, "sku-3": Step.POLL, "sku-4": Step.DOWNLOAD,
                     "sku-5": Step.SKIP, "sku-6": Step.REFETCH, "sku-7": Step.RECREATE,
                     "sku-8": Step.KEEP_FAILED, "sku-9": Step.REMAKE, "sku-10": Step.NEW}
    assert [d.item_id for d in plan.decisions] == [s.id for s in specs], "manifest order"
    remake = next(d for d in plan.decisions if d.step is Step.REMAKE)
    assert changed_fields(known["sku-9"].request, remake.request) == ("prompt",)
    assert remake.request == specs[8].request()
    assert plan.creates == 5  # 1, 2, 7, 9, 10 may each send a create
    assert plan.counts()[Step.SKIP] == 1


def test_planning_does_not_touch_the_items():
    """The planner only reads: the ledger's items are unchanged after it."""
    known = {"sku-1": item(1, State.FAILED, fail_code="501")}
    before = known["sku-1"].to_line()
    plan_manifest(known, [spec(1, "other")], {})
    plan_retry(known, {})
    assert known["sku-1"].to_line() == before


def test_retry_reopens_failures_from_the_ledger_alone():
    """retry: a failed download of a task that succeeded is downloaded again, a failed task is
    created anew; every other item resumes as it stands."""
    known = {i.id: i for i in [
        item(1, State.FAILED, task_id="t1", result_url="https://f/1", fail_code="download_failed"),
        item(2, State.FAILED, task_id="t2", fail_code="501"),
        item(3, State.SUCCEEDED, video="sku-3.mp4", size=5), item(4, State.RUNNING, task_id="t4")]}
    steps = [d.step for d in plan_retry(known, {"sku-3.mp4": 5}).decisions]
    assert steps == [Step.REOPEN_DOWNLOAD, Step.REOPEN_CREATE, Step.SKIP, Step.POLL]


def test_recent_creates_counts_only_the_current_window():
    """Creates inside the window are counted by age; an unanswered one as just now; old ones not."""
    now = datetime(2026, 1, 1, tzinfo=UTC)
    at = lambda seconds: (now - timedelta(seconds=seconds)).isoformat()
    items = [item(1, State.RUNNING, attempts=1, submitted_at=at(3)),
             item(2, State.SUBMITTING, attempts=1, submitted_at=at(4)),
             item(3, State.RUNNING, attempts=1, submitted_at=at(30)),
             item(4, State.PENDING)]
    assert recent_creates(items, now.timestamp(), 10.0) == [3.0, 0.0]
    ours = lambda seconds: (now - timedelta(seconds=seconds)).isoformat(timespec="milliseconds")
    items = [item(1, State.RUNNING, attempts=1, submitted_at=ours(9.5)),   # as the engine writes
             item(2, State.RUNNING, attempts=1, submitted_at=ours(10.5)),  # times: compared as text
             item(3, State.RUNNING, attempts=1, submitted_at=ours(11.5)),
             item(4, State.RUNNING, attempts=1, submitted_at=ours(3600))]
    assert recent_creates(items, now.timestamp(), 10.0) == [9.5]


def test_a_new_prompt_that_does_not_fit_its_model_is_refused_naming_the_item():
    """redo --prompt, and the desk's queue read back from decisions.jsonl (the folder's file), go
    through plan_redo: a prompt past the model's limit, blank, or with a control character makes
    nothing and names the item; one that fits is the new request's prompt."""
    known = {i.id: i for i in [item(1, State.SUCCEEDED, video="sku-1.mp4", size=10),
                               item(2, State.SUCCEEDED, video="sku-2.mp4", size=10)]}
    for bad, why in (("x" * 1501, "is 1501 characters; at most 1500"), (" ", "is empty"),
                     ("a\x1b[2Jb", "contains a control")):
        with pytest.raises(ValueError, match=f"sku-2: the new prompt {why}"):
            plan_redo(known, ["sku-1", "sku-2"], prompts={"sku-1": "a ring", "sku-2": bad})
        with pytest.raises(ValueError, match=r"sku-1: .*; sku-2: "):
            plan_redo(known, ["sku-1", "sku-2"], bad)
    plan = plan_redo(known, ["sku-1", "sku-2"], prompts={"sku-2": "a ring\nin the rain"})
    prompts = {d.item_id: d.request["input"]["prompt"] for d in plan.decisions}
    assert prompts == {"sku-1": "a watch", "sku-2": "a ring\nin the rain"}

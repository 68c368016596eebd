"""The ledger: replaying any prefix, torn last line included, gives a consistent state."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from batch_engine.states import IllegalTransition, State
from batch_engine.store.changes import Change
from batch_engine.store.ledger import LEDGER_NAME, Item, Ledger, LedgerLocked, read_ledger


def read_items(folder) -> dict[str, Item]:
    return read_ledger(folder).items


def move(ledger: Ledger, item: Item, state: State, **fields) -> None:
    ledger.apply(item, Change("test", state, fields))


def make(ledger: Ledger, item_id: str) -> Item:
    return ledger.add(Item(id=item_id, request={"model": "m", "input": {"prompt": item_id}}, fingerprint="f", state=State.PENDING))


def test_changes_survive_reopen(tmp_path):
    """Every change is on disk the moment `apply` returns; a reopened ledger sees it."""
    with Ledger(tmp_path) as ledger:
        item = make(ledger, "a")
        move(ledger, item, State.SUBMITTING, attempts=1)
        move(ledger, item, State.RUNNING, task_id="t-1")
        assert read_items(tmp_path)["a"].task_id == "t-1"
    with Ledger(tmp_path) as ledger:
        assert ledger.items["a"].state is State.RUNNING and ledger.items["a"].attempts == 1


def test_illegal_transition_is_refused(tmp_path):
    """The transition table is enforced in one place."""
    with Ledger(tmp_path) as ledger:
        item = make(ledger, "a")
        with pytest.raises(IllegalTransition):
            move(ledger, item, State.SUCCEEDED)


def test_second_run_on_the_same_folder_is_refused(tmp_path):
    """Two runs on one output folder: the second gets a clear error, the ledger is untouched."""
    with Ledger(tmp_path), pytest.raises(LedgerLocked, match="another batch-engine"):
        Ledger(tmp_path).open()


def _history(tmp_path, steps: int) -> bytes:
    path = tmp_path / LEDGER_NAME
    if path.exists():
        path.unlink()
    with Ledger(tmp_path) as ledger:
        items = [make(ledger, f"i{n}") for n in range(3)]
        path_of = [State.SUBMITTING, State.RUNNING, State.DOWNLOADING, State.SUCCEEDED]
        for step in range(steps):
            item = items[step % 3]
            order = path_of.index(item.state) + 1 if item.state in path_of else 0
            if order < len(path_of):
                move(ledger, item, path_of[order], task_id=f"t-{item.id}", attempts=item.attempts + 1)
    return path.read_bytes()


@settings(max_examples=60, deadline=None)
@given(steps=st.integers(0, 12), cut=st.floats(0, 1))
def test_any_prefix_replays_consistently(tmp_path_factory, steps, cut):
    """Cut the ledger anywhere (a torn last write): every item loads, in a state its history reached."""
    folder = tmp_path_factory.mktemp("ledger")
    full = _history(folder, steps)
    prefix = full[: int(len(full) * cut)]
    (folder / LEDGER_NAME).write_bytes(prefix)
    expected: dict[str, str] = {}
    for line in prefix.split(b"\n"):
        try:  # a line is whole exactly when it parses: each record ends with its closing brace
            record = json.loads(line)
        except ValueError:
            continue
        expected[record["id"]] = record["state"]
    with Ledger(folder) as ledger:  # loads, drops the torn line, compacts
        assert {k: str(v.state) for k, v in ledger.items.items()} == expected
        for item in ledger.items.values():  # and goes on from there
            if item.state is State.PENDING:
                move(ledger, item, State.SUBMITTING)
    reloaded = read_items(folder)
    assert set(reloaded) == set(expected)
    assert all(r.state is not State.PENDING for r in reloaded.values())
    assert (folder / LEDGER_NAME).read_bytes().endswith(b"\n") or not expected


_WHOLE = {"request": {"model": "m", "input": {}}, "fingerprint": "f", "state": "running", "task_id": "t",
          "attempts": 1, "created_at": "2026-11-30T00:00:00.000+00:00", "updated_at": "2026-11-30T00:00:00.000+00:00"}
_DAMAGE = [{"state": "teleported"}, {"bytes": "10"}, {"attempts": True}, {"credits": "x"}, {"attempts": -1},
           {"fail_msg": 5}, {"history": {}}, {"retryable": 1}, {"id": "../up"}, {"video": "other.mp4"},
           {"credits": 1e300}, {"request": "a text"}]


@pytest.mark.parametrize("damage", _DAMAGE)
def test_a_record_the_schema_refuses_is_kept_verbatim_and_its_item_left_alone(tmp_path, damage):
    """A line that fails the record's schema (a wrong type, a bad id or video name, a number out
    of range, an unknown state) damages its item: left out of the run, its lines written back
    as they were; the other items load."""
    bad = json.dumps({"id": "a", **_WHOLE, **damage})
    good = json.dumps({"id": "b", **_WHOLE})
    (tmp_path / LEDGER_NAME).write_text(bad + "\n" + good + "\n{not json\n")
    with Ledger(tmp_path) as ledger:
        assert set(ledger.items) == {"b"}
        assert set(ledger.damaged) == {damage.get("id", "a")}
        move(ledger, ledger.items["b"], State.DOWNLOADING, result_url="https://x/v.mp4")
    text = (tmp_path / LEDGER_NAME).read_text()
    assert bad in text and "{not json" in text
    assert read_items(tmp_path)["b"].state is State.DOWNLOADING


def test_a_renamed_field_keeps_its_name_in_the_ledger(tmp_path):
    """The record's `size` is written as `bytes` (the name scripts and earlier ledgers use)."""
    with Ledger(tmp_path) as ledger:
        item = make(ledger, "a")
        move(ledger, item, State.SUBMITTING)
        move(ledger, item, State.RUNNING, task_id="t")
        move(ledger, item, State.DOWNLOADING, result_url="https://x/a.mp4")
        move(ledger, item, State.SUCCEEDED, size=7, video="a.mp4")
        assert b'"bytes":7' in (tmp_path / LEDGER_NAME).read_bytes()
    assert b'"bytes":7' in (tmp_path / LEDGER_NAME).read_bytes()
    assert read_items(tmp_path)["a"].size == 7

"""The ledger: replaying any prefix, torn last line included, gives a consistent state."""

from __future__ import annotations

import json
import os

import pytest
from hypothesis import given, settings, strategies as st

from batch_engine.store.ledger import LEDGER_NAME, Item, Ledger, LedgerLocked, read_items
from batch_engine.states import IllegalTransition, State


def make(ledger: Ledger, item_id: str) -> Item:
    return ledger.add(Item(id=item_id, request={"model": "m", "input": {"prompt": item_id}}, fingerprint="f"))


def test_changes_survive_reopen(tmp_path):
    """Every change is on disk the moment `advance` returns; a reopened ledger sees it."""
    with Ledger(tmp_path) as ledger:
        item = make(ledger, "a")
        ledger.advance(item, State.SUBMITTING, attempts=1)
        ledger.advance(item, State.RUNNING, task_id="t-1")
        assert read_items(tmp_path)["a"].task_id == "t-1"
    with Ledger(tmp_path) as ledger:
        assert ledger.items["a"].state is State.RUNNING and ledger.items["a"].attempts == 1


def test_illegal_transition_is_refused(tmp_path):
    """The transition table is enforced in one place."""
    with Ledger(tmp_path) as ledger:
        item = make(ledger, "a")
        with pytest.raises(IllegalTransition):
            ledger.advance(item, State.SUCCEEDED)


def test_second_run_on_the_same_folder_is_refused(tmp_path):
    """Two runs on one output folder: the second gets a clear error, the ledger is untouched."""
    with Ledger(tmp_path):
        with pytest.raises(LedgerLocked, match="another batch-engine"):
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
                ledger.advance(item, path_of[order], task_id=f"t-{item.id}", attempts=item.attempts + 1)
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
                ledger.advance(item, State.SUBMITTING)
    reloaded = read_items(folder)
    assert set(reloaded) == set(expected)
    assert all(r.state is not State.PENDING for r in reloaded.values())
    assert (folder / LEDGER_NAME).read_bytes().endswith(b"\n") or not expected


@given(st.text(alphabet=st.sampled_from("abcCONPRNAUXLPTcom1.-_ /\\.é\x00"), max_size=12)
       | st.text(max_size=20))
@settings(max_examples=400, deadline=None)
def test_the_fast_id_check_never_accepts_what_the_full_rules_refuse(text):
    """Ledger loading accepts plain ids by a regular expression; anything it accepts, the
    manifest's full id rules accept too."""
    from batch_engine.ids import unsafe_id_reason
    from batch_engine.store.item import PLAIN_ID
    if PLAIN_ID.fullmatch(text):
        assert unsafe_id_reason(text) is None


_WHOLE = {"request": {"model": "m", "input": {}}, "fingerprint": "f", "state": "running", "task_id": "t",
          "attempts": 1, "created_at": "2026-11-30T00:00:00.000+00:00", "updated_at": "2026-11-30T00:00:00.000+00:00"}
_CHANGES = [{"state": "downloading", "result_url": "https://x/v.mp4", "credits": 12.5},
            {"state": "succeeded", "bytes": 10, "sha256": "ab", "finished_at": "2026-11-30T00:01:00+00:00"},
            {"state": "failed", "fail_code": "501", "fail_msg": "no\x1b[31m", "retryable": False},
            {"state": "pending", "task_id": None, "provider_state": None}]
_DAMAGE = [{"state": "teleported"}, {"bytes": "10"}, {"attempts": True}, {"credits": "x"},
           {"fail_msg": 5}, {"history": {}}, {"retryable": 1}, {"id": "../up"}, {"id": 7}]


@settings(max_examples=80, deadline=None)
@given(st.lists(st.tuples(st.sampled_from("abcde"), st.sampled_from(["whole", "change", "damage", "blank", "junk"]),
                          st.integers(0, 8)), max_size=25),
       st.booleans())
def test_status_reads_what_a_run_reads(tmp_path_factory, lines, torn):
    """status streams the ledger (`read_briefs`) instead of replaying it: for any mix of whole
    records, change lines, damaged lines, blank lines and junk, it shows exactly the items a run
    loads, each once, with the same fields."""
    from batch_engine.store.briefs import SHOWN, read_briefs
    folder = tmp_path_factory.mktemp("ledger")
    text = []
    for item_id, kind, n in lines:
        record = {"id": item_id, **_WHOLE} if kind == "whole" else {"id": item_id, **_CHANGES[n % 4]}
        if kind == "damage":
            record = {**record, **_DAMAGE[n]}
        if kind == "change" and n == 8:
            record["video"] = f"{item_id}.mp4"
        text.append("" if kind == "blank" else "{not json" if kind == "junk" else json.dumps(record))
    body = "\n".join(text) + ("" if torn else "\n")
    (folder / LEDGER_NAME).write_text(body)
    expected = {item_id: {name: str(item.state) if name == "state" else getattr(item, name) for name in SHOWN}
                for item_id, item in read_items(folder).items()}
    briefs = list(read_briefs(folder))
    assert len({b.id for b in briefs}) == len(briefs)
    assert {b.id: {name: getattr(b, name) for name in SHOWN} for b in briefs} == expected


def _succeeded(ledger: Ledger, item_id: str) -> Item:
    item = make(ledger, item_id)
    ledger.advance(item, State.SUBMITTING, attempts=1)
    ledger.advance(item, State.RUNNING, task_id=f"t-{item_id}")
    ledger.advance(item, State.DOWNLOADING, result_url=f"https://files.example/{item_id}.mp4")
    ledger.advance(item, State.SUCCEEDED, video=f"{item_id}.mp4", bytes=4, sha256="ab" * 32)
    return item


def test_items_at_rest_stay_on_disk_and_come_back_whole(tmp_path):
    """A reopened ledger holds its succeeded items at rest (a few fields, the line on disk); one
    the run works on again is read back whole; compaction copies the others' lines as they are."""
    from batch_engine.store.ledger import Resting
    with Ledger(tmp_path) as ledger:
        for item_id in ("a", "b", "c"):
            _succeeded(ledger, item_id)
        make(ledger, "d")
    before = (tmp_path / LEDGER_NAME).read_bytes().splitlines()
    with Ledger(tmp_path) as ledger:
        assert [type(i).__name__ for i in ledger.items.values()] == ["Resting", "Resting", "Resting", "Item"]
        resting = ledger.items["b"]
        assert isinstance(resting, Resting) and resting.video == "b.mp4" and resting.bytes == 4
        assert resting.refetchable and resting.state is State.SUCCEEDED
        b = ledger.thaw("b")
        assert b is not None and b.request == {"model": "m", "input": {"prompt": "b"}} and b.sha256 == "ab" * 32
        ledger.advance(b, State.DOWNLOADING)
        ledger.advance(b, State.SUCCEEDED, bytes=5)
    after = (tmp_path / LEDGER_NAME).read_bytes().splitlines()
    assert len(after) == 4 and after[0] == before[0] and after[2] == before[2] and after[3] == before[3]
    assert json.loads(after[1])["bytes"] == 5 and json.loads(after[1])["sha256"] == "ab" * 32
    with Ledger(tmp_path) as ledger:  # offsets noted after compaction: the lines read back right
        assert ledger.thaw("c").task_id == "t-c" and ledger.thaw("a").task_id == "t-a"  # type: ignore[union-attr]


def test_a_line_at_rest_found_unusable_when_thawed_is_kept_and_its_item_left_alone(tmp_path):
    """Loading checks only what an item at rest needs; the rest of its line is checked when it is
    thawed. Found wrong then, the item is left alone (damaged) and its line kept verbatim."""
    with Ledger(tmp_path) as ledger:
        _succeeded(ledger, "a")
        _succeeded(ledger, "b")
    path = tmp_path / LEDGER_NAME
    lines = path.read_bytes().splitlines()
    record = json.loads(lines[0])
    record["created_at"] = 5  # a type the full check refuses
    path.write_bytes(json.dumps(record).encode() + b"\n" + lines[1] + b"\n")
    with Ledger(tmp_path) as ledger:
        assert ledger.thaw("a") is None and "a" in ledger.damaged and "a" not in ledger.items
        b = ledger.thaw("b")
        assert b is not None
        ledger.advance(b, State.DOWNLOADING)
    text = path.read_text()
    assert '"created_at": 5' in text, "the unusable line is kept as it was"
    assert read_items(tmp_path).keys() == {"b"}


def test_items_at_rest_are_read_from_the_file_that_was_loaded(tmp_path):
    """Another tool replacing ledger.jsonl while a run holds it open cannot make an item at rest
    read someone else's line: its line is read from the file that was loaded."""
    with Ledger(tmp_path) as ledger:
        _succeeded(ledger, "a")
        _succeeded(ledger, "b")
    path = tmp_path / LEDGER_NAME
    with Ledger(tmp_path) as ledger:
        other = tmp_path / "other.jsonl"
        other.write_bytes(b'{"id": "zzz"}\n' * 50)
        os.replace(other, path)
        b = ledger.thaw("b")
        assert b is not None and b.id == "b" and b.task_id == "t-b"


@settings(max_examples=80, deadline=None)
@given(st.lists(st.tuples(st.sampled_from("abcd"), st.sampled_from(["done", "change", "bad"]), st.integers(0, 3)),
                max_size=12))
def test_a_run_loads_items_at_rest_as_a_full_replay_would(tmp_path_factory, lines):
    """Succeeded items held at rest (then changed, or damaged, in any order): a run's load has
    the same items in the same order and states as a full replay, and each comes back whole."""
    from batch_engine.store.ledger import read_ledger
    folder = tmp_path_factory.mktemp("ledger")
    text = []
    for item_id, kind, n in lines:
        done = {"id": item_id, **_WHOLE, "state": "succeeded", "video": f"{item_id}.mp4", "bytes": 3}
        record = done if kind == "done" else {"id": item_id, **_CHANGES[n]}
        if kind == "bad":
            record = {**done, **[{"bytes": "3"}, {"video": "x.mp4"}, {"state": "gone"}, {"attempts": None}][n]}
        text.append(json.dumps(record))
    (folder / LEDGER_NAME).write_text("".join(line + "\n" for line in text))
    full = read_items(folder)
    loaded = read_ledger(folder)
    assert list(loaded.items) == list(full)
    assert {i: str(item.state) for i, item in loaded.items.items()} == {i: str(item.state) for i, item in full.items()}
    with Ledger(folder) as ledger:
        for item_id, item in full.items():
            thawed = ledger.thaw(item_id)
            assert thawed is not None and thawed.to_json() == item.to_json()


def test_status_reads_the_ledger_as_it_was_when_it_began(tmp_path, caplog):
    """Lines a run appends between status's two passes are left for the next look: no item is
    shown twice, none is taken for damaged."""
    from batch_engine.store.briefs import read_briefs
    with Ledger(tmp_path) as ledger:
        _succeeded(ledger, "a")
        make(ledger, "b")
    briefs = read_briefs(tmp_path)  # the first pass is done here
    with open(tmp_path / LEDGER_NAME, "ab") as f:  # a run goes on meanwhile
        f.write(b'{"id":"a","state":"downloading"}\n{"id":"b","state":"submitting","attempts":1}\n'
                b'{"id":"c","request":{},"fingerprint":"f","state":"pending"}\n')
    shown = [(b.id, b.state) for b in briefs]
    assert shown == [("a", "succeeded"), ("b", "pending")]
    assert "left out" not in caplog.text
    assert [(b.id, b.state) for b in read_briefs(tmp_path)] == [("a", "downloading"), ("b", "submitting"),
                                                               ("c", "pending")]

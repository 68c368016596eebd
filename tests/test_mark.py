"""The compaction mark (.batch-engine.compact): status reads a compacted ledger in one pass, and
a mark that does not fit its ledger (stale, forged, for another file) changes nothing it shows."""

from __future__ import annotations

import json
import os
import shutil

from hypothesis import given, settings, strategies as st

from batch_engine.states import State
from batch_engine.store.briefs import SHOWN, read_briefs
from batch_engine.store.ledger import LEDGER_NAME, Item, Ledger, read_items
from batch_engine.store.mark import MARK_NAME, compact_length, write_mark

_WHOLE = {"request": {"model": "m", "input": {}}, "fingerprint": "f", "state": "running", "task_id": "t",
          "attempts": 1, "updated_at": "2026-11-30T00:00:00.000+00:00"}
_CHANGES = [{"state": "downloading", "result_url": "https://x/v.mp4"},
            {"state": "succeeded", "video": "{id}.mp4", "bytes": 10, "sha256": "ab"},
            {"state": "failed", "fail_code": "501", "fail_msg": "no", "retryable": False},
            {"state": "teleported"}, {"bytes": "ten"}]


def shown(folder) -> dict:
    briefs = list(read_briefs(folder))
    assert len({b.id for b in briefs}) == len(briefs), "an item shown twice"
    return {b.id: {name: getattr(b, name) for name in SHOWN} for b in briefs}


def replayed(folder) -> dict:
    return {item_id: {name: str(item.state) if name == "state" else getattr(item, name) for name in SHOWN}
            for item_id, item in read_items(folder).items()}


def mark(folder, length: int) -> None:
    fd = os.open(folder / LEDGER_NAME, os.O_RDONLY)
    try:
        write_mark(folder, fd, length)
    finally:
        os.close(fd)


def test_a_closed_ledger_is_marked_and_the_mark_follows_its_file(tmp_path):
    with Ledger(tmp_path) as ledger:
        for item_id in "abc":
            item = ledger.add(Item(id=item_id, request={"model": "m", "input": {}}, fingerprint="f"))
            ledger.advance(item, State.SUBMITTING, attempts=1)
    size = (tmp_path / LEDGER_NAME).stat().st_size
    fd = os.open(tmp_path / LEDGER_NAME, os.O_RDONLY)
    try:
        assert compact_length(tmp_path, fd, size) == size
    finally:
        os.close(fd)
    copy = tmp_path / "copy"
    copy.mkdir()
    shutil.copy(tmp_path / LEDGER_NAME, copy / LEDGER_NAME)  # another file: another inode
    shutil.copy(tmp_path / MARK_NAME, copy / MARK_NAME)
    fd = os.open(copy / LEDGER_NAME, os.O_RDONLY)
    try:
        assert compact_length(copy, fd, size) == 0
    finally:
        os.close(fd)
    with open(tmp_path / LEDGER_NAME, "r+b") as f:  # the same file edited in place near the mark's end
        f.seek(size - 3)
        f.write(b"X")
    fd = os.open(tmp_path / LEDGER_NAME, os.O_RDONLY)
    try:
        assert compact_length(tmp_path, fd, size) == 0
    finally:
        os.close(fd)


def test_a_mark_that_cannot_be_read_is_no_mark(tmp_path):
    with Ledger(tmp_path) as ledger:
        ledger.add(Item(id="a", request={"model": "m", "input": {}}, fingerprint="f"))
    size = (tmp_path / LEDGER_NAME).stat().st_size
    good = json.loads((tmp_path / MARK_NAME).read_text())
    fd = os.open(tmp_path / LEDGER_NAME, os.O_RDONLY)
    try:
        for text in ("", "not json", "[]", json.dumps({**good, "length": "1"}), json.dumps({**good, "length": size + 1}),
                     json.dumps({**good, "length": True}), json.dumps({**good, "tail": 5}), "[" * 100_000,
                     json.dumps({**good, "length": 0}), json.dumps({**good, "length": size - 1})):
            (tmp_path / MARK_NAME).write_text(text)
            assert compact_length(tmp_path, fd, size) == 0, text
    finally:
        os.close(fd)


@settings(max_examples=80, deadline=None)
@given(head=st.lists(st.sampled_from("abcdefgh"), unique=True, max_size=8),
       tail=st.lists(st.tuples(st.sampled_from("abcdefghij"), st.sampled_from(["whole", "change", "blank", "junk"]),
                               st.integers(0, 4)), max_size=12),
       torn=st.booleans())
def test_with_a_true_mark_status_still_reads_what_a_run_reads(tmp_path_factory, head, tail, torn):
    """A marked part of one whole line per item, then anything appended (changes, new items,
    damage, blank lines, junk, a torn end): status shows exactly what a run loads."""
    folder = tmp_path_factory.mktemp("ledger")
    head_text = "".join(json.dumps({"id": i, **_WHOLE}) + "\n" for i in head)
    lines = []
    for item_id, kind, n in tail:
        change = {k: v.format(id=item_id) if isinstance(v, str) else v for k, v in _CHANGES[n].items()}
        record = {"id": item_id, **_WHOLE} if kind == "whole" else {"id": item_id, **change}
        lines.append("" if kind == "blank" else "{not json" if kind == "junk" else json.dumps(record))
    body = head_text + "\n".join(lines) + ("" if torn or not lines else "\n")
    (folder / LEDGER_NAME).write_text(body)
    mark(folder, len(head_text.encode()))
    assert shown(folder) == replayed(folder)


@settings(max_examples=60, deadline=None)
@given(ids=st.lists(st.sampled_from("abcd"), min_size=1, max_size=10),
       kinds=st.lists(st.sampled_from(["whole", "change"]), min_size=10, max_size=10))
def test_a_forged_mark_over_repeated_lines_never_shows_an_item_twice(tmp_path_factory, ids, kinds):
    """A mark written over lines that repeat items (forged, or an in-place edit that kept the
    end of the marked part): no crash, no item twice, every item shown is one the ledger names."""
    folder = tmp_path_factory.mktemp("ledger")
    text = "".join(json.dumps({"id": i, **(_WHOLE if k == "whole" else _CHANGES[0])}) + "\n"
                   for i, k in zip(ids, kinds))
    (folder / LEDGER_NAME).write_text(text)
    mark(folder, len(text.encode()))
    assert set(shown(folder)) <= set(ids)


def test_status_of_a_run_going_on_after_a_mark(tmp_path):
    """A ledger marked at its last compaction, then appended to by a run: status sees the new
    lines (the marked items they change, and new items) as a full read does."""
    with Ledger(tmp_path) as ledger:
        for item_id in "abc":
            ledger.add(Item(id=item_id, request={"model": "m", "input": {}}, fingerprint="f"))
    with Ledger(tmp_path) as ledger:
        ledger.advance(ledger.items["b"], State.SUBMITTING, attempts=1)
        ledger.add(Item(id="d", request={"model": "m", "input": {}}, fingerprint="f"))
        assert (tmp_path / MARK_NAME).exists()
        assert shown(tmp_path) == replayed(tmp_path)
        assert shown(tmp_path)["b"]["state"] == "submitting" and "d" in shown(tmp_path)

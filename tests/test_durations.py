"""The folder's record of how long generations took (durations.jsonl): written, read back, and
never trusted beyond what it can do (a hint for the poll schedule)."""

from __future__ import annotations

import json
import os
import time

import pytest

from batch_engine.store.durations import DURATIONS_NAME, MAX_AGE, MAX_READ, RECENT, DurationBook, profile_of

PRO = profile_of({"model": "hailuo/02-image-to-video-pro", "input": {"prompt": "x"}})
STANDARD_6 = profile_of({"model": "hailuo/02-image-to-video-standard", "input": {"duration": "6", "resolution": "768P"}})


def test_the_profile_is_what_sets_a_generations_length():
    assert profile_of({"model": "hailuo/02-image-to-video-pro", "input": {"prompt": "other", "image_url": "u"}}) == PRO
    assert profile_of({"model": "hailuo/02-image-to-video-standard", "input": {"duration": "10"}}) != STANDARD_6
    assert profile_of({"model": "hailuo/02-image-to-video-standard",
                                     "input": {"duration": "6", "resolution": "512P"}}) != STANDARD_6
    assert profile_of({"model": "m", "input": "not an object"}) == profile_of({"model": "m"})


def test_recorded_durations_are_read_back_by_profile(tmp_path):
    book = DurationBook(tmp_path)
    for seconds in (150.0, 130.5, 170.25):
        book.record(PRO, seconds)
    book.record(STANDARD_6, 60.0)
    again = DurationBook(tmp_path).load()
    assert list(again.recent[PRO]) == [150.0, 130.5, 170.25]
    assert again.prior([PRO, PRO], least=3) == [150.0, 130.5, 170.25]
    assert again.prior([PRO], least=4) == []               # too few to lean on
    assert again.prior([PRO, STANDARD_6], least=2) == []   # one profile without enough: none at all
    assert sorted(again.prior([PRO, STANDARD_6], least=1)) == [60.0, 130.5, 150.0, 170.25]


def test_only_the_latest_of_a_profile_are_kept(tmp_path):
    book = DurationBook(tmp_path)
    for i in range(RECENT + 10):
        book.record(PRO, 100.0 + i)
    latest = [100.0 + i for i in range(10, RECENT + 10)]
    assert list(book.recent[PRO]) == latest                          # what the writer keeps
    assert list(DurationBook(tmp_path).load().recent[PRO]) == latest  # what a later run reads


def test_only_the_end_of_a_long_file_is_read(tmp_path):
    now = time.time()
    line = json.dumps({"profile": PRO, "seconds": 999.0, "at": now}) + "\n"
    recent = "".join(json.dumps({"profile": PRO, "seconds": 100.0 + i, "at": now}) + "\n" for i in range(5))
    (tmp_path / DURATIONS_NAME).write_text(line * (2 * MAX_READ // len(line)) + recent)
    book = DurationBook(tmp_path).load()
    assert list(book.recent[PRO])[-5:] == [100.0, 101.0, 102.0, 103.0, 104.0]
    assert len(book.recent[PRO]) == RECENT


def test_lines_that_cannot_be_used_are_skipped(tmp_path):
    now = time.time()
    good = {"profile": PRO, "seconds": 120.0, "at": now}
    bad = [b"not json", b"[1, 2]", b"", b"{\"profile\": 1, \"seconds\": 1, \"at\": 1}",
           b"\xff\xfe", b"[" * 100_000, json.dumps({**good, "seconds": "120"}).encode(),
           json.dumps({**good, "seconds": True}).encode(),
           json.dumps({**good, "seconds": 0}).encode(), json.dumps({**good, "seconds": -5}).encode(),
           json.dumps({**good, "seconds": 1e9}).encode(), b'{"profile": "p", "seconds": NaN, "at": 1}',
           json.dumps({**good, "seconds": float("inf")}).encode(),
           json.dumps({**good, "at": now - MAX_AGE - 60}).encode(),   # too old to say much
           json.dumps({**good, "at": now + 86_400}).encode(),         # from the future
           json.dumps({**good, "profile": "x" * 10_000}).encode()]
    (tmp_path / DURATIONS_NAME).write_bytes(b"\n".join([*bad, json.dumps(good).encode()]) + b"\n")
    book = DurationBook(tmp_path).load()
    assert {profile: list(seconds) for profile, seconds in book.recent.items()} == {PRO: [120.0]}


def test_a_missing_file_or_a_link_gives_nothing(tmp_path):
    assert DurationBook(tmp_path).load().prior([PRO], least=1) == []
    target = tmp_path / "elsewhere.jsonl"
    target.write_text(json.dumps({"profile": PRO, "seconds": 120.0, "at": time.time()}) + "\n")
    os.symlink(target, tmp_path / DURATIONS_NAME)
    assert DurationBook(tmp_path).load().prior([PRO], least=1) == []


def test_a_link_in_its_place_is_never_written_through(tmp_path):
    """Another tool's link named durations.jsonl: recording refuses it (the poller then goes
    on without recording), and the file it points at is untouched."""
    target = tmp_path / "precious.txt"
    target.write_text("keep me\n")
    os.symlink(target, tmp_path / DURATIONS_NAME)
    with pytest.raises(OSError):
        DurationBook(tmp_path).record(PRO, 120.0)
    assert target.read_text() == "keep me\n"

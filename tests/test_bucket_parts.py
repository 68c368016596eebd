"""The pure parts of bucket outputs: URLs, the lease's body, the order the ledger's objects are
read in, and the index's rows."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest

from batch_engine.states import State
from batch_engine.store.bucket import BucketURL, Entry
from batch_engine.store.item import Item
from batch_engine.store.lease import Holder
from batch_engine.store.metadata import index_csv, index_jsonl, index_rows, video_metadata
from batch_engine.store.mirror import ledger_parts
from batch_engine.store.output import resolve_out


def test_bucket_urls_are_parsed_and_the_impossible_refused():
    assert BucketURL.parse("out/catalog") is None
    assert BucketURL.parse("S3://videos/a//b/") == BucketURL("s3", "videos", "a/b")
    assert str(BucketURL.parse("gs://my_bucket")) == "gs://my_bucket"
    assert BucketURL.parse("az://container/x").url("y.mp4") == "az://container/x/y.mp4"  # type: ignore[union-attr]
    for bad in ("s3://", "s3://b/x", "s3://user@videos/x", "s3://videos:9000/x", "s3://videos/../x",
                "s3://videos/a?x=1", "s3://videos/a#f", "s3://videos/a b", "s3://videos/\x1b[31m", "s3://vid\\eos/x"):
        with pytest.raises(ValueError):
            BucketURL.parse(bad)


def test_the_cache_defaults_under_the_users_cache_and_is_only_for_buckets(tmp_path):
    out, folder = resolve_out("s3://videos/night/1", None, {"XDG_CACHE_HOME": str(tmp_path)})
    assert out == "s3://videos/night/1" and folder == tmp_path / "batch-engine/s3/videos/night/1"
    assert resolve_out("s3://videos", str(tmp_path / "c"), {})[1] == tmp_path / "c"
    assert resolve_out("runs/x", None, {}) == ("runs/x", __import__("pathlib").Path("runs/x"))
    with pytest.raises(ValueError, match="--cache is for a bucket"):
        resolve_out("runs/x", "c", {})


def test_a_lease_body_from_the_bucket_is_checked_and_cleaned():
    assert Holder.parse(b'{"who": "pid 1 on a", "until": 100.5}') == Holder("pid 1 on a", 100.5)
    assert Holder.parse(b'{"who": "\\u001b[2Jx", "until": 1}').who == "\ufffd[2Jx"  # type: ignore[union-attr]
    for bad in (b"", b"[]", b'{"until": "soon"}', b'{"who": "x"}', b'{"until": NaN}', b'{"until": 1e300}', b'{"until": 1' + b"0" * 400 + b'}', b'{"until": -1}', b"\xff", b"[" * 100_000):
        assert Holder.parse(bad) is None


@dataclass
class Listing:
    names: list[str]

    def entries(self, under: str = ""):
        stamp = datetime(2026, 1, 1, tzinfo=UTC)
        return iter([Entry(n, 1, None, stamp) for n in self.names])


def test_the_ledger_is_read_from_the_newest_snapshot_and_the_segments_not_older_than_it():
    names, newest = ledger_parts(Listing([  # type: ignore[arg-type]
        "00000002-00000001.jsonl", "snapshot-00000003.jsonl", "00000003-00000010.jsonl", "00000003-00000002.jsonl",
        "snapshot-00000001.jsonl", "00000004-00000000.jsonl", "notes.txt", "snapshot-3.jsonl", "00000003-x.jsonl",
        "snapshot-\u0660\u0660\u0660\u0660\u0660\u0660\u0660\u0669.jsonl"]))  # digits of another script: not the engine's
    assert names == ["snapshot-00000003.jsonl", "00000003-00000002.jsonl", "00000003-00000010.jsonl",
                     "00000004-00000000.jsonl"]
    assert newest == 4
    assert ledger_parts(Listing([]))[0] == []  # type: ignore[arg-type]
    # segments of a run killed before its first snapshot: read in order from generation 1
    assert ledger_parts(Listing(["00000001-00000001.jsonl", "00000001-00000000.jsonl"]))[0] == [  # type: ignore[arg-type]
        "00000001-00000000.jsonl", "00000001-00000001.jsonl"]


def test_the_index_has_a_row_per_video_and_no_cell_a_spreadsheet_would_run():
    done = Item(id="a", request={"model": "m", "input": {"prompt": "=HYPERLINK(\"x\")", "image_url": "u"}},
                fingerprint="f", state=State.SUCCEEDED, video="a.mp4", size=10, sha256="ab", task_id="t", credits=1.5)
    failed = Item(id="b", request={"model": "m", "input": {"prompt": "p"}}, fingerprint="f", state=State.FAILED)
    rows = index_rows([done, failed], lambda i: f"s3://v/{i}.mp4")
    assert [r["id"] for r in rows] == ["a"]
    table = list(csv.DictReader(io.StringIO(index_csv(rows).decode("utf-8-sig"))))
    assert table[0]["prompt"] == "'=HYPERLINK(\"x\")" and table[0]["video"] == "s3://v/a.mp4"
    assert json.loads(index_jsonl(rows))["prompt"] == "=HYPERLINK(\"x\")"
    card = video_metadata(done, "s3://v/a.mp4", 10, "ab")
    assert card["settings"] == {"image_url": "u"} and card["task_id"] == "t" and card["credits"] == 1.5

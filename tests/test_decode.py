"""Every video is decoded before it is published, with a poster beside it; one that does not
decode is fetched again once, then fails as `bad_video`, with no second create."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from batch_engine.media.probe import Probe, Undecodable, mismatches, probe
from batch_engine.sandbox.media import clip_for, video_chunks
from tests.conftest import cli_env, run_cli, run_manifest, status


def test_a_video_that_decodes_is_described_and_gets_a_poster(tmp_path):
    path = tmp_path / "v.mp4"
    path.write_bytes(b"".join(video_chunks("t1", 200_000, 0)))  # a clip, then a free box of noise
    found = probe(path)
    assert (found.width, found.height, found.codec) == (96, 96, "h264")
    assert found.duration == pytest.approx(2.0, abs=0.1) and found.fps == pytest.approx(12.0)
    assert found.poster[:3] == b"\xff\xd8\xff" and 200 < len(found.poster) < 50_000


def test_what_starts_like_an_mp4_and_does_not_decode_is_refused(tmp_path):
    for name, data in (("noise", b"".join(video_chunks("t1", 70_000, 0, decodable=False))),
                       ("cut", clip_for("t1")[:700]), ("empty", b""), ("text", b"\x00\x00\x00\x18ftyp<html>")):
        path = tmp_path / f"{name}.mp4"
        path.write_bytes(data)
        with pytest.raises(Undecodable):
            probe(path)


def test_a_video_unlike_what_was_asked_is_flagged_not_failed():
    found = Probe(duration=10.04, width=1366, height=768, codec="h264", fps=24.0, poster=b"")
    assert mismatches({"input": {"duration": "6", "resolution": "1080P"}}, found) == [
        "10.04 s long, asked 6 s", "1366x768, asked 1080P"]
    assert mismatches({"input": {"duration": 10, "resolution": "768P"}}, found) == []
    assert mismatches({"input": {"duration": "x", "resolution": None}}, found) == []
    assert mismatches({"input": "nonsense"}, found) == []


def test_a_run_records_what_each_video_is_and_writes_its_poster(serve, tmp_path):
    served = serve()
    done, out = run_manifest(served, tmp_path, 3)
    assert done.returncode == 0, done.stderr
    for row in status(out, cli_env(served))["items"]:
        assert row["media"]["codec"] == "h264" and row["media"]["width"] == 96
        assert (out / f"{row['id']}.jpg").read_bytes()[:3] == b"\xff\xd8\xff"
        card = json.loads((out / f"{row['id']}.json").read_text())
        assert card["media"] == row["media"] and card["poster"] == f"{row['id']}.jpg"


def test_a_video_that_does_not_decode_fails_as_bad_video_after_one_refetch(serve, tmp_path):
    served = serve()
    served.read(lambda s: setattr(s.settings.faults, "bad_video", 1.0))
    done, out = run_manifest(served, tmp_path, 2)
    assert done.returncode == 1, done.stderr
    rows = status(out, cli_env(served))["items"]
    assert [r["fail_code"] for r in rows] == ["bad_video", "bad_video"]
    assert not list(out.glob("*.mp4")) and not list(Path(out, ".partial").glob("*"))
    creates = served.read(lambda s: list(s.stats.creates))
    assert len(creates) == 2  # never paid again without being asked
    fetched = served.read(lambda s: [r["path"] for r in s.stats.file_requests])
    for create in creates:
        assert sum(1 for p in fetched if create["task_id"] in p) == 2  # fetched, then fetched again once
    # a plain run keeps them failed; `retry` is the request to make them again
    again = run_cli("retry", str(out), "--time-scale", "0.05", "-q", env=cli_env(served))
    assert again.returncode == 1
    assert served.read(lambda s: len(s.stats.creates)) == 4

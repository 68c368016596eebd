"""Where verified videos go, in a local folder: put makes a video visible whole, a file standing in
its way is kept aside, and the store says what it holds, where, and gives the bytes back."""

from __future__ import annotations

import os

from batch_engine.store.videos import LocalVideos


def test_the_local_store_puts_lists_sets_aside_and_reads_back(tmp_path):
    videos = LocalVideos(tmp_path)
    part = tmp_path / "a.part"
    part.write_bytes(b"first")
    (tmp_path / "a.mp4").write_bytes(b"someone else's")
    videos.put("a", part, "0" * 64)
    assert not part.exists() and (tmp_path / "a.mp4").read_bytes() == b"first"
    assert [p.read_bytes() for p in (tmp_path / ".replaced").iterdir()] == [b"someone else's"]
    assert list(videos.names()) == ["a"] and videos.sizes()["a.mp4"] == 5
    assert videos.where("a") == os.path.join(os.path.abspath(tmp_path), "a.mp4")
    with videos.open("a") as f:
        assert f.read() == b"first"
    moved = videos.set_aside("a", "tag")
    assert moved is not None and moved.endswith("a.tag.mp4") and not (tmp_path / "a.mp4").exists()
    assert videos.set_aside("a", "tag") is None and list(videos.names()) == []

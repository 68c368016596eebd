"""Reconciling the manifest with the ledger: an edited item is made again, and what was left of
its old task is cleared away."""

from __future__ import annotations

from batch_engine.catalog.manifest import ItemSpec
from batch_engine.pipeline.engine import apply_plan
from batch_engine.pipeline.plan import plan_manifest
from batch_engine.pipeline.stats import RunStats
from batch_engine.states import State
from batch_engine.store.changes import Change
from batch_engine.store.ledger import Ledger
from batch_engine.store.partial import PARTIAL_DIR, part_path
from batch_engine.store.videos import LocalVideos


def reconcile(ledger, specs, stats):
    """Plan a manifest against the ledger and record the plan, as `run` does."""
    videos = LocalVideos(ledger.out_dir)
    return apply_plan(ledger, videos, plan_manifest(ledger.items, specs, videos.sizes()), stats)


def test_an_edited_item_drops_the_half_download_of_its_old_task(tmp_path):
    """An item edited while its old task's video was half downloaded starts over: pending, no
    task, and the part file (which would never be finished) is gone; other parts stay."""
    spec = ItemSpec(id="sku-1", prompt="a watch", image_url="https://cdn.example.com/1.jpg")
    other = ItemSpec(id="sku-2", prompt="a ring", image_url="https://cdn.example.com/2.jpg")
    with Ledger(tmp_path) as ledger:
        for item in reconcile(ledger, [spec, other], RunStats()):
            ledger.apply(item, Change("test", State.SUBMITTING, {"attempts": 1}))
            ledger.apply(item, Change("test", State.RUNNING, {"task_id": f"task-{item.id}"}))
            ledger.apply(item, Change("test", State.DOWNLOADING, {"result_url": "https://files.example/v.mp4"}))
    partial = tmp_path / PARTIAL_DIR
    partial.mkdir()
    part_path(tmp_path, "sku-1", "task-sku-1").write_bytes(b"half a video")
    part_path(tmp_path, "sku-2", "task-sku-2").write_bytes(b"half another")
    edited = ItemSpec(id="sku-1", prompt="a watch in the rain", image_url="https://cdn.example.com/1.jpg")
    stats = RunStats()
    with Ledger(tmp_path) as ledger:
        items = reconcile(ledger, [edited, other], stats)
    assert stats.changed == 1
    assert items[0].state is State.PENDING and items[0].task_id is None
    assert items[1].state is State.DOWNLOADING
    assert [p.name for p in partial.iterdir()] == [part_path(tmp_path, "sku-2", "task-sku-2").name]

"""Catalog workflows that read the plan first: dry runs, budgets, shards, --only,
credits, summary.json, and the library call."""

from __future__ import annotations

import asyncio
import json
import logging

import pytest

from batch_engine import BatchInputError, run_batch, run_batch_async
from batch_engine.catalog.select import shard_of
from tests.conftest import FAST, cli_env, ledger_records, run_cli, write_manifest


def run(served, tmp_path, n: int, *extra: str, out: str = "out"):
    return run_cli("run", str(write_manifest(tmp_path / "m.yaml", n)), "--out", str(tmp_path / out),
                   "--rate", "200/1s", *FAST, *extra, env=cli_env(served))


def test_dry_run_sends_and_writes_nothing_and_counts_the_plan(serve, tmp_path):
    """A dry run on a half-done folder: counts of new, done, edited; an estimate only with a
    price; no request, no write (the ledger's bytes are unchanged)."""
    served = serve()
    assert run(served, tmp_path, 3).returncode == 0
    manifest = write_manifest(tmp_path / "m.yaml", 5)
    manifest.write_text(manifest.read_text().replace("product 0,", "product 0 again,"))
    ledger = (tmp_path / "out" / "ledger.jsonl").read_bytes()
    calls = served.read(lambda s: (s.stats.create_calls, s.stats.polls, len(s.stats.api_headers)))
    args = ("run", str(manifest), "--out", str(tmp_path / "out"), "--dry-run")
    done = run_cli(*args, env=cli_env(served))
    assert done.returncode == 0, done.stderr
    assert "2 new, 0 resumed, 2 done (skipped), 1 to make again" in done.stderr
    assert "at most 3" in done.stderr and "estimate: unknown" in done.stderr
    priced = run_cli(*args, "--credits-per-task", "12.5", "--max-tasks", "2", env=cli_env(served))
    assert "at most 2 (--max-tasks 2 of 3 needed)" in priced.stderr and "25 credits" in priced.stderr
    assert served.read(lambda s: (s.stats.create_calls, s.stats.polls, len(s.stats.api_headers))) == calls
    assert (tmp_path / "out" / "ledger.jsonl").read_bytes() == ledger


def test_a_budget_stops_at_exactly_n_over_two_runs_and_pays_nothing_twice(serve, tmp_path):
    served = serve()
    first = run(served, tmp_path, 5, "--max-tasks", "3")
    assert first.returncode == 0, first.stderr  # reaching the budget is not a failure
    assert served.read(lambda s: s.stats.create_calls) == 3
    assert "2 item(s) left pending: the --max-tasks budget" in first.stderr
    second = run(served, tmp_path, 5, "--max-tasks", "3")
    assert second.returncode == 0, second.stderr
    assert sorted(served.read(lambda s: s.creates_per_item()).values()) == [1] * 5
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["counts"]["succeeded"] == 5


def test_shards_partition_the_catalog_and_stay_put_when_it_grows(serve, tmp_path):
    """Three shards make every item exactly once; adding items moves none of the old ones."""
    served = serve()
    made: dict[str, int] = {}
    for k in (1, 2, 3):
        done = run(served, tmp_path, 12, "--shard", f"{k}/3", out=f"out{k}")
        assert done.returncode == 0, done.stderr
        for path in (tmp_path / f"out{k}").glob("*.mp4"):
            made[path.stem] = k
    assert len(made) == 12 and sum(served.read(lambda s: s.creates_per_item()).values()) == 12
    assert all(shard_of(item_id, 3) == k for item_id, k in made.items())
    bigger = [f"sku-{i:05d}" for i in range(40)]
    assert all(shard_of(i, 3) == made[i] for i in bigger if i in made)


def test_only_runs_the_named_items_and_refuses_unknown_ones(serve, tmp_path):
    served = serve()
    done = run(served, tmp_path, 4, "--only", "sku-00001,sku-00003")
    assert done.returncode == 0, done.stderr
    assert sorted(p.stem for p in (tmp_path / "out").glob("*.mp4")) == ["sku-00001", "sku-00003"]
    unknown = run(served, tmp_path, 4, "--only", "sku-00001,nope")
    assert unknown.returncode == 2 and "nope" in unknown.stderr


def test_credits_are_read_first_and_totalled_from_the_task_records(serve, tmp_path):
    served = serve(task_cost=7.25)
    done = run(served, tmp_path, 4)
    assert done.returncode == 0, done.stderr
    assert "credits: 1000000 on the account" in done.stderr
    assert "credits: 29.00 spent" in done.stderr
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["credits_spent"] == 29.0 and summary["credits_before"] == 1_000_000
    assert {r.get("credits") for r in ledger_records(tmp_path / "out")} == {7.25}
    shown = run_cli("status", str(tmp_path / "out"), env=cli_env(served))
    assert "credits: 29 spent" in shown.stdout
    rows = json.loads(run_cli("status", str(tmp_path / "out"), "--json", env=cli_env(served)).stdout)["items"]
    assert sum(row["credits"] for row in rows) == 29.0


def test_the_library_call_returns_a_result_and_configures_no_logging(serve, tmp_path):
    served = serve()
    root_handlers = list(logging.getLogger().handlers)
    items = [{"id": f"lib-{i}", "image_url": f"https://cdn.example.com/{i}.jpg", "prompt": "a lamp"}
             for i in range(3)]
    result = run_batch(items=items, out=tmp_path / "out", api_key=served.sandbox.settings.api_key,
                       base_url=served.sandbox.base_url, rate="200/1s")
    assert result.ok and result.exit_code == 0 and result.counts["succeeded"] == 3
    assert sorted(item.id for item in result.items) == ["lib-0", "lib-1", "lib-2"]
    assert logging.getLogger().handlers == root_handlers
    assert logging.getLogger("batch_engine").handlers[0].__class__.__name__ == "NullHandler"
    with pytest.raises(BatchInputError) as e:
        run_batch(items=[{"id": "x"}], out=tmp_path / "bad", api_key="k")
    assert any("prompt: missing" in p for p in e.value.problems)
    assert not (tmp_path / "bad").exists()


def test_the_library_call_runs_inside_a_running_loop(serve, tmp_path):
    served = serve()
    manifest = write_manifest(tmp_path / "m.yaml", 2)

    async def inside() -> int:
        result = await run_batch_async(manifest, out=tmp_path / "out", api_key=served.sandbox.settings.api_key,
                                       base_url=served.sandbox.base_url, rate="200/1s", shard=(1, 1))
        return result.counts["succeeded"]
    assert asyncio.run(inside()) == 2


def test_the_library_takes_the_run_options_by_name_and_refuses_unknown_ones(serve, tmp_path):
    """run_batch takes the CLI's run options by their names (and the earlier task_timeout_minutes);
    an unknown or a bad one is a BatchInputError before anything is sent."""
    served = serve()
    items = [{"id": "a", "image_url": "https://cdn.example.com/a.jpg", "prompt": "a lamp"}]
    key, base = served.sandbox.settings.api_key, served.sandbox.base_url
    result = run_batch(items=items, out=tmp_path / "out", api_key=key, base_url=base, rate="200/1s",
                       task_timeout_minutes=5, max_tasks=1, poll_rate=50)
    assert result.ok and result.counts["succeeded"] == 1
    for options in ({"rate_limit": "5/s"}, {"max_tasks": -1}, {"poll_rate": float("nan")}, {"rate": "fast"}):
        with pytest.raises(BatchInputError):
            run_batch(items=items, out=tmp_path / "bad", api_key=key, base_url=base, **options)
    assert not (tmp_path / "bad").exists()
    assert len(served.read(lambda s: s.stats.creates)) == 1

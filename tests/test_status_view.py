"""The status view for people, gathered in one pass over the items."""

from __future__ import annotations

import io

from rich.console import Console

from batch_engine.report.status import status_view
from batch_engine.states import State
from batch_engine.store.item import Item


def brief(n: int, state: str, **fields) -> Item:
    return Item(id=f"sku-{n}", request={}, fingerprint="f", state=State(state), **fields)


def test_the_view_counts_groups_times_and_lists_what_is_not_done(tmp_path):
    t = lambda s: f"2026-11-30T10:{s // 60:02d}:{s % 60:02d}.000+00:00"
    items = ([brief(n, "succeeded", size=1_000_000, credits=12.5, submitted_at=t(n), finished_at=t(n + 100 + n))
              for n in range(10)]
             + [brief(100 + n, "failed", fail_code="501", fail_msg="generation failed\x1b[31m", retryable=True)
                for n in range(12)]
             + [brief(200, "failed", fail_code="422", fail_msg="bad image")]
             + [brief(300 + n, "running", task_id=f"t{n}", provider_state="generating") for n in range(3)])
    out = io.StringIO()
    status_view(tmp_path, iter(items), Console(file=out, width=200), limit=5, secrets=("secret",))
    text = out.getvalue()
    assert "26 items: 3 running  10 succeeded  13 failed" in text
    assert "12 x [501] generation failed" in text and "(worth a retry)" in text and "\x1b[31m" not in text
    assert "sku-100, sku-101" in text and "and 4 more" in text  # eight ids shown, four more
    assert "1 x [422] bad image" in text
    assert "create to saved video: median 104 s, slowest 109 s (sku-9)" in text  # 100..109 s
    assert "credits: 125 spent on 10 task(s)" in text
    assert "10 file(s), 10.0 MB" in text
    assert "16 item(s) not done" in text and "... and 11 more (use --json for all)" in text

"""What the ledger says, for people (tables, a summary, live progress) and for scripts (JSON)."""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING

from rich.console import Console
from rich.markup import escape

from batch_engine.pipeline.plan import Step
from batch_engine.states import State, state_counts
from batch_engine.store.ledger import Item
from batch_engine.text import clean, failure_text

if TYPE_CHECKING:
    from batch_engine.api import BatchResult
    from batch_engine.catalog.items import ItemSpec
    from batch_engine.pipeline.plan import Plan



def summary(result: BatchResult, console: Console, *, task_timeout: float,
            secrets: tuple[str, ...] = (), credits_per_task: float | None = None) -> None:
    s, items, out = result.stats, list(result.items), result.out or str(result.out_dir)
    console.print(_counts_line(items))
    facts = [f"{s.creates_sent} creates sent", f"{s.rate_limited} answered 429", f"{s.polls} polls",
             f"{_size(s.bytes_downloaded)} downloaded"]
    if s.polls_refused:
        facts.insert(3, f"{s.polls_refused} polls answered 429 (polling slowed down)")
    console.print("  " + ", ".join(facts))
    if s.credits_before is not None or s.credits_spent:
        console.print(f"  credits: {s.credits_spent} spent by this run's tasks (as the provider reports)"
                      + (f"; {s.credits_before} on the account before it" if s.credits_before is not None else ""))
    if credits_per_task is not None and not s.credits_spent and s.creates_sent:
        console.print(f"  credits: about {s.creates_sent * credits_per_task:g} at {credits_per_task:g} a task "
                      "(--credits-per-task; the provider reported none)")
    if result.left_by_budget:
        console.print(f"  {len(result.left_by_budget)} item(s) left pending: the --max-tasks budget was "
                      "reached (not a failure; run again to continue)")
    if s.unanswered_creates:
        console.print(f"  [yellow]{s.unanswered_creates} create(s) got no answer and were sent again: "
                      "those items may have been paid twice[/]")
    if s.damaged:
        console.print(f"  [yellow]{s.damaged} item(s) left alone: their ledger records cannot be read "
                      "(see batch-engine.log); nothing was created for them[/]")
    if s.changed:
        console.print(f"  {s.changed} item(s) changed in the manifest since the last run and were made again")
    if s.timed_out:
        console.print(f"  [yellow]{s.timed_out} task(s) still unfinished after "
                      f"{task_timeout / 60:g} min: run the same command later to pick them up[/]")
    if s.not_submitted:
        console.print(f"  {s.not_submitted} item(s) not submitted (the account was refused); "
                      "they stay pending for the next run")
    for code, n in s.gave_up.items():
        console.print(f"  [yellow]{n} item(s) could not be created ({code}); they stay pending for the next run[/]")
    failed = [item for item in items if item.state is State.FAILED]
    for item in failed[:20]:
        console.print("  [red]failed[/] " + escape(f"{clean(item.id)}: {failure_text(item, secrets)}"))
    if len(failed) > 20:
        console.print(f"  ... and {len(failed) - 20} more failed (batch-engine status {out})")
    if failed:
        console.print(f"  re-run the failed items: batch-engine retry {out}")
    console.print(f"  videos and ledger in {out}", highlight=False)
    if any(item.state is State.SUCCEEDED for item in items) and "://" not in out:
        console.print(f"  review them: batch-engine review {out}   (approve, reject, make again in the browser)",
                      highlight=False)


def validation_report(specs: list[ItemSpec], console: Console, *, examples: int = 3) -> None:
    models = Counter(spec.model for spec in specs)
    console.print(f"valid: {len(specs)} item(s); " + ", ".join(f"{n} with {m}" for m, n in models.items()),
                  highlight=False)
    for spec in specs[:examples]:
        console.print(f"  {escape(spec.id)}: {escape(spec.prompt[:200])}", highlight=False)
    if len(specs) > examples:
        console.print(f"  ... and {len(specs) - examples} more", highlight=False)
    files = {image.sha256: image for spec in specs for image in spec.images}
    if files:
        size = sum(image.size for image in files.values())
        console.print(f"local images to upload (once each): {len(files)}, {size / 1e6:.1f} MB", highlight=False)
        for image in list(files.values())[:examples]:
            console.print(f"  {escape(str(image.path))}", highlight=False)
    console.print("nothing was sent", highlight=False)


def estimate(creates: int, credits_per_task: float | None) -> str:
    """What `creates` tasks would cost at the price the user gave (unknown without one, never 0)."""
    if credits_per_task is None:
        return "estimate: unknown (no price set: --credits-per-task C)"
    credits = creates * credits_per_task
    return f"estimate: {credits:g} credits (about ${credits * 0.005:,.2f} at $0.005 a credit)"


def dry_run_report(plan: Plan, console: Console, *, max_tasks: int | None,
                   credits_per_task: float | None) -> None:
    """What a run would do: nothing is sent or written to find it out."""
    c = plan.counts()
    resumed = sum(c[step] for step in (Step.CREATE, Step.POLL, Step.DOWNLOAD, Step.REFETCH, Step.RECREATE,
                                       Step.REOPEN_CREATE, Step.REOPEN_DOWNLOAD, Step.REREAD))
    creates = plan.creates if max_tasks is None else min(plan.creates, max_tasks)
    console.print(f"dry run: {len(plan.decisions)} item(s): {c[Step.NEW]} new, {resumed} resumed, "
                  f"{c[Step.SKIP]} done (skipped), {c[Step.REMAKE]} to make again (edited), "
                  f"{c[Step.KEEP_FAILED]} failed (left for retry), {c[Step.DAMAGED]} damaged in the ledger",
                  highlight=False)
    budget = f" (--max-tasks {max_tasks} of {plan.creates} needed)" if max_tasks is not None else ""
    console.print(f"tasks that would be created: at most {creates}{budget}; {estimate(creates, credits_per_task)}",
                  highlight=False)
    console.print("nothing was sent and nothing was written", highlight=False)


def _size(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 100_000 else f"{n / 1e3:.1f} KB"


def _counts_line(items: list[Item]) -> str:
    c = state_counts(item.state for item in items)
    shown = [f"{n} {state}" for state, n in c.items() if n]
    return "  ".join(shown) if shown else "no items"

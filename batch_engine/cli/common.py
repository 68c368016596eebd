"""What every command shares: exit codes, the usage error, and printing problems."""

from __future__ import annotations

from rich.console import Console

from batch_engine.exits import Exit
from batch_engine.store.output import Output, resolve_out
from batch_engine.text import clean

OK, SOME_FAILED, BAD_INPUT, REFUSED, INTERRUPTED, CLOSED_PIPE = (
    Exit.OK, Exit.SOME_FAILED, Exit.BAD_INPUT, Exit.REFUSED, Exit.INTERRUPTED, Exit.CLOSED_PIPE)


class UsageError(Exception):
    """Bad input or usage: printed as one line, exit 2, nothing sent."""


def print_problems(console: Console, where: str, problems: list[str]) -> int:
    """Every problem of an input, one a line; exit 2."""
    console.print(f"{clean(where)}: {len(problems)} problem(s); nothing was sent", style="red",
                  markup=False, highlight=False)
    for problem in problems:
        console.print(f"  {clean(problem)}", markup=False, highlight=False)
    return BAD_INPUT


def open_output(out: str, cache: str | None = None) -> Output:
    """The output a command names: a folder, or a bucket URL (UsageError when it cannot be one)."""
    try:
        return Output(*resolve_out(out, cache))
    except ValueError as e:
        raise UsageError(str(e)) from None

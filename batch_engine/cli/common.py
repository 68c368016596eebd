"""What every command shares: exit codes, the usage error, and printing problems."""

from __future__ import annotations

from rich.console import Console

OK, SOME_FAILED, BAD_INPUT, REFUSED, INTERRUPTED = 0, 1, 2, 3, 130
CLOSED_PIPE = 141  # 128 + SIGPIPE, as the shell reports a tool stopped by a closed pipe


class UsageError(Exception):
    """Bad input or usage: printed as one line, exit 2, nothing sent."""


def print_problems(console: Console, where: str, problems: list[str]) -> int:
    console.print(f"[red]{where}: {len(problems)} problem(s); nothing was sent[/]", highlight=False)
    for problem in problems:
        console.print(f"  {problem}", markup=False, highlight=False)
    return BAD_INPUT

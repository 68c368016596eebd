"""The exit codes scripts rely on, in one place (the CLI returns them; `BatchResult.exit_code` too)."""

from enum import IntEnum


class Exit(IntEnum):
    OK = 0              # every item succeeded (or waits for the next run's --max-tasks budget)
    SOME_FAILED = 1     # some item failed, or is left unfinished
    BAD_INPUT = 2       # invalid input or usage: nothing was sent
    REFUSED = 3         # the provider refused the account (401, 402, 433, 505)
    INTERRUPTED = 130   # Ctrl-C or SIGTERM: the ledger holds everything done so far
    CLOSED_PIPE = 141   # 128 + SIGPIPE, as the shell reports a tool stopped by a closed pipe

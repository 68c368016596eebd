"""batch-engine: a manifest of image/prompt pairs in, verified MP4 videos and a resumable ledger out.

The package reads in the order an item travels:

    catalog/    what the user asks for: the manifest, validated (every problem at once, nothing sent)
    pipeline/   plan (pure: ledger + manifest -> each item's step) -> engine (carries it out) ->
                submit (createTask) -> poll (recordInfo, callbacks) -> download (<id>.mp4);
                outcomes (each stage's pure decisions), context (what a run shares)
    pacing/     how fast: create gate, poll pace and schedule, one adaptive limiter, retry policies
    provider/   the provider's edge: the only HTTP client and the only HTTP server
    store/      the ledger and the output folder's files
    report/     what people and scripts see
    sandbox/    a local stand-in for kie.ai (tests and the demo only)

    api.py      the library entry point: `from batch_engine import run_batch`
    cli/        the command line, built on api (the only reader of the environment)

`cli` is the only package that reads the environment or configures logging; as a library the
package logs to the "batch_engine" logger and leaves handlers to the application.
"""

import logging
from typing import Any

from batch_engine.version import __version__

__all__ = ["BatchInputError", "BatchResult", "__version__", "run_batch", "run_batch_async"]

logging.getLogger(__name__).addHandler(logging.NullHandler())


def __getattr__(name: str) -> Any:  # the library API, imported when first asked for
    if name in ("BatchInputError", "BatchResult", "run_batch", "run_batch_async"):
        from batch_engine import api
        return getattr(api, name)
    raise AttributeError(f"module 'batch_engine' has no attribute {name!r}")

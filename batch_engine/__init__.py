"""batch-engine: a catalog of image/prompt pairs in, verified MP4 videos and a resumable ledger out.

The package reads in the order an item travels: `catalog/` (what the user asks for, validated),
`pipeline/` (plan, then the stages: upload, submit, poll, download), `pacing/` (how fast),
`provider/` (who makes the video: the interface and kie.ai behind it), `store/` (the record, the
ledger, where videos go), `report/` (what people and scripts see), `sandbox/` (a stand-in for
kie.ai), `api.py` (`from batch_engine import run_batch`) and `cli/` (the only reader of the
environment and the only one that configures logging).
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

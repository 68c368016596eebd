"""A local stand-in for kie.ai (API and file host), for the demo, the tests and the benchmarks.

Test equipment, never the product's path: only the CLI (its `sandbox` command and the keyless
demo) and the tests import it; an import-linter contract keeps it that way. Its names are
imported when first used, so the CLI's other commands do not load the HTTP server.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["Faults", "Sandbox", "SandboxSettings", "SandboxStats", "SandboxThread", "item_key"]
_WHERE = {"Faults": "settings", "SandboxSettings": "settings", "SandboxStats": "settings",
          "Sandbox": "server", "SandboxThread": "thread", "item_key": "media"}


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'batch_engine.sandbox' has no attribute {name!r}")
    return getattr(importlib.import_module(f"batch_engine.sandbox.{_WHERE[name]}"), name)

"""A local stand-in for kie.ai (API and file host), for the demo, the tests and the benchmarks.

Test equipment, never the product's path: only the CLI (its `sandbox` command and the keyless
demo) and the tests import it; an import-linter contract keeps it that way.
"""

from batch_engine.sandbox.media import item_key
from batch_engine.sandbox.server import Sandbox
from batch_engine.sandbox.settings import Faults, SandboxSettings, SandboxStats
from batch_engine.sandbox.thread import SandboxThread

__all__ = ["Faults", "Sandbox", "SandboxSettings", "SandboxStats", "SandboxThread", "item_key"]

"""Shards on one key against one process doing the whole catalog, in one run: the makespan and
the creates answered 429, with the account's cap shared (the default file) and not shared.

    python bench/shards.py             # 90 items, a cap of 10 per 2 s, three shards

Each case is real child processes against one sandbox whose cap is the one every run is told.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from batch_engine.config import Rate
from batch_engine.sandbox import SandboxSettings, SandboxThread
from tests.conftest import write_manifest

CAP = Rate(10, 2.0)


def makespan(shards: int, n: int, store: str | None = None) -> tuple[float, int, int]:
    """Seconds until the last of `shards` runs ended, 429 answers, create calls."""
    tmp = Path(tempfile.mkdtemp())
    with SandboxThread(SandboxSettings(api_key="k", rate=CAP, gen_time=(0.5, 1.0), video_bytes=64 * 1024)) as sandbox:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("KIE_", "AWS_"))}
        env.update(KIE_API_KEY="k", KIE_BASE_URL=sandbox.base_url, XDG_CACHE_HOME=str(tmp / "cache"))
        manifest = write_manifest(tmp / "m.yaml", n)
        extra = ["--rate-store", store] if store else []
        started = time.monotonic()
        procs = [subprocess.Popen([sys.executable, "-m", "batch_engine", "run", str(manifest), "--out", str(tmp / f"o{k}"),
                                   "--rate", str(CAP), "--time-scale", "0.05", "-q", *extra,
                                   *(["--shard", f"{k}/{shards}"] if shards > 1 else [])],
                                  env=env, stderr=subprocess.DEVNULL, cwd=ROOT) for k in range(1, shards + 1)]
        for proc in procs:
            if proc.wait(timeout=600) != 0:
                raise SystemExit("a run failed")
        return time.monotonic() - started, sandbox.stats.rate_limited, sandbox.stats.create_calls


def main() -> None:
    n = 90
    one = makespan(1, n)
    shared = makespan(3, n)
    alone = makespan(3, n, store="off")
    print(f"{'row':<40} {'makespan':>9} {'ratio':>6} {'429s':>10}")
    for label, (seconds, refused, calls) in (("one process, the whole catalog", one),
                                             ("three shards, the cap shared", shared),
                                             ("three shards, each with the whole cap", alone)):
        print(f"{label:<40} {seconds:>8.1f}s {seconds / one[0]:>6.2f} {refused:>4} of {calls:<4}")


if __name__ == "__main__":
    main()

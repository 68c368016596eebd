"""The rows a user waits for at scale, this tree against a baseline tree, in one run.

    git worktree add /tmp/base <commit> && python bench/compare.py . /tmp/base 10000

Each command runs three times per tree, alternating; the median of each is printed, with the
ratio now / before. The ledger is made by this tree (the format is shared). Then a whole run of
3,000 items against the sandbox (generations of 0.05-0.3 s at 5,000 creates a second): CPU per
item and peak memory, three runs per tree, alternating.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

NEW, BASE = str(Path(sys.argv[1]).resolve()), str(Path(sys.argv[2]).resolve())
N = int(sys.argv[3]) if len(sys.argv) > 3 else 10_000
ENV = {"KIE_API_KEY": "k", "KIE_BASE_URL": "http://127.0.0.1:9"}


def timed(tree: str, argv: list[str]) -> float:
    env = {**os.environ, **ENV, "PYTHONPATH": tree}
    start = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "batch_engine", *argv], env=env, cwd=tree,
                          capture_output=True, check=False)
    assert done.returncode == 0, (tree, argv, done.stderr[-500:])
    return time.monotonic() - start


def main() -> None:
    sys.path.insert(0, NEW)
    from bench.run import make_ledger, manifest
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        out = tmp / "out"
        make_ledger(out, N)
        rows = {"status --json": ["status", str(out), "--json"], "retry (nothing to do)": ["retry", str(out), "-q"],
                "validate YAML catalog": ["validate", str(manifest(tmp / "m.yaml", N))]}
        times: dict[tuple[str, str], list[float]] = {}
        for _ in range(3):
            for name, tree in (("before", BASE), ("now", NEW)):
                for what, argv in rows.items():
                    times.setdefault((what, name), []).append(timed(tree, argv))
    for what in rows:
        before, now = (sorted(times[(what, name)])[1] for name in ("before", "now"))
        print(f"{what:24s} {N:,} items: before {before:.2f} s, now {now:.2f} s, ratio {now / before:.2f}")
    runs()


def runs(n: int = 3000) -> None:
    from batch_engine.config import Rate
    from batch_engine.sandbox import SandboxSettings
    from bench.run import KEY, measure
    figures: dict[str, list[tuple[float, float]]] = {"before": [], "now": []}
    for _ in range(3):
        for name, tree in (("before", BASE), ("now", NEW)):
            os.environ["PYTHONPATH"] = tree
            os.chdir(tree)  # `python -m` puts the working folder first on the path
            r = measure("scale", "engine", SandboxSettings(api_key=KEY, rate=Rate(5000, 1), gen_time=(0.05, 0.3),
                        video_bytes=8 * 1024), n, ["--rate", "5000/1s", "--poll-rate", "5000"], Rate(5000, 1))
            figures[name].append((r.cpu_ms_per_item, r.peak_rss_mb))
    os.environ.pop("PYTHONPATH", None)
    os.chdir(NEW)
    cpu = {name: sorted(f[0] for f in runs)[1] for name, runs in figures.items()}
    rss = {name: sorted(f[1] for f in runs)[1] for name, runs in figures.items()}
    print(f"run of {n:,} items: CPU per item before {cpu['before']:.2f} ms, now {cpu['now']:.2f} ms, "
          f"ratio {cpu['now'] / cpu['before']:.2f}; peak memory before {rss['before']:.0f} MB, now {rss['now']:.0f} MB")


if __name__ == "__main__":
    main()

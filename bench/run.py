"""Benchmarks: the engine against the naive script, on the sandbox, in one go.

    python bench/run.py            # everything (about 12 minutes)
    python bench/run.py --quick    # smaller batches (about 5 minutes)
    python bench/run.py --long-seeds 6   # the 2-4 min case on six seeds (its spread)
    python bench/run.py --goals    # only the goal rows, each beside its goal (about 5 minutes)

Each case runs the real CLI (and bench/naive.py) as a child process against a sandbox served
from this process, and prints ratios, not absolute times: create-rate utilisation and makespan
against the lower bound the cap allows, the share of creates refused with 429, polls per task,
how late finished tasks were noticed, CPU per item and peak memory of the child.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from datetime import UTC

from batch_engine.config import Rate
from batch_engine.sandbox import SandboxSettings, SandboxStats, SandboxThread

KEY = "bench-key"


@dataclass
class Result:
    case: str
    who: str
    items: int
    utilisation: float | None   # creates per window achieved / cap (over the create span)
    refused: float              # 429 answers / create calls
    polls_per_task: float
    makespan_ratio: float       # wall time / lower bound of the create span at the real cap
    span_ratio: float           # create span / lower bound at the real cap
    lag_max: float | None       # latest notice, as a share of generation time (or None)
    lag_mean: float | None
    in_target: float | None     # share of tasks noticed within max(30% of generation time, 3 s)
    cpu_ms_per_item: float
    peak_rss_mb: float
    failed_items: int


def manifest(path: Path, n: int, prefix: str = "item") -> Path:
    lines = ["items:"]
    for i in range(n):
        lines += [f"  - id: {prefix}-{i:06d}", f"    image_url: https://cdn.example.com/{i}.jpg",
                  f"    prompt: Product {i} turns slowly on a white turntable"]
    path.write_text("\n".join(lines) + "\n")
    return path


def child(argv: list[str], env: dict[str, str]) -> tuple[float, float, float, int]:
    """Run a child to completion: (wall seconds, CPU seconds, peak RSS MB, exit code).

    Peak memory is the child's own high-water mark (VmHWM, reset when it execs), read while it
    runs: ru_maxrss would also count the pages of this process at the fork."""
    start = time.monotonic()
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    peak = 0.0
    while True:  # bounded by the child's own life; the batch engine always ends
        try:
            with open(f"/proc/{proc.pid}/cmdline", "rb") as f:
                started = argv[-1].encode() in f.read()  # exec'd: no longer a copy of this process
            if started:
                with open(f"/proc/{proc.pid}/status") as f:
                    peak = max([peak] + [int(line.split()[1]) / 1024 for line in f if line.startswith("VmHWM")])
        except (OSError, ValueError):
            pass
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        time.sleep(0.02)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return time.monotonic() - start, usage.ru_utime + usage.ru_stime, peak, proc.returncode


def measure(case: str, who: str, settings: SandboxSettings, n: int, engine_args: list[str],
            real_cap: Rate, time_scale: float = 1.0, earlier: int = 0) -> Result:
    """`earlier`: first run that many other items in the same folder (the night before: the
    folder keeps their durations), then measure the run of the `n` items alone."""
    with tempfile.TemporaryDirectory() as tmp, SandboxThread(settings) as sandbox:
        env = {**os.environ, "KIE_API_KEY": KEY, "KIE_BASE_URL": sandbox.base_url}
        m = manifest(Path(tmp) / "m.yaml", n)
        out = Path(tmp) / "out"
        if earlier:
            before = manifest(Path(tmp) / "before.yaml", earlier, prefix="earlier")
            code = child([sys.executable, "-m", "batch_engine", "run", str(before), "--out", str(out), "-q",
                          *engine_args], env)[3]
            assert code == 0, f"the earlier run exited {code}"
            sandbox.stats = SandboxStats()  # the measured run's figures alone
        if who == "engine":
            argv = [sys.executable, "-m", "batch_engine", "run", str(m), "--out", str(out), "-q", *engine_args]
        else:
            argv = [sys.executable, str(ROOT / "bench" / "naive.py"), str(m), str(out)]
        wall, cpu, rss, code = child(argv, env)
        stats = sandbox.stats
        times = sorted(c["time"] for c in stats.creates)
        span = times[-1] - times[0] if len(times) > 1 else 0.0
        bound = (n - 1) * real_cap.window / real_cap.creates
        per_window = (len(times) - 1) / span * real_cap.window if span else None
        lags = [late / sandbox.tasks[t].duration for t, late in stats.noticed.items()]
        floor = 3.0 * time_scale  # "or 3 s", on the case's own clock
        on_time = [late <= max(0.3 * sandbox.tasks[t].duration, floor) for t, late in stats.noticed.items()]
        failed = sum(1 for t in sandbox.tasks.values() if t.fails)
        return Result(case, who, n, per_window / real_cap.creates if per_window else None,
                      stats.rate_limited / max(stats.create_calls, 1), stats.polls / max(len(times), 1),
                      wall / (n * real_cap.window / real_cap.creates), span / bound if bound else 0.0,
                      max(lags) if lags else None, statistics.mean(lags) if lags else None,
                      sum(on_time) / len(on_time) if on_time else None,
                      cpu / n * 1000, rss, failed)


def make_ledger(out: Path, n: int) -> None:
    """A ledger of `n` succeeded items in `out`, with their (tiny) videos: every field a real run
    writes, as it writes them, at the times it would (created at kie's cap of 20 per 10 s, each
    done 2.5 min later, the last ten minutes ago)."""
    from datetime import datetime, timedelta

    from batch_engine.states import State
    from batch_engine.store.changes import Change
    from batch_engine.store.ledger import Item, Ledger

    last = datetime.now(UTC) - timedelta(minutes=10)
    with Ledger(out) as ledger:
        for i in range(n):
            sent = last - timedelta(seconds=(n - i) * 0.5 + 150)
            at = sent.isoformat(timespec="milliseconds")
            item = ledger.add(Item(id=f"sku-{i:06d}", request={"model": "hailuo/02-image-to-video-pro", "input": {
                "prompt": f"Product {i} turns slowly on a white turntable, soft studio light",
                "image_url": f"https://cdn.example.com/catalog/{i}.jpg", "end_image_url": "",
                "prompt_optimizer": True}}, fingerprint=f"{i:016x}", state=State.PENDING, created_at=at))
            ledger.apply(item, Change("sending", State.SUBMITTING, {"attempts": 1, "submitted_at": at}))
            ledger.apply(item, Change("created", State.RUNNING, {"task_id": f"{i:032x}", "provider_state": "created",
                                                                 "submitted_at": at}))
            ledger.apply(item, Change("generated", State.DOWNLOADING, {
                "provider_state": "success", "result_url": f"https://tempfile.example.com/{i:032x}.mp4", "credits": 12.5}))
            ledger.apply(item, Change("succeeded", State.SUCCEEDED, {
                "video": f"sku-{i:06d}.mp4", "size": 4, "sha256": f"{i:064x}",
                "finished_at": (sent + timedelta(seconds=150)).isoformat(timespec="milliseconds")}))
            (out / f"sku-{i:06d}.mp4").write_bytes(b"\0\0\0\0")


def ledger_load(n: int) -> dict[str, float]:
    """A ledger of `n` succeeded items: how long `status` and a resuming `retry` take (whole process)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        make_ledger(out, n)
        env = {**os.environ, "KIE_API_KEY": KEY, "KIE_BASE_URL": "http://127.0.0.1:9"}
        figures = {}
        for name, argv in (("status --json", ["status", str(out), "--json"]), ("retry (resume)", ["retry", str(out), "-q"])):
            wall, cpu, rss, code = child([sys.executable, "-m", "batch_engine", *argv], env)
            assert code == 0, f"{name} exited {code}"
            figures[name] = wall
            figures[name + " MB"] = rss
        return figures


def catalog_load(n: int) -> list[tuple[str, float, float]]:
    """`validate` of an n-item catalog, as YAML and as CSV (whole process): (kind, seconds, MB)."""
    import csv
    figures = []
    with tempfile.TemporaryDirectory() as tmp:
        yaml_path = manifest(Path(tmp) / "m.yaml", n)
        with open(Path(tmp) / "c.csv", "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["id", "image_url", "prompt"])
            writer.writerows([f"item-{i:06d}", f"https://cdn.example.com/{i}.jpg",
                              f"Product {i} turns slowly on a white turntable"] for i in range(n))
        (Path(tmp) / "c.yaml").write_text("items_from: c.csv\n")
        for kind, path in (("YAML", yaml_path), ("CSV", Path(tmp) / "c.yaml")):
            wall, _, rss, code = child([sys.executable, "-m", "batch_engine", "validate", str(path)], dict(os.environ))
            assert code == 0, f"validate {kind} exited {code}"
            figures.append((kind, wall, rss))
    return figures


def big_video(size_mb: int) -> dict[str, float]:
    """Peak memory of a run downloading one video of `size_mb` MB against one of 1 MB."""
    figures = {}
    for mb in (1, size_mb):
        settings = SandboxSettings(api_key=KEY, gen_time=(0.2, 0.2), video_bytes=mb * 1024 * 1024)
        result = measure("video", "engine", settings, 1, ["--rate", "10/1s", "--time-scale", "0.1"], Rate(10, 1))
        figures[f"{mb} MB video: peak RSS MB"] = result.peak_rss_mb
    return figures


def makespan(who: str, seed: int, n: int = 100) -> tuple[float, float]:
    """(wall seconds, lower bound) of n items at a cap of 10/2s with generations of 1-3 s. The
    lower bound: every create at the cap's pace, each task ending its generation after it."""
    settings = SandboxSettings(api_key=KEY, rate=Rate(10, 2), gen_time=(1, 3), video_bytes=64 * 1024, seed=seed)
    with tempfile.TemporaryDirectory() as tmp, SandboxThread(settings) as sandbox:
        env = {**os.environ, "KIE_API_KEY": KEY, "KIE_BASE_URL": sandbox.base_url}
        m, out = manifest(Path(tmp) / "m.yaml", n), Path(tmp) / "out"
        argv = ([sys.executable, "-m", "batch_engine", "run", str(m), "--out", str(out), "-q", "--rate", "10/2s"]
                if who == "engine" else [sys.executable, str(ROOT / "bench" / "naive.py"), str(m), str(out)])
        wall = child(argv, env)[0]
        ordered = sorted(sandbox.tasks.values(), key=lambda task: task.created)
        return wall, max(i * 0.2 + task.duration for i, task in enumerate(ordered))


def callback_polls(n: int = 50) -> float:
    """Polls per task when every task's end comes as a (signed) callback, confirmed by one poll."""
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    settings = SandboxSettings(api_key=KEY, rate=Rate(200, 1), gen_time=(2, 4), video_bytes=8 * 1024,
                               webhook_key="bench-hook", duplicate_callbacks=0.3)
    with tempfile.TemporaryDirectory() as tmp, SandboxThread(settings) as sandbox:
        env = {**os.environ, "KIE_API_KEY": KEY, "KIE_BASE_URL": sandbox.base_url, "KIE_WEBHOOK_HMAC_KEY": "bench-hook"}
        m, out = manifest(Path(tmp) / "m.yaml", n), Path(tmp) / "out"
        child([sys.executable, "-m", "batch_engine", "run", str(m), "--out", str(out), "-q", "--rate", "200/1s",
               "--callback-url", f"http://127.0.0.1:{port}/cb", "--listen", f"127.0.0.1:{port}"], env)
        return sandbox.stats.polls / n


def goals() -> None:
    """The goal rows, each beside its goal, measured in this run (the naive script too)."""
    rows: list[tuple[str, str, str]] = []
    print("... CPU per item, 3,000 items", file=sys.stderr, flush=True)
    for who in ("engine", "naive"):
        r = measure("scale 3000", who, SandboxSettings(api_key=KEY, rate=Rate(5000, 1), gen_time=(0.05, 0.3),
                    video_bytes=8 * 1024), 3000, ["--rate", "5000/1s", "--poll-rate", "5000"], Rate(5000, 1))
        rows.append((f"CPU per item, 3,000 items, generations 0.05-0.3 s ({who}, polls/task {r.polls_per_task:.2f})",
                     f"{r.cpu_ms_per_item:.2f} ms", "< 1 ms" if who == "engine" else "-"))
    print("... makespan", file=sys.stderr, flush=True)
    for who in ("engine", "naive"):
        ratios = [wall / bound for wall, bound in (makespan(who, seed) for seed in range(2))]
        rows.append((f"makespan, 100 items at 10/2s, generations 1-3 s, vs the lower bound ({who}, 2 seeds)",
                     ", ".join(f"{x:.3f}x" for x in ratios), "<= 1.05x" if who == "engine" else "-"))
    print("... 50 tasks of 2-4 min", file=sys.stderr, flush=True)
    r = measure("50 x 2-4 min", "engine", SandboxSettings(api_key=KEY, rate=Rate(200, 2), gen_time=(24, 48),
                video_bytes=64 * 1024), 50, ["--rate", "200/2s", "--time-scale", "0.2"], Rate(200, 2), time_scale=0.2)
    rows.append(("50 tasks of 2-4 min started together (x0.2 clock): polls per task, in target",
                 f"{r.polls_per_task:.2f}, {(r.in_target or 0) * 100:.0f}%", "<= 4, 100%"))
    for earlier, n in ((50, 50), (0, 5), (50, 5)):  # a re-run in the same folder: its durations a prior
        r = measure("2-4 min", "engine", SandboxSettings(api_key=KEY, rate=Rate(200, 2), gen_time=(24, 48),
                    video_bytes=64 * 1024), n, ["--rate", "200/2s", "--time-scale", "0.2"], Rate(200, 2),
                    time_scale=0.2, earlier=earlier)
        rows.append((f"the same, {n} tasks, " + (f"after {earlier} in the same folder" if earlier else "a fresh folder"),
                     f"{r.polls_per_task:.2f}, {(r.in_target or 0) * 100:.0f}%", "<= 4, 100%" if n == 50 else "-"))
    print("... callbacks", file=sys.stderr, flush=True)
    rows.append(("polls per task with signed callbacks (30% sent twice)", f"{callback_polls():.2f}", "<= 1.1"))
    print("... ledger of 100,000 items", file=sys.stderr, flush=True)
    f = ledger_load(100_000)
    rows.append(("ledger of 100,000 items: retry load and resume", f"{f['retry (resume)']:.2f} s, "
                 f"{f['retry (resume) MB']:.0f} MB", "< 1 s, < 120 MB"))
    one = ledger_load(1)
    rows.append(("  the same on a 1-item ledger (start-up, imports, loop)", f"{one['retry (resume)']:.2f} s, "
                 f"{one['retry (resume) MB']:.0f} MB", "-"))
    rows.append(("ledger of 100,000 items: status --json", f"{f['status --json']:.2f} s, "
                 f"{f['status --json MB']:.0f} MB", "< 1 s, < 100 MB"))
    rows.append(("  the same on a 1-item ledger", f"{one['status --json']:.2f} s, {one['status --json MB']:.0f} MB", "-"))
    print("... a catalog of 100,000 items", file=sys.stderr, flush=True)
    for kind, seconds, mb in catalog_load(100_000):
        rows.append((f"catalog of 100,000 items ({kind}): validate", f"{seconds:.2f} s, {mb:.0f} MB", "-"))
    print(f"batch-engine goals, {time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores\n")
    width = max(len(row[0]) for row in rows)
    for what, measured, goal in rows:
        print(f"{what.ljust(width)}  {measured.ljust(22)}  goal {goal}")


def show(results: list[Result]) -> None:
    head = ("case", "who", "items", "use of cap", "429 share", "polls/task", "makespan/LB", "creates/LB",
            "notice max", "notice mean", "in target", "CPU ms/item", "peak MB")
    rows = [head]
    for r in results:
        pct = lambda v: "-" if v is None else f"{v * 100:.0f}%"
        rows.append((r.case, r.who, str(r.items), pct(r.utilisation), pct(r.refused), f"{r.polls_per_task:.2f}",
                     f"{r.makespan_ratio:.2f}", f"{r.span_ratio:.2f}", pct(r.lag_max), pct(r.lag_mean),
                     pct(r.in_target),
                     f"{r.cpu_ms_per_item:.2f}", f"{r.peak_rss_mb:.0f}"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--long-seeds", type=int, default=1, metavar="K",
                        help="run the 2-4 min case on K differently seeded sandboxes (its spread)")
    parser.add_argument("--goals", action="store_true", help="only the goal rows, each beside its goal")
    args = parser.parse_args()
    if args.goals:
        goals()
        return
    n = 100 if args.quick else 200
    cases = [
        ("told cap, sliding", SandboxSettings(api_key=KEY, rate=Rate(10, 2), gen_time=(3, 6), video_bytes=64 * 1024),
         n, ["--rate", "10/2s"], Rate(10, 2)),
        ("told cap, fixed, jitter 0-100 ms", SandboxSettings(api_key=KEY, rate=Rate(10, 2), window_kind="fixed",
                                                   latency=(0.0, 0.1), gen_time=(3, 6), video_bytes=64 * 1024),
         n, ["--rate", "10/2s"], Rate(10, 2)),
        ("hidden cap 5/2s", SandboxSettings(api_key=KEY, rate=Rate(5, 2), gen_time=(3, 6), video_bytes=64 * 1024),
         n // 2, ["--rate", "10/2s"], Rate(5, 2)),
        ("generation 20-40 s", SandboxSettings(api_key=KEY, rate=Rate(200, 2), gen_time=(20, 40), video_bytes=64 * 1024),
         n, ["--rate", "200/2s"], Rate(200, 2)),
        ("generation 20-40 s, cap 20/10s", SandboxSettings(api_key=KEY, rate=Rate(20, 10), gen_time=(20, 40),
                                                           video_bytes=64 * 1024),
         n // 2, ["--rate", "20/10s"], Rate(20, 10)),
    ]
    results = []
    for case, settings, items, engine_args, real in cases:
        for who in ("engine", "naive"):
            print(f"... {case}: {who}", file=sys.stderr, flush=True)
            results.append(measure(case, who, settings, items, engine_args, real))
    # minutes-long generations on a clock 5x faster (every interval of the engine scales with it;
    # the naive script has no such clock, so it sits this one out)
    for seed in range(args.long_seeds):
        case = "generation 2-4 min (x0.2 clock)" + (f", seed {seed}" if args.long_seeds > 1 else "")
        print(f"... {case}: engine", file=sys.stderr, flush=True)
        results.append(measure(case, "engine", SandboxSettings(
            api_key=KEY, rate=Rate(200, 2), gen_time=(24, 48), video_bytes=64 * 1024, seed=seed),
            n, ["--rate", "200/2s", "--time-scale", "0.2"], Rate(200, 2), time_scale=0.2))
    scale_n = 2000 if args.quick else 10_000
    print(f"... scale: {scale_n} items", file=sys.stderr, flush=True)
    results.append(measure(f"scale {scale_n}", "engine", SandboxSettings(
        api_key=KEY, rate=Rate(5000, 1), gen_time=(0.5, 1.0), video_bytes=8 * 1024),
        scale_n, ["--rate", "5000/1s", "--time-scale", "0.2", "--poll-rate", "5000"], Rate(5000, 1)))
    print(f"batch-engine bench, {time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores\n")
    show(results)
    print("\nLB: the lower bound on the create span at the provider's real cap (items / cap * window).")
    print("notice: how late a finished task was first seen by a poll, as a share of its generation time;")
    print("in target: tasks seen within 30% of their generation time or 3 s, whichever is more.")
    print("scale: the sandbox shares the 2 cores with the engine there; that row is about CPU and memory.\n")
    ledger_n = 20_000 if args.quick else 100_000
    print(f"... ledger of {ledger_n} items", file=sys.stderr, flush=True)
    for name, value in ledger_load(ledger_n).items():
        print(f"ledger of {ledger_n} items, {name}: {value:.2f}{'' if 'MB' in name else ' s'}")
    for name, value in big_video(50 if args.quick else 200).items():
        print(f"{name}: {value:.0f}")


if __name__ == "__main__":
    main()

"""Shards on one account share its create cap: through a file on one machine, through a real
Redis (Debian's redis-server, started and stopped here) across machines, and on without it when
Redis goes away mid-run."""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

from batch_engine.config import Rate
from batch_engine.pacing.shared import SqliteWindow
from tests.conftest import FAST, cli_env, start_cli, status, stop, wait_for, write_manifest

REDIS = shutil.which("redis-server")
CAP = Rate(10, 2.0)  # the account's real cap at the sandbox, and what every shard is told


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def most_in_a_window(times: list[float], window: float) -> int:
    times = sorted(times)
    most, start = 0, 0
    for end, t in enumerate(times):
        while t - times[start] >= window:
            start += 1
        most = max(most, end - start + 1)
    return most


def run_shards(served, tmp_path: Path, n: int, shards: int, *extra: str, during=None) -> list[Path]:
    manifest = write_manifest(tmp_path / "m.yaml", n)
    env = cli_env(served, XDG_CACHE_HOME=str(tmp_path / "cache"))
    outs = [tmp_path / f"shard-{k}" for k in range(1, shards + 1)]
    procs = [start_cli("run", str(manifest), "--out", str(out), "--shard", f"{k}/{shards}", "--rate", str(CAP),
                       *FAST, *extra, env=env) for k, out in enumerate(outs, start=1)]
    try:
        if during is not None:
            during()
        for proc in procs:
            proc.wait(timeout=180)
    finally:
        errors = [stop(proc)[1] for proc in procs]
    assert [p.returncode for p in procs] == [0] * shards, errors
    return outs


def check_shared(served, outs: list[Path], n: int) -> tuple[int, int]:
    creates = served.read(lambda s: [c["time"] for c in s.stats.creates])
    calls, refused = served.read(lambda s: (s.stats.create_calls, s.stats.rate_limited))
    per_item = served.read(lambda s: s.creates_per_item())
    assert len(per_item) == n and set(per_item.values()) == {1}  # nothing paid twice
    assert most_in_a_window(creates, CAP.window) <= CAP.creates
    assert refused < 0.1 * calls, (refused, calls)
    for out in outs:
        report = status(out, cli_env(served))
        assert report["counts"]["succeeded"] == len(report["items"])
    return calls, refused


def test_three_shards_on_one_machine_share_the_accounts_cap_through_a_file(serve, tmp_path):
    served = serve(rate=CAP, gen_time=(0.5, 1.0))
    outs = run_shards(served, tmp_path, 45, 3)
    calls, refused = check_shared(served, outs, 45)
    print(f"\n3 shards, one file: {calls} create calls, {refused} answered 429")


def test_without_sharing_the_same_shards_meet_429s(serve, tmp_path):
    """The measure of the two tests above: shards told to keep the cap to themselves."""
    served = serve(rate=CAP, gen_time=(0.5, 1.0))
    run_shards(served, tmp_path, 45, 3, "--rate-store", "off")
    calls, refused = served.read(lambda s: (s.stats.create_calls, s.stats.rate_limited))
    print(f"\n3 shards, not shared: {calls} create calls, {refused} answered 429")
    assert refused > 0


@pytest.mark.skipif(REDIS is None, reason="Debian's redis-server is not installed (.ci/run installs it)")
def test_shards_share_the_cap_through_redis_and_survive_it_going_away(serve, tmp_path):
    served = serve(rate=CAP, gen_time=(0.5, 1.0))
    port = free_port()
    redis = subprocess.Popen([str(REDIS), "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: _answers(port), timeout=10)

        def stop_redis_mid_run() -> None:
            wait_for(lambda: served.read(lambda s: len(s.stats.creates)) >= 20, timeout=60)
            redis.terminate()
            redis.wait(timeout=10)

        outs = run_shards(served, tmp_path, 60, 3, "--rate-store", f"redis://127.0.0.1:{port}/0",
                          during=stop_redis_mid_run)
        calls, refused = check_shared(served, outs, 60)
        print(f"\n3 shards through Redis, stopped mid-run: {calls} create calls, {refused} answered 429")
        assert redis.returncode is not None  # it really went away while they ran
    finally:
        if redis.poll() is None:
            redis.kill()
            redis.wait(timeout=10)


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def test_the_file_window_never_lets_more_than_the_cap_through(tmp_path):
    async def scenario() -> list[float]:
        rate = Rate(5, 0.5)
        windows = [SqliteWindow(tmp_path / "a.sqlite", "acct", rate) for _ in range(3)]  # three runs
        times: list[float] = []

        async def taker(window: SqliteWindow) -> None:
            for _ in range(5):
                await window.take()
                times.append(time.time())
        await asyncio.wait_for(asyncio.gather(*(taker(w) for w in windows)), timeout=30)
        for w in windows:
            w.close()
        return times
    times = asyncio.run(scenario())
    assert len(times) == 15 and most_in_a_window(times, 0.5) <= 5
    assert max(times) - min(times) >= 1.0  # 15 creates at 5 per half second: two windows at least

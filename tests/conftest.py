"""Shared fixtures: a sandbox provider on loopback, and the real CLI run as a subprocess."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from batch_engine.config import Rate
from batch_engine.sandbox import Sandbox, SandboxSettings, SandboxThread
from tests.hostile import Hostile, HostileThread

# A suite started as a background job by a shell without job control (`pytest ... &` in a
# script) inherits SIGINT ignored, and so would every engine it starts: the engine rightly keeps
# an ignored SIGINT ignored, and the Ctrl-C tests would find it deaf. They test what a terminal
# gives, so the suite takes the default back for itself and its children.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

API_KEY = "test-key-5d1c0ffee"
FAST = ["--time-scale", "0.05", "--request-timeout", "3", "-q"]  # polls every ~0.1 s at first: tests stay quick


@dataclass
class Served:
    sandbox: Sandbox
    thread: SandboxThread

    def read(self, fn: Callable[[Sandbox], Any]) -> Any:
        """Read sandbox state on its own loop (no races with the server)."""
        return self.thread.call(fn, self.sandbox)


@pytest.fixture
def serve() -> Iterator[Callable[..., Served]]:
    """Start sandboxes with given settings; every one is stopped at the end of the test."""
    started: list[SandboxThread] = []

    def start(**settings: Any) -> Served:
        settings.setdefault("api_key", API_KEY)
        settings.setdefault("rate", Rate(200, 1.0))
        settings.setdefault("gen_time", (0.2, 0.6))
        settings.setdefault("video_bytes", 64 * 1024)
        thread = SandboxThread(SandboxSettings(**settings))
        sandbox = thread.__enter__()
        started.append(thread)
        return Served(sandbox, thread)

    yield start
    for thread in started:
        thread.__exit__(None, None, None)


@pytest.fixture
def hostile() -> Iterator[Callable[..., Hostile]]:
    """Start misbehaving providers (see tests/hostile.py); every one is stopped at the end."""
    started: list[HostileThread] = []

    def start(**fields: Any) -> Hostile:
        thread = HostileThread(Hostile(**fields))
        started.append(thread)
        return thread.__enter__()

    yield start
    for thread in started:
        thread.__exit__(None, None, None)


def hostile_env(h: Hostile, **extra: str) -> dict[str, str]:
    return cli_env(None, KIE_API_KEY=h.key, KIE_BASE_URL=h.base_url, KIE_UPLOAD_BASE_URL=h.base_url, **extra)


def write_manifest(path: Path, n: int, *, prefix: str = "sku", extra: dict | None = None) -> Path:
    items = [{"id": f"{prefix}-{i:05d}", "image_url": f"https://cdn.example.com/{prefix}/{i}.jpg",
              "prompt": f"Slow dolly-in on product {i}, soft studio light"} for i in range(n)]
    path.write_text(yaml.safe_dump({"defaults": {"prompt_optimizer": True, **(extra or {})},
                                    "items": items}, sort_keys=False))
    return path


def cli_env(served: Served | None, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KIE_")}
    if served is not None:
        env["KIE_API_KEY"] = served.sandbox.settings.api_key
        env["KIE_BASE_URL"] = served.sandbox.base_url
    env.update(extra)
    return env


def run_cli(*args: str, env: dict[str, str], timeout: float = 120,
            max_file_bytes: int | None = None) -> subprocess.CompletedProcess:
    """Run the CLI to completion; if it overruns, fail with the stacks it was stuck in.

    `max_file_bytes` caps the size of any file it writes (RLIMIT_FSIZE), like a full disk. It is
    set by the child itself before the engine starts: a preexec_fn could deadlock after a fork
    from this multi-threaded process (the sandboxes run in threads)."""
    command = [sys.executable, "-m", "batch_engine", *args]
    if max_file_bytes is not None:
        command = [sys.executable, "-c", "import resource, runpy, sys; "
                   f"resource.setrlimit(resource.RLIMIT_FSIZE, ({max_file_bytes}, {max_file_bytes})); "
                   "sys.argv = ['batch-engine', *sys.argv[1:]]; "
                   "runpy.run_module('batch_engine', run_name='__main__')", *args]
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGUSR1)
        time.sleep(1.0)  # give faulthandler a moment to print the stacks
        proc.kill()
        out, err = proc.communicate(timeout=10)
        raise AssertionError(f"batch-engine {' '.join(args)} overran {timeout} s:\n{err[-6000:]}") from None
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def run_manifest(served: Served, tmp_path: Path, n: int, *extra: str, rate: str = "200/1s",
                 env: dict[str, str] | None = None, timeout: float = 120) -> tuple[subprocess.CompletedProcess, Path]:
    """`batch-engine run` on a fresh n-item manifest into tmp_path/out, against `served`."""
    out = tmp_path / "out"
    done = run_cli("run", str(write_manifest(tmp_path / "m.yaml", n)), "--out", str(out), "--rate", rate,
                   *FAST, *extra, env=env or cli_env(served), timeout=timeout)
    return done, out


def start_cli(*args: str, env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "batch_engine", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def stop(proc: subprocess.Popen, sig: int = signal.SIGKILL, timeout: float = 20) -> tuple[str, str]:
    if proc.poll() is None:
        proc.send_signal(sig)
    try:
        return proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.communicate(timeout=10)


def wait_for(predicate: Callable[[], bool], *, timeout: float = 30, interval: float = 0.02) -> None:
    """Poll `predicate` until true; bounded in time. Fails the test if it never holds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout} s")


def in_state(out: Path, state: str) -> int:
    """How many items the ledger shows in `state` right now."""
    latest: dict[str, str] = {}
    for record in ledger_records(out):
        if "state" in record:
            latest[record["id"]] = record["state"]
    return sum(1 for value in latest.values() if value == state)


def interrupt(proc: subprocess.Popen, when: Callable[[], bool], sig: int) -> str:
    """Send `sig` to a running CLI once `when()` holds; return what it printed to stderr."""
    try:
        wait_for(when)
    finally:
        _, err = stop(proc, sig)
    return err


def status(out: Path, env: dict[str, str]) -> dict[str, Any]:
    done = run_cli("status", str(out), "--json", env=env)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def ledger_records(out: Path) -> list[dict[str, Any]]:
    path = out / "ledger.jsonl"
    if not path.exists():
        return []
    records = []
    for line in path.read_bytes().split(b"\n"):
        try:
            records.append(json.loads(line))
        except ValueError:
            pass
    return records

"""Usage mistakes are caught before any request: exit 2, a clear message,
nothing sent, whatever the mistake."""

from __future__ import annotations

import socket

import pytest

from tests.conftest import FAST, hostile_env, run_cli, write_manifest


@pytest.mark.parametrize("env_change, options, says", [
    ({"KIE_BASE_URL": "127.0.0.1:28787"}, [], "is not an http(s) URL"),
    ({"KIE_BASE_URL": "http://127.0.0.1:99999"}, [], "impossible port"),
    ({"KIE_API_KEY": "key-with\x07bell"}, [], "KIE_API_KEY holds white space or a control character"),
    ({"KIE_WEBHOOK_HMAC_KEY": "a b"}, [], "KIE_WEBHOOK_HMAC_KEY holds"),
    ({}, ["--poll-rate", "nan"], "--poll-rate must be a positive number"),
    ({}, ["--request-timeout", "inf"], "--request-timeout must be a positive number"),
    ({}, ["--download-stall", "0"], "--download-stall must be a positive number"),
    ({}, ["--callback-url", "http://127.0.0.1:8080/cb", "--listen", "127.0.0.1:70000"], "port from 1 to 65535"),
    ({}, ["--rate", "20/90000s"], "longer than a day"),
], ids=["no scheme", "impossible port", "key with a control character", "webhook key with a space",
        "poll rate nan", "timeout inf", "stall 0", "listen port too big", "rate window over a day"])
def test_16_usage_errors_exit_2_before_any_request(hostile, tmp_path, env_change, options, says):
    h = hostile()
    env = {**hostile_env(h), **env_change}
    done = run_cli("run", str(write_manifest(tmp_path / "m.yaml", 3)), "--out", str(tmp_path / "out"),
                   *FAST, *options, env=env)
    assert done.returncode == 2, done.stderr
    assert says in done.stderr and "internal error" not in done.stderr
    assert not h.creates and not h.polls
    assert "bell" not in done.stderr or "\x07" not in done.stderr


def test_16_a_busy_listen_port_exits_2_before_any_request(hostile, tmp_path):
    h = hostile()
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = run_cli("run", str(write_manifest(tmp_path / "m.yaml", 3)), "--out", str(tmp_path / "out"),
                       "--callback-url", f"http://127.0.0.1:{port}/cb", *FAST, env=hostile_env(h))
    assert done.returncode == 2, done.stderr
    assert "cannot listen for callbacks" in done.stderr and "nothing was sent" in done.stderr
    assert not h.creates


def test_status_into_a_pipe_closed_early_ends_quietly(tmp_path):
    """`status --json | head`: the reader leaves early; no traceback, no internal error, the
    shell's code for a closed pipe (141)."""
    import subprocess
    import sys

    from batch_engine.states import State
    from batch_engine.store.ledger import Item, Ledger
    with Ledger(tmp_path) as ledger:
        for n in range(3000):  # about 1 MB of rows: more than a pipe holds
            ledger.add(Item(id=f"sku-{n:05d}", request={"model": "m", "input": {}}, fingerprint="f", state=State.PENDING))
    proc = subprocess.Popen([sys.executable, "-m", "batch_engine", "status", str(tmp_path), "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stdout.read(100).startswith(b'{"items": [')
    proc.stdout.close()
    try:
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 141, err
    assert b"Traceback" not in err and b"internal error" not in err and b"Exception" not in err

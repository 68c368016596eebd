"""Callback mode: tasks end on their callback, polling is a slow fallback, signatures hold."""

from __future__ import annotations

import socket

import pytest

from batch_engine.provider.callbacks import sign, signature_ok
from tests.conftest import FAST, cli_env, run_cli, status, write_manifest
from tests.test_run import assert_videos_match

HMAC_KEY = "whsec-test-0b1d"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_signature_checks():
    """A good signature passes; a wrong key, another task, a stale or missing timestamp do not."""
    key = HMAC_KEY.encode()
    good = sign(key, "task-1", "1000")
    assert signature_ok(key, "task-1", "1000", good, now=1010)
    assert not signature_ok(b"other", "task-1", "1000", good, now=1010)
    assert not signature_ok(key, "task-2", "1000", good, now=1010)
    assert not signature_ok(key, "task-1", "1000", good, now=1000 + 301)
    assert not signature_ok(key, "task-1", None, good, now=1010)


@pytest.mark.parametrize("signed, key_set", [(True, True), (False, False), (False, True)],
                         ids=["signed", "unsigned", "unsigned, key set"])
def test_callbacks_finish_tasks_with_little_polling(serve, tmp_path, signed, key_set):
    """Every task ends through its callback, confirmed by one recordInfo (kie signs only the task id
    and the time, never the body): about one poll a task, signed or not, duplicates included."""
    served = serve(gen_time=(0.5, 1.0), webhook_key=HMAC_KEY if signed else None, duplicate_callbacks=0.3)
    port = free_port()
    out = tmp_path / "out"
    env = cli_env(served, **({"KIE_WEBHOOK_HMAC_KEY": HMAC_KEY} if key_set else {}))
    done = run_cli("run", str(write_manifest(tmp_path / "m.yaml", 20)), "--out", str(out), "--rate", "200/1s",
                   "--callback-url", f"http://127.0.0.1:{port}/kie/callback", "--listen", f"127.0.0.1:{port}",
                   *FAST, env=env)
    assert done.returncode == 0, done.stderr
    assert_videos_match(out, served, status(out, cli_env(served)))
    polls, answers = served.read(lambda s: (s.stats.polls, list(s.stats.callback_answers)))
    assert answers and set(answers) == {200}
    assert polls / 20 <= 1.5, polls


def test_forged_callback_is_refused(serve, tmp_path):
    """With a webhook key set, callbacks signed with another key are refused; polling finishes the run."""
    served = serve(gen_time=(0.3, 0.6), webhook_key="not-the-key")
    port = free_port()
    out = tmp_path / "out"
    done = run_cli("run", str(write_manifest(tmp_path / "m.yaml", 3)), "--out", str(out), "--rate", "200/1s",
                   "--callback-url", f"http://127.0.0.1:{port}/cb", *FAST, "--time-scale", "0.005",
                   env=cli_env(served, KIE_WEBHOOK_HMAC_KEY=HMAC_KEY))
    assert done.returncode == 0, done.stderr
    assert set(served.read(lambda s: s.stats.callback_answers)) == {401}
    assert "bad or stale signature" in done.stderr
    assert HMAC_KEY not in done.stderr

"""Faults, crashes and interruptions: nothing lost, nothing paid twice by the engine's own mistake."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from batch_engine.config import Rate
from batch_engine.sandbox import Faults
from batch_engine.store.partial import part_path
from tests.conftest import (
    FAST,
    cli_env,
    in_state,
    interrupt,
    ledger_records,
    run_cli,
    run_manifest,
    start_cli,
    status,
    stop,
    wait_for,
    write_manifest,
)
from tests.test_run import assert_videos_match


def test_faulty_run_finishes_every_item_that_can_be_finished(serve, tmp_path):
    """100 items through every provider and file-host fault at once: every task that did not fail
    at the provider ends as an intact video; failures are recorded; duplicates only where a create
    went unanswered (and the summary says so)."""
    faults = Faults(seed=11, server_error=0.04, body_error=0.04, drop=0.03, drop_after_create=0.08,
                    maintenance=0.02, unknown_for=0.3, extra_state=0.3, truncate=0.15, error_page=0.08)
    served = serve(rate=Rate(10, 1.0), limit_style="body", fail_rate=0.1, seed=5, faults=faults,
                   expire_links=True)
    done, out = run_manifest(served, tmp_path, 100, rate="60/1s", timeout=240)
    assert done.returncode == 1, done.stderr  # some tasks fail at the provider (fail_rate)
    report = status(out, cli_env(served))
    failed = [row for row in report["items"] if row["state"] == "failed"]
    succeeded = [row for row in report["items"] if row["state"] == "succeeded"]
    assert len(failed) + len(succeeded) == 100
    assert failed and [row for row in failed if row["fail_code"] != "501"] == []
    assert_videos_match(out, served, {"items": succeeded})
    assert sorted(p.name for p in out.glob("*.mp4")) == sorted(f"{row['id']}.mp4" for row in succeeded)

    stats = served.read(lambda s: (dict(s.stats.faults), s.stats.rate_limited, s.creates_per_item(),
                                   [h for h in s.stats.file_requests if "Range" in h]))
    injected, limited, per_item, resumed = stats
    assert resumed, "cut downloads resume with Range"
    for kind in ("server_error", "body_error", "drop", "drop_after_create", "maintenance", "truncate",
                 "error_page"):
        assert injected.get(kind, 0) > 0, f"the sandbox never injected {kind}: {injected}"
    assert limited > 0
    duplicates = sum(n - 1 for n in per_item.values())
    unanswered = sum(r.get("unanswered_creates", 0) for r in _final(out).values())
    assert duplicates <= unanswered
    if unanswered:
        assert "may have been paid twice" in done.stderr
    assert "undocumented state 'rendering'" in done.stderr


def test_create_timing_out_is_sent_again_and_counted(serve, tmp_path):
    """Answers slower than --request-timeout: a create that timed out is sent again (the one
    documented policy), counted, and said in the summary; every item ends with one video."""
    served = serve(faults=Faults(seed=4, slow=0.3, slow_seconds=1.5))
    done, out = run_manifest(served, tmp_path, 8, "--request-timeout", "0.5")
    assert done.returncode == 0, done.stderr
    assert_videos_match(out, served, status(out, cli_env(served)))
    per_item = served.read(lambda s: s.creates_per_item())
    unanswered = sum(r.get("unanswered_creates", 0) for r in _final(out).values())
    assert unanswered > 0 and sum(per_item.values()) - 8 <= unanswered
    assert f"{unanswered} create(s) got no answer and were sent again" in done.stderr


def _final(out: Path) -> dict[str, dict]:
    items: dict[str, dict] = {}
    for record in ledger_records(out):
        items.setdefault(record["id"], {}).update(record)
    return items


def test_repeated_sigkill_ends_complete(serve, tmp_path):
    """SIGKILL at random moments, several times, then the same command: every video intact and
    byte-identical, and at most one item paid twice per kill."""
    served = serve(rate=Rate(40, 1.0), gen_time=(0.3, 1.0), faults=Faults(seed=3, truncate=0.2))
    out, manifest = tmp_path / "out", write_manifest(tmp_path / "m.yaml", 40)
    args = ("run", str(manifest), "--out", str(out), "--rate", "40/1s", *FAST)
    rng, kills = random.Random(1234), 0
    for _ in range(4):
        proc = start_cli(*args, env=cli_env(served))
        time.sleep(rng.uniform(0.3, 1.2))  # a random moment to crash at, not a synchronisation
        stop(proc, signal.SIGKILL)
        kills += proc.returncode == -signal.SIGKILL
    done = run_cli(*args, env=cli_env(served))
    assert done.returncode == 0, done.stderr
    assert_videos_match(out, served, status(out, cli_env(served)))
    per_item = served.read(lambda s: s.creates_per_item())
    assert len(per_item) == 40 and sum(per_item.values()) - 40 <= kills


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupt_exits_130_and_resumes(serve, tmp_path, sig):
    """Ctrl-C or SIGTERM: exit 130 within a few seconds with a message; the next run completes."""
    served = serve(gen_time=(1.0, 2.0))
    out, manifest = tmp_path / "out", write_manifest(tmp_path / "m.yaml", 10)
    args = ("run", str(manifest), "--out", str(out), "--rate", "200/1s", *FAST)
    proc = start_cli(*args, env=cli_env(served))
    began = time.monotonic()
    err = interrupt(proc, lambda: in_state(out, "running") >= 3, sig)
    assert proc.returncode == 130, err
    assert time.monotonic() - began < 15
    assert "run the same command again to resume" in err and "Traceback" not in err
    done = run_cli(*args, env=cli_env(served))
    assert done.returncode == 0, done.stderr
    assert sorted(served.read(lambda s: s.creates_per_item()).values()) == [1] * 10


def test_a_run_started_with_sigint_ignored_keeps_it_ignored_and_stops_on_sigterm(serve, tmp_path):
    """A background job of a script inherits SIGINT ignored: the engine keeps it so (the run
    goes on to the end), and SIGTERM still stops such a run the usual way."""
    served = serve(gen_time=(1.0, 2.0))
    out, manifest = tmp_path / "out", write_manifest(tmp_path / "m.yaml", 6)
    args = ("run", str(manifest), "--out", str(out), "--rate", "200/1s", *FAST)
    ignoring = ("import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_IGN); "
                "os.execv(sys.executable, [sys.executable, '-m', 'batch_engine', *sys.argv[1:]])")
    proc = subprocess.Popen([sys.executable, "-c", ignoring, *args], env=cli_env(served),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: in_state(out, "running") >= 3)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        stop(proc)
    assert proc.returncode == 0, err
    assert in_state(out, "succeeded") == 6

    second = write_manifest(tmp_path / "m2.yaml", 6, prefix="more")
    proc = subprocess.Popen([sys.executable, "-c", ignoring, "run", str(second), "--out", str(out), "--rate",
                             "200/1s", *FAST], env=cli_env(served), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    err = interrupt(proc, lambda: in_state(out, "running") >= 3, signal.SIGTERM)
    assert proc.returncode == 130, err


def test_second_run_on_the_same_folder_is_refused(serve, tmp_path):
    """While one run holds the folder, a second exits 2 with a clear message and sends nothing."""
    served = serve(gen_time=(3.0, 4.0))
    out, manifest = tmp_path / "out", write_manifest(tmp_path / "m.yaml", 3)
    args = ("run", str(manifest), "--out", str(out), "--rate", "200/1s", *FAST)
    first = start_cli(*args, env=cli_env(served))
    try:
        wait_for(lambda: in_state(out, "running") == 3)
        calls = served.read(lambda s: s.stats.create_calls)
        second = run_cli(*args, env=cli_env(served))
        assert second.returncode == 2
        assert "another batch-engine" in second.stderr and "is using" in second.stderr
        assert served.read(lambda s: s.stats.create_calls) == calls
    finally:
        stop(first, signal.SIGINT)


@pytest.mark.parametrize("code, advice", [(401, "check KIE_API_KEY"), (402, "no credits"),
                                          (433, "usage cap"), (505, "disabled")])
def test_account_refusal_mid_run(serve, tmp_path, code, advice):
    """Refused after 4 creates: a handful of calls at most, paid tasks still finished, exit 3."""
    served = serve(faults=Faults(refuse_code=code, refuse_after=4))
    done, out = run_manifest(served, tmp_path, 20)
    assert done.returncode == 3, done.stderr
    assert advice in done.stderr and "Traceback" not in done.stderr
    assert served.read(lambda s: s.stats.create_calls) <= 4 + 4
    counts = status(out, cli_env(served))["counts"]
    assert counts["pending"] == 16
    assert "16 item(s) not submitted (the account was refused)" in done.stderr
    if code == 401:  # a revoked key cannot even poll: the paid tasks wait, resumable
        assert counts["running"] == 4
    else:  # only creating is refused: the tasks already paid for are finished
        assert counts["succeeded"] == 4


def test_unfinished_task_is_reported_and_resumed(serve, tmp_path):
    """A task still running at --task-timeout is reported (exit 1) and picked up by the next run."""
    served = serve(gen_time=(4.0, 4.0))
    out, manifest = tmp_path / "out", write_manifest(tmp_path / "m.yaml", 2)
    args = ("run", str(manifest), "--out", str(out), "--rate", "200/1s", *FAST)
    done = run_cli(*args, "--task-timeout", "0.02", env=cli_env(served))
    assert done.returncode == 1, done.stderr
    assert "still unfinished" in done.stderr
    assert status(out, cli_env(served))["counts"]["running"] == 2
    time.sleep(3.0)  # let the sandbox's tasks finish: this is the provider taking its time
    again = run_cli(*args, env=cli_env(served))
    assert again.returncode == 0, again.stderr
    assert served.read(lambda s: len(s.stats.creates)) == 2


def test_edited_item_is_made_again_and_the_old_video_set_aside(serve, tmp_path):
    """An item whose prompt changed after it succeeded is made again; its old video moves to .replaced/."""
    served = serve()
    out, manifest = tmp_path / "out", write_manifest(tmp_path / "m.yaml", 3)
    args = ("run", str(manifest), "--out", str(out), "--rate", "200/1s", *FAST)
    assert run_cli(*args, env=cli_env(served)).returncode == 0
    old = (out / "sku-00001.mp4").read_bytes()
    manifest.write_text(manifest.read_text().replace("product 1,", "product 1 in the rain,"))
    done = run_cli(*args, env=cli_env(served))
    assert done.returncode == 0, done.stderr
    assert "sku-00001: changed in the manifest" in done.stderr and "prompt" in done.stderr
    assert list((out / ".replaced").glob("sku-00001.*.mp4"))[0].read_bytes() == old
    assert (out / "sku-00001.mp4").read_bytes() != old
    assert served.read(lambda s: len(s.stats.creates)) == 4
    assert_videos_match(out, served, status(out, cli_env(served)))


def test_disk_full_stops_with_a_clear_error_and_a_consistent_ledger(serve, tmp_path):
    """Writes that fail (here: a file size limit, like a full disk) stop the run with a plain
    message; the ledger still loads, and a run with room finishes without paying again."""
    served = serve(video_bytes=256 * 1024)
    out, manifest = tmp_path / "out", write_manifest(tmp_path / "m.yaml", 3)
    args = ("run", str(manifest), "--out", str(out), "--rate", "200/1s", *FAST)
    proc = run_cli(*args, env=cli_env(served), timeout=60, max_file_bytes=100_000)
    assert proc.returncode == 1, proc.stderr
    assert "cannot write" in proc.stderr and "Traceback" not in proc.stderr
    assert not list(out.glob("*.mp4"))
    done = run_cli(*args, env=cli_env(served))
    assert done.returncode == 0, done.stderr
    assert served.read(lambda s: len(s.stats.creates)) == 3


def test_output_folder_that_cannot_be_made(serve, tmp_path):
    """An output path under a file: exit 2, a clear message, nothing sent."""
    served = serve()
    (tmp_path / "file").write_text("x")
    done = run_cli("run", str(write_manifest(tmp_path / "m.yaml", 1)), "--out", str(tmp_path / "file" / "out"),
                   *FAST, env=cli_env(served))
    assert done.returncode == 2 and "cannot use the output folder" in done.stderr
    assert served.read(lambda s: s.stats.create_calls) == 0


@pytest.mark.parametrize("content, needle", [
    (b"items:\n  - id: caf\xe9\n", "not UTF-8"),
    (b"", "the manifest is empty"),
    (b"- id: a\n", "the manifest is a list"),
])
def test_unusable_manifest_files(serve, tmp_path, content, needle):
    """Non-UTF-8, empty and list-shaped manifests: exit 2 with a clear message, nothing sent."""
    served = serve()
    (tmp_path / "m.yaml").write_bytes(content)
    done = run_cli("run", str(tmp_path / "m.yaml"), "--out", str(tmp_path / "out"), env=cli_env(served))
    assert done.returncode == 2 and needle in done.stderr and "Traceback" not in done.stderr
    assert served.read(lambda s: s.stats.create_calls) == 0


def test_huge_manifest_is_refused(tmp_path):
    """A manifest over the size limit is refused before parsing."""
    path = tmp_path / "m.yaml"
    with open(path, "wb") as f:
        f.truncate(65 * 1024 * 1024)
    done = run_cli("run", str(path), "--out", str(tmp_path / "out"), env=cli_env(None))
    assert done.returncode == 2 and "split the catalog" in done.stderr


def test_second_ctrl_c_exits_at_once(serve, tmp_path):
    """The first Ctrl-C waits a moment for a create on the wire; a second one exits at once."""
    served = serve(faults=Faults(slow=1.0, slow_seconds=30))
    out = tmp_path / "out"
    proc = start_cli("run", str(write_manifest(tmp_path / "m.yaml", 3)), "--out", str(out), *FAST,
                     "--request-timeout", "60", env=cli_env(served))
    try:
        wait_for(lambda: in_state(out, "submitting") >= 1)
        wait_for(lambda: served.read(lambda s: s.stats.create_calls) >= 1)
        proc.send_signal(signal.SIGINT)
        with pytest.raises(subprocess.TimeoutExpired):
            proc.wait(timeout=1.0)  # still settling the create on the wire
        began = time.monotonic()
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=5)
        assert time.monotonic() - began < 2.0
    finally:
        _, err = stop(proc, signal.SIGKILL)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    assert in_state(out, "submitting") >= 1, "left for the next run to count"


def test_killed_after_the_last_byte_before_the_rename(serve, tmp_path):
    """A whole part file left by a kill is finished from disk when the host answers 416 to the resume."""
    served = serve()
    out, manifest = tmp_path / "out", write_manifest(tmp_path / "m.yaml", 1)
    args = ("run", str(manifest), "--out", str(out), "--rate", "200/1s", *FAST)
    assert run_cli(*args, env=cli_env(served)).returncode == 0
    row = status(out, cli_env(served))["items"][0]
    (out / ".partial").mkdir(exist_ok=True)
    (out / "sku-00000.mp4").rename(part_path(out, "sku-00000", row["task_id"]))
    with open(out / "ledger.jsonl", "a") as ledger:  # the state a kill before the rename leaves
        ledger.write('{"id":"sku-00000","state":"downloading","video":null}\n')
    done = run_cli(*args, env=cli_env(served))
    assert done.returncode == 0, done.stderr
    last = served.read(lambda s: s.stats.file_requests[-1])
    assert last.get("Range", "").startswith("bytes=")
    assert_videos_match(out, served, status(out, cli_env(served)))

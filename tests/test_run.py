"""The real CLI against the sandbox over real sockets: runs, reruns, kills, retry, refusals."""

from __future__ import annotations

import hashlib
import signal
from pathlib import Path

import pytest

from batch_engine.config import Rate
from tests.conftest import (
    API_KEY,
    FAST,
    cli_env,
    in_state,
    interrupt,
    run_cli,
    run_manifest,
    start_cli,
    status,
    write_manifest,
)


def assert_videos_match(out: Path, served, report: dict) -> None:
    for row in report["items"]:
        assert row["state"] == "succeeded", row
        size, sha = served.read(lambda s: s.expected_video(row["task_id"]))
        data = Path(row["video"]).read_bytes()
        assert Path(row["video"]) == (out / f"{row['id']}.mp4").resolve()
        assert len(data) == size == row["bytes"]
        assert hashlib.sha256(data).hexdigest() == sha == row["sha256"]


def test_fifty_items_byte_identical(serve, tmp_path):
    """50 items: every video is byte-identical to what the provider served, one create each."""
    served = serve()
    done, out = run_manifest(served, tmp_path, 50)
    assert done.returncode == 0, done.stderr
    report = status(out, cli_env(served))
    assert report["counts"]["succeeded"] == 50 and len(report["items"]) == 50
    assert_videos_match(out, served, report)
    assert sorted(served.read(lambda s: s.creates_per_item()).values()) == [1] * 50
    assert not list((out / ".partial").glob("*")), "no temp file is left behind"


def test_rerun_creates_nothing(serve, tmp_path):
    """Running the same command again after success sends no create and no poll."""
    served = serve()
    out, manifest = tmp_path / "out", write_manifest(tmp_path / "m.yaml", 8)
    args = ("run", str(manifest), "--out", str(out), "--rate", "200/1s", *FAST)
    assert run_cli(*args, env=cli_env(served)).returncode == 0
    calls = served.read(lambda s: (s.stats.create_calls, s.stats.polls))
    again = run_cli(*args, env=cli_env(served))
    assert again.returncode == 0, again.stderr
    assert served.read(lambda s: (s.stats.create_calls, s.stats.polls)) == calls
    assert "0 creates sent" in again.stderr


def test_told_cap_is_never_exceeded(serve, tmp_path):
    """Told the provider's true cap, the engine provokes no 429 at all."""
    served = serve(rate=Rate(10, 1.0))
    done, out = run_manifest(served, tmp_path, 30, rate="10/1s")
    assert done.returncode == 0, done.stderr
    assert served.read(lambda s: s.stats.rate_limited) == 0
    times = served.read(lambda s: [c["time"] for c in s.stats.creates])
    assert all(b - a > 1.0 for a, b in zip(times, times[10:])), "no 1 s window holds 11 creates"


@pytest.mark.parametrize("style", ["status", "body"])
def test_429_never_fails_an_item(serve, tmp_path, style):
    """A provider stricter than told answers 429 (as HTTP status or body code): items wait, none fails."""
    served = serve(rate=Rate(5, 1.0), limit_style=style)
    done, out = run_manifest(served, tmp_path, 20, rate="40/1s")
    assert done.returncode == 0, done.stderr
    assert served.read(lambda s: s.stats.rate_limited) > 0
    assert sorted(served.read(lambda s: s.creates_per_item()).values()) == [1] * 20
    report = status(out, cli_env(served))
    assert report["counts"]["succeeded"] == 20
    assert all(row["attempts"] == 1 for row in report["items"]), "a 429 is not an attempt"


def test_bad_manifest_sends_nothing(serve, tmp_path):
    """A manifest with problems exits 2, names each problem, sends no request, writes no ledger."""
    served = serve()
    manifest = tmp_path / "m.yaml"
    manifest.write_text("items:\n  - id: a/b\n    prompt: ''\n  - id: c\n    image_url: file:///x.jpg\n"
                        "    prompt: p\n    colour: red\n")
    out = tmp_path / "out"
    done = run_cli("run", str(manifest), "--out", str(out), env=cli_env(served))
    assert done.returncode == 2
    for needle in ("item 1 (line 2) 'a/b': id: contains a path separator",
                   "item 1 (line 2) 'a/b': prompt: is empty", "item 1 (line 2) 'a/b': image_url: missing", "'c': image_url: 'file:///x.jpg' is not an http(s) URL",
                   "'c': unknown key 'colour'", "nothing was sent"):
        assert needle in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
    assert served.read(lambda s: len(s.stats.api_headers)) == 0
    assert not out.exists()


def test_kill_after_creates_then_resume_creates_nothing_twice(serve, tmp_path):
    """SIGKILL once every task is created: the rerun polls them and creates none again."""
    served = serve(gen_time=(2.0, 3.0))
    out, manifest = tmp_path / "out", write_manifest(tmp_path / "m.yaml", 30)
    args = ("run", str(manifest), "--out", str(out), "--rate", "200/1s", *FAST)
    proc = start_cli(*args, env=cli_env(served))
    interrupt(proc, lambda: in_state(out, "running") == 30, signal.SIGKILL)
    assert proc.returncode == -signal.SIGKILL
    done = run_cli(*args, env=cli_env(served))
    assert done.returncode == 0, done.stderr
    assert sorted(served.read(lambda s: s.creates_per_item()).values()) == [1] * 30
    assert_videos_match(out, served, status(out, cli_env(served)))


def test_kill_during_creates_pays_at_most_once_more(serve, tmp_path):
    """SIGKILL in the middle of creating: the rerun finishes every item; at most one was created twice."""
    served = serve(gen_time=(0.5, 1.0))
    out, manifest = tmp_path / "out", write_manifest(tmp_path / "m.yaml", 40)
    args = ("run", str(manifest), "--out", str(out), "--rate", "20/1s", *FAST)
    proc = start_cli(*args, env=cli_env(served))
    interrupt(proc, lambda: served.read(lambda s: len(s.stats.creates)) >= 12, signal.SIGKILL)
    assert served.read(lambda s: len(s.stats.creates)) < 40, "killed before the creates were done"
    done = run_cli(*args, env=cli_env(served))
    assert done.returncode == 0, done.stderr
    counts = served.read(lambda s: s.creates_per_item())
    assert len(counts) == 40 and sum(counts.values()) - 40 <= 1, counts
    assert_videos_match(out, served, status(out, cli_env(served)))


def test_failed_tasks_exit_1_and_retry_reruns_only_them(serve, tmp_path):
    """Tasks failing at the provider are recorded (failCode, failMsg), exit 1; `retry` re-creates only them."""
    served = serve(fail_rate=0.4, seed=7)
    done, out = run_manifest(served, tmp_path, 15)
    assert done.returncode == 1, done.stderr
    report = status(out, cli_env(served))
    failed = {row["id"] for row in report["items"] if row["state"] == "failed"}
    assert failed and report["counts"]["failed"] == len(failed) < 15
    assert all(row["fail_code"] == "501" and "Generation failed" in row["fail_msg"]
               for row in report["items"] if row["state"] == "failed")
    assert "batch-engine retry" in done.stderr

    served.read(lambda s: setattr(s.settings, "fail_rate", 0.0))
    before = served.read(lambda s: s.creates_per_item())
    again = run_cli("retry", str(out), *FAST, env=cli_env(served))
    assert again.returncode == 0, again.stderr
    after = served.read(lambda s: s.creates_per_item())
    recreated = {key for key in after if after[key] != before.get(key)}
    assert len(recreated) == len(failed) and all(after[k] == 2 for k in recreated)
    report = status(out, cli_env(served))
    assert report["counts"]["succeeded"] == 15
    assert all(row["attempts"] == (2 if row["id"] in failed else 1) for row in report["items"])


def test_failed_download_is_retried_without_a_new_task(serve, tmp_path):
    """A task that succeeded but whose file could not be fetched is downloaded again by `retry`, not paid again."""
    served = serve(file_status=503)
    done, out = run_manifest(served, tmp_path, 3)
    assert done.returncode == 1, done.stderr
    report = status(out, cli_env(served))
    assert {row["fail_code"] for row in report["items"]} == {"download_failed"}
    assert not list(out.glob("*.mp4")), "no partial file under a final name"
    served.read(lambda s: setattr(s.settings, "file_status", None))
    again = run_cli("retry", str(out), *FAST, env=cli_env(served))
    assert again.returncode == 0, again.stderr
    assert served.read(lambda s: len(s.stats.creates)) == 3
    assert_videos_match(out, served, status(out, cli_env(served)))


def test_expired_links_are_refreshed(serve, tmp_path):
    """Result URLs answering 403 are refreshed through download-url; no new task is created."""
    served = serve(expire_links=True)
    done, out = run_manifest(served, tmp_path, 4)
    assert done.returncode == 0, done.stderr
    assert served.read(lambda s: len(s.stats.creates)) == 4
    assert_videos_match(out, served, status(out, cli_env(served)))


def test_no_credits_stops_creating_and_exits_3(serve, tmp_path):
    """402 stops creates at once (not one call per item), finishes the paid tasks, exits 3 with advice."""
    served = serve(credits=5)
    done, out = run_manifest(served, tmp_path, 30)
    assert done.returncode == 3, done.stderr
    assert "no credits" in done.stderr and "Traceback" not in done.stderr
    assert served.read(lambda s: s.stats.create_calls) <= 5 + 4
    report = status(out, cli_env(served))
    assert report["counts"]["succeeded"] == 5 and report["counts"]["pending"] == 25
    served.read(lambda s: setattr(s.settings, "credits", 100))
    again = run_cli("run", str(tmp_path / "m.yaml"), "--out", str(out), "--rate", "200/1s", *FAST,
                    env=cli_env(served))
    assert again.returncode == 0, again.stderr
    assert sorted(served.read(lambda s: s.creates_per_item()).values()) == [1] * 30


def test_bad_key_exits_3(serve, tmp_path):
    """A refused key exits 3 after a handful of calls, saying to check KIE_API_KEY."""
    served = serve()
    done = run_cli("run", str(write_manifest(tmp_path / "m.yaml", 20)), "--out", str(tmp_path / "out"),
                   *FAST, env=cli_env(served, KIE_API_KEY="wrong-key"))
    assert done.returncode == 3, done.stderr
    assert "check KIE_API_KEY" in done.stderr
    assert served.read(lambda s: s.stats.create_calls) <= 4


def test_key_never_leaks(serve, tmp_path):
    """The key is in no output, log or ledger, and never sent to the file host; the UA names the tool."""
    served = serve(expire_links=True, fail_rate=0.3)
    out = tmp_path / "out"
    done = run_cli("run", str(write_manifest(tmp_path / "m.yaml", 10)), "--out", str(out),
                   "--rate", "200/1s", "-v", *FAST, env=cli_env(served))
    assert done.returncode == 1, done.stderr
    state = run_cli("status", str(out), env=cli_env(served))
    texts = [done.stdout, done.stderr, state.stdout, state.stderr]
    texts += [p.read_bytes().decode(errors="replace") for p in out.rglob("*") if p.is_file() and p.suffix != ".mp4"]
    assert not any(API_KEY in text for text in texts)
    file_requests = served.read(lambda s: list(s.stats.file_requests))
    assert file_requests and not any("Authorization" in headers or API_KEY in str(headers)
                                     for headers in file_requests)
    assert all(h["User-Agent"].startswith("batch-engine/") for h in file_requests)
    api = served.read(lambda s: list(s.stats.api_headers))
    assert all(h["User-Agent"].startswith("batch-engine/") for h in api)


def test_status_json_contract(serve, tmp_path):
    """status --json has the documented fields and counts for every state."""
    served = serve()
    out = tmp_path / "out"
    assert run_cli("run", str(write_manifest(tmp_path / "m.yaml", 2)), "--out", str(out), *FAST,
                   "--rate", "200/1s", env=cli_env(served)).returncode == 0
    report = status(out, cli_env(None))
    keys = {"id", "state", "task_id", "fail_code", "fail_msg", "video", "bytes", "sha256", "attempts"}
    assert all(keys <= row.keys() for row in report["items"])
    assert report["counts"]["succeeded"] == 2 and report["counts"]["failed"] == 0


def test_demo_runs_on_the_builtin_sandbox_without_a_key(tmp_path):
    """With no KIE_API_KEY the sample manifest runs against the built-in sandbox, and says so."""
    sample = Path(__file__).parent.parent / "sample_manifests" / "catalog.yaml"
    done = run_cli("run", str(sample), "--out", str(tmp_path / "out"), "--time-scale", "0.05", "-q",
                   env=cli_env(None))
    assert done.returncode == 0, done.stderr
    assert "No KIE_API_KEY set: running against the built-in sandbox" in done.stderr
    import yaml
    assert len(list((tmp_path / "out").glob("*.mp4"))) == len(yaml.safe_load(sample.read_text())["items"])
    assert len(list((tmp_path / "out").glob("*-01.mp4"))) == 3, "the local images were uploaded and used"


def test_error_page_is_never_kept_as_a_video(serve, tmp_path):
    """A file host answering 200 with an HTML page: no <id>.mp4 appears, the item fails as a download."""
    served = serve(error_page=True)
    done, out = run_manifest(served, tmp_path, 2)
    assert done.returncode == 1, done.stderr
    assert not list(out.glob("*.mp4"))
    report = status(out, cli_env(served))
    assert all(row["fail_code"] == "download_failed" and "not a video" in row["fail_msg"]
               for row in report["items"])


def test_restart_counts_the_creates_of_the_killed_run(serve, tmp_path):
    """Killed mid-window and restarted at once, the engine counts the creates its predecessor made
    in the window (from the ledger): no fresh burst, no 429, at the true cap."""
    served = serve(rate=Rate(10, 2.0), gen_time=(0.5, 1.0))
    out, manifest = tmp_path / "out", write_manifest(tmp_path / "m.yaml", 25)
    args = ("run", str(manifest), "--out", str(out), "--rate", "10/2s", *FAST)
    proc = start_cli(*args, env=cli_env(served))
    interrupt(proc, lambda: served.read(lambda s: len(s.stats.creates)) >= 6, signal.SIGKILL)
    done = run_cli(*args, env=cli_env(served))
    assert done.returncode == 0, done.stderr
    assert served.read(lambda s: s.stats.rate_limited) == 0
    counts = served.read(lambda s: s.creates_per_item())
    assert len(counts) == 25 and sum(counts.values()) - 25 <= 1

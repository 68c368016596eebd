"""The review surface: report.html checked in a real headless Chromium, `redo`, and
status while a run is going on."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import yaml

from tests.conftest import FAST, cli_env, ledger_records, run_cli, start_cli, stop, wait_for

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
EVIL = '<script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 2"> & "quotes"'


def review_folder(serve, tmp_path) -> tuple[object, Path, list[str]]:
    """A finished sandbox run with playable clips, local images, successes and failures."""
    served = serve(clips=True, fail_rate=0.35, seed=3)
    shutil.copytree(ROOT / "sample_manifests" / "images", tmp_path / "images")
    images = ["lamp.png", "mug.png", "chair.png"]
    items = [{"id": f"sku-{i:03d}", "image": f"images/{images[i % 3]}",
              "prompt": EVIL if i == 1 else f"Slow dolly-in on product {i}"} for i in range(12)]
    manifest = tmp_path / "m.yaml"
    manifest.write_text(yaml.safe_dump({"items": items}))
    out = tmp_path / "out"
    done = run_cli("run", str(manifest), "--out", str(out), "--rate", "200/1s", *FAST,
                   env=cli_env(served, KIE_UPLOAD_BASE_URL=served.sandbox.base_url))
    assert done.returncode == 1, done.stderr  # some failed, on purpose
    report = run_cli("report", str(out), env=cli_env(served))
    assert report.returncode == 0, report.stderr
    return served, out, [item["id"] for item in items]


def test_the_report_is_self_contained_and_escapes_every_text(serve, tmp_path):
    _, out, ids = review_folder(serve, tmp_path)
    page = (out / "report.html").read_text()
    assert "<script>window.__pwned" not in page and "&lt;script&gt;window.__pwned" in page
    assert "http://" not in page and "https://" not in page, "nothing is fetched from a network"
    assert page.count('class="card"') == len(ids)
    videos = sorted(p.name for p in out.glob("*.mp4"))
    assert videos and all(f'data-src="{name}"' in page for name in videos), "videos by relative path"
    assert 'src="../images/lamp.png"' in page, "source images relative to the page"


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (.ci/run installs it)")
def test_the_report_works_in_a_real_browser(serve, tmp_path):
    """From file://: no console error, one card per item, a playable video with a duration,
    filters and search, a prompt with <script> shown as text and run never, the redo command
    built from the ticked cards; a screenshot is kept in test-artifacts/."""
    playwright = pytest.importorskip("playwright.sync_api", reason="playwright is a test dependency")
    _, out, ids = review_folder(serve, tmp_path)
    moved = tmp_path / "moved"  # the folder can be moved: every path is relative
    shutil.move(str(out), moved)
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run",
            "--disable-component-update", "--disable-sync"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            problems: list[str] = []
            page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: problems.append(str(e)))
            page.goto((moved / "report.html").as_uri())
            page.wait_for_function("() => [...document.querySelectorAll('video')].some(v => v.duration > 0)",
                                   timeout=15_000)
            assert page.locator(".card").count() == len(ids)
            assert page.evaluate("window.__pwned") is None
            evil = page.locator('.card[data-id="sku-001"] .prompt').inner_text()
            assert "<script>" in evil and "onerror" in evil
            succeeded = page.locator('.card[data-state="succeeded"]').count()
            failed = page.locator('.card[data-state="failed"]').count()
            assert succeeded and failed and succeeded + failed == len(ids)
            page.click('[data-filter="failed"]')
            assert page.locator(".card:not(.hidden)").count() == failed
            assert page.locator(".card.hidden[data-state='succeeded']").count() == succeeded
            page.click('[data-filter="all"]')
            page.fill("#search", "product 7")
            assert page.locator(".card:not(.hidden)").count() == 1
            page.fill("#search", "")
            picks = page.locator("input.pick")
            picks.nth(0).check()
            picks.nth(1).check()
            command = page.locator("#command").inner_text()
            assert command.startswith("batch-engine redo ") and command.count("sku-") == 2
            artifacts = ROOT / "test-artifacts"
            artifacts.mkdir(exist_ok=True)
            page.screenshot(path=str(artifacts / "report.png"))
            assert not problems, problems
        finally:
            browser.close()


def test_redo_asks_refuses_without_a_terminal_and_remakes_exactly_the_chosen(serve, tmp_path):
    served = serve(clips=True)
    manifest = tmp_path / "m.yaml"
    manifest.write_text(yaml.safe_dump({"items": [
        {"id": f"sku-{i}", "image_url": f"https://cdn.example.com/{i}.jpg", "prompt": "a lamp"} for i in range(4)]}))
    out = tmp_path / "out"
    assert run_cli("run", str(manifest), "--out", str(out), "--rate", "200/1s", *FAST, env=cli_env(served)).returncode == 0
    old = (out / "sku-1.mp4").read_bytes()
    refused = run_cli("redo", str(out), "sku-1", "sku-3", *FAST, env=cli_env(served))
    assert refused.returncode == 2 and "2 new task(s), paid again" in refused.stderr
    assert served.read(lambda s: s.stats.create_calls) == 4, "nothing created without confirmation"
    (tmp_path / "ids.txt").write_text("sku-3\n")
    done = run_cli("redo", str(out), "sku-1", "--from", str(tmp_path / "ids.txt"), "--prompt", "a lamp at night",
                   "--yes", "--rate", "200/1s", *FAST, env=cli_env(served))
    assert done.returncode == 0, done.stderr
    assert served.read(lambda s: s.creates_per_item()) == {
        "https://cdn.example.com/0.jpg|a lamp": 1, "https://cdn.example.com/1.jpg|a lamp": 1,
        "https://cdn.example.com/2.jpg|a lamp": 1, "https://cdn.example.com/3.jpg|a lamp": 1,
        "https://cdn.example.com/1.jpg|a lamp at night": 1, "https://cdn.example.com/3.jpg|a lamp at night": 1}
    assert [p.read_bytes() for p in (out / ".replaced").glob("sku-1.*.mp4")] == [old]
    record = next(r for r in ledger_records(out) if r["id"] == "sku-1")
    assert record["history"][0]["prompt"] == "a lamp" and record["request"]["input"]["prompt"] == "a lamp at night"
    unknown = run_cli("redo", str(out), "nope", "--yes", env=cli_env(served))
    assert unknown.returncode == 2 and "nope" in unknown.stderr


def test_status_works_while_a_run_goes_on(serve, tmp_path):
    """status reads the ledger without the lock, while another process runs; --json stays
    compatible; the table groups failures by reason and shows timings."""
    served = serve(gen_time=(1.0, 1.5), fail_rate=0.5, seed=1)
    manifest = tmp_path / "m.yaml"
    manifest.write_text(yaml.safe_dump({"items": [
        {"id": f"sku-{i}", "image_url": f"https://cdn.example.com/{i}.jpg", "prompt": "p"} for i in range(20)]}))
    out = tmp_path / "out"
    proc = start_cli("run", str(manifest), "--out", str(out), "--rate", "200/1s", *FAST, env=cli_env(served))
    try:
        wait_for(lambda: any(r.get("state") == "running" for r in ledger_records(out)), timeout=30)
        during = run_cli("status", str(out), "--json", env=cli_env(served))
        assert during.returncode == 0, during.stderr
        report = json.loads(during.stdout)
        assert len(report["items"]) == 20 and report["counts"]["running"] + report["counts"]["pending"] \
            + report["counts"]["submitting"] + report["counts"]["downloading"] + report["counts"]["succeeded"] \
            + report["counts"]["failed"] == 20
        assert {"id", "state", "task_id", "fail_code", "fail_msg", "video", "bytes", "sha256",
                "attempts"} <= report["items"][0].keys()
        proc.wait(timeout=60)
    finally:
        stop(proc)
    table = run_cli("status", str(out), env=cli_env(served))
    assert table.returncode == 0
    assert "failures by reason" in table.stdout and "[501]" in table.stdout
    assert "create to saved video: median" in table.stdout and "videos in" in table.stdout


def test_redo_asks_on_a_terminal_and_creates_only_after_yes(serve, tmp_path):
    """On a terminal, redo says what it will pay for and waits for an answer: "n" creates
    nothing, "y" makes the item again."""
    import pty
    import subprocess
    import sys
    served = serve(clips=True)
    manifest = tmp_path / "m.yaml"
    manifest.write_text(yaml.safe_dump({"items": [{"id": "sku-1", "image_url": "https://cdn.example.com/1.jpg",
                                                   "prompt": "a lamp"}]}))
    out = tmp_path / "out"
    assert run_cli("run", str(manifest), "--out", str(out), "--rate", "200/1s", *FAST, env=cli_env(served)).returncode == 0

    def redo(answer: str) -> subprocess.CompletedProcess:
        main, child = pty.openpty()
        try:
            proc = subprocess.Popen([sys.executable, "-m", "batch_engine", "redo", str(out), "sku-1", "--rate",
                                     "200/1s", *FAST], stdin=child, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, env=cli_env(served), text=True)
            os.write(main, answer.encode() + b"\n")
            stdout, stderr = proc.communicate(timeout=60)
        finally:
            os.close(main)
            os.close(child)
        return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)

    declined = redo("n")
    assert declined.returncode == 0 and "nothing was created" in declined.stderr
    assert served.read(lambda s: s.stats.create_calls) == 1
    accepted = redo("y")
    assert accepted.returncode == 0, accepted.stderr
    assert served.read(lambda s: s.stats.create_calls) == 2

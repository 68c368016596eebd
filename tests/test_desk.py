"""The review desk, driven in a real headless Chromium (Playwright on Debian's chromium): the
token, approve and reject by click and by key, decisions that survive a reload and a restart,
make again with an edited prompt (tasks only after the confirmation), export, and the first
screen of 5,000 items."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import FAST, cli_env, run_cli, run_manifest, start_cli, stop, wait_for, write_manifest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (.ci/run installs it)")
ROOT = Path(__file__).resolve().parents[1]


def start_desk(out: Path, env: dict[str, str]) -> tuple[subprocess.Popen, str]:
    """`batch-engine review OUT --no-open` in a child; its URL, read from what it prints."""
    proc = start_cli("review", str(out), "--no-open", *FAST, env=env)
    assert proc.stderr is not None
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if "review desk: http" in line:
            return proc, line.split("review desk: ", 1)[1].strip()
        if not line and proc.poll() is not None:
            break
    stop(proc)
    raise AssertionError("the desk did not print its URL")


def request(url: str, data: dict | None = None, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    body = json.dumps(data).encode() if data is not None else None
    req = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json", **(headers or {})},
                                 method="POST" if body is not None else "GET")
    try:
        with urllib.request.urlopen(req, timeout=10) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    playwright = pytest.importorskip("playwright.sync_api", reason="playwright is a test dependency")
    with playwright.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run",
            "--disable-component-update", "--disable-sync"])
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    tab = context.new_page()
    tab.problems = []
    tab.on("pageerror", lambda e: tab.problems.append(str(e)))
    yield tab
    context.close()


def decisions(out: Path) -> dict[str, str]:
    latest: dict[str, str] = {}
    path = out / "decisions.jsonl"
    for line in path.read_text().splitlines() if path.exists() else []:
        record = json.loads(line)
        latest[record["id"]] = record["decision"]
    return {k: v for k, v in latest.items() if v != "cleared"}


def test_no_request_without_the_token_is_served_and_nothing_changes(serve, tmp_path):
    served = serve()
    done, out = run_manifest(served, tmp_path, 2)
    assert done.returncode == 0, done.stderr
    proc, url = start_desk(out, cli_env(served))
    try:
        base, token = url.split("/?t=")
        assert request(base + "/")[0] == 403
        assert request(base + "/api/items")[0] == 403
        assert request(base + "/media/sku-00000.mp4")[0] == 403
        assert request(base + "/?t=wrong" + token[5:])[0] == 403
        assert request(url)[0] == 200
        change = {"id": "sku-00000", "decision": "approve"}
        assert request(base + "/api/decide", change)[0] == 403                          # no token
        assert request(f"{base}/api/decide?t={token}", change)[0] == 403               # in the URL: refused
        assert request(base + "/api/decide", change, {"X-Desk-Token": token, "Origin": "http://evil.example"})[0] == 403
        assert request(base + "/api/decide", change, {"X-Desk-Token": token, "Host": "evil.example"})[0] == 403
        assert request(base + "/api/items", None, {"Cookie": f"desk_token={token}", "Sec-Fetch-Site": "cross-site"})[0] == 403
        assert not (out / "decisions.jsonl").exists()
        status, _ = request(base + "/api/decide", change, {"X-Desk-Token": token})
        assert status == 200 and decisions(out) == {"sku-00000": "approved"}
        assert request(base + "/media/..%2Fledger.jsonl", None, {"Cookie": f"desk_token={token}"})[0] == 404
    finally:
        stop(proc)


def test_approve_and_reject_by_click_and_key_survive_a_reload_and_a_restart(serve, tmp_path, page):
    served = serve(clips=True)
    done, out = run_manifest(served, tmp_path, 6)
    assert done.returncode == 0, done.stderr
    proc, url = start_desk(out, cli_env(served))
    try:
        page.goto(url)
        page.wait_for_selector(".card[data-item-id='sku-00000']")
        assert page.locator(".card").count() == 6
        assert page.locator(".card[data-item-id='sku-00002'] .id").inner_text() == "sku-00002"
        page.locator(".card[data-item-id='sku-00000']").get_by_role("button", name="Approve").click()
        page.locator(".card[data-item-id='sku-00001']").get_by_role("button", name="Reject").click()
        page.wait_for_selector(".card[data-item-id='sku-00001'].rejected")
        page.keyboard.press("j")  # to sku-00002
        page.keyboard.press("a")
        page.wait_for_selector(".card[data-item-id='sku-00002'].approved")
        page.keyboard.press("j")
        page.keyboard.press("r")
        page.wait_for_selector(".card[data-item-id='sku-00003'].rejected")
        page.keyboard.press("j")
        page.keyboard.press("a")
        page.wait_for_selector(".card[data-item-id='sku-00004'].approved")
        page.keyboard.press("u")  # undo the last
        page.wait_for_selector(".card[data-item-id='sku-00004']:not(.approved)")
        want = {"sku-00000": "approved", "sku-00001": "rejected", "sku-00002": "approved", "sku-00003": "rejected"}
        assert decisions(out) == want
        page.locator(".card[data-item-id='sku-00004'] .shot").click()  # plays on click; one player at a time
        page.wait_for_function("() => document.querySelectorAll('video').length === 1 && "
                               "document.querySelector('video').readyState >= 1", timeout=10_000)
        page.reload()
        page.wait_for_selector(".card[data-item-id='sku-00003'].rejected")
        assert page.locator(".card.approved").count() == 2 and page.locator(".card.rejected").count() == 2
        shot = ROOT / "test-artifacts"
        shot.mkdir(exist_ok=True)
        page.screenshot(path=str(shot / "desk.png"))
    finally:
        stop(proc)
    proc, url = start_desk(out, cli_env(served))  # a restart reads the same decisions
    try:
        page.goto(url)
        page.wait_for_selector(".card[data-item-id='sku-00001'].rejected")
        assert page.locator(".card.approved").count() == 2
        page.select_option("#f-decision", "approved")
        assert page.locator(".card").count() == 2
    finally:
        stop(proc)
    report = json.loads(run_cli("status", str(out), "--json", env=cli_env(served)).stdout)
    assert report["decisions"] == {"approved": 2, "rejected": 2}
    assert {r["id"]: r["decision"] for r in report["items"] if r["decision"]} == want
    assert not page.problems
    exported = run_cli("export", str(out), "--approved", str(tmp_path / "approved"), env=cli_env(served))
    assert exported.returncode == 0, exported.stderr
    names = sorted(p.name for p in (tmp_path / "approved").iterdir())
    assert names == ["index.csv", "index.jsonl", "sku-00000.jpg", "sku-00000.json", "sku-00000.mp4",
                     "sku-00002.jpg", "sku-00002.json", "sku-00002.mp4"]
    assert (tmp_path / "approved" / "sku-00002.mp4").read_bytes() == (out / "sku-00002.mp4").read_bytes()


def test_make_again_with_an_edited_prompt_creates_exactly_those_tasks_after_confirmation(serve, tmp_path, page):
    served = serve(clips=True)
    done, out = run_manifest(served, tmp_path, 4)
    assert done.returncode == 0, done.stderr
    old = (out / "sku-00001.mp4").read_bytes()
    proc, url = start_desk(out, cli_env(served))
    try:
        page.goto(url)
        page.wait_for_selector(".card[data-item-id='sku-00001']")
        page.locator(".card[data-item-id='sku-00000']").get_by_role("button", name="Make again").click()
        page.locator(".card[data-item-id='sku-00001'] .id").click()
        page.keyboard.press("k")
        page.keyboard.press("j")  # on sku-00001
        page.keyboard.press("e")
        page.fill("#new-prompt", "The lamp glows warmly, slow orbit")
        page.click("#save-prompt")
        page.wait_for_selector(".card[data-item-id='sku-00001'].remake")
        assert "2 to make again: 2 new task(s), paid" in page.locator("#queued").inner_text()
        command = page.locator("#command").inner_text()
        assert "redo" in command and "sku-00000" in command and "--prompt" in command
        assert served.read(lambda s: len(s.stats.creates)) == 4  # nothing created before the confirmation
        page.click("#create")
        assert served.read(lambda s: len(s.stats.creates)) == 4
        page.click("#confirm")
        page.wait_for_function("() => document.querySelectorAll('.card.remake').length === 0", timeout=60_000)
        page.wait_for_function("() => document.getElementById('remake-status').textContent.includes('made again')",
                               timeout=60_000)
    finally:
        stop(proc)
    creates = served.read(lambda s: list(s.stats.creates))
    assert len(creates) == 6
    prompts = served.read(lambda s: [s.tasks[c["task_id"]].param["input"]["prompt"] for c in creates[4:]])
    assert sorted(prompts) == sorted(["The lamp glows warmly, slow orbit", "Slow dolly-in on product 0, soft studio light"])
    report = {r["id"]: r for r in json.loads(run_cli("status", str(out), "--json", env=cli_env(served)).stdout)["items"]}
    assert report["sku-00001"]["state"] == "succeeded" and report["sku-00001"]["attempts"] >= 1
    assert any(p.read_bytes() == old for p in (out / ".replaced").glob("sku-00001.*.mp4"))  # the old one kept aside


def test_5000_items_are_shown_a_page_at_a_time(serve, tmp_path, page):
    """The DOM stays bounded whatever the folder holds (its time is measured by bench/desk.py)."""
    from bench.run import make_ledger
    out = tmp_path / "big"
    make_ledger(out, 5000)
    proc, url = start_desk(out, cli_env(None))
    try:
        page.goto(url)
        page.wait_for_selector(".card")
        assert page.locator(".card").count() == 48  # a page at a time: the DOM stays bounded
        assert "5000" in page.locator("#counts").inner_text()
        page.fill("#search", "sku-004999")
        page.wait_for_function("() => document.querySelectorAll('.card').length === 1")
    finally:
        stop(proc)


def test_the_desk_shows_new_videos_as_they_arrive(serve, tmp_path, page):
    served = serve(clips=True, gen_time=(3.0, 4.0))
    out = tmp_path / "out"
    run = start_cli("run", str(write_manifest(tmp_path / "m.yaml", 3)), "--out", str(out), "--rate", "200/1s",
                    *FAST, env=cli_env(served))
    try:
        wait_for(lambda: (out / "ledger.jsonl").exists(), timeout=30)
        proc, url = start_desk(out, cli_env(served))
        try:
            page.goto(url)
            page.wait_for_selector(".card[data-item-id='sku-00000']")
            assert page.locator(".card img").count() == 0  # nothing made yet
            page.wait_for_function("() => document.querySelectorAll('.card img').length === 3", timeout=30_000)
            assert page.locator(".tag.succeeded").count() == 3
        finally:
            stop(proc)
    finally:
        stop(run)

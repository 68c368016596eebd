"""The review desk's first screen in a real headless Chromium, for 5,000 items against 48 (one
page) in the same run: from navigation to the first card, the median of three each.

    python bench/desk.py     # needs Debian's chromium and the test extras (Playwright)
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.run import make_ledger


def first_screen(folder: Path, browser: object, rounds: int = 3) -> float:
    proc = subprocess.Popen([sys.executable, "-m", "batch_engine", "review", str(folder), "--no-open"],
                            stderr=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        assert proc.stderr is not None
        url = next(line.split("review desk: ", 1)[1].strip() for line in proc.stderr if "review desk: http" in line)
        times = []
        for _ in range(rounds):
            page = browser.new_page()  # type: ignore[attr-defined]
            started = time.perf_counter()
            page.goto(url)
            page.wait_for_selector(".card")
            times.append(time.perf_counter() - started)
            page.close()
        return statistics.median(times)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def main() -> None:
    from playwright.sync_api import sync_playwright
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run",
            "--disable-component-update", "--disable-sync"])
        small, big = Path(tmp) / "small", Path(tmp) / "big"
        make_ledger(small, 48)
        make_ledger(big, 5000)
        base, many = first_screen(small, browser), first_screen(big, browser)
        browser.close()
    print(f"{'first screen of the desk':<34} {'seconds':>8} {'ratio':>6}")
    print(f"{'48 items (one page)':<34} {base:>8.2f} {1.0:>6.2f}")
    print(f"{'5,000 items':<34} {many:>8.2f} {many / base:>6.2f}")


if __name__ == "__main__":
    main()
